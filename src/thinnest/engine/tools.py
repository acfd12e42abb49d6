"""An agent's tools as livekit-agents function tools: HTTP tools and the built-in ``end_call``.

A tool never crashes a call: errors, timeouts and non-JSON answers go back to the LLM as a
``ToolError`` text, and every call is reported (name, arguments, result, error, duration).

SSRF guard: before each request the tool's host is resolved and every address checked; a
loopback, private, link-local or otherwise non-public one is refused (a ``ToolError``) unless
``Settings.tools_allow_private`` is on or ``Settings.tools_allowed_networks`` names it. The
connection itself resolves the name again, so a DNS answer that changes in between (DNS
rebinding) is not caught: see docs/security.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from livekit.agents import llm

from thinnest.api.schemas import HttpTool
from thinnest.config import Settings

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


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _is_public(ip: Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _allowed(host: str, ip: Address, networks: list[str]) -> bool:
    for entry in networks:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:  # not a network: a host name
            if entry.strip().lower().rstrip(".") == host:
                return True
    return False


async def check_destination(spec: HttpTool, settings: Settings) -> None:
    """Raise ``ToolError`` unless every address the tool's host resolves to may be called."""
    if settings.tools_allow_private:
        return
    host = (spec.url.host or "").lower().rstrip(".").strip("[]")
    port = spec.url.port or (443 if spec.url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise llm.ToolError(f"{spec.name} could not be reached: cannot resolve its host") from exc
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not _is_public(ip) and not _allowed(host, ip, settings.tools_allowed_networks):
            raise llm.ToolError(
                f"{spec.name} was not called: its address {ip} is not public (loopback, "
                "private or link-local) and THINNEST_TOOLS_ALLOW_PRIVATE is off"
            )


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
