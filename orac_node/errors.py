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

The three below ClientError carry contract messages (a Response, an
ErrorReport), so they live with the SDK in orac_node/client/errors.py: this
module imports nothing of the package, and everything may import it.

Library exceptions (yaml, pydantic, aiomqtt, ffmpeg exit codes) are translated
into these at the boundary with ``raise ... from exc`` so the cause stays
visible in tracebacks while callers depend only on this module.
"""

from __future__ import annotations


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
    :class:`orac_node.wire.ErrorCode`); the message is for people.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ClientError(OracNodeError):
    """The client was misused, or the broker refused it something it needs."""
