"""Every HTTP call offload makes goes through here: SSRF guard, client, signing."""

from offload.outbound.http import OutboundResponse, build_client, send
from offload.outbound.ssrf import AddressPolicy, GuardedTransport, validate_url

__all__ = [
    "AddressPolicy",
    "GuardedTransport",
    "OutboundResponse",
    "build_client",
    "send",
    "validate_url",
]
