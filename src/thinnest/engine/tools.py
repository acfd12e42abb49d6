"""An agent's tools as livekit-agents function tools: HTTP tools and the built-in ``end_call``.

A tool never crashes a call: errors, timeouts and non-JSON answers go back to the LLM as a
``ToolError`` text, and every call is reported (name, arguments, result, error, duration).

SSRF guard: before each request the tool's host is resolved and every address checked; a
loopback, private, link-local or otherwise non-public one (an IPv6 address judged by the IPv4
address it carries, see :mod:`thinnest.services.destinations`) is refused (a ``ToolError``)
unless the settings allow it: ``tools_allow_private``, ``tools_allow_loopback`` (on by
default in dev) or ``tools_allowed_networks``. The client from :func:`tool_client`
(:func:`thinnest.services.guarded_http.guarded_client`, shared with webhooks) checks again
where the connection is made, so a DNS answer that changes between the check and the request
(DNS rebinding) cannot lead it to a private address.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from livekit.agents import llm

from thinnest.config import Settings
from thinnest.contracts.agent import HttpTool
from thinnest.services.destinations import Address, refused_address
from thinnest.services.guarded_http import DestinationRefused, ssl_context
from thinnest.services.guarded_http import guarded_client as tool_client
from thinnest.services.guarded_http import resolve as _resolve

__all__ = [
    "DestinationRefused",
    "ToolCallRecord",
    "call_http_tool",
    "check_destination",
    "end_call_tool",
    "http_function_tool",
    "ssl_context",
    "tool_client",
]

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
