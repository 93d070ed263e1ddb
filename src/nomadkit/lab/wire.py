"""The wire between a kit's uplink NIC and the lab's internet, where impairments live.

One process per lab, run inside the lab namespace: `python -m nomadkit.lab.wire RUN_DIR`.
For each kit uplink it moves Ethernet frames between QEMU (a unix datagram socket, QEMU's
`-netdev dgram`) and that uplink's tap, and applies the uplink's impairment to every frame in
each direction: added delay, random loss, a rate limit (a queue that drops when it would
hold more than `MAX_QUEUE_S` of traffic).

Why not `tc netem`: this machine's kernel has no `sch_netem` (nor fq, sfq, prio; measured),
and a field kit's impairments are outside the kit anyway; a wire in user space works on
any kernel and keeps the kit's own interfaces untouched. Frames are read and written whole;
the lab's uplink rates (a few Mbit/s) are far below what this loop moves.

Control: a unix stream socket `wire.ctl` in RUN_DIR takes one JSON request per connection:
`{"op": "impair", "port": "kit-a/wwan0", "delay_ms": 40, "loss_pct": 5, "rate_kbit": 2000}`
or `{"op": "stats"}`, and answers one JSON line.
"""

from __future__ import annotations

import fcntl
import heapq
import json
import os
import random
import selectors
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_FRAME = 65536
MAX_QUEUE_S = 0.5


@dataclass
class Impairment:
    """What a link does to every frame, in each direction (like netem on both ends)."""

    delay_ms: float = 0.0
    loss_pct: float = 0.0
    rate_kbit: float = 0.0  # 0: unlimited


@dataclass
class Direction:
    """One direction of one uplink: its queue clock and counters."""

    free_at: float = 0.0
    frames: int = 0
    bytes: int = 0
    lost: int = 0
    overflow: int = 0

    def schedule(self, now: float, size: int, imp: Impairment) -> float | None:
        """When this frame leaves the wire, or None if the link drops it."""
        if imp.loss_pct and random.random() * 100 < imp.loss_pct:
            self.lost += 1
            return None
        start = now
        if imp.rate_kbit:
            start = max(now, self.free_at)
            if start - now > MAX_QUEUE_S:
                self.overflow += 1
                return None
            self.free_at = start + size * 8 / (imp.rate_kbit * 1000)
            start = self.free_at
        self.frames += 1
        self.bytes += size
        return start + imp.delay_ms / 1000


@dataclass
class Port:
    """One kit uplink: QEMU's socket on one side, the tap on the other."""

    name: str
    tap: str
    sock_path: str
    qemu_path: str
    impairment: Impairment = field(default_factory=Impairment)
    up: Direction = field(default_factory=Direction)  # kit -> lab
    down: Direction = field(default_factory=Direction)  # lab -> kit
    tap_fd: int = -1
    sock: socket.socket | None = None

    def open(self) -> None:
        self.tap_fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(self.tap_fd, TUNSETIFF,
                    struct.pack("16sH", self.tap.encode(), IFF_TAP | IFF_NO_PI))
        Path(self.sock_path).unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.sock.setblocking(False)

    def stats(self) -> dict[str, object]:
        return {"impairment": asdict(self.impairment), "up": asdict(self.up),
                "down": asdict(self.down)}


class Wire:
    """The event loop: frames in, scheduled by each port's impairment, frames out."""

    def __init__(self, run_dir: Path) -> None:
        config = json.loads((run_dir / "wire.json").read_text())
        self.ports = {p["name"]: Port(**p) for p in config["ports"]}
        self.ctl_path = run_dir / "wire.ctl"
        self.pending: list[tuple[float, int, Port, bool, bytes]] = []
        self.seq = 0
        self.sel = selectors.DefaultSelector()

    def start(self) -> None:
        for port in self.ports.values():
            port.open()
            assert port.sock is not None
            self.sel.register(port.tap_fd, selectors.EVENT_READ, (port, "tap"))
            self.sel.register(port.sock, selectors.EVENT_READ, (port, "sock"))
        self.ctl_path.unlink(missing_ok=True)
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.bind(str(self.ctl_path))
        self.ctl.listen()
        self.sel.register(self.ctl, selectors.EVENT_READ, (None, "ctl"))

    def run(self) -> None:
        while True:
            timeout = max(0.0, self.pending[0][0] - time.monotonic()) if self.pending else None
            for key, _ in self.sel.select(timeout):
                port, kind = key.data
                if kind == "ctl":
                    self.control()
                elif kind == "tap":
                    self.receive(port, os.read(port.tap_fd, MAX_FRAME), towards_kit=True)
                else:
                    self.receive(port, port.sock.recv(MAX_FRAME), towards_kit=False)
            self.release(time.monotonic())

    def receive(self, port: Port, frame: bytes, towards_kit: bool) -> None:
        direction = port.down if towards_kit else port.up
        now = time.monotonic()
        when = direction.schedule(now, len(frame), port.impairment)
        if when is not None:
            self.seq += 1
            heapq.heappush(self.pending, (when, self.seq, port, towards_kit, frame))

    def release(self, now: float) -> None:
        while self.pending and self.pending[0][0] <= now:
            _, _, port, towards_kit, frame = heapq.heappop(self.pending)
            try:
                if towards_kit:
                    port.sock.sendto(frame, port.qemu_path)
                else:
                    os.write(port.tap_fd, frame)
            except OSError:
                pass  # the VM is not listening (not started, or stopped): the frame is lost

    def control(self) -> None:
        conn, _ = self.ctl.accept()
        with conn, conn.makefile("rw") as f:
            try:
                reply = self.handle(json.loads(f.readline()))
            except (ValueError, KeyError, TypeError) as exc:
                reply = {"ok": False, "error": str(exc)}
            f.write(json.dumps(reply) + "\n")

    def handle(self, req: dict[str, object]) -> dict[str, object]:
        if req["op"] == "impair":
            port = self.ports[str(req["port"])]
            port.impairment = Impairment(
                delay_ms=float(req.get("delay_ms", 0)), loss_pct=float(req.get("loss_pct", 0)),
                rate_kbit=float(req.get("rate_kbit", 0)))
            return {"ok": True, "port": port.name, **port.stats()}
        if req["op"] == "stats":
            return {"ok": True, "ports": {n: p.stats() for n, p in self.ports.items()}}
        raise ValueError(f"unknown op {req['op']!r}")


def request(run_dir: Path, req: dict[str, object], timeout: float = 5.0) -> dict[str, object]:
    """Send one control request to a running wire and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(run_dir / "wire.ctl"))
        with s.makefile("rw") as f:
            f.write(json.dumps(req) + "\n")
            f.flush()
            return json.loads(f.readline())


def main(argv: list[str]) -> int:
    wire = Wire(Path(argv[0]))
    wire.start()
    print("wire: ready", flush=True)
    wire.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
