"""A multi-host Thinnest on one machine, for trying scale-out and for its tests: each role in a
network namespace of its own (:mod:`thinnest.cluster.netns`), started with the same commands
and settings a real deployment uses (docs/deploy.md).

The default topology: Redis, PostgreSQL, two LiveKit nodes in distributed mode (sharing the
Redis), a load balancer (haproxy) in front of the nodes and of the API hosts, the shared model
services, two API hosts and two worker hosts. Clients, workers and the API reach LiveKit through
the load balancer, and LiveKit's webhooks reach the API through it; LiveKit dispatches a room on
either node to a worker on either. Nothing here routes a call: room placement and job dispatch
are LiveKit's, the store is PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from thinnest.bootstrap import DevIdentity, ensure_dev_identity
from thinnest.cluster.haproxy import Backend, find_haproxy, haproxy_config, runtime_command
from thinnest.cluster.netns import Host, Network
from thinnest.config import Settings
from thinnest.errors import ConfigError, UnavailableError
from thinnest.livekit.devserver import (
    LiveKitServerOptions,
    find_livekit_server,
    generate_credentials,
)
from thinnest.log import logger
from thinnest.store.db import Database
from thinnest.store.postgres_server import start_postgres

log = logger.getChild("cluster")

LIVEKIT_PORT = 7880
API_PORT = 8000
MODELS_PORT = 8790
REDIS_PORT = 6379
WORKER_METRICS_PORT = 9464
POSTGRES_PORT = 5432


@dataclass(frozen=True)
class ClusterOptions:
    """What to start.

    Attributes:
        workdir: each host's files (logs, data) under ``workdir/<host>``.
        subnet: the hosts' network (IPv4, private to this machine).
        livekit_nodes / api_hosts / worker_hosts: how many of each.
        worker_max_jobs: calls each worker host takes at once.
        worker_idle_processes: job processes each worker keeps ready.
        env: more settings for every Thinnest process (``THINNEST_*``).
    """

    workdir: Path
    subnet: str = "198.18.20.0/24"
    livekit_nodes: int = 2
    api_hosts: int = 2
    worker_hosts: int = 2
    worker_max_jobs: int = 2
    worker_idle_processes: int = 1
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Role:
    """A process of the cluster: what it is, on which host, how it is checked."""

    name: str
    host: Host
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return Path(self.env["THINNEST_DATA_DIR"]) / f"{self.name}.log"

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Cluster:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`: every process by
    SIGTERM in the reverse order, then SIGKILL, then the namespaces are removed."""

    def __init__(self, options: ClusterOptions) -> None:
        if os.geteuid() != 0:
            raise ConfigError(
                "`thinnest cluster` puts each host in a network namespace: run it as root"
            )
        self.options = options
        self.network = Network(options.subnet)
        self.livekit_key, self.livekit_secret = generate_credentials()
        self.roles: dict[str, Role] = {}
        self.hosts: dict[str, Host] = {}
        self.database_url = ""
        self.identity: DevIdentity | None = None
        self._stop_postgres: Callable[[], None] | None = None
        self._pg_dir: Path | None = None

    # -- addresses ----------------------------------------------------------------------
    def livekit_url(self, node: int) -> str:
        """Node ``node``'s own URL (the load balancer's is :attr:`lb_livekit_url`)."""
        return f"http://{self.hosts[f'lk{node}'].address}:{LIVEKIT_PORT}"

    @property
    def lb_livekit_url(self) -> str:
        """LiveKit through the load balancer: what clients, workers and the API use."""
        return f"http://{self.hosts['lb'].address}:{LIVEKIT_PORT}"

    @property
    def lb_api_url(self) -> str:
        """The API through the load balancer: what a product's backend calls."""
        return f"http://{self.hosts['lb'].address}:{API_PORT}"

    @property
    def lb_socket(self) -> Path:
        """haproxy's runtime API (a Unix socket, reachable from any namespace)."""
        return self.options.workdir / "lb" / "haproxy.sock"

    def api_url(self, n: int) -> str:
        return f"http://{self.hosts[f'api{n}'].address}:{API_PORT}"

    def worker_metrics_url(self, n: int) -> str:
        """Worker host ``n``'s Prometheus ``/metrics``."""
        return f"http://{self.hosts[f'w{n}'].address}:{WORKER_METRICS_PORT}/metrics"

    @property
    def models_url(self) -> str:
        return f"http://{self.hosts['models'].address}:{MODELS_PORT}"

    @property
    def redis_address(self) -> str:
        return f"{self.hosts['redis'].address}:{REDIS_PORT}"

    # -- start and stop ---------------------------------------------------------------
    def start(self, *, timeout: float = 300.0) -> None:
        o = self.options
        names = ["redis", "db", *(f"lk{i}" for i in range(1, o.livekit_nodes + 1)), "lb"]
        names.append("models")
        names += [f"api{i}" for i in range(1, o.api_hosts + 1)]
        names += [f"w{i}" for i in range(1, o.worker_hosts + 1)]
        try:
            self.hosts = {h.name: h for h in self.network.create(names)}
            self._start_redis(timeout)
            self._start_postgres()
            for i in range(1, o.livekit_nodes + 1):
                self._start_livekit(i, timeout)
            self._start_load_balancer(timeout)
            self._launch(self._models_role())
            self._wait(self.roles["models"], timeout)
            for i in range(1, o.api_hosts + 1):
                self._launch(self._api_role(i))
            for i in range(1, o.worker_hosts + 1):
                self._launch(self._worker_role(i))
            for role in self.roles.values():
                self._wait(role, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for role in reversed(list(self.roles.values())):
            self._terminate(role)
        if self._stop_postgres is not None:
            with contextlib.suppress(Exception):
                self._stop_postgres()
            self._stop_postgres = None
        if self._pg_dir is not None:
            shutil.rmtree(self._pg_dir, ignore_errors=True)
            self._pg_dir = None
        for host in self.hosts.values():  # anything left (a job process, a killed role's child)
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.network.destroy()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def node_id(self, name: str) -> str:
        """LiveKit's id of node ``name`` (``lk1``…), from its start line."""
        found = re.search(r'"nodeID": "([^"]+)"', self.roles[name].text())
        if found is None:
            raise UnavailableError(f"{name} has not said its node id", code="cluster_failed")
        return found.group(1)

    # -- faults -------------------------------------------------------------------------
    def kill_host(self, name: str) -> None:
        """SIGKILL every process of host ``name`` at once, as a machine that lost power."""
        for pid in self.hosts[name].pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for role in self.roles.values():
            if role.host.name == name and role.process is not None:
                role.process.wait(10)

    def set_lb_state(self, name: str, state: str) -> None:
        """Put server ``name`` (``lk1``, ``api2``…) of the load balancer in ``state``:
        ``drain`` (no new connection; those open stay), ``maint`` or ``ready``."""
        backend = "livekit" if name.startswith("lk") else "api"
        answer = runtime_command(self.lb_socket, f"set server {backend}/{name} state {state}")
        if answer.strip():
            raise UnavailableError(f"haproxy: {answer.strip()}", code="cluster_failed")

    def drain_node(self, name: str) -> None:
        """Take LiveKit node ``name`` out as docs/deploy.md says: the load balancer sends it
        no new connection, then SIGTERM; it exits once its rooms' participants have left."""
        self.set_lb_state(name, "drain")
        self.signal_role(name, signal.SIGTERM)

    def signal_role(self, name: str, sig: int = signal.SIGTERM) -> None:
        role = self.roles[name]
        if role.process is not None and role.process.poll() is None:
            role.process.send_signal(sig)

    def restart_role(self, name: str, *, timeout: float = 120.0) -> None:
        """Stop role ``name`` (SIGTERM) and start it again with the same settings."""
        role = self.roles[name]
        self._terminate(role)
        self._launch(role)
        self._wait(role, timeout)

    # -- roles --------------------------------------------------------------------------
    def _thinnest_env(self, host: Host, **settings: str) -> dict[str, str]:
        data = self.options.workdir / host.name
        data.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            **self.options.env,
            "THINNEST_DATA_DIR": str(data),
            "THINNEST_DATABASE_URL": self.database_url,
            "THINNEST_LIVEKIT_API_KEY": self.livekit_key,
            "THINNEST_LIVEKIT_API_SECRET": self.livekit_secret,
            "HF_HUB_OFFLINE": "1",
            **settings,
        }

    def _start_redis(self, timeout: float) -> None:
        host = self.hosts["redis"]
        data = self.options.workdir / host.name
        data.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--bind", host.address, "--port", str(REDIS_PORT)]
        argv += ["--protected-mode", "no", "--appendonly", "yes", "--dir", str(data)]
        argv += ["--save", ""]

        def ready() -> bool:
            ping = subprocess.run(
                ["redis-cli", "-h", host.address, "-p", str(REDIS_PORT), "ping"],
                capture_output=True,
                text=True,
                check=False,
            )
            return ping.stdout.strip() == "PONG"

        role = Role("redis", host, argv, {"THINNEST_DATA_DIR": str(data)}, ready)
        self._launch(role)
        self._wait(role, timeout)

    def _start_postgres(self) -> None:
        host = self.hosts["db"]
        # Not under the workdir: PostgreSQL runs as its own user, and a parent of the workdir
        # (a home, pytest's tree) may be closed to it.
        workdir = Path(tempfile.mkdtemp(prefix="thinnest-cluster-pg-"))
        workdir.chmod(0o755)
        self._pg_dir = workdir
        self.database_url, self._stop_postgres = start_postgres(
            workdir,
            host=host.address,
            port=POSTGRES_PORT,
            wrap=host.wrap(),
            allow=str(self.network.subnet),
        )
        database = Database(self.database_url)
        try:
            settings = Settings(
                data_dir=self.options.workdir,
                database_url=self.database_url,
                livekit_api_key=self.livekit_key,
                livekit_api_secret=self.livekit_secret,
            )
            self.identity = ensure_dev_identity(settings, database)
        finally:
            database.close()

    def _start_livekit(self, node: int, timeout: float) -> None:
        host = self.hosts[f"lk{node}"]
        data = self.options.workdir / host.name
        data.mkdir(parents=True, exist_ok=True)
        options = LiveKitServerOptions(
            api_key=self.livekit_key,
            api_secret=self.livekit_secret,
            port=LIVEKIT_PORT,
            host=host.address,
            webhook_urls=(f"{self.lb_api_url}/livekit/webhook",),
            redis_address=self.redis_address,
        )
        config = data / "livekit.yaml"
        config.write_text(options.config_yaml())
        config.chmod(0o600)
        binary = find_livekit_server(None)
        argv = [str(binary), "--config", str(config), "--node-ip", host.address]
        url = self.livekit_url(node)
        role = Role(host.name, host, argv, {"THINNEST_DATA_DIR": str(data)}, lambda: _http_ok(url))
        self._launch(role)
        self._wait(role, timeout)

    def _start_load_balancer(self, timeout: float) -> None:
        host = self.hosts["lb"]
        data = self.options.workdir / host.name
        data.mkdir(parents=True, exist_ok=True)
        o = self.options
        backends = [
            Backend(
                "livekit",
                LIVEKIT_PORT,
                "/",
                {
                    f"lk{i}": f"{self.hosts[f'lk{i}'].address}:{LIVEKIT_PORT}"
                    for i in range(1, o.livekit_nodes + 1)
                },
            ),
            Backend(
                "api",
                API_PORT,
                "/healthz",
                {
                    f"api{i}": f"{self.hosts[f'api{i}'].address}:{API_PORT}"
                    for i in range(1, o.api_hosts + 1)
                },
            ),
        ]
        config = data / "haproxy.cfg"
        config.write_text(haproxy_config(host.address, backends, self.lb_socket))
        argv = [find_haproxy(), "-db", "-f", str(config)]
        url = f"{self.lb_livekit_url}/"
        role = Role("lb", host, argv, {"THINNEST_DATA_DIR": str(data)}, lambda: _http_ok(url))
        self._launch(role)
        self._wait(role, timeout)

    def _models_role(self) -> Role:
        host = self.hosts["models"]
        env = self._thinnest_env(
            host, THINNEST_MODELS_HOST=host.address, THINNEST_MODELS_PORT=str(MODELS_PORT)
        )
        argv = [sys.executable, "-m", "thinnest", "models"]
        url = f"{self.models_url}/healthz"
        return Role("models", host, argv, env, lambda: _http_ok(url))

    def _api_role(self, n: int) -> Role:
        host = self.hosts[f"api{n}"]
        env = self._thinnest_env(
            host,
            THINNEST_API_HOST=host.address,
            THINNEST_API_PORT=str(API_PORT),
            THINNEST_LIVEKIT_URL=self.lb_livekit_url,
            THINNEST_MODELS_URL=self.models_url,
        )
        argv = [sys.executable, "-m", "thinnest", "serve"]
        url = f"{self.api_url(n)}/healthz"
        return Role(host.name, host, argv, env, lambda: _http_ok(url))

    def _worker_role(self, n: int) -> Role:
        host = self.hosts[f"w{n}"]
        env = self._thinnest_env(
            host,
            THINNEST_LIVEKIT_URL=self.lb_livekit_url,
            THINNEST_MODELS_URL=self.models_url,
            THINNEST_WORKER_MAX_JOBS=str(self.options.worker_max_jobs),
            THINNEST_WORKER_IDLE_PROCESSES=str(self.options.worker_idle_processes),
            THINNEST_WORKER_HEARTBEAT_INTERVAL="1.0",
            THINNEST_WORKER_METRICS_HOST=host.address,
            THINNEST_WORKER_METRICS_PORT=str(WORKER_METRICS_PORT),
        )
        argv = [sys.executable, "-m", "thinnest", "worker"]
        role = Role(host.name, host, argv, env, lambda: False)
        role.ready = lambda: "worker live: first heartbeat stored" in role.text()
        return role

    # -- processes ----------------------------------------------------------------------
    def _launch(self, role: Role) -> None:
        self.roles[role.name] = role
        role.log.parent.mkdir(parents=True, exist_ok=True)
        with role.log.open("ab") as out:
            role.process = subprocess.Popen(
                [*role.host.wrap(), *role.argv],
                env=role.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        log.info("%s started on %s (pid %d)", role.name, role.host.address, role.process.pid)

    def _wait(self, role: Role, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not role.ready():
            if role.process is None or role.process.poll() is not None:
                raise UnavailableError(
                    f"{role.name} exited; see {role.log}:\n{role.text()[-2000:]}",
                    code="cluster_failed",
                )
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"{role.name} was not ready within {timeout:.0f} s; see {role.log}",
                    code="cluster_failed",
                )
            time.sleep(0.2)

    @staticmethod
    def _terminate(role: Role, grace: float = 40.0) -> None:
        proc = role.process
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
