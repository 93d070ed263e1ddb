"""Probes bound to one uplink each: a TCP connect to the tour's edge, several times a second.

A TCP connect works against any server (nginx, the relay): the SYN/SYN-ACK round trip is the
RTT, and a refused connection (RST) proves the path as well as an accepted one. Each socket
is bound to its interface with SO_BINDTODEVICE, so a probe measures exactly that uplink
whatever the routing rules say. Sockets close with an RST (linger 0): no TIME_WAIT pile-up.
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import time
from pathlib import Path

LINGER_RESET = struct.pack("ii", 1, 0)
REACHED = (0, errno.ECONNREFUSED)


class Prober:
    """Outstanding probes, multiplexed on one selector.

    + address: (host, port) of the probe target, host already resolved
    + timeout_s: a probe not answered by then counts as lost
    """

    def __init__(self, address: tuple[str, int], timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.selector = selectors.DefaultSelector()
        self.pending: dict[socket.socket, tuple[str, float]] = {}

    def send(self, interface: str) -> tuple[str, float | None] | None:
        """Start one probe on `interface`; a result now if it failed at once (no route, link down)."""
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            err = sock.connect_ex(self.address)
        except OSError:
            sock.close()
            return (interface, None)
        if err in REACHED:
            sock.close()
            return (interface, 0.0)
        if err != errno.EINPROGRESS:
            sock.close()
            return (interface, None)
        self.pending[sock] = (interface, time.monotonic())
        self.selector.register(sock, selectors.EVENT_WRITE)
        return None

    def poll(self, timeout: float) -> list[tuple[str, float | None]]:
        """Wait up to `timeout` s; return (interface, rtt_ms or None) for each finished probe."""
        results = []
        events = self.selector.select(timeout) if self.pending else time.sleep(timeout) or []
        now = time.monotonic()
        for key, _ in events:
            sock = key.fileobj
            interface, sent = self.pending[sock]
            ok = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in REACHED
            results.append((interface, (now - sent) * 1000 if ok else None))
            self._close(sock)
        for sock, (interface, sent) in list(self.pending.items()):
            if now - sent > self.timeout_s:
                results.append((interface, None))
                self._close(sock)
        return results

    def _close(self, sock: socket.socket) -> None:
        self.selector.unregister(sock)
        del self.pending[sock]
        sock.close()


def carrier(interface: str) -> bool:
    """Whether the interface has a link (a cut cable or a detached modem reads as no carrier)."""
    try:
        return Path(f"/sys/class/net/{interface}/carrier").read_text().strip() == "1"
    except OSError:
        return False


def counters(interface: str) -> tuple[int, int]:
    """Bytes sent and received on the interface so far (for throughput estimates)."""
    base = Path(f"/sys/class/net/{interface}/statistics")
    try:
        return int((base / "tx_bytes").read_text()), int((base / "rx_bytes").read_text())
    except OSError:
        return 0, 0
