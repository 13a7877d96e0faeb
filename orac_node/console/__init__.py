"""The live web console: what the node hears, as it hears it, and a microphone to try it.

One page (static/) served by :mod:`~orac_node.console.server`, fed over a
WebSocket by a server-side bridge to the broker: the server subscribes to the
node statuses, satellite heartbeats, transcripts and error reports
(:mod:`~orac_node.console.view` keeps what a newly opened page needs), and
the page's talk button streams the browser's microphone through the server as
a satellite (:mod:`~orac_node.console.talk`). docs/CONSOLE.md says why a
bridge and not an MQTT client in the page.
"""

from orac_node.console.server import ConsoleServer

__all__ = ["ConsoleServer"]
