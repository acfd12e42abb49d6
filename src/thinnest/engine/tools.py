"""An agent's tools as livekit-agents function tools: HTTP tools and the built-in ``end_call``.

A tool never crashes a call: errors, timeouts and non-JSON answers go back to the LLM as a
``ToolError`` text, and every call is reported (name, arguments, result, error, duration).

SSRF guard: before each request the tool's host is resolved and every address checked; a
loopback, private, link-local or otherwise non-public one (an IPv6 address judged by the IPv4
address it carries, see :mod:`thinnest.services.destinations`) is refused (a ``ToolError``)
unless the settings allow it: ``tools_allow_private``, ``tools_allow_loopback`` (on by
default in dev) or ``tools_allowed_networks``. The
client from :func:`tool_client` checks again where the connection is made: it resolves the
host once, checks every address and connects to a checked one, so a DNS answer that changes
between the check and the request (DNS rebinding) cannot lead it to a private address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from livekit.agents import llm

from thinnest.config import Settings
from thinnest.contracts.agent import HttpTool
from thinnest.providers.modelservice import tls_context
from thinnest.services.destinations import Address, refused_address

#: Longest tool result handed back to the LLM (characters); the rest is cut.
MAX_RESULT_CHARS = 4000
_SECRET = re.compile(r"\$\{secret:([A-Za-z0-9_]+)\}")


@dataclass
class ToolCallRecord:
    """One finished tool call, for the store and the data channel."""

    name: str
    arguments: dict[str, Any]
    result: str | None
    error: str | None
    duration: float


OnToolCall = Callable[[ToolCallRecord], Awaitable[None]]


def resolve_headers(headers: dict[str, str], settings: Settings) -> dict[str, str]:
    """Replace ``${secret:NAME}`` with ``settings.tool_secrets[NAME]``."""

    def sub(match: re.Match[str]) -> str:
        secret = settings.tool_secrets.get(match.group(1))
        if secret is None:
            raise llm.ToolError(f"tool misconfigured: secret {match.group(1)!r} is not set")
        return secret.get_secret_value()

    return {k: _SECRET.sub(sub, v) for k, v in headers.items()}


def _refusal_text(name: str, ip: Address) -> str:
    return (
        f"{name} was not called: its address {ip} is not public (loopback, private or "
        "link-local) and THINNEST_TOOLS_ALLOW_PRIVATE is off"
    )


async def _resolve(host: str, port: int) -> list[Address]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos))


async def check_destination(spec: HttpTool, settings: Settings) -> None:
    """Raise ``ToolError`` unless every address the tool's host resolves to may be called."""
    if settings.tools_allow_private:
        return
    host = (spec.url.host or "").lower().rstrip(".").strip("[]")
    port = spec.url.port or (443 if spec.url.scheme == "https" else 80)
    try:
        addresses = await _resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise llm.ToolError(f"{spec.name} could not be reached: cannot resolve its host") from exc
    refused = refused_address(host, addresses, settings)
    if refused is not None:
        raise llm.ToolError(_refusal_text(spec.name, refused))


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
                addresses = await _resolve(name, port)
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
        raise httpcore.ConnectError("tools do not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def ssl_context() -> ssl.SSLContext:
    """The tools' TLS context, made once per process (loading the CA bundle blocks the event
    loop for 0.1-0.3 s: the prewarm makes it, not a call's start)."""
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


def tool_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client of a call's tools: every connection passes the SSRF guard.

    It ignores proxy environment variables: a proxy would make the connection, and the
    guard could not see where to.
    """
    return httpx.AsyncClient(transport=_GuardedTransport(settings), trust_env=False)


async def call_http_tool(
    spec: HttpTool, arguments: dict[str, Any], *, settings: Settings, client: httpx.AsyncClient
) -> str:
    """Perform the request; return the JSON answer as compact text, or raise ``ToolError``."""
    await check_destination(spec, settings)
    headers = resolve_headers(spec.headers, settings)
    kwargs: dict[str, Any] = {"headers": headers, "timeout": spec.timeout}
    if spec.method in ("GET", "DELETE"):
        kwargs["params"] = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()
        }
    else:
        kwargs["json"] = arguments
    try:
        resp = await client.request(spec.method, str(spec.url), **kwargs)
    except httpx.TimeoutException as exc:
        raise llm.ToolError(f"{spec.name} timed out after {spec.timeout:g} s") from exc
    except httpx.HTTPError as exc:
        if isinstance(exc.__cause__, DestinationRefused):  # the DNS answer changed (rebinding)
            raise llm.ToolError(_refusal_text(spec.name, exc.__cause__.ip)) from exc
        raise llm.ToolError(f"{spec.name} could not be reached: {type(exc).__name__}") from exc
    if resp.status_code >= 400:
        raise llm.ToolError(f"{spec.name} failed with HTTP {resp.status_code}")
    try:
        data = resp.json()
    except ValueError as exc:
        raise llm.ToolError(f"{spec.name} answered with something that is not JSON") from exc
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text[:MAX_RESULT_CHARS]


def http_function_tool(
    spec: HttpTool, *, settings: Settings, client: httpx.AsyncClient, on_call: OnToolCall
) -> llm.RawFunctionTool:
    schema = {"name": spec.name, "description": spec.description, "parameters": spec.parameters}

    async def run(raw_arguments: dict[str, Any]) -> str:
        started = time.monotonic()
        result: str | None = None
        error: str | None = None
        try:
            result = await call_http_tool(spec, raw_arguments, settings=settings, client=client)
            return result
        except llm.ToolError as exc:
            error = exc.message
            raise
        finally:
            await on_call(
                ToolCallRecord(
                    spec.name, dict(raw_arguments), result, error, time.monotonic() - started
                )
            )

    return llm.function_tool(run, raw_schema=schema)


END_CALL_SCHEMA = {
    "name": "end_call",
    "description": "End the call. Use it when the user says goodbye or wants to hang up.",
    "parameters": {
        "type": "object",
        "properties": {
            "goodbye": {"type": "string", "description": "the last sentence to say"},
        },
    },
}


def end_call_tool(end: Callable[[str], None], on_call: OnToolCall) -> llm.RawFunctionTool:
    """The built-in ``end_call``: says the goodbye, then ends the call (reason ``agent_ended``).

    ``end`` only schedules the ending: the session cannot close from inside its own tool call.
    """

    async def run(raw_arguments: dict[str, Any]) -> None:
        goodbye = str(raw_arguments.get("goodbye") or "Goodbye!").strip()[:300]
        await on_call(ToolCallRecord("end_call", dict(raw_arguments), None, None, 0.0))
        end(goodbye)
        # The goodbye is all that is said: no further LLM reply after this tool.
        raise llm.StopResponse()

    return llm.function_tool(run, raw_schema=END_CALL_SCHEMA)
