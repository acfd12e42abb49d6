"""The CLI as a user runs it: keys, agents, and `thinnest dev` started and stopped for real."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests._cli import run_thinnest
from tests.conftest import free_port
from thinnest.devstack import port_in_use

pytestmark = pytest.mark.integration


def thinnest(
    data_dir: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = run_thinnest(data_dir, *args, env=env, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_keys_create_prints_the_key_last_and_list_revoke_work(tmp_path: Path) -> None:
    created = thinnest(tmp_path, "keys", "create", "--owner", "acme", "--name", "backend")
    key = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"tn_sk_[A-Za-z0-9_-]{43}", key)
    listed = thinnest(tmp_path, "keys", "list", "--owner", "acme").stdout
    assert "acme" in listed and key not in listed
    key_id = re.search(r"key_[0-9a-f]{24}", listed).group(0)  # type: ignore[union-attr]
    assert "revoked" in thinnest(tmp_path, "keys", "revoke", key_id).stdout


def test_agents_commands(tmp_path: Path) -> None:
    agent_id = (
        thinnest(tmp_path, "agents", "create", "helper", "--owner", "acme", "--greeting", "Hey")
        .stdout.strip()
        .splitlines()[-1]
    )
    assert agent_id.startswith("agent_")
    assert "helper" in thinnest(tmp_path, "agents", "list", "--owner", "acme").stdout
    shown = thinnest(tmp_path, "agents", "show", "helper", "--owner", "acme").stdout
    assert '"greeting": "Hey"' in shown
    thinnest(tmp_path, "agents", "delete", agent_id, "--owner", "acme")
    assert "helper" not in thinnest(tmp_path, "agents", "list", "--owner", "acme").stdout


def test_agents_create_switches_the_llm_in_one_option(tmp_path: Path) -> None:
    env = {"THINNEST_OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"}  # a local server: no key
    thinnest(tmp_path, "agents", "create", "smart", "--llm", "openai:qwen2.5-7b-instruct", env=env)
    shown = json.loads(thinnest(tmp_path, "agents", "show", "smart").stdout)
    assert shown["providers"]["llm"] == {
        "name": "openai",
        "options": {"model": "qwen2.5-7b-instruct"},
    }
    assert shown["providers"]["stt"]["name"] == "whisper"  # the rest stays offline


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["agents", "list", "--owner", "ghost"], "no owner named 'ghost'", id="unknown-owner"
        ),
        pytest.param(
            ["agents", "create", "x", "--max-duration", "0"], "max_duration", id="bad-agent"
        ),
        pytest.param(["keys", "revoke", "key_nope"], "no API key", id="unknown-key"),
        pytest.param(
            ["agents", "create", "x", "--llm", "nope"], "unknown llm provider", id="bad-llm"
        ),
        pytest.param(
            ["agents", "create", "x", "--llm", "openai:gpt-4.1-mini"],
            "needs THINNEST_OPENAI_API_KEY",
            id="llm-without-endpoint",
        ),
        # The message holds a pattern with [a-z], which rich would read as markup and drop.
        pytest.param(
            ["agents", "create", "x", "--language", "english"],
            "language: String should match pattern '^[a-z]{2,3}",
            id="brackets-in-the-message",
        ),
    ],
)
def test_errors_are_one_clear_line_without_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = thinnest(tmp_path, *args, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def _start_dev(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "thinnest", "dev"],
        env={**os.environ, "THINNEST_DATA_DIR": str(data_dir), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    found: dict[str, str] = {}
    # `thinnest dev` prints its banner once the worker is live, which it waits up to 180 s
    # for (the job processes load the models first: over 90 s on a loaded 2-core machine).
    deadline = time.monotonic() + 240
    assert proc.stdout is not None
    while time.monotonic() < deadline and "key" not in found:
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.search(r"Demo page\s+(\S+)", line):
            found["demo"] = m.group(1)
        if m := re.search(r"Console\s+(\S+)", line):
            found["console"] = m.group(1)
        if m := re.search(r"agent id\s+(\S+)", line):
            found["agent"] = m.group(1)
        if m := re.search(r"API key\s+(\S+)", line):
            found["key"] = m.group(1)
    if "key" not in found:
        # Stop the half-started stack (its API, LiveKit and worker) rather than orphan it.
        code = proc.poll()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        raise AssertionError(f"thinnest dev did not print its banner (exit {code})")
    return proc, found


def _stack_pids(data_dir: Path) -> dict[int, str]:
    """Processes of the dev stack on ``data_dir``: the LiveKit server (by its config path)
    and every Thinnest process (by THINNEST_DATA_DIR in its environment), job processes too."""
    marker = f"THINNEST_DATA_DIR={data_dir}".encode()
    pids = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if str(data_dir).encode() in cmd or marker in env.split(b"\0"):
            pids[int(entry.name)] = cmd.replace(b"\0", b" ").decode(errors="replace")[:80]
    return pids


# Two starts of the whole stack (each waits for the worker's prewarmed job processes) and a
# drain: more than the default 300 s on a loaded 2-core machine.
@pytest.mark.timeout(600)
def test_dev_starts_everything_serves_the_contract_and_stops_cleanly(tmp_path: Path) -> None:
    udp = free_port()
    ports = {
        "THINNEST_API_PORT": str(free_port()),
        "THINNEST_LIVEKIT_PORT": str(free_port()),
        "THINNEST_LIVEKIT_RTC_TCP_PORT": str(free_port()),
        "THINNEST_LIVEKIT_UDP_PORT_START": str(udp),
        "THINNEST_LIVEKIT_UDP_PORT_END": str(udp + 10),
        "THINNEST_MODELS_PORT": str(free_port()),
        "THINNEST_MODELS_DIR": str(Path(__file__).parents[1] / ".thinnest" / "models"),
    }
    proc, found = _start_dev(tmp_path, ports)
    try:
        base = f"http://127.0.0.1:{ports['THINNEST_API_PORT']}"
        resp = httpx.post(
            f"{base}/voice/start",
            json={"agent_id": found["agent"]},
            headers={"Authorization": f"Bearer {found['key']}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["livekit_url"] == f"ws://127.0.0.1:{ports['THINNEST_LIVEKIT_PORT']}"
        assert httpx.get(f"{base}/readyz").status_code == 200
        # The printed demo page is served, and its server-side route uses the dev key.
        assert found["demo"] == f"{base}/demo"
        assert httpx.get(found["demo"], timeout=30).status_code == 200
        assert found["console"] == f"{base}/console"
        assert httpx.get(found["console"], timeout=30).status_code == 200
        agents = httpx.get(f"{base}/demo/agents", timeout=30).json()
        assert [a["id"] for a in agents] == [found["agent"]]
        running = _stack_pids(tmp_path).values()
        assert any("livekit-server" in c for c in running)
        assert any("thinnest serve" in c for c in running), running
        assert any("thinnest worker" in c for c in running), running
        # The shared models: one service (and its LLM server) for every call.
        assert any("thinnest models" in c for c in running), running
        assert any("llama-server" in c for c in running), running
        models = httpx.get(f"http://127.0.0.1:{ports['THINNEST_MODELS_PORT']}/healthz").json()
        assert models["services"] == {"llm": "ok", "stt": "ok", "tts": "ok"}
        assert httpx.get(f"{base}/readyz").json()["checks"]["models"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        # The worker drains first (up to 30 s: the session above dispatched a job that waits
        # for its caller), then the API and LiveKit stop.
        assert proc.wait(120) == 0
        proc.stdout.close()  # type: ignore[union-attr]
    assert _stack_pids(tmp_path) == {}  # no orphans: server, API, worker, jobs, models
    for name in (
        "THINNEST_API_PORT",
        "THINNEST_LIVEKIT_PORT",
        "THINNEST_LIVEKIT_RTC_TCP_PORT",
        "THINNEST_MODELS_PORT",
    ):
        assert not port_in_use("127.0.0.1", int(ports[name])), name

    # A second run reuses the key and the agent of the first.
    proc, again = _start_dev(tmp_path, ports)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    proc.stdout.close()  # type: ignore[union-attr]
    assert again == found


def test_dev_refuses_a_busy_port_with_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = thinnest(tmp_path, "dev", env={"THINNEST_LIVEKIT_PORT": str(port)}, check=False)
    assert proc.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in proc.stderr
    assert "Traceback" not in proc.stderr
