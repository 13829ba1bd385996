"""The Inngest SDK wire protocol as pure functions: no I/O, no engine imports.

``canonical`` (RFC 8785 bodies), ``signing`` (HMAC signatures, Bearer keys),
``opcodes`` (parsing SDK answers), ``function_config`` (a function's config, typed),
``expressions`` (CEL), ``messages`` (register, call requests, memos,
lifecycle events, seeded ids) and ``durations`` (time strings).
"""

from offload.protocol.canonical import canonical_json
from offload.protocol.durations import format_duration, parse_duration
from offload.protocol.function_config import FunctionConfig, Trigger
from offload.protocol.messages import (
    RegisterRequest,
    SyncedFunction,
    build_call_request,
    build_call_url,
    event_ids_from_seed,
    function_cancelled_event,
    function_failed_event,
    function_finished_event,
    invoke_event,
    memo_error,
    memo_output,
    parse_register_request,
    scheduled_timer_event,
)
from offload.protocol.opcodes import (
    GeneratorOp,
    Opcode,
    SdkResponse,
    normalize_error,
    parse_sdk_response,
)
from offload.protocol.signing import (
    bearer_matches,
    hash_signing_key,
    sign_request,
    strip_key_prefix,
    validate_signing_key,
    verify_request_signature,
)

__all__ = [
    "FunctionConfig",
    "GeneratorOp",
    "Opcode",
    "RegisterRequest",
    "SdkResponse",
    "SyncedFunction",
    "Trigger",
    "bearer_matches",
    "build_call_request",
    "build_call_url",
    "canonical_json",
    "event_ids_from_seed",
    "format_duration",
    "function_cancelled_event",
    "function_failed_event",
    "function_finished_event",
    "hash_signing_key",
    "invoke_event",
    "memo_error",
    "memo_output",
    "normalize_error",
    "parse_duration",
    "parse_register_request",
    "parse_sdk_response",
    "scheduled_timer_event",
    "sign_request",
    "strip_key_prefix",
    "validate_signing_key",
    "verify_request_signature",
]
