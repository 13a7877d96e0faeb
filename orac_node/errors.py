"""The package's exceptions, one tree so callers can catch what they mean.

    OracNodeError
    ├── ConfigError          invalid config file, env override or flag
    ├── ModelError           the speech model cannot be found or loaded
    ├── AudioDecodeError     a file or payload could not be turned into PCM
    ├── BrokerError          the broker refused us or cannot be reached
    ├── AccountError         a satellite account cannot be added, removed or listed
    ├── ContractError        a message breaks the wire contract (carries a code)
    └── ClientError          the client SDK (orac_node.client) was misused or refused
        ├── RequestError         a node answered a request with ok: false
        ├── RequestTimeoutError  no answer in time; also a TimeoutError
        └── StreamError          the node refused a streamed session

Library exceptions (yaml, pydantic, aiomqtt, ffmpeg exit codes) are translated
into these at the boundary with ``raise ... from exc`` so the cause stays
visible in tracebacks while callers depend only on this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # contract.py imports this module
    from orac_node.contract import ErrorReport, Response


class OracNodeError(Exception):
    """Base class of every error raised on purpose by orac-node."""


class ConfigError(OracNodeError):
    """The configuration (file, environment or flags) is invalid."""


class ModelError(OracNodeError):
    """The speech model cannot be resolved or loaded."""


class AudioDecodeError(OracNodeError):
    """Audio bytes or a file could not be decoded to PCM."""


class BrokerError(OracNodeError):
    """The MQTT broker could not be reached or refused the connection."""


class AccountError(OracNodeError):
    """A broker account (``orac-node satellite ...``) cannot be changed as asked."""


class ContractError(OracNodeError):
    """A message does not follow the wire contract.

    ``code`` is the machine-readable error code published to the sender (see
    :class:`orac_node.contract.ErrorCode`); the message is for people.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ClientError(OracNodeError):
    """The client was misused, or the broker refused it something it needs."""


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
