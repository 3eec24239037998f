"""Fetching input-file URLs without becoming a way into the network the gateway sits in.

Every connection (redirects included) is checked where it is made: the host is resolved once,
each address must be public unless the config allows it, and the connection goes to the
address that was checked, so a DNS answer that changes between check and connect (rebinding)
gains nothing. Every refusal and every failure reads the same to the caller, so the gateway
cannot be used to map which ports answer."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable

import httpcore
import httpx

logger = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(Exception):
    """The URL's host is not one the gateway may reach."""


class FetchPolicy:
    """`allowed`: host names (optionally `host:port`), IP addresses and CIDR networks that may
    be fetched although they are not public (a user's own file server)."""

    def __init__(self, allowed: Iterable[str] = ()):
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allowed:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.hosts.add(entry.lower())

    def allows(self, address: Address, host: str, port: int) -> bool:
        if host.lower() in self.hosts or f"{host.lower()}:{port}" in self.hosts:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.networks):
            return True
        return address.is_global and not address.is_multicast

    async def resolve(self, host: str, port: int) -> str:
        """The address to connect to, checked; FetchRefused when none may be reached."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
            candidates = [literal]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise FetchRefused(f"cannot resolve {host}: {exc}") from None
            candidates = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        refused = [a for a in candidates if not self.allows(a, host, port)]
        if refused or not candidates:
            raise FetchRefused(f"{host} resolves to a non-public address ({refused[0] if refused else 'none'})")
        return str(candidates[0])


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: FetchPolicy):
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        address = await self.policy.resolve(host, port)
        return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise FetchRefused("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_client(policy: FetchPolicy, timeout_s: float) -> httpx.AsyncClient:
    """An httpx client whose every connection passes `policy` (no proxies from the
    environment: they would connect on our behalf, unchecked)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=_GuardedBackend(policy)
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout_s, follow_redirects=True, trust_env=False)
