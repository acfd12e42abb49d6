"""Which addresses HTTP tools may call: the SSRF guard's judgment, without I/O.

An address is public when it is global unicast; an IPv6 address that carries an IPv4
address (IPv4-mapped or -compatible, IPv4-translated, NAT64, 6to4, Teredo) is judged by the
IPv4 address the packets reach, so ``[::7f00:1]`` or ``[2002:7f00:1::]`` is loopback.
Settings open the guard: ``tools_allow_private`` (everything), ``tools_allow_loopback`` (on
by default in dev, where a developer's tool server runs on localhost) and
``tools_allowed_networks`` (listed CIDRs and host names). :mod:`thinnest.engine.tools`
applies it to every connection; the API uses :func:`refusal_for` to warn when an agent is
saved with a tool URL that would be refused.
"""

from __future__ import annotations

import ipaddress
import socket

from thinnest.config import Settings

__all__ = [
    "Address",
    "destination",
    "embedded_ipv4",
    "is_public",
    "refusal_for",
    "refused_address",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


#: IPv6 prefixes whose last 32 bits are an IPv4 address the packets reach: IPv4-compatible
#: (``::a.b.c.d``, deprecated), IPv4-translated (SIIT) and the NAT64 well-known prefix.
_LAST_32_BITS = tuple(
    ipaddress.IPv6Network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)
#: NAT64's local-use prefix (RFC 8215): a site's own translator, never public.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and leads to, if any.

    IPv4-mapped and -compatible, IPv4-translated, NAT64 (``64:ff9b::/96``): the last 32
    bits. 6to4 (``2002::/16``): bits 16-47. Teredo (``2001::/32``): the client, stored
    XOR-ed in the last 32 bits.
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in network for network in _LAST_32_BITS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def destination(ip: Address) -> Address:
    """Where packets to ``ip`` go: its embedded IPv4 address, if it has one ([::7f00:1]
    reaches 127.0.0.1); ``::`` and ``::1`` carry none and stay as they are."""
    if isinstance(ip, ipaddress.IPv6Address) and int(ip) > 1:
        return embedded_ipv4(ip) or ip
    return ip


def is_public(ip: Address) -> bool:
    """Whether ``ip`` (or the IPv4 address it carries) is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip in _LOCAL_NAT64:
        return False
    ip = destination(ip)
    return ip.is_global and not ip.is_multicast


def _allowed(host: str, ip: Address, networks: list[str]) -> bool:
    for entry in networks:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:  # not a network: a host name
            if entry.strip().lower().rstrip(".") == host:
                return True
    return False


def refused_address(host: str, addresses: list[Address], settings: Settings) -> Address | None:
    """The first address of ``host`` that the guard refuses, if any."""
    loopback = settings.resolved_tools_allow_loopback
    for ip in addresses:
        if is_public(ip) or (loopback and destination(ip).is_loopback):
            continue
        networks = settings.tools_allowed_networks
        if not (_allowed(host, ip, networks) or _allowed(host, destination(ip), networks)):
            return ip
    return None


def refusal_for(host: str, settings: Settings) -> str | None:
    """Why a tool URL's host would be refused at call time, judged without DNS, or ``None``.

    An address literal is judged as the tools' guard judges it; of names, only
    ``localhost`` (which always resolves to loopback) is: others may resolve anywhere.
    """
    if settings.tools_allow_private:
        return None
    name = host.lower().rstrip(".").strip("[]")
    addresses: list[Address]
    if name == "localhost" or name.endswith(".localhost"):
        addresses = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    else:
        try:  # numeric forms only (2130706433 included): no DNS query
            infos = socket.getaddrinfo(name, None, flags=socket.AI_NUMERICHOST)
        except (OSError, UnicodeError):
            return None
        addresses = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
    refused = refused_address(name, addresses, settings)
    if refused is None:
        return None
    return (
        f"{host} is not a public address ({refused}): calls to it will be refused unless "
        "THINNEST_TOOLS_ALLOW_PRIVATE or THINNEST_TOOLS_ALLOWED_NETWORKS allows it"
    )
