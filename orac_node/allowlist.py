"""Where webhooks may be sent (``webhooks.allow``), judged on resolved addresses.

A topic config is data anyone with write access to the registry can change; without
this check it could make the node POST to itself, to the router's admin page or to a
cloud metadata service. config.py validates the entries when the config loads;
webhooks.py asks :meth:`Allowlist.refusal` before every POST, with the addresses the
host resolves to at that moment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Where webhooks may go (``webhooks.allow``): host names and networks.

    Empty: anywhere but this machine and addresses no receiver should have (loopback,
    link-local such as the cloud metadata service 169.254.169.254, multicast,
    unspecified), so a topic config cannot make the node probe itself. Otherwise a
    destination must be listed by name, or every address it resolves to must lie in a
    listed network: one listed address among unlisted ones is not enough.
    """

    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> Allowlist:
        """Read ``webhooks.allow``; ValueError for an entry that is neither name nor network."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError as exc:
                if "/" in entry or ":" in entry or not entry:
                    raise ValueError(f"{raw!r} is not a host name or network") from exc
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def refusal(self, host: str, addresses: Sequence[IPAddress]) -> str | None:
        """Why ``host`` (resolving to ``addresses``) may not be sent to; None if it may."""
        if not addresses:
            return f"destination not allowed: {host} resolves to no address"
        if not self.hosts and not self.networks:
            for address in addresses:
                kind = _forbidden_kind(address)
                if kind:
                    return f"destination not allowed: {host} is {address} ({kind})"
            return None
        if host.lower().rstrip(".") in self.hosts:
            return None
        for address in addresses:
            if not any(_within(address, network) for network in self.networks):
                return f"destination not allowed: {host} ({address}) is not in webhooks.allow"
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    """::ffff:127.0.0.1 is 127.0.0.1: judge an IPv4-mapped address as the IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forbidden_kind(address: IPAddress) -> str | None:
    address = _unmapped(address)
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
    ):
        if flag:
            return kind
    return None


def _within(address: IPAddress, network: IPNetwork) -> bool:
    address = _unmapped(address)
    return address.version == network.version and address in network
