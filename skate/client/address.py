"""Client addresses: `skate://host:port` or `ray://host:port` (pure parsing, no I/O)."""

from __future__ import annotations

CLIENT_SCHEMES = ("skate://", "ray://")
DEFAULT_CLIENT_PORT = 10001


def is_client_address(address: object) -> bool:
    """Whether `address` asks for a client connection (either scheme)."""
    return isinstance(address, str) and address.startswith(CLIENT_SCHEMES)


def parse_client_address(address: str) -> tuple[str, int]:
    """(host, port) of a client address; ValueError naming the address when it is malformed.

    The port defaults to 10001, as Ray's. IPv6 hosts go in brackets: `skate://[::1]:10001`.
    """
    if not isinstance(address, str):
        raise TypeError(f"a client address must be a str such as 'skate://host:10001', got {address!r}")
    for scheme in CLIENT_SCHEMES:
        if address.startswith(scheme):
            rest = address[len(scheme) :]
            break
    else:
        scheme_part = address.split("://", 1)[0] + "://" if "://" in address else "no scheme"
        raise ValueError(
            f"invalid client address {address!r}: the scheme must be skate:// or ray:// (got {scheme_part})"
        )
    rest = rest.rstrip("/")
    if not rest or "/" in rest or "?" in rest or "@" in rest:
        raise ValueError(f"invalid client address {address!r}: expected {scheme}host:port")
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or (tail and not tail.startswith(":")):
            raise ValueError(f"invalid client address {address!r}: unclosed IPv6 bracket")
        port_text = tail[1:] if tail else ""
    else:
        host, _, port_text = rest.partition(":")
        if ":" in port_text:
            raise ValueError(f"invalid client address {address!r}: put IPv6 hosts in brackets")
    if not host:
        raise ValueError(f"invalid client address {address!r}: the host is missing")
    if not port_text:
        return host, DEFAULT_CLIENT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid client address {address!r}: the port must be a number in 1..65535")
    return host, int(port_text)
