"""``thinnest cluster``, the one command that starts the topology: it says where each host is
and how to start a call, the call starts, and Ctrl-C stops every process and removes every
namespace."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from thinnest.cluster.netns import PREFIX

pytestmark = pytest.mark.integration


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(PREFIX)]


def test_one_command_starts_the_cluster_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the cluster's hosts are network namespaces: run the tests as root")
    log = tmp_path / "cluster.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "thinnest", "cluster", "--workdir", str(tmp_path / "c")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:
        deadline = time.monotonic() + 300
        while "cluster is running" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        text = log.read_text()
        curl = re.search(r"POST (\S+)/voice/start -H 'Authorization: Bearer (\S+)'", text)
        agent = re.search(r'"agent_id": "(\S+?)"', text)
        assert curl and agent, text
        resp = httpx.post(
            f"{curl.group(1)}/voice/start",
            json={"agent_id": agent.group(1)},
            headers={"Authorization": f"Bearer {curl.group(2)}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert len(_namespaces()) >= 9
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert _namespaces() == []
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
