"""llama.cpp's ``llama-server`` as a child process: the shared LLM of ``thinnest models``.

One model in one process serves every call: ``--parallel`` slots decode together (continuous
batching) and each slot keeps its prompt cached, so a call's later turns, and calls sharing an
agent's instructions, read only what is new. The server binds loopback on a free port; the
model service proxies its OpenAI-compatible ``/v1/chat/completions``. The model file is
the one the in-process ``llama`` provider loads, SHA-256-checked by
:mod:`thinnest.providers.models` before the server sees it.

The server's output goes through a pipe into the ``thinnest.modelsvc.llama`` logger (debug)
and a ring of its last lines, which the error says when it fails to start or dies.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx

from thinnest.config import Settings
from thinnest.errors import UnavailableError
from thinnest.log import logger
from thinnest.providers import models
from thinnest.providers.llama.model import MODEL
from thinnest.providers.llama.options import LlamaOptions
from thinnest.providers.llama.remote import SERVED_MODEL

__all__ = ["LlamaServer", "find_llama_server"]

log = logger.getChild("modelsvc.llama")

_INSTALL_HINT = (
    "llama-server was not found: run `make setup` (it builds llama.cpp's llama-server from the "
    "pinned llama-cpp-python archive into .tools/bin), or set THINNEST_LLAMA_SERVER_BIN to a "
    "llama-server binary"
)
_LOG_LINES = 40  # the server's last lines kept for an error message
_MISSES = 3  # health probes in a row without an answer that make a live server unhealthy


def find_llama_server(explicit: Path | None = None) -> Path:
    """Locate the binary: the setting, ``.tools/bin`` of this checkout or venv, then PATH.

    Raises:
        UnavailableError: none found (the message says to run ``make setup``).
    """
    if explicit is not None:
        if not explicit.is_file():
            raise UnavailableError(
                f"THINNEST_LLAMA_SERVER_BIN={explicit} does not exist; {_INSTALL_HINT}",
                code="llama_server_missing",
            )
        return explicit
    candidates = [
        Path(sys.executable).parent.parent.parent / ".tools/bin/llama-server",  # <repo>/.venv
        Path(__file__).resolve().parents[3] / ".tools/bin/llama-server",  # <repo>/src/thinnest
    ]
    for path in candidates:
        if path.is_file():
            return path
    found = shutil.which("llama-server")
    if found:
        return Path(found)
    raise UnavailableError(_INSTALL_HINT, code="llama_server_missing")


@functools.lru_cache(maxsize=4)
def _has_flag(binary: str, flag: str) -> bool:
    try:
        out = subprocess.run(
            [binary, "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return flag in out.stdout + out.stderr


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """A ``llama-server`` child on loopback serving the shipped Qwen2.5 0.5B model.

    Args:
        settings: ``llama_server_bin``, ``models_llm_slots`` (parallel answers),
            ``models_threads`` (default: this machine's cores) and the models cache.
        options: the context per slot (``context_tokens``) comes from here.
    """

    def __init__(self, settings: Settings, *, options: LlamaOptions | None = None) -> None:
        self.settings = settings
        self.options = options or LlamaOptions()
        self.host = "127.0.0.1"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=_LOG_LINES)
        self._reader: threading.Thread | None = None
        self._misses = 0  # health probes in a row that got no answer

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (its ``/v1`` is OpenAI-compatible)."""
        return f"http://{self.host}:{self.port}"

    def command(self, binary: Path, model: Path, port: int) -> list[str]:
        """The command line that serves ``model`` on ``port``."""
        slots = self.settings.models_llm_slots
        threads = self.settings.models_threads or len(os.sched_getaffinity(0))
        cmd = [
            str(binary),
            "--model", str(model),
            "--host", self.host,
            "--port", str(port),
            "--alias", SERVED_MODEL,
            "--jinja",  # the GGUF's chat template: tools described as the model was trained
            "--parallel", str(slots),
            "--ctx-size", str(self.options.context_tokens * slots),  # split among the slots
            "--threads", str(threads),
            "--cont-batching",
        ]  # fmt: skip
        if _has_flag(str(binary), "--no-webui"):
            cmd.append("--no-webui")
        setpriv = shutil.which("setpriv")  # util-linux
        if setpriv:
            # Killed with the thread that starts it (keep that one alive as long as the
            # server): a model service that is SIGKILLed leaves no orphan holding the model.
            cmd = [setpriv, "--pdeathsig", "KILL", "--", *cmd]
        return cmd

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the server and wait until its ``/health`` answers 200 (the model loaded).

        Raises:
            UnavailableError: no binary, the process died (its last log lines are quoted)
                or it was not healthy within ``timeout`` seconds.
            ConfigError: the model's packages are missing or its cached file is corrupt.
        """
        if self.process is not None and self.process.poll() is None:
            return
        binary = find_llama_server(self.settings.llama_server_bin)
        model = models.prepare(MODEL, settings=self.settings) / "model.gguf"
        for attempt in range(3):  # a free port taken by someone else in between: another
            self.port = _free_port(self.host)
            self._spawn(self.command(binary, model, self.port))
            try:
                self._wait_healthy(timeout)
                return
            except UnavailableError:
                self.stop()
                tail = "\n".join(self._lines)
                if attempt < 2 and "bind" in tail.lower():
                    continue
                raise

    def _spawn(self, cmd: list[str]) -> None:
        self._lines.clear()
        self._misses = 0
        log.info("starting %s", " ".join(cmd))
        self.process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() ends whatever it started
        )
        assert self.process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout,), name="llama-server-log", daemon=True
        )
        self._reader.start()

    def _read(self, pipe: IO[bytes]) -> None:
        # Drained always: a full pipe would block the server.
        with pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self._lines.append(line)
                    log.debug("%s", line)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.process
            if proc is None or proc.poll() is not None:
                code = proc.returncode if proc is not None else None
                if self._reader is not None:
                    self._reader.join(2)  # its last words
                raise UnavailableError(
                    f"llama-server exited with code {code} while starting:\n{self.last_lines()}",
                    code="llama_server_failed",
                )
            if self._probe():
                return
            time.sleep(0.1)
        raise UnavailableError(
            f"llama-server was not healthy within {timeout:.0f}s:\n{self.last_lines()}",
            code="llama_server_failed",
        )

    def last_lines(self, n: int = 15) -> str:
        """The server's last ``n`` log lines."""
        return "\n".join(list(self._lines)[-n:]) or "(no output)"

    def healthy(self) -> bool:
        """Whether it runs and its ``/health`` answers 200 (503 while the model loads).

        False at once when the process has exited or answers another status; a probe that
        gets no answer in 2 s counts only from the third in a row: on a saturated machine
        (every core decoding) a live server may miss one, and a restart would cut every call.
        """
        if self.process is None or self.process.poll() is not None:
            return False
        answer = self._probe()
        if answer is None:
            self._misses += 1
            return self._misses < _MISSES
        self._misses = 0
        return answer

    def _probe(self) -> bool | None:
        """Whether ``/health`` answers 200; ``None`` when it does not answer at all."""
        try:
            return httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return None

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL to its process group after ``grace`` seconds."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._reader is not None:
            self._reader.join(2)
            self._reader = None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
