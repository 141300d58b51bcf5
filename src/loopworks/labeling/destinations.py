"""Where webhooks may go: the shape of a webhook URL, which addresses are public, the
``webhook_allow`` allowlist, and HTTP connections pinned to addresses checked beforehand.

A delivery resolves its host once (:func:`resolve`), keeps the addresses the policy allows
(:func:`is_public`, :class:`Allowlist`) and connects to those very addresses
(:class:`PinnedConnection`, :class:`PinnedTLSConnection`), so a name cannot resolve to a
public address for the check and to an internal one for the connection. See
:mod:`loopworks.labeling.webhooks` for the delivery itself.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from loopworks.errors import ConfigurationError

__all__ = ["Address", "Allowlist", "PinnedConnection", "PinnedTLSConnection", "Target",
           "check_url", "is_public", "parse_target", "resolve"]

#: An IP address of either family.
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """Where a webhook URL points: scheme, host, port and path (with its query)."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def destination(self) -> str:
        """Scheme, host and port: deliveries to one destination share a lane."""
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_target(url: object) -> Target | str:
    """The parts of a webhook URL, or why it is not one."""
    if not isinstance(url, str):
        return "must be a string"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@); sign with webhook_secret"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https"
                                                          else 80), path)


def check_url(url: object) -> None:
    """Check the shape of a webhook URL: http(s), a host, no credentials.

    Its addresses are checked at each delivery attempt instead (DNS answers change).

    Raises:
        ConfigurationError: The URL is not one webhooks can be sent to (names the setting).
    """
    target = parse_target(url)
    if isinstance(target, str):
        raise ConfigurationError(f"webhook {url!r} {target} (setting 'webhooks')",
                                 setting="webhooks")


def is_public(address: Address) -> bool:
    """Whether an address is on the public internet: not loopback, private, link-local,
    unspecified, shared, multicast, reserved or documentation, nor an IPv6 address that
    embeds such an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and not is_public(embedded):
            return False
        if address.is_site_local:
            return False
    # is_global alone lets multicast (and, on IPv6, more) through.
    return address.is_global and not (
        address.is_private or address.is_loopback or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified)


class Allowlist:
    """The ``webhook_allow`` entries: networks (an address is a /32 or /128) and host names."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def permits(self, host: str, address: Address) -> bool:
        """Whether a delivery to ``host`` may connect to ``address``."""
        if is_public(address) or host.lower().rstrip(".") in self.hosts:
            return True
        forms = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            forms.append(address.ipv4_mapped)
        return any(form in network for form in forms for network in self.networks)


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to, in the resolver's order (one lookup)."""
    found: list[Address] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP):
        if family in (socket.AF_INET, socket.AF_INET6):
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if address not in found:
                found.append(address)
    return found


class PinnedConnection(http.client.HTTPConnection):
    """HTTP to addresses checked beforehand: ``host`` only names them (Host header).

    The whole attempt is bounded: :meth:`abort` (from a timer, or on close) shuts the
    socket down, which wakes a read blocked on a receiver that answers byte by byte.
    """

    def __init__(self, host: str, port: int, addresses: Sequence[Address],
                 timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = list(addresses)
        self.deadline = time.monotonic() + timeout
        self.aborted = False

    def connect(self) -> None:
        """Connect to the first checked address that answers, within the deadline."""
        last: OSError = TimeoutError("no time left")
        for address in self.addresses:
            left = self.deadline - time.monotonic()
            if left <= 0 or self.aborted:
                break
            try:
                self.sock = socket.create_connection((str(address), self.port), left)
            except OSError as exc:
                last = exc
                continue
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.aborted:  # abort() ran before the socket was there to shut down
                raise TimeoutError("aborted")
            return
        raise last

    def abort(self) -> None:
        """End the attempt now (its socket is shut down; a blocked read wakes)."""
        self.aborted = True
        sock = self.sock
        if sock is not None:
            try:  # the plain socket's shutdown, under TLS too: it only wakes the reader
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


class PinnedTLSConnection(PinnedConnection):
    """HTTPS to checked addresses, with SNI and the certificate checked against ``host``."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, addresses: Sequence[Address], timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, addresses, timeout)
        self.context = context

    def connect(self) -> None:
        """Connect, then the TLS handshake (SNI and certificate for ``host``)."""
        super().connect()
        # Handshake after assigning the TLS socket, so that abort() can cut it short.
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host,
                                             do_handshake_on_connect=False)
        if self.aborted:
            raise TimeoutError("aborted")
        self.sock.do_handshake()
