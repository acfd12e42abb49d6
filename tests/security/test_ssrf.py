"""The SSRF guard of HTTP tools: a tool whose host is (or resolves to) a loopback, private,
link-local or otherwise non-public address is not called unless the settings allow it, and
the LLM gets an error text instead."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import httpx
import pytest
from livekit.agents import llm

from thinnest.config import Settings
from thinnest.contracts.agent import HttpTool
from thinnest.engine.tools import ToolCallRecord, check_destination, http_function_tool
from thinnest.services.destinations import destination

pytestmark = pytest.mark.unit


def _tool(url: str) -> HttpTool:
    return HttpTool.model_validate({"name": "lookup", "description": "d", "url": url})


def _settings(tmp_path: Path, **fields: object) -> Settings:
    """The guard as production has it (dev lets tools call loopback: see the dev tests)."""
    fields = {"tools_allow_loopback": False, **fields}
    return Settings(data_dir=tmp_path, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:8080/x", id="loopback"),
        pytest.param("http://localhost/x", id="localhost-name"),
        pytest.param("http://[::1]/x", id="loopback-v6"),
        pytest.param("http://10.1.2.3/x", id="private-10"),
        pytest.param("http://172.16.0.1/x", id="private-172"),
        pytest.param("https://192.168.1.1/x", id="private-192"),
        pytest.param("http://169.254.169.254/latest/meta-data", id="cloud-metadata"),
        pytest.param("http://100.64.0.1/x", id="carrier-nat"),
        pytest.param("http://0.0.0.0/x", id="unspecified"),
        pytest.param("http://[::ffff:127.0.0.1]/x", id="v4-mapped-loopback"),
        pytest.param("http://[fe80::1]/x", id="link-local-v6"),
        pytest.param("http://[fd00::1]/x", id="unique-local-v6"),
        pytest.param("http://224.0.0.1/x", id="multicast"),
        pytest.param("http://2130706433/x", id="integer-loopback"),
    ],
)
async def test_non_public_destinations_are_refused_by_default(url: str, tmp_path: Path) -> None:
    with pytest.raises(llm.ToolError, match="not public"):
        await check_destination(_tool(url), _settings(tmp_path))


@pytest.mark.parametrize(
    ("url", "inner"),
    [
        pytest.param("http://[::7f00:1]/x", "127.0.0.1", id="v4-compatible-loopback"),
        pytest.param("http://[::a00:1]/x", "10.0.0.1", id="v4-compatible-private"),
        pytest.param("http://[64:ff9b::7f00:1]/x", "127.0.0.1", id="nat64-loopback"),
        pytest.param("http://[64:ff9b::a9fe:a9fe]/x", "169.254.169.254", id="nat64-metadata"),
        pytest.param("http://[2002:7f00:1::]/x", "127.0.0.1", id="6to4-loopback"),
        pytest.param("http://[2002:c0a8:101::1]/x", "192.168.1.1", id="6to4-private"),
        pytest.param("http://[::ffff:0:7f00:1]/x", "127.0.0.1", id="v4-translated-loopback"),
        # Teredo: server 65.54.227.120, client 127.0.0.1 stored XOR-ed (0x80fffffe).
        pytest.param(
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x", "127.0.0.1", id="teredo-loopback"
        ),
        pytest.param("http://[2001:0:4136:e378::f5ff:fffe]/x", "10.0.0.1", id="teredo-private"),
    ],
)
async def test_ipv6_forms_of_a_non_public_ipv4_address_are_refused(
    url: str, inner: str, tmp_path: Path
) -> None:
    """The guard judges where the packets go: the IPv4 address an IPv6 address carries."""
    tool = _tool(url)
    host = (tool.url.host or "").strip("[]")
    assert str(destination(ipaddress.ip_address(host))) == inner
    with pytest.raises(llm.ToolError, match="not public"):
        await check_destination(tool, _settings(tmp_path))


async def test_nat64_local_use_prefix_is_never_public(tmp_path: Path) -> None:
    # 64:ff9b:1::/48 (RFC 8215) is a site's own translator, whatever address follows.
    with pytest.raises(llm.ToolError, match="not public"):
        await check_destination(_tool("http://[64:ff9b:1::5db8:d822]/x"), _settings(tmp_path))


async def test_ipv6_forms_of_a_public_ipv4_address_pass(tmp_path: Path) -> None:
    for url in ("http://[2002:5db8:d822::1]/x", "http://[64:ff9b::5db8:d822]/x"):
        await check_destination(_tool(url), _settings(tmp_path))


async def test_public_addresses_pass(tmp_path: Path) -> None:
    await check_destination(_tool("https://93.184.216.34/x"), _settings(tmp_path))
    await check_destination(_tool("http://[2606:4700::1111]/x"), _settings(tmp_path))


async def test_an_unresolvable_host_is_an_error_text(tmp_path: Path) -> None:
    with pytest.raises(llm.ToolError, match="cannot resolve"):
        await check_destination(_tool("http://no-such-host.invalid/x"), _settings(tmp_path))


async def test_settings_open_the_guard(tmp_path: Path) -> None:
    loopback = _tool("http://127.0.0.1:9/x")
    await check_destination(loopback, _settings(tmp_path, tools_allow_private=True))
    await check_destination(loopback, _settings(tmp_path, tools_allowed_networks=["127.0.0.0/8"]))
    await check_destination(
        _tool("http://localhost:9/x"), _settings(tmp_path, tools_allowed_networks=["LOCALHOST"])
    )
    # An allowed network is allowed in its IPv6 forms too (they reach the same hosts).
    await check_destination(
        _tool("http://[64:ff9b::a01:203]/x"),
        _settings(tmp_path, tools_allowed_networks=["10.1.2.0/24"]),
    )
    with pytest.raises(llm.ToolError):  # another network does not open this one
        await check_destination(
            loopback, _settings(tmp_path, tools_allowed_networks=["10.0.0.0/8"])
        )
    # From the environment, as a deployment sets it.
    os.environ["THINNEST_TOOLS_ALLOWED_NETWORKS"] = '["10.1.2.0/24", "tools.internal"]'
    assert Settings(data_dir=tmp_path).tools_allowed_networks == ["10.1.2.0/24", "tools.internal"]  # type: ignore[arg-type]
    os.environ["THINNEST_TOOLS_ALLOW_PRIVATE"] = "true"
    assert Settings(data_dir=tmp_path).tools_allow_private is True  # type: ignore[arg-type]


async def test_the_tool_runner_hands_the_llm_an_error_and_sends_no_request(
    tmp_path: Path,
) -> None:
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"ok": True})

    calls: list[ToolCallRecord] = []

    async def on_call(record: ToolCallRecord) -> None:
        calls.append(record)

    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
        tool = http_function_tool(
            _tool("http://169.254.169.254/latest/meta-data"),
            settings=_settings(tmp_path),
            client=client,
            on_call=on_call,
        )
        with pytest.raises(llm.ToolError, match="not public") as refused:
            await tool({"q": "x"})
    assert requests == []  # nothing left the process
    assert [c.error for c in calls] == [refused.value.message]
    assert calls[0].result is None


@pytest.fixture
def loopback_tool_server():
    """A real HTTP server on 127.0.0.1 that counts the requests it gets."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            length = int(self.headers.get("Content-Length") or 0)
            hits.append(f"{self.path} {self.rfile.read(length).decode()}")
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], hits
    server.shutdown()
    server.server_close()
    thread.join(5)


