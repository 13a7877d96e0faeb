"""config.yaml, written from the config classes: every setting, its default and why.

The descriptions in the section classes are the only place a setting is
explained; this module turns them into the comments of config.yaml, so the two
cannot disagree. ``orac-node config template > config.yaml`` rewrites the file,
and a test fails when the committed file differs from :func:`render`.
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from orac_node.config.load import NodeConfig

WIDTH = 84
"""Comment lines are wrapped to this many columns (the file is read in terminals)."""

HEADER = """\
orac-node configuration: every setting with its default.

Use: orac-node run --config config.yaml
Precedence (lowest first): these defaults, this file, environment variables
ORAC_NODE_<SECTION>__<KEY> (e.g. ORAC_NODE_BROKER__URL=mqtt://box:1883), then the
command-line flags --broker, --model and --node-id. Unknown keys are errors.
This file is written by `orac-node config template` from the descriptions in
orac_node/config/; edit those, not this file (a test keeps the two the same)."""


def render() -> str:
    """The text of config.yaml: a header, then each section with its fields."""
    lines = [f"# {line}".rstrip() for line in HEADER.splitlines()]
    for name, info in NodeConfig.model_fields.items():
        section = info.annotation
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            raise TypeError(f"config section {name} is not a pydantic model")
        lines.append("")
        lines += _comment(_section_text(section), indent="")
        lines.append(f"{name}:")
        for field_name, field in section.model_fields.items():
            lines += _comment(field.description or "", indent="  ")
            lines.append(f"  {field_name}: {_value(field)}")
    return "\n".join(lines) + "\n"


def write(path: Path) -> None:
    """Write :func:`render` to ``path``."""
    path.write_text(render(), encoding="utf-8")


def _section_text(section: type[BaseModel]) -> str:
    """The section's docstring, its summary and any paragraphs after it."""
    return inspect.cleandoc(section.__doc__ or section.__name__)


def _comment(text: str, *, indent: str) -> list[str]:
    """``text`` as comment lines: paragraphs wrapped, lines starting with a space kept."""
    out: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            width = WIDTH - len(indent) - 2
            wrapped = textwrap.wrap(
                " ".join(paragraph), width, break_long_words=False, break_on_hyphens=False
            )
            out.extend(f"{indent}# {line}" for line in wrapped)
            paragraph.clear()

    for line in text.splitlines():
        if line.startswith(" "):  # an example, laid out by hand
            flush()
            out.append(f"{indent}#{line}" if line.startswith("  ") else f"{indent}# {line}")
        elif not line.strip():
            flush()
        else:
            paragraph.append(line.strip())
    flush()
    return out


def _value(field: FieldInfo) -> str:
    """The default, as YAML on one line."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "template" in extra:
        default: Any = extra["template"]
    elif field.default_factory is not None:
        default = field.default_factory()  # type: ignore[call-arg]
    else:
        default = field.default
    if isinstance(default, Path):
        default = str(default)
    dumped = yaml.safe_dump(default, default_flow_style=True, width=1_000_000).strip()
    return dumped.removesuffix("\n...").removesuffix("...").strip()
