"""The names and addresses this machine answers to, for local mode's Host checks.

Without auth, a request whose ``Host`` is not one of these came through a name that
is not this machine's: a hostile domain resolved to 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import fcntl
import logging
import socket
import struct
import sys
from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Listening on every interface: the machine's own names and addresses are accepted.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104
_SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address
_PROC_INET6 = "/proc/net/if_inet6"


def host_name(value: str) -> str:
    """The host part of a Host header or URL authority: no port, no brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def allowed_hosts(
    listen_host: str, machine: Callable[[], frozenset[str]] | None = None
) -> frozenset[str]:
    """Host names requests may address: loopback names, plus the ``--host`` address
    when it is another one; on every interface (``0.0.0.0``, ``::``), this machine's
    names and interface addresses (``machine``: ``machine_hosts``)."""
    host = listen_host.strip().strip("[]").lower()
    if host in WILDCARD_HOSTS:
        return LOOPBACK_HOSTS | (machine or machine_hosts)()
    return LOOPBACK_HOSTS | {host}


def machine_hosts() -> frozenset[str]:
    """This machine's host names (short, fully qualified, ``.local``) and the
    addresses of its interfaces, lower case."""
    name = socket.gethostname().lower()
    names = {name, socket.getfqdn().lower(), f"{name.split('.')[0]}.local"}
    addresses = set(_resolved(names)) | set(_interface_addresses())
    addresses |= {a for a in (_route_address(socket.AF_INET), _route_address(socket.AF_INET6)) if a}
    return frozenset(h.split("%", 1)[0] for h in names | addresses if h)


def _resolved(names: Iterable[str]) -> Iterable[str]:
    for name in names:
        try:
            infos = socket.getaddrinfo(name, None)
        except OSError as error:  # a name without DNS (``.local`` without mDNS)
            logger.debug("%s does not resolve: %s", name, error)
            continue
        yield from (str(info[4][0]).lower() for info in infos)


def _interface_addresses() -> Iterable[str]:
    """Every interface's addresses (Linux; elsewhere the resolved and routed ones)."""
    if not sys.platform.startswith("linux"):
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, interface in socket.if_nameindex():
            request = struct.pack("256s", interface.encode()[:15])
            try:
                answer = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
            except OSError:  # EADDRNOTAVAIL: this interface has no IPv4 address
                continue
            yield socket.inet_ntoa(answer[20:24])
    try:
        with open(_PROC_INET6, encoding="ascii") as table:
            lines = table.read().splitlines()
    except OSError as error:  # IPv6 disabled
        logger.debug("no IPv6 interface table: %s", error)
        return
    for line in lines:
        packed = bytes.fromhex(line.split()[0])
        yield socket.inet_ntop(socket.AF_INET6, packed)


def _route_address(family: socket.AddressFamily) -> str | None:
    """This machine's address on the default route of ``family`` (no packet is sent)."""
    target = ("192.0.2.1", 9) if family == socket.AF_INET else ("2001:db8::1", 9)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(target)  # connect() on UDP only picks a route
            return str(probe.getsockname()[0]).lower()
    except OSError:  # no route in this family
        return None
