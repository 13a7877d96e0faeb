"""Wire contract, version 1: every topic and payload orac-node speaks.

Satellites, ORAC Core, the CLI and the client SDK are written against this
package; nothing else builds a topic string or a payload by hand.
docs/CONTRACT.md explains each message with examples a person can type. One
module per topic family; import from here::

    audio/<device>/chunk       msgpack AudioChunk, one piece of a session      audio.py
    audio/<device>/raw         bare s16le 16 kHz mono PCM, cut by the VAD      audio.py
    audio/<device>/file        a whole WAV/FLAC/MP3/OGG file                   audio.py
    transcript/<topic>         JSON Partial and Final                          transcripts.py
    orac/node/<node>/status    retained JSON NodeStatus (Last Will: offline)   status.py
    orac/device/<device>/error JSON ErrorReport for the sender                 status.py
    orac/device/<device>/transcript  retained JSON DeviceTranscript         homeassistant.py
    <prefix>/device/<id>/config  Home Assistant discovery (its schema)     homeassistant.py
    orac/request/<node|any>/<method>, orac/response/<owner>/...
                               Core's requests and the Responses               requests.py
    orac/context/device/<d>, orac/context/topic/<t>
                               retained JSON Context: a prompt for finals      context.py
    orac/claim/<device>        JSON SessionClaim: which node decodes a session fleet.py
    orac/job/<id>              JSON JobEvent: a long recording's progress      jobs.py
    orac/config/topic/<topic>  retained JSON TopicConfig                       registry.py
    orac/config/models         retained JSON ModelSelection (promote)          models.py
    orac/satellite/<device>/status  retained JSON SatelliteStatus              registry.py
    (webhook POST bodies)      JSON TranscriptionEvent                         webhooks.py

base.py holds what they share: the version, name rules, error codes and the one
JSON encode/decode pair (:class:`JsonPayload`).
"""

from orac_node.wire.audio import (
    AUDIO_FILTER,
    MAX_CHANNELS,
    MAX_RATE,
    MAX_SEQ,
    MIN_RATE,
    SAMPLE_RATE,
    AudioChunk,
    AudioFormat,
    AudioKind,
    audio_topic,
    audio_topic_device,
    parse_audio_topic,
)
from orac_node.wire.base import (
    MAX_TOPIC_BYTES,
    PROTOCOL_VERSION,
    ROOM_CODES,
    ErrorCode,
    JsonPayload,
    is_valid_language,
    is_valid_name,
)
from orac_node.wire.context import (
    CONTEXT_DEFAULT_TTL_S,
    CONTEXT_FILTER,
    CONTEXT_MAX_TTL_S,
    Context,
    context_topic,
    parse_context_topic,
)
from orac_node.wire.fleet import CLAIM_FILTER, SessionClaim, claim_topic
from orac_node.wire.homeassistant import (
    DEVICE_TRANSCRIPT_FILTER,
    TRANSCRIPT_EVENT,
    DeviceTranscript,
    device_transcript_topic,
    discovery_config_topic,
    discovery_object_id,
    is_transcript_event,
)
from orac_node.wire.jobs import (
    FINISHED,
    JOB_FILTER,
    JOB_STATES,
    JobEvent,
    JobInfo,
    JobRequest,
    JobState,
    job_percent,
    job_topic,
)
from orac_node.wire.models import MODEL_SELECTION_TOPIC, ModelSelection
from orac_node.wire.registry import (
    ROOM_GROUP_FILTER,
    SATELLITE_STATUS_FILTER,
    TOPIC_CONFIG_FILTER,
    RoomGroup,
    SatelliteState,
    SatelliteStatus,
    TopicConfig,
    WebhookTarget,
    room_group_topic,
    satellite_status_topic,
    topic_config_topic,
)
from orac_node.wire.requests import (
    MAX_PROMPT_CHARS,
    REQUEST_ANY,
    RESPONSE_PREFIX,
    SHARE_GROUP,
    SHARED_REQUEST_FILTER,
    Method,
    Response,
    ResponseError,
    RetranscribeRequest,
    TranscribeRequest,
    Transcription,
    is_response_topic,
    parse_request_topic,
    request_subscriptions,
    request_topic,
    response_topic,
)
from orac_node.wire.status import (
    ERROR_FILTER,
    STATUS_FILTER,
    ErrorReport,
    NodeState,
    NodeStatus,
    error_topic,
    error_topic_fits,
    status_topic,
)
from orac_node.wire.transcripts import (
    DUPLICATE,
    TRANSCRIPT_FILTER,
    Final,
    Partial,
    Segment,
    Word,
    decode_transcript,
    transcript_topic,
)
from orac_node.wire.webhooks import WEBHOOK_EVENT, TranscriptionEvent

__all__ = [
    "AUDIO_FILTER",
    "CLAIM_FILTER",
    "CONTEXT_DEFAULT_TTL_S",
    "CONTEXT_FILTER",
    "CONTEXT_MAX_TTL_S",
    "DEVICE_TRANSCRIPT_FILTER",
    "DUPLICATE",
    "ERROR_FILTER",
    "FINISHED",
    "JOB_FILTER",
    "JOB_STATES",
    "MAX_CHANNELS",
    "MAX_PROMPT_CHARS",
    "MAX_RATE",
    "MAX_SEQ",
    "MAX_TOPIC_BYTES",
    "MIN_RATE",
    "MODEL_SELECTION_TOPIC",
    "PROTOCOL_VERSION",
    "REQUEST_ANY",
    "RESPONSE_PREFIX",
    "ROOM_CODES",
    "ROOM_GROUP_FILTER",
    "SAMPLE_RATE",
    "SATELLITE_STATUS_FILTER",
    "SHARED_REQUEST_FILTER",
    "SHARE_GROUP",
    "STATUS_FILTER",
    "TOPIC_CONFIG_FILTER",
    "TRANSCRIPT_EVENT",
    "TRANSCRIPT_FILTER",
    "WEBHOOK_EVENT",
    "AudioChunk",
    "AudioFormat",
    "AudioKind",
    "Context",
    "DeviceTranscript",
    "ErrorCode",
    "ErrorReport",
    "Final",
    "JobEvent",
    "JobInfo",
    "JobRequest",
    "JobState",
    "JsonPayload",
    "Method",
    "ModelSelection",
    "NodeState",
    "NodeStatus",
    "Partial",
    "Response",
    "ResponseError",
    "RetranscribeRequest",
    "RoomGroup",
    "SatelliteState",
    "SatelliteStatus",
    "Segment",
    "SessionClaim",
    "TopicConfig",
    "TranscribeRequest",
    "Transcription",
    "TranscriptionEvent",
    "WebhookTarget",
    "Word",
    "audio_topic",
    "audio_topic_device",
    "claim_topic",
    "context_topic",
    "decode_transcript",
    "device_transcript_topic",
    "discovery_config_topic",
    "discovery_object_id",
    "error_topic",
    "error_topic_fits",
    "is_response_topic",
    "is_transcript_event",
    "is_valid_language",
    "is_valid_name",
    "job_percent",
    "job_topic",
    "parse_audio_topic",
    "parse_context_topic",
    "parse_request_topic",
    "request_subscriptions",
    "request_topic",
    "response_topic",
    "room_group_topic",
    "satellite_status_topic",
    "status_topic",
    "topic_config_topic",
    "transcript_topic",
]
