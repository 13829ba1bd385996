"""Every HTTP call offload makes goes through here: SSRF guard, client, signing."""

from offload.outbound.http import OutboundClient, OutboundResponse, build_client, send
from offload.outbound.ssrf import AddressPolicy, GuardedResolver, GuardedTransport, validate_url

__all__ = [
    "AddressPolicy",
    "GuardedResolver",
    "GuardedTransport",
    "OutboundClient",
    "OutboundResponse",
    "build_client",
    "send",
    "validate_url",
]
