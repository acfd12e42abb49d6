"""``thinnest dev``: LiveKit server, model services, API and voice engine on loopback, one
Ctrl-C away.

Each component is a child process. The model services (``thinnest models``) are started
again if they die (calls in progress apologise, the next ones work); if another child dies,
the others are stopped and ``thinnest dev`` exits non-zero. On Ctrl-C or SIGTERM everything
is stopped and every port freed. With ``THINNEST_MODELS_URL`` set, the stack uses those
model services and starts none.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from thinnest.bootstrap import DevIdentity, ensure_dev_identity
from thinnest.config import Settings
from thinnest.errors import ConfigError, UnavailableError
from thinnest.livekit.devserver import LiveKitDevServer, LiveKitServerOptions
from thinnest.log import logger
from thinnest.store import workers
from thinnest.store.db import Database
from thinnest.store.files import private_dir

log = logger.getChild("dev")


class _Stop(Exception):
    """Raised in the main thread by SIGTERM / SIGINT to unwind and stop the children."""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def stop_children(children: dict[str, subprocess.Popen[bytes]], *, grace: float = 30) -> None:
    """Stop child processes started in their own sessions: SIGTERM in reverse start order,
    ``grace`` seconds each to exit, then SIGKILL to the whole process group (a worker's job
    processes and forkserver go with it); the dict is emptied."""
    for name, proc in reversed(list(children.items())):
        if proc.poll() is None:
            log.info("stopping %s (pid %d)", name, proc.pid)
            proc.terminate()
    for proc in children.values():
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # what it left behind in its group
    children.clear()


def wait_http(url: str, *, timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise UnavailableError(f"process serving {url} exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise UnavailableError(f"{url} did not answer within {timeout:.0f}s")


@dataclass
class DevStack:
    """The running dev stack; ``run()`` blocks until Ctrl-C / SIGTERM or a child's death."""

    settings: Settings
    on_ready: Callable[[DevIdentity], None] = lambda _ident: None
    livekit: LiveKitDevServer | None = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    models_restarts: int = 0
    own_models: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        # In dev the LiveKit server is ours: its URL follows the port we start it on; so do
        # the model services' unless they run elsewhere.
        update = {"livekit_url": f"http://127.0.0.1:{self.settings.livekit_port}"}
        self.own_models = self.settings.models_url is None
        if self.own_models:
            update["models_url"] = f"http://127.0.0.1:{self.settings.models_port}"
        self.settings = self.settings.model_copy(update=update)

    def _check_ports(self) -> None:
        s = self.settings
        for name, port in [
            ("THINNEST_LIVEKIT_PORT", s.livekit_port),
            ("THINNEST_LIVEKIT_RTC_TCP_PORT", s.livekit_rtc_tcp_port),
            ("THINNEST_API_PORT", s.api_port),
            *([("THINNEST_MODELS_PORT", s.models_port)] if self.own_models else []),
        ]:
            if port_in_use("127.0.0.1", port):
                raise ConfigError(
                    f"port {port} on 127.0.0.1 is in use (another `thinnest dev`?). Stop that "
                    f"process or choose another port with {name}=…",
                    code="port_in_use",
                )

    def child_env(self, ident: DevIdentity) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "THINNEST_ENV": "dev",
                "THINNEST_DATA_DIR": str(self.settings.data_dir.resolve()),
                "THINNEST_LIVEKIT_URL": self.settings.livekit_url,
                "THINNEST_LIVEKIT_API_KEY": ident.livekit_api_key,
                "THINNEST_LIVEKIT_API_SECRET": ident.livekit_api_secret,
                "THINNEST_MODELS_URL": str(self.settings.models_url),
                # Nothing downloads at run time: the models ship in installed packages.
                "HF_HUB_OFFLINE": "1",
            }
        )
        return env

    def start(self) -> DevIdentity:
        s = self.settings
        self._check_ports()
        private_dir(s.data_dir)  # the database, recordings and dev credentials live in it
        database = Database(s.resolved_database_url)
        try:
            ident = ensure_dev_identity(s, database)
        finally:
            database.close()
        self.livekit = LiveKitDevServer(
            LiveKitServerOptions(
                api_key=ident.livekit_api_key,
                api_secret=ident.livekit_api_secret,
                port=s.livekit_port,
                rtc_tcp_port=s.livekit_rtc_tcp_port,
                udp_port_start=s.livekit_udp_port_start,
                udp_port_end=s.livekit_udp_port_end,
                webhook_urls=(f"http://127.0.0.1:{s.api_port}/livekit/webhook",),
            ),
            workdir=s.data_dir / "livekit",
            binary=s.livekit_server_bin,
        )
        self.livekit.start()
        env = self.child_env(ident)
        if self.own_models:
            self._start_models(env)
        api = subprocess.Popen(
            [sys.executable, "-m", "thinnest", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.children["api"] = api
        self.children["worker"] = subprocess.Popen(
            [sys.executable, "-m", "thinnest", "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_http(
            f"http://{s.api_host}:{s.api_port}/healthz",
            timeout=60,
            alive=lambda: api.poll() is None,
        )
        self._wait_for_worker(timeout=180)
        if self.own_models:
            self._wait_for_models(timeout=180)
        return ident

    def _start_models(self, env: dict[str, str]) -> None:
        env = {**env, "THINNEST_MODELS_PORT": str(self.settings.models_port)}
        env.pop("THINNEST_MODELS_URL")  # the service serves the models; it is no client
        self.children["models"] = subprocess.Popen(
            [sys.executable, "-m", "thinnest", "models"],
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait_for_models(self, *, timeout: float) -> None:
        """Until every model is loaded: the first call then answers at full speed."""
        models = self.children["models"]
        wait_http(
            f"{self.settings.models_url}/healthz",
            timeout=timeout,
            alive=lambda: models.poll() is None,
        )

    def _restart_models(self, ident: DevIdentity) -> None:
        self.models_restarts += 1
        log.error(
            "the model services exited (code %s); starting them again (restart %d)",
            self.children["models"].returncode,
            self.models_restarts,
        )
        stop_children({"models": self.children.pop("models")}, grace=1)
        self._start_models(self.child_env(ident))

    def _wait_for_worker(self, *, timeout: float) -> None:
        """Until the worker's first heartbeat: then a call started now gets an agent."""
        s = self.settings
        database = Database(s.resolved_database_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                worker = self.children["worker"]
                if worker.poll() is not None:
                    raise UnavailableError(f"the worker exited with code {worker.returncode}")
                with database.session() as db:
                    if workers.live_workers(
                        db, s.agent_name, within=3 * s.worker_heartbeat_interval
                    ):
                        return
                time.sleep(0.2)
        finally:
            database.close()
        raise UnavailableError(f"the worker did not start within {timeout:.0f}s")

    def stop(self) -> None:
        stop_children(self.children)
        if self.livekit is not None:
            self.livekit.stop()
            self.livekit = None

    def run(self) -> int:
        def stop_signal(signum: int, _frame: FrameType | None) -> None:
            raise _Stop(signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            ident = self.start()
            self.on_ready(ident)
            while True:
                for name, proc in list(self.children.items()):
                    if name == "models" and proc.poll() is not None:
                        self._restart_models(ident)
                    elif proc.poll() is not None:
                        log.error(
                            "%s exited with code %s; stopping everything", name, proc.returncode
                        )
                        return 1
                lk = self.livekit
                if lk is not None and lk.process is not None and lk.process.poll() is not None:
                    log.error("livekit-server exited; stopping everything")
                    return 1
                time.sleep(0.5)
        except _Stop:
            return 0
        finally:
            # A second Ctrl-C must not interrupt the clean-up half-way.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
