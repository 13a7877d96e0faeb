"""Webhook delivery settings, and where webhooks may go (:class:`Allowlist`).

A topic config is data anyone with write access to the registry can change; without
the allowlist it could make the node POST to itself, to the router's admin page or to
a cloud metadata service. The entries are validated when the config loads; the
delivery (consumers/webhooks) asks :meth:`Allowlist.refusal` before every POST, with
the addresses the host resolves to at that moment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from orac_node.config.base import Section, state_dir

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


class WebhooksSection(Section):
    """Delivery of finals to HTTP receivers (docs/WEBHOOKS.md)."""

    timeout_s: float = Field(5.0, gt=0, le=120, description="Per-POST timeout, seconds.")
    max_attempts: int = Field(
        10,
        ge=1,
        le=100,
        description="Attempts before an event is dead-lettered: with the default backoff"
        " the nine waits add up to 2-4 minutes, so a receiver down for a minute or two"
        " still gets everything.",
    )
    backoff_initial_s: float = Field(
        1.0, gt=0, le=3600, description="Delay before the first retry; doubles each time."
    )
    backoff_max_s: float = Field(60.0, gt=0, le=86_400, description="Longest retry delay.")
    outbox_max: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Events waiting for delivery, kept on disk; beyond it the oldest are"
        " dead-lettered (counted, logged).",
    )
    dir: Path | None = Field(
        None,
        description="Outbox and dead letters (SQLite); empty: beside the spool, in"
        " $XDG_STATE_HOME/orac-node/<node id>/webhooks.",
    )
    allow: list[str] = Field(
        default_factory=list,
        description="Destination allowlist: host names and CIDR networks. Empty: any"
        " destination except loopback, link-local, multicast and unspecified addresses;"
        " otherwise only these (list 127.0.0.0/8 to allow a receiver on this machine).",
    )

    @field_validator("allow")
    @classmethod
    def _allow_entries(cls, value: list[str]) -> list[str]:
        Allowlist.parse(value)  # ValueError names the entry that is neither name nor network
        return value

    @property
    def allowlist(self) -> Allowlist:
        """The destinations allowed, parsed."""
        return Allowlist.parse(self.allow)

    def resolved_dir(self, node_id: str) -> Path:
        """The outbox directory of a node."""
        return self.dir if self.dir is not None else state_dir(node_id) / "webhooks"
