"""The wire: framing, authenticated connections, and pluggable transports."""

from skate.protocol.connection import Connection, ConnectionClosed, RemoteError
from skate.protocol.transport import BACKENDS, connect, listen, parse_address

__all__ = ["BACKENDS", "Connection", "ConnectionClosed", "RemoteError", "connect", "listen", "parse_address"]
