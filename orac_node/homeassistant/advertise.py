"""The zeroconf (mDNS) advertisement that lets Home Assistant discover the Wyoming server.

Home Assistant's Wyoming integration browses ``_wyoming._tcp.local.`` and offers
every server it finds; the service must point at an address the house can
reach, so a server bound to every interface (0.0.0.0) advertises each of the
machine's IPv4 addresses, loopback only when there is nothing else.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

import ifaddr
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_wyoming._tcp.local."
"""What Home Assistant's Wyoming integration browses for."""


def advertised_addresses(host: str) -> list[str]:
    """The IPv4 addresses to advertise for a server bound to ``host``."""
    if host not in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
        return [socket.gethostbyname(host)]
    found = [
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback
    ]
    return found or ["127.0.0.1"]


class Advertisement:
    """``name._wyoming._tcp.local.`` on ``port``, registered until :meth:`close`."""

    def __init__(self, name: str, host: str, port: int) -> None:
        addresses = advertised_addresses(host)
        self.info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=port,
            parsed_addresses=addresses,
            server=f"{name}.local.",
        )
        self._zeroconf: AsyncZeroconf | None = None

    async def start(self) -> None:
        """Register the service (a few hundred ms: mDNS probes for name conflicts first)."""
        zc = self._zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
        await zc.async_register_service(self.info, allow_name_change=True)
        log.info("advertising %s on %s", self.info.name, ", ".join(self.info.parsed_addresses()))

    async def close(self) -> None:
        """Withdraw the service (a goodbye packet) and close the mDNS sockets."""
        zc, self._zeroconf = self._zeroconf, None
        if zc is not None:
            await zc.async_unregister_service(self.info)
            await zc.async_close()
