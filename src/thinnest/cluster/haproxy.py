"""The cluster's load balancer: Debian's ``haproxy`` in front of the LiveKit nodes and the API
hosts, as docs/deploy.md sets one up for a real deployment.

Clients, workers and the API reach LiveKit through it, so a connection made after a node was
taken out (``drain``) lands on a node that still serves; LiveKit's webhooks reach whichever API
host is up. haproxy's runtime API (a Unix socket) changes a server's state without a reload.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from thinnest.errors import ConfigError

__all__ = ["Backend", "find_haproxy", "haproxy_config", "runtime_command"]


@dataclass(frozen=True)
class Backend:
    """A frontend on ``port`` and the servers (name → ``host:port``) behind it, checked by a
    ``GET`` of ``health`` every second (two misses take a server out, two answers bring it
    back)."""

    name: str
    port: int
    health: str
    servers: dict[str, str]


def find_haproxy() -> str:
    found = shutil.which("haproxy")
    if found is None:
        raise ConfigError(
            "haproxy is not installed: the cluster's load balancer needs it "
            "(`scripts/setup.sh --test`, or `apt-get install haproxy`)"
        )
    return found


def haproxy_config(address: str, backends: list[Backend], runtime_socket: Path) -> str:
    """haproxy's configuration: HTTP mode (WebSocket upgrades pass through and stay open for
    an hour), a connection refused is retried on another server, and a server answers to the
    runtime API on ``runtime_socket``."""
    lines = [
        "global",
        f"    stats socket {runtime_socket} mode 600 level admin",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout tunnel 1h",
        "    timeout http-request 10s",
        "    retries 2",
        "    option redispatch",
    ]
    for backend in backends:
        lines += [
            "",
            f"frontend {backend.name}",
            f"    bind {address}:{backend.port}",
            f"    default_backend {backend.name}",
            "",
            f"backend {backend.name}",
            "    balance leastconn",
            f"    option httpchk GET {backend.health}",
            "    http-check expect status 200",
            "    default-server inter 1s fall 2 rise 2",
        ]
        lines += [f"    server {name} {target} check" for name, target in backend.servers.items()]
    return "\n".join(lines) + "\n"


def runtime_command(runtime_socket: Path, command: str, *, timeout: float = 5.0) -> str:
    """Send one command to haproxy's runtime API; returns its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(runtime_socket))
        conn.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
