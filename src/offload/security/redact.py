"""Keep secrets out of API answers, the dashboard and logs."""

from __future__ import annotations

from collections.abc import Mapping

SENSITIVE_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    "x-auth-token", "x-inngest-signature", "webhook-signature",
})
REDACTED = "[redacted]"


def is_sensitive_header(name: str) -> bool:
    """True for header names whose values are credentials."""
    lowered = name.lower()
    return (lowered in SENSITIVE_HEADERS or "secret" in lowered or "token" in lowered
            or "password" in lowered)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with credential values replaced by ``[redacted]``.

    A value that only references stored secrets (``Bearer {{ secrets.KEY }}``) holds no
    credential and is shown as it is.
    """
    from offload.security.secrets import only_references

    return {k: (REDACTED if is_sensitive_header(k) and not only_references(v) else v)
            for k, v in headers.items()}
