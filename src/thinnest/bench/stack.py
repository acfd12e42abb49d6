"""The real stack a benchmark runs against: LiveKit server, API and workers, on loopback.

Like ``thinnest dev`` (:mod:`thinnest.devstack`), each component is a child process with
its own log file, but everything lives in a fresh directory and on free ports, so a bench
never disturbs a running ``thinnest dev`` and leaves nothing behind. An owner and API key
are created in the bench's database; agents are created through the API.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from thinnest.config import Settings
from thinnest.devstack import stop_children, wait_http
from thinnest.errors import UnavailableError
from thinnest.livekit.devserver import LiveKitDevServer, LiveKitServerOptions, generate_credentials
from thinnest.livekit.tokens import mint_participant_token
from thinnest.store import keys
from thinnest.store.db import Database

__all__ = ["BenchStack", "StackOptions", "free_port"]

_WORKER_READY = "worker live: first heartbeat stored"


_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    """The first port of the range the OS gives outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port for a server, TCP and UDP, on every address, never one this process handed
    out before. It lies below the OS's range for outgoing connections (with room for a
    200-port UDP range above it): a port is bound later, by the child that gets it, and a port
    from that range could meanwhile be taken by any outgoing connection (a LiveKit node
    once failed to start so, right after a load of thousands of connections)."""
    chooser = random.SystemRandom()
    high = max(_ephemeral_start() - 256, 20000)
    for _ in range(2000):
        port = chooser.randrange(10000, high)
        if port in _handed_out:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                tcp.bind(("", port))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("", port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise UnavailableError("no free port below the ephemeral range", code="no_free_port")


@dataclass(frozen=True)
class StackOptions:
    """What to start.

    Attributes:
        workdir: fresh directory for the database, logs and LiveKit's files.
        database_url: a database to use; default a SQLite file in ``workdir``.
        worker: start a ``thinnest worker``.
        worker_max_jobs: calls the worker takes at once.
        worker_idle_processes: prewarmed job processes it keeps.
        peer_worker: also start the plain livekit-agents peer worker
            (:mod:`thinnest.bench.peer`).
        models: start the shared model services (``thinnest models``) and make the API and
            workers their clients; off, each job process loads its own models.
        env: extra environment for every child.
    """

    workdir: Path
    database_url: str | None = None
    worker: bool = True
    worker_max_jobs: int = 4
    worker_idle_processes: int = 2
    peer_worker: bool = False
    models: bool = False
    env: dict[str, str] = field(default_factory=dict)


class BenchStack:
    """Start with :meth:`start` (or ``with``); :meth:`stop` ends every child it started."""

    def __init__(self, options: StackOptions, settings: Settings) -> None:
        self.options = options
        self.settings = settings
        self.livekit: LiveKitDevServer | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.database_url = options.database_url or (
            f"sqlite:///{(options.workdir / 'thinnest.db').resolve()}"
        )
        self.api_key = ""
        self.lk_key, self.lk_secret = generate_credentials()
        #: how the API is started (a profiler may wrap it)
        self.api_command = ["-m", "thinnest", "serve"]
        self.models_port = free_port()
        self.models_url = f"http://127.0.0.1:{self.models_port}" if options.models else None

    def __enter__(self) -> BenchStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def livekit_url(self) -> str:
        assert self.livekit is not None
        return self.livekit.options.url

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("THINNEST_")}
        env.update(
            {
                "THINNEST_ENV": "dev",
                "THINNEST_DATA_DIR": str(self.options.workdir.resolve()),
                "THINNEST_DATABASE_URL": self.database_url,
                "THINNEST_LIVEKIT_URL": self.livekit_url,
                "THINNEST_LIVEKIT_API_KEY": self.lk_key,
                "THINNEST_LIVEKIT_API_SECRET": self.lk_secret,
                "THINNEST_API_PORT": str(self.api_port),
                "THINNEST_RATE_LIMIT_PER_MINUTE": "10000000",
                "THINNEST_MODELS_DIR": str(self.settings.resolved_models_dir.resolve()),
                "THINNEST_WORKER_MAX_JOBS": str(self.options.worker_max_jobs),
                "THINNEST_WORKER_IDLE_PROCESSES": str(self.options.worker_idle_processes),
                "THINNEST_WORKER_HEARTBEAT_INTERVAL": "1.0",
                "HF_HUB_OFFLINE": "1",
                "THINNEST_LOG_LEVEL": self.settings.log_level,  # DEBUG: llama-server's slots
                **({"THINNEST_MODELS_URL": self.models_url} if self.models_url else {}),
                **self.options.env,
            }
        )
        return env

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.options.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=env or self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.children[name] = proc
        return proc

    def log_text(self, name: str) -> str:
        path = self.options.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        workdir = self.options.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        udp = free_port()
        self.livekit = LiveKitDevServer(
            LiveKitServerOptions(
                api_key=self.lk_key,
                api_secret=self.lk_secret,
                port=free_port(),
                rtc_tcp_port=free_port(),
                udp_port_start=udp,
                udp_port_end=udp + 200,
                webhook_urls=(f"{self.api_url}/livekit/webhook",),
            ),
            workdir=workdir / "livekit",
            binary=self.settings.livekit_server_bin,
        )
        self.livekit.start()
        database = Database(self.database_url)
        try:
            database.migrate()
            with database.session() as db:
                owner = keys.get_or_create_owner(db, f"bench-{secrets.token_hex(3)}")
                _row, self.api_key = keys.create_key(db, owner)
        finally:
            database.close()
        if self.models_url:
            env = {**self.env(), "THINNEST_MODELS_PORT": str(self.models_port)}
            del env["THINNEST_MODELS_URL"]  # the service serves the models; it is no client
            models = self._spawn("models", ["-m", "thinnest", "models"], env)
        api = self._spawn("api", self.api_command)
        if self.options.worker:
            self._spawn("worker", ["-m", "thinnest", "worker"])
        if self.options.peer_worker:
            self._spawn("peer", ["-m", "thinnest.bench.peer"])
        wait_http(f"{self.api_url}/healthz", timeout=60, alive=lambda: api.poll() is None)
        if self.models_url:
            wait_http(
                f"{self.models_url}/healthz", timeout=180, alive=lambda: models.poll() is None
            )
        for name in ("worker", "peer"):
            if name in self.children:
                self._wait_log(name, _WORKER_READY, timeout=300)

    def _wait_log(self, name: str, line: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        proc = self.children[name]
        while line not in self.log_text(name):
            if proc.poll() is not None:
                raise UnavailableError(f"the {name} exited:\n{self.log_text(name)[-2000:]}")
            if time.monotonic() > deadline:
                raise UnavailableError(f"the {name} did not start within {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self) -> None:
        stop_children(self.children)
        if self.livekit is not None:
            self.livekit.stop()
            self.livekit = None

    # --- sessions -----------------------------------------------------------------------------
    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30
        )

    def create_agent(self, **fields: Any) -> str:
        """Create an agent through the API; returns its id."""
        body = {"name": f"bench-{secrets.token_hex(3)}", **fields}
        with self.http() as client:
            client.timeout = httpx.Timeout(90)  # a loaded machine: the first request warms up
            resp = client.post("/agents", json=body)
        if resp.status_code != 201:
            raise UnavailableError(f"could not create the agent: {resp.status_code} {resp.text}")
        return str(resp.json()["id"])

    async def start_session(self, http: httpx.AsyncClient, agent_id: str) -> dict[str, str]:
        resp = await http.post(
            f"{self.api_url}/voice/start",
            json={"agent_id": agent_id},
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        if resp.status_code != 200:
            raise UnavailableError(f"/voice/start: {resp.status_code} {resp.text[:300]}")
        return dict(resp.json())

    async def start_peer_session(
        self, agent_name: str | None, metadata: str = ""
    ) -> dict[str, str]:
        """A room with ``agent_name`` dispatched into it (None: no agent; the caller brings
        its own bot) and a user token: what /voice/start does for our engine, done directly
        for a peer."""
        from livekit import api

        room = f"peer-{secrets.token_hex(6)}"
        async with api.LiveKitAPI(self.livekit_url, self.lk_key, self.lk_secret) as client:
            await client.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=30))
            if agent_name is not None:
                await client.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(
                        agent_name=agent_name, room=room, metadata=metadata
                    )
                )
        token = mint_participant_token(
            api_key=self.lk_key, api_secret=self.lk_secret, room=room, identity="user"
        )
        return {"session_id": room, "token": token, "livekit_url": self.livekit_url}
