"""Run a real ``livekit-server`` on loopback for ``thinnest dev`` and the test suite.

The server gets a generated config (keys, ports, UDP range, loopback only), is started as a
child process, polled until its HTTP port answers, and stopped with SIGTERM (then SIGKILL).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from thinnest.errors import ConfigError, UnavailableError
from thinnest.log import logger

log = logger.getChild("livekit")

#: The livekit-server release the setup installs (`go install …/cmd/server@LIVEKIT_VERSION`).
LIVEKIT_VERSION = "v1.13.5"
#: The webhook events the API acts on when rooms are created only by the API (``auto_create``
#: off): the engine or the caller leaving, and a room closed.
WEBHOOK_EVENTS = ("participant_left", "room_finished")

_INSTALL_HINT = (
    "livekit-server was not found. Run `make setup` (it builds it with Go into .tools/bin), "
    "or install Go >= 1.25 and run `go install "
    f"github.com/livekit/livekit-server/cmd/server@{LIVEKIT_VERSION}` and put the binary on "
    "PATH as `livekit-server`, or set THINNEST_LIVEKIT_SERVER_BIN to its path."
)


def generate_credentials() -> tuple[str, str]:
    """A fresh LiveKit API key and secret (the secret is long enough for production checks)."""
    return "API" + secrets.token_hex(6), secrets.token_urlsafe(36)


def find_livekit_server(explicit: Path | None = None) -> Path:
    """Locate the binary: explicit setting, next to this Python (the venv), .tools/bin, PATH."""
    candidates: list[Path] = []
    if explicit is not None:
        if not explicit.exists():
            raise ConfigError(f"THINNEST_LIVEKIT_SERVER_BIN={explicit} does not exist")
        return explicit
    venv_bin = Path(sys.executable).parent
    candidates += [
        venv_bin / "livekit-server",
        venv_bin.parent.parent / ".tools/bin/livekit-server",
    ]
    for path in candidates:
        if path.is_file():
            return path
    found = shutil.which("livekit-server")
    if found:
        return Path(found)
    raise ConfigError(_INSTALL_HINT, code="livekit_server_missing")


@dataclass(frozen=True)
class LiveKitServerOptions:
    """How to run the dev server.

    Attributes:
        api_key / api_secret: the only credentials the server accepts.
        port: HTTP and signalling WebSocket port.
        rtc_tcp_port: ICE over TCP port.
        udp_port_start / udp_port_end: the UDP range for media.
        host: the address it binds and advertises (loopback).
        webhook_urls: URLs LiveKit posts room events to.
        auto_create: whether a join creates a missing room. Off: the API creates each
            session's room, and an ended session's token (valid for minutes more) must not
            open its room again.
        redis_address: ``host:port`` of the Redis that nodes of one LiveKit deployment share
            (distributed mode); None: a single node.
        node_selector: with Redis, how a new room picks its node (``sort_by`` of LiveKit's
            ``node_selector``): ``rooms``, the node holding the fewest.
    """

    api_key: str
    api_secret: str
    port: int = 7880
    rtc_tcp_port: int = 7881
    udp_port_start: int = 50000
    udp_port_end: int = 50200
    host: str = "127.0.0.1"
    webhook_urls: tuple[str, ...] = field(default_factory=tuple)
    auto_create: bool = False
    redis_address: str | None = None
    node_selector: str = "rooms"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def config_yaml(self) -> str:
        lines = [
            f"port: {self.port}",
            "bind_addresses:",
            f"  - {self.host}",
            "rtc:",
            f"  tcp_port: {self.rtc_tcp_port}",
            f"  port_range_start: {self.udp_port_start}",
            f"  port_range_end: {self.udp_port_end}",
            "  use_external_ip: false",
            "  enable_loopback_candidate: true",
            "keys:",
            f"  {self.api_key}: {self.api_secret}",
            "room:",
            f"  auto_create: {'true' if self.auto_create else 'false'}",
            "logging:",
            "  level: info",
        ]
        if self.redis_address:
            lines += ["redis:", f"  address: {self.redis_address}"]
            lines += ["node_selector:", "  kind: any", f"  sort_by: {self.node_selector}"]
        if self.webhook_urls:
            lines += ["webhook:", f"  api_key: {self.api_key}", "  urls:"]
            lines += [f"    - {u}" for u in self.webhook_urls]
            if not self.auto_create:
                # Only what the API acts on (api/backstop.py): with rooms never created by a
                # join, room_started and participant_joined would be one more request to the
                # API per call for nothing.
                lines += ["  filter_params:", "    include_events:"]
                lines += [f"      - {e}" for e in WEBHOOK_EVENTS]
        return "\n".join(lines) + "\n"


class LiveKitDevServer:
    """A ``livekit-server`` child process; use as a context manager or call start/stop."""

    def __init__(
        self, options: LiveKitServerOptions, *, workdir: Path, binary: Path | None = None
    ) -> None:
        self.options = options
        self.workdir = workdir
        self.binary = find_livekit_server(binary)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "livekit.yaml"
        config.write_text(self.options.config_yaml())
        config.chmod(0o600)
        logfile = (self.workdir / "livekit.log").open("ab")
        log.info("starting %s on %s", self.binary, self.options.url)
        self.process = subprocess.Popen(
            [str(self.binary), "--config", str(config), "--node-ip", self.options.host],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        logfile.close()
        try:
            self.wait_ready(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise UnavailableError(
                    f"livekit-server exited with code {self.process.returncode}; see "
                    f"{self.workdir / 'livekit.log'} (is port {self.options.port} in use?)",
                    code="livekit_failed",
                )
            if ping(self.options.url):
                return
            time.sleep(0.1)
        raise UnavailableError(
            f"livekit-server did not answer on {self.options.url} within {timeout:.0f}s",
            code="livekit_failed",
        )

    def stop(self, *, grace: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LiveKitDevServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def ping(url: str, timeout: float = 1.0) -> bool:
    """True when a LiveKit server answers its health check at ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
