"""The one way offload makes HTTP calls: a shared guarded client and :func:`send`.

:func:`send` enforces a total time limit, a response-size cap and the redirect
policy: 307/308 are followed with the same method and body; 301/302/303 are
followed only for GET and HEAD, so a POST never turns into a GET. Every hop goes
back through the SSRF guard. Errors never quote header values or query strings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from offload.errors import OutboundError
from offload.outbound.ssrf import AddressPolicy, GuardedTransport

__all__ = ["OutboundResponse", "build_client", "send"]

_SAME_METHOD_REDIRECTS = frozenset({307, 308})
_SAFE_ONLY_REDIRECTS = frozenset({301, 302, 303})
_SAFE_METHODS = frozenset({"GET", "HEAD"})
# Dropped when a redirect leaves the original origin (as browsers and httpx do).
_ORIGIN_BOUND_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


@dataclass(frozen=True)
class OutboundResponse:
    """What came back. ``headers`` has lower-cased names; ``truncated`` means the
    body hit the size cap and the rest was discarded."""

    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool
    elapsed_ms: float
    redirects: int


def build_client(
    *,
    policy: AddressPolicy,
    timeout_s: float = 30.0,
    connect_timeout_s: float = 5.0,
    max_connections: int = 256,
    user_agent: str = "offload",
) -> httpx.AsyncClient:
    """Build the shared client: keep-alive, HTTP/1.1, no redirects, no env proxies.

    Close it with ``await client.aclose()`` at shutdown.
    """
    transport = GuardedTransport(
        policy,
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        ),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        follow_redirects=False,
        trust_env=False,  # no proxies or .netrc credentials from the environment
        headers={"user-agent": user_agent},
    )


def _safe_url(url: httpx.URL) -> str:
    """The URL without user info, query or fragment, for messages and logs."""
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _redirect_target(response: httpx.Response) -> httpx.URL | None:
    location = response.headers.get("location")
    if not location:
        return None
    try:
        target = response.url.join(location)
    except (httpx.InvalidURL, ValueError):
        return None
    if target.scheme not in ("http", "https") or not target.host:
        return None
    return target


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        room = limit - size
        if len(chunk) > room:
            chunks.append(chunk[:room])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    content: bytes | None,
    timeout_s: float,
    max_response_bytes: int = 4 * 1024 * 1024,
    max_redirects: int = 5,
) -> OutboundResponse:
    """Make one HTTP exchange (with allowed redirects) within ``timeout_s`` in total.

    Returns any HTTP response, including 3xx that were not followed (too many hops,
    a 301/302/303 on a non-GET/HEAD method, a missing or non-HTTP ``Location``).
    Raises :class:`~offload.errors.AddressRefusedError` if the guard refuses a hop and
    :class:`~offload.errors.OutboundError` on network errors, timeouts or a bad URL.
    """
    method = method.upper()
    started = time.perf_counter()
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise OutboundError("invalid URL") from None
    first_origin = _origin(current)
    where = f"{method} {_safe_url(current)}"
    connect = client.timeout.connect
    per_call = httpx.Timeout(
        timeout_s, connect=timeout_s if connect is None else min(connect, timeout_s)
    )
    redirects = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                where = f"{method} {_safe_url(current)}"
                hop_headers = dict(headers)
                if _origin(current) != first_origin:
                    hop_headers = {
                        k: v
                        for k, v in hop_headers.items()
                        if k.lower() not in _ORIGIN_BOUND_HEADERS
                    }
                try:
                    request = client.build_request(
                        method, current, headers=hop_headers, content=content, timeout=per_call
                    )
                except (ValueError, TypeError, UnicodeError):
                    raise OutboundError(f"{where}: invalid request URL or headers") from None
                response = await client.send(request, stream=True)
                try:
                    status = response.status_code
                    follow = status in _SAME_METHOD_REDIRECTS or (
                        status in _SAFE_ONLY_REDIRECTS and method in _SAFE_METHODS
                    )
                    target = _redirect_target(response) if follow else None
                    if target is not None and redirects < max_redirects:
                        redirects += 1
                        current = target
                        continue
                    body, truncated = await _read_capped(response, max_response_bytes)
                    return OutboundResponse(
                        status=status,
                        headers={k.lower(): v for k, v in response.headers.items()},
                        body=body,
                        truncated=truncated,
                        elapsed_ms=(time.perf_counter() - started) * 1000.0,
                        redirects=redirects,
                    )
                finally:
                    await response.aclose()
    except TimeoutError:
        raise OutboundError(f"{where}: timed out after {timeout_s:g}s") from None
    except OutboundError:
        raise
    except httpx.TimeoutException as err:
        raise OutboundError(f"{where}: timed out ({type(err).__name__})") from None
    except (httpx.ConnectError, httpx.ReadError, httpx.WriteError) as err:
        # These carry OS error text only; protocol errors may quote header bytes.
        raise OutboundError(f"{where}: {type(err).__name__}: {err}") from None
    except httpx.HTTPError as err:
        raise OutboundError(f"{where}: {type(err).__name__}") from None
