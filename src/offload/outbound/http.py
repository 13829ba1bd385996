"""The one way offload makes HTTP calls: a shared guarded client and :func:`send`.

:func:`send` enforces a total time limit, a response-size cap and the redirect
policy: 307/308 are followed with the same method and body; 301/302/303 are
followed only for GET and HEAD, so a POST never turns into a GET. Every hop goes
back through the SSRF guard. Errors never quote header values or query strings.

The engine's client is aiohttp (its connection pool costs O(1) per request; httpx's
httpcore pool scans every connection on each request and response close). The SSRF
guard plugs in as the connector's resolver (:class:`~offload.outbound.ssrf.GuardedResolver`):
every name is resolved once and each address checked before aiohttp dials one of
those same addresses, so DNS rebinding cannot slip past it. aiohttp never calls the
resolver for a literal IP host, so :func:`send` checks literal IPs itself on every hop.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import aiohttp
from yarl import URL

from offload.errors import AddressRefusedError, OutboundError
from offload.outbound.ssrf import AddressPolicy, GuardedResolver, parse_ip

__all__ = ["OutboundClient", "OutboundResponse", "Transport", "build_client", "send"]

_SAME_METHOD_REDIRECTS = frozenset({307, 308})
_SAFE_ONLY_REDIRECTS = frozenset({301, 302, 303})
_SAFE_METHODS = frozenset({"GET", "HEAD"})
# Dropped when a redirect leaves the original origin (as browsers and httpx do).
_ORIGIN_BOUND_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_CHUNK = 64 * 1024


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


class Transport(Protocol):
    """Answers requests without the network: the seam tests plug an in-process app into
    (``build_client(transport=...)``). :func:`send` still applies its time limit and
    size cap; redirects and the SSRF guard are the network's business and are skipped."""

    async def __call__(self, method: str, url: str, *, headers: Mapping[str, str],
                       content: bytes | None) -> OutboundResponse:
        """The response to one request."""
        ...


class OutboundClient:
    """The shared outbound client: keep-alive HTTP/1.1, guarded DNS, no redirects,
    no proxies, no cookies, no environment settings.

    The aiohttp session is created on first use (it needs a running event loop).
    Close it with ``await client.aclose()`` (or use ``async with``).
    """

    def __init__(
        self,
        *,
        policy: AddressPolicy,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
        user_agent: str,
        verify: ssl.SSLContext | bool = True,
        transport: Transport | None = None,
    ) -> None:
        self.policy = policy
        self.transport = transport
        """Set in tests: requests go to it instead of the network."""
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self.user_agent = user_agent
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (created on first call, inside the running loop)."""
        if self._session is None:
            if self._closed:
                raise OutboundError("the outbound client is closed")
            ssl_arg: ssl.SSLContext | bool = self._verify
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=0,
                keepalive_timeout=30.0,
                resolver=GuardedResolver(self.policy),
                use_dns_cache=True,
                ttl_dns_cache=10,  # caches only answers the guard has checked
                ssl=ssl_arg,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
                headers={"User-Agent": self.user_agent},
                skip_auto_headers=("Content-Type",),  # no octet-stream guess on raw bytes
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # no proxies or .netrc credentials from the environment
                auto_decompress=True,
            )
        return self._session

    async def aclose(self) -> None:
        """Close every pooled connection."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> OutboundClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def build_client(
    *,
    policy: AddressPolicy,
    timeout_s: float = 30.0,
    connect_timeout_s: float = 5.0,
    max_connections: int = 256,
    user_agent: str = "offload",
    transport: Transport | None = None,
) -> OutboundClient:
    """Build the shared client: keep-alive, HTTP/1.1, no redirects, no env proxies.

    Close it with ``await client.aclose()`` at shutdown. ``transport`` replaces the
    network (tests).
    """
    return OutboundClient(policy=policy, timeout_s=timeout_s,
                          connect_timeout_s=connect_timeout_s,
                          max_connections=max_connections, user_agent=user_agent,
                          transport=transport)


def _safe_url(url: URL) -> str:
    """The URL without user info, query or fragment, for messages and logs."""
    port = f":{url.explicit_port}" if url.explicit_port is not None else ""
    host = url.host or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{url.scheme}://{host}{port}{url.raw_path}"


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return (url.scheme, url.host, url.port)


def _redirect_target(response: aiohttp.ClientResponse) -> URL | None:
    location = response.headers.get("location")
    if not location:
        return None
    try:
        target = response.url.join(URL(location))
    except (ValueError, TypeError):
        return None
    if target.scheme not in ("http", "https") or not target.host:
        return None
    return target


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    stream = response.content
    while True:
        chunk = await stream.read(min(_CHUNK, limit - size + 1))
        if not chunk:
            return b"".join(chunks), False
        room = limit - size
        if len(chunk) > room:
            chunks.append(chunk[:room])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)