async def test_a_dns_answer_that_changes_after_the_check_is_refused_at_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_tool_server
) -> None:
    """DNS rebinding: the name resolves to a public address when checked, then to loopback
    when the connection is made. The tools' client resolves and checks again where it
    connects, so the request never reaches the loopback server."""
    from thinnest.engine import tools

    port, hits = loopback_tool_server
    real_resolve = tools._resolve
    answers = iter(["93.184.216.34"])

    async def rebinding(host: str, port: int) -> list[tools.Address]:
        first = next(answers, None)  # the first answer is public, the next ones loopback
        if first is not None:
            return [ipaddress.ip_address(first)]
        return await real_resolve(host, port)

    monkeypatch.setattr(tools, "_resolve", rebinding)
    with pytest.raises(llm.ToolError, match=r"its address (127\.0\.0\.1|::1) is not public"):
        await _call_guarded(f"http://localhost:{port}/x", _settings(tmp_path))
    assert hits == []


async def _call_guarded(url: str, settings: Settings) -> str:
    """One call of an HTTP tool through the tools' guarded client (its record kept)."""
    from thinnest.engine import tools

    calls: list[ToolCallRecord] = []

    async def on_call(record: ToolCallRecord) -> None:
        calls.append(record)

    async with tools.tool_client(settings) as client:
        tool = http_function_tool(_tool(url), settings=settings, client=client, on_call=on_call)
        try:
            return str(await tool({"q": "x"}))
        finally:
            assert len(calls) == 1  # refused or not, the call is reported


