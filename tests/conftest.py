"""Shared fixtures: a real livekit-server, a real database, the real API in a uvicorn thread."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, make_url, text

from thinnest.api.main import create_app
from thinnest.bench.stack import free_port as bench_free_port
from thinnest.config import Settings
from thinnest.errors import ConfigError
from thinnest.livekit.devserver import LiveKitDevServer, LiveKitServerOptions, generate_credentials
from thinnest.store import keys
from thinnest.store.db import Database
from thinnest.store.postgres_server import start_postgres

# anyio loads its parts on first use, and pytest rewrites anyio's modules on import (it is a
# pytest plugin); CPython 3.11's compiler is not thread-safe, so a first use from the API's
# server thread can race the main thread ("AST constructor recursion depth mismatch"). Load
# them all now, in the main thread.
for _name in getattr(anyio, "__all__", dir(anyio)):
    getattr(anyio, _name, None)


def free_port() -> int:
    """A free port for a server the test starts (below the OS's outgoing-connection range)."""
    return bench_free_port()


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Snapshot the environment, drop THINNEST_* for the test, restore it afterwards."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("THINNEST_")]:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def api_port() -> int:
    """The port of the session's API (known before LiveKit starts: it posts webhooks there)."""
    return free_port()


@pytest.fixture(scope="session")
def livekit_server(
    tmp_path_factory: pytest.TempPathFactory, api_port: int
) -> Iterator[LiveKitDevServer]:
    """A real livekit-server on free loopback ports. Fails (never skips) if it cannot start."""
    server = loopback_livekit(
        tmp_path_factory.mktemp("livekit"),
        webhook_urls=(f"http://127.0.0.1:{api_port}/livekit/webhook",),
    )
    server.start()
    yield server
    server.stop()


def _start_postgres(workdir: Path) -> tuple[str, Callable[[], None]]:
    """initdb + pg_ctl from Debian's postgresql package, on a free loopback port."""
    try:
        return start_postgres(workdir)
    except ConfigError as exc:
        pytest.fail(str(exc))


def loopback_livekit(workdir: Path, webhook_urls: tuple[str, ...] = ()) -> LiveKitDevServer:
    """A (not yet started) real livekit-server on free loopback ports."""
    key, secret = generate_credentials()
    udp = free_port()
    options = LiveKitServerOptions(
        api_key=key,
        api_secret=secret,
        port=free_port(),
        rtc_tcp_port=free_port(),
        udp_port_start=udp,
        udp_port_end=udp + 20,
        webhook_urls=webhook_urls,
    )
    return LiveKitDevServer(options, workdir=workdir)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLite by default; a real PostgreSQL server with THINNEST_TEST_DATABASE=postgresql."""
    if os.environ.get("THINNEST_TEST_DATABASE") == "postgresql":
        # Not under pytest's tmp tree: its 0700 parents would lock the postgres user out.
        workdir = Path(tempfile.mkdtemp(prefix="thinnest-pg-"))
        workdir.chmod(0o755)
        url, stop = _start_postgres(workdir)
        try:
            yield url
        finally:
            stop()
            shutil.rmtree(workdir, ignore_errors=True)
    else:
        workdir = tmp_path_factory.mktemp("db")
        yield f"sqlite:///{workdir / 'thinnest.db'}"


@pytest.fixture(scope="session")
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def fresh_database(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """An empty database of the suite's kind: no other test's young sessions in its counts."""
    if database_url.startswith("postgresql"):
        name = f"fresh_{secrets.token_hex(4)}"
        admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    db = Database(url)
    db.migrate()
    try:
        yield db
    finally:
        db.close()
        if database_url.startswith("postgresql"):
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin.dispose()


def make_settings(tmp: Path, livekit: LiveKitDevServer | None, **overrides: object) -> Settings:
    # No worker runs in most tests; those that start one ask for the check explicitly.
    fields: dict[str, object] = {"data_dir": tmp, "api_port": free_port(), "require_worker": False}
    if livekit is not None:
        fields.update(
            livekit_url=livekit.options.url,
            livekit_api_key=livekit.options.api_key,
            livekit_api_secret=livekit.options.api_secret,
        )
    fields.update(overrides)
    return Settings(**fields)  # type: ignore[arg-type]


@dataclass
class RunningApi:
    settings: Settings
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def start_api(settings: Settings, database: Database) -> RunningApi:
    """The real app on a real uvicorn server, in a thread, on a free port."""
    config = uvicorn.Config(
        create_app(settings, database=database),
        host="127.0.0.1",
        port=settings.api_port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("API server did not start")
        time.sleep(0.05)
    return RunningApi(settings, f"http://127.0.0.1:{settings.api_port}", server, thread)


@pytest.fixture(scope="session")
def api(
    livekit_server: LiveKitDevServer,
    database: Database,
    tmp_path_factory: pytest.TempPathFactory,
    api_port: int,
) -> Iterator[RunningApi]:
    """The API wired to the real LiveKit server and database (rate limit high for tests)."""
    settings = make_settings(
        tmp_path_factory.mktemp("api"),
        livekit_server,
        rate_limit_per_minute=10000,
        api_port=api_port,
        sweep_interval=2.0,
        # webhooks of the engine tests: looked for often, retried soon after a failure
        webhook_poll_interval=0.2,
        webhook_timeout=3.0,
        webhook_retry_base=1.0,
    )
    running = start_api(settings, database)
    yield running
    running.stop()


@dataclass
class Tenant:
    """An owner with a fresh API key and an HTTP client that sends it."""

    owner_id: str
    owner_name: str
    key: str
    http: httpx.Client

    def create_agent(self, **fields: object) -> dict[str, object]:
        body = {"name": f"agent-{secrets.token_hex(3)}", **fields}
        resp = self.http.post("/agents", json=body)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


@pytest.fixture
def make_tenant(api: RunningApi, database: Database) -> Iterator[Callable[[], Tenant]]:
    clients: list[httpx.Client] = []

    def make() -> Tenant:
        name = f"owner-{secrets.token_hex(4)}"
        with database.session() as db:
            owner = keys.get_or_create_owner(db, name)
            _row, plaintext = keys.create_key(db, owner)
            owner_id = owner.id
        client = api.client(plaintext)
        clients.append(client)
        return Tenant(owner_id, name, plaintext, client)

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def tenant(make_tenant: Callable[[], Tenant]) -> Tenant:
    return make_tenant()
