"""The client SDK's errors that carry a node's answer (the rest are in orac_node.errors)."""

from __future__ import annotations

from orac_node.errors import ClientError
from orac_node.wire import ErrorReport, Response


class RequestError(ClientError):
    """A node answered a request with ``ok: false``; ``code`` is machine-readable."""

    def __init__(self, response: Response) -> None:
        error = response.error
        self.code = error.code if error is not None else "unknown"
        self.message = error.message if error is not None else "no error given"
        self.response = response
        super().__init__(
            f"{response.method} failed on {response.node}: {self.code}: {self.message}"
        )


class RequestTimeoutError(ClientError, TimeoutError):
    """No answer in time: no node up, none allowed to answer, or the work took longer."""


class StreamError(ClientError):
    """The node refused a streamed session; ``report`` is what it published."""

    def __init__(self, report: ErrorReport) -> None:
        self.report = report
        self.code = report.code
        super().__init__(
            f"{report.node} refused session {report.session}: {report.code}: {report.message}"
        )