async def test_the_tools_client_reaches_an_allowed_address(
    tmp_path: Path, loopback_tool_server
) -> None:
    """The guarded client is a working client: an allowed network is called, by name."""
    port, hits = loopback_tool_server
    settings = _settings(tmp_path, tools_allowed_networks=["127.0.0.0/8"])
    assert await _call_guarded(f"http://127.0.0.1:{port}/x", settings) == '{"ok":true}'
    assert hits == ['/x {"q":"x"}']


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:9/x", id="loopback"),
        pytest.param("http://localhost:9/x", id="localhost-name"),
        pytest.param("http://[::1]:9/x", id="loopback-v6"),
        pytest.param("http://[::ffff:127.0.0.1]:9/x", id="v4-mapped-loopback"),
    ],
)
async def test_dev_lets_tools_call_loopback_and_production_does_not(
    url: str, tmp_path: Path
) -> None:
    """A developer's tool server runs on localhost: in dev the guard lets loopback through."""
    await check_destination(_tool(url), Settings(data_dir=tmp_path, env="dev"))
    production = {
        "env": "production",
        "livekit_api_key": "APIprod",
        "livekit_api_secret": "p" * 40,
    }
    with pytest.raises(llm.ToolError, match="not public"):
        await check_destination(_tool(url), Settings(data_dir=tmp_path, **production))  # type: ignore[arg-type]
    # The setting decides, either way.
    await check_destination(
        _tool(url),
        Settings(data_dir=tmp_path, tools_allow_loopback=True, **production),  # type: ignore[arg-type]
    )
    with pytest.raises(llm.ToolError, match="not public"):
        await check_destination(_tool(url), Settings(data_dir=tmp_path, tools_allow_loopback=False))


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://10.1.2.3/x", id="private"),
        pytest.param("http://169.254.169.254/latest/meta-data", id="cloud-metadata"),
        pytest.param("http://[fd00::1]/x", id="unique-local-v6"),
    ],
)
async def test_dev_still_refuses_private_addresses(url: str, tmp_path: Path) -> None:
    with pytest.raises(llm.ToolError, match="not public"):
        await check_destination(_tool(url), Settings(data_dir=tmp_path, env="dev"))


async def test_in_dev_the_tools_client_reaches_a_tool_server_on_localhost(
    tmp_path: Path, loopback_tool_server
) -> None:
    """The guarded client a call uses, in dev, with no setting: the tool server is called."""
    port, hits = loopback_tool_server
    settings = Settings(data_dir=tmp_path, env="dev")
    assert await _call_guarded(f"http://localhost:{port}/x", settings) == '{"ok":true}'
    assert hits == ['/x {"q":"x"}']
