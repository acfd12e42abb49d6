"""HTTP clients whose every connection passes the SSRF guard: HTTP tools and webhooks.

The guard's judgment is :mod:`thinnest.services.destinations`'s; here is the I/O. The client
from :func:`guarded_client` resolves the host once where the connection is made, checks every
address and connects to a checked one, so a DNS answer that changes between a check and the
request (DNS rebinding) cannot lead it to a private address. The settings that open the guard
(``tools_allow_private``, ``tools_allow_loopback``, ``tools_allowed_networks``) apply to tools
and webhooks alike.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from typing import Any

import httpcore
import httpx

from thinnest.config import Settings
from thinnest.providers.modelservice import tls_context
from thinnest.services.destinations import Address, refused_address

__all__ = ["DestinationRefused", "guarded_client", "resolve", "ssl_context"]


async def resolve(host: str, port: int) -> list[Address]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos))


class DestinationRefused(httpcore.ConnectError):
    """The connection's host resolved to an address the SSRF guard refuses."""

    def __init__(self, ip: Address) -> None:
        super().__init__(f"address {ip} is not public")
        self.ip = ip


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the SSRF guard accepts, resolved once, at connect time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        name = host.lower().rstrip(".").strip("[]")
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(name, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}") from exc
        refused = refused_address(name, addresses, self._settings)
        if refused is not None:
            raise DestinationRefused(refused)
        # TLS still checks the certificate against the host name (httpcore passes it on).
        return await self._inner.connect_tcp(
            str(addresses[0]), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("guarded clients do not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def ssl_context() -> ssl.SSLContext:
    """The guarded clients' TLS context, made once per process (loading the CA bundle blocks
    the event loop for 0.1-0.3 s: the prewarm makes it, not a call's start)."""
    return tls_context()


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, settings: Settings) -> None:
        super().__init__(verify=ssl_context())
        if not settings.tools_allow_private:
            # httpx builds its pool without a way to pass a network backend: same pool,
            # same defaults, with the guarded backend.
            self._pool = httpcore.AsyncConnectionPool(
                ssl_context=ssl_context(), network_backend=_GuardedBackend(settings)
            )


def guarded_client(settings: Settings) -> httpx.AsyncClient:
    """An HTTP client (a call's tools, the API's webhooks) whose every connection passes the
    SSRF guard. It never follows redirects (httpx's default).

    It ignores proxy environment variables: a proxy would make the connection, and the
    guard could not see where to.
    """
    return httpx.AsyncClient(transport=_GuardedTransport(settings), trust_env=False)