def _check_hop(client: OutboundClient, url: URL) -> None:
    """What the resolver cannot see: the scheme, and hosts that are literal IPs."""
    if url.scheme not in ("http", "https"):
        raise AddressRefusedError(f"refused scheme {url.scheme!r}: only http and https")
    host = url.host
    if not host:
        raise OutboundError("invalid URL")
    literal = parse_ip(host)
    if literal is not None:
        client.policy.check_ip(str(literal))  # fail fast, even on a pooled connection


def _network_error(where: str, err: aiohttp.ClientError) -> OutboundError:
    """A message with the OS error text only; aiohttp's own messages may quote the URL
    (with its query) or header bytes."""
    if isinstance(err, aiohttp.ClientConnectorError):
        return OutboundError(f"{where}: ConnectError: {err.os_error.strerror or err.os_error}")
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return OutboundError(f"{where}: ReadError: server disconnected")
    if isinstance(err, aiohttp.ClientOSError):
        return OutboundError(f"{where}: NetworkError: {err.strerror or type(err).__name__}")
    if isinstance(err, aiohttp.ClientPayloadError):
        return OutboundError(f"{where}: ReadError: malformed or incomplete body")
    if isinstance(err, aiohttp.ClientResponseError):
        return OutboundError(f"{where}: RemoteProtocolError")
    if isinstance(err, aiohttp.InvalidURL):
        return OutboundError(f"{where}: invalid request URL")
    return OutboundError(f"{where}: {type(err).__name__}")


async def send(
    client: OutboundClient,
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
        current = URL(url)
        if not current.is_absolute():
            raise ValueError(url)
    except (ValueError, TypeError, UnicodeError):
        raise OutboundError("invalid URL") from None
    first_origin = _origin(current)
    where = f"{method} {_safe_url(current)}"
    if client.transport is not None:
        return await _send_to(client.transport, method, url, headers=headers,
                              content=content, timeout_s=timeout_s,
                              max_response_bytes=max_response_bytes, where=where)
    session = client.session()
    redirects = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                where = f"{method} {_safe_url(current)}"
                _check_hop(client, current)
                hop_headers: Mapping[str, str] = headers
                if redirects and _origin(current) != first_origin:
                    hop_headers = {
                        k: v
                        for k, v in headers.items()
                        if k.lower() not in _ORIGIN_BOUND_HEADERS
                    }
                try:
                    response = await session.request(
                        method, current, headers=hop_headers, data=content,
                        allow_redirects=False)
                except (ValueError, TypeError, UnicodeError):
                    raise OutboundError(f"{where}: invalid request URL or headers") from None
                try:
                    status = response.status
                    follow = status in _SAME_METHOD_REDIRECTS or (
                        status in _SAFE_ONLY_REDIRECTS and method in _SAFE_METHODS
                    )
                    target = _redirect_target(response) if follow else None
                    if target is not None and redirects < max_redirects:
                        redirects += 1
                        current = target
                        continue
                    body, truncated = await _read_capped(response, max_response_bytes)
                    if truncated:
                        response.close()  # drop the connection rather than drain the rest
                    return OutboundResponse(
                        status=status,
                        headers={k.lower(): v for k, v in response.headers.items()},
                        body=body,
                        truncated=truncated,
                        elapsed_ms=(time.perf_counter() - started) * 1000.0,
                        redirects=redirects,
                    )
                finally:
                    response.release()
    except aiohttp.ServerTimeoutError as err:
        raise OutboundError(f"{where}: timed out ({type(err).__name__})") from None
    except TimeoutError:
        raise OutboundError(f"{where}: timed out after {timeout_s:g}s") from None
    except OutboundError:
        raise
    except aiohttp.ClientError as err:
        raise _network_error(where, err) from None


async def _send_to(transport: Transport, method: str, url: str, *,
                   headers: Mapping[str, str], content: bytes | None, timeout_s: float,
                   max_response_bytes: int, where: str) -> OutboundResponse:
    """:func:`send` through a :class:`Transport`, with the same limits."""
    try:
        async with asyncio.timeout(timeout_s):
            response = await transport(method, url, headers=headers, content=content)
    except TimeoutError:
        raise OutboundError(f"{where}: timed out after {timeout_s:g}s") from None
    truncated = len(response.body) > max_response_bytes
    return OutboundResponse(
        status=response.status, headers={k.lower(): v for k, v in response.headers.items()},
        body=response.body[:max_response_bytes], truncated=truncated,
        elapsed_ms=response.elapsed_ms, redirects=0)
