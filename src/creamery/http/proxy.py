"""The client's address behind a reverse proxy: `--trusted-proxy CIDR`.

`X-Forwarded-For` is believed only when the peer that sent the request is a trusted proxy,
and then only up to the first hop that is not one (walking from the right: each proxy appends
the address it received the request from, so everything left of an untrusted hop is whatever
that client chose to write). Throttling, per-client limits and the audit log use the result.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_HOPS = 32  # a longer chain is read only this far (from the right)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    hop = text.strip()
    if hop.startswith("[") and "]" in hop:  # [2001:db8::1]:443
        hop = hop[1 : hop.index("]")]
    elif hop.count(":") == 1:  # 192.0.2.1:443
        hop = hop.partition(":")[0]
    try:
        address = ipaddress.ip_address(hop)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _network(cidr: str) -> Network:
    """An IPv4-mapped network (`::ffff:10.0.0.0/104`) as the IPv4 one: addresses are compared
    in that form (a v4 peer on a dual-stack socket reads `::ffff:10.0.0.1`)."""
    network = ipaddress.ip_network(cidr, strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


class TrustedProxies:
    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(_network(c) for c in cidrs)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        found = _address(address)
        return found is not None and self._trusted(found)

    def _trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: *peer*, unless it is a trusted proxy that says whom it
        forwards for (`X-Forwarded-For`, several headers joined with commas)."""
        if not forwarded_for or not self.networks or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")[-_MAX_HOPS:]):
            address = _address(hop)
            if address is None:  # garbage: stop at the last address that a proxy vouched for
                return client
            client = str(address)
            if not self._trusted(address):
                return client
        return client
