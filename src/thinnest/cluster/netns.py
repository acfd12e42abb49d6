"""Hosts on one machine: a Linux network namespace per host, each with its own address on one
bridge, and a leg into the machine's own namespace for the driver (the CLI, the tests).

Nothing leaves the machine: the namespaces have no default route, no NAT, and the bridge lives
in a namespace of its own (so the machine's own firewall rules never see its traffic). Needs
root (``ip netns``). Every name starts with :data:`PREFIX`; :func:`clean` removes what a run
that crashed left.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass

from thinnest.errors import ConfigError

PREFIX = "thn-"
SWITCH = f"{PREFIX}sw"
DRIVER_LINK = f"{PREFIX}drv"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise ConfigError(
            "`ip` (iproute2) is needed for a cluster: apt-get install iproute2"
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise ConfigError(f"ip {' '.join(args)} failed: {exc.stderr.strip()}") from exc


@dataclass(frozen=True)
class Host:
    """One host: its namespace and its address on the bridge."""

    name: str
    address: str

    @property
    def namespace(self) -> str:
        return f"{PREFIX}{self.name}"

    def wrap(self) -> tuple[str, ...]:
        """The prefix that runs a command in this host."""
        return ("ip", "netns", "exec", self.namespace)

    def pids(self) -> list[int]:
        """The processes in this host (all of them: job processes included)."""
        out = _ip("netns", "pids", self.namespace, check=False).stdout
        return [int(p) for p in out.split()]


class Network:
    """A bridge with hosts on it, and the driver's leg: ``driver`` is the first address of
    ``subnet``, host i gets ``subnet``'s (i + 2)th address."""

    def __init__(self, subnet: str) -> None:
        self.subnet = ipaddress.ip_network(subnet)
        if self.subnet.version != 4 or self.subnet.prefixlen > 28:
            raise ConfigError(f"cluster subnet {subnet}: give an IPv4 network of /28 or larger")
        self.driver = str(self.subnet.network_address + 1)
        self.hosts: list[Host] = []

    def _check_free(self) -> None:
        taken = _ip("-4", "-o", "addr", "show").stdout
        for line in taken.splitlines():
            cidr = line.split()[3]
            if ipaddress.ip_interface(cidr).network.overlaps(self.subnet):
                raise ConfigError(
                    f"the cluster subnet {self.subnet} overlaps {cidr} on this machine: "
                    "choose another with --subnet"
                )

    def create(self, names: list[str]) -> list[Host]:
        """The bridge, the driver's leg, and a namespace per name (at most 11 characters)."""
        clean()
        self._check_free()
        _ip("netns", "add", SWITCH)
        _ip("-n", SWITCH, "link", "add", "br0", "type", "bridge")
        _ip("-n", SWITCH, "link", "set", "br0", "up")
        _ip("link", "add", DRIVER_LINK, "type", "veth", "peer", "name", "drv", "netns", SWITCH)
        _ip("-n", SWITCH, "link", "set", "drv", "master", "br0", "up")
        _ip("addr", "add", f"{self.driver}/{self.subnet.prefixlen}", "dev", DRIVER_LINK)
        _ip("link", "set", DRIVER_LINK, "up")
        for i, name in enumerate(names):
            host = Host(name, str(self.subnet.network_address + 2 + i))
            ns = host.namespace
            _ip("netns", "add", ns)
            _ip("link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", ns, "netns", SWITCH)
            _ip("-n", SWITCH, "link", "set", ns, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.hosts.append(host)
        return self.hosts

    def destroy(self) -> None:
        clean()
        self.hosts = []


def clean() -> None:
    """Remove every namespace and link of ours (a run that crashed left them)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX):
            _ip("netns", "del", name, check=False)
    _ip("link", "del", DRIVER_LINK, check=False)
