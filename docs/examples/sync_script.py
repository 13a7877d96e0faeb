"""The blocking client, for scripts without asyncio: describe the nodes, transcribe files.

Usage: python sync_script.py [--broker URL] FILE...

Prints ``node <id>: model <name>, models <names>`` for the node that answers,
then ``<file>: <text>`` for each file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from orac_node.client import SyncClient


def main() -> None:
    """Ask one node what it offers, then transcribe each file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("ORAC_BROKER", "mqtt://127.0.0.1:1883"))
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    with SyncClient(args.broker, timeout=120) as client:
        info = client.describe()
        print(f"node {info['node']}: model {info['model']}, models {', '.join(info['models'])}")
        for path in args.files:
            print(f"{path.name}: {client.transcribe(path, publish=False).text}")


if __name__ == "__main__":
    main()
