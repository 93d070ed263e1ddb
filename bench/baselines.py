"""The failover baselines, as real detectors on real links, and the receiver that judges them all.

    python -m bench.baselines idle|ping EDGE PORT PRIMARY BACKUP SECONDS   (in the kit namespace)
    python -m bench.baselines receive EDGE SECONDS OUT PORT...               (in the net namespace)

A baseline sender streams numbered datagrams every 10 ms over PRIMARY (SO_BINDTODEVICE) and moves
the stream to BACKUP when its detector declares PRIMARY dead:
  idle: SRT-bonding style: the receiver acknowledges every datagram; the link is dead when no
        acknowledgement came back for 4 s (the peer-idle / dead-link timeout of bonded SRT links);
  ping: a separate check every 1 s (1 s timeout; the same TCP probe as nomadkit's agent, so only
        the timing policy differs), dead after 5 lost in a row (a "5 s ping check").
It prints `switch <epoch seconds>` when it moves. The receiver records every datagram on each
PORT (arrival time, port, sequence number, source address) and acknowledges it to its sender.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import sys
import time

from nomadkit.agent.probe import Prober

STREAM_INTERVAL_S = 0.01
IDLE_TIMEOUT_S = 4.0
PING_INTERVAL_S = 1.0
PING_DEAD_AFTER = 5


def bound(device: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    sock.setblocking(False)
    return sock


class Sender:
    """The stream on one uplink, moved once to the backup when the detector says so."""

    def __init__(self, edge: str, port: int, primary: str, backup: str) -> None:
        self.target = (edge, port)
        self.backup = backup
        self.sock = bound(primary)
        self.seq = 0
        self.last_ack = time.monotonic()
        self.switched = False

    def tick(self) -> None:
        with contextlib.suppress(OSError):  # no carrier, no route: lost, as on a real link
            self.sock.sendto(self.seq.to_bytes(8, "big"), self.target)
        self.seq += 1
        while True:
            try:
                self.sock.recv(64)
            except OSError:
                break
            self.last_ack = time.monotonic()

    def switch(self) -> None:
        self.sock.close()
        self.sock = bound(self.backup)
        self.switched = True
        print(f"switch {time.time():.4f}", flush=True)


def send(policy: str, edge: str, port: int, primary: str, backup: str, seconds: float) -> None:
    sender = Sender(edge, port, primary, backup)
    prober = Prober((edge, 80), PING_INTERVAL_S) if policy == "ping" else None
    lost_in_row, next_ping = 0, time.monotonic()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sender.tick()
        now = time.monotonic()
        if not sender.switched and policy == "idle" and now - sender.last_ack >= IDLE_TIMEOUT_S:
            sender.switch()
        if not sender.switched and prober:
            results = prober.poll(0)
            if now >= next_ping:
                results += [r for r in [prober.send(primary)] if r]
                next_ping += PING_INTERVAL_S
            for _, rtt in results:
                lost_in_row = 0 if rtt is not None else lost_in_row + 1
            if lost_in_row >= PING_DEAD_AFTER:
                sender.switch()
        time.sleep(STREAM_INTERVAL_S)


def receive(edge: str, seconds: float, out: str, ports: list[int]) -> None:
    selector = selectors.DefaultSelector()
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((edge, port))
        selector.register(sock, selectors.EVENT_READ, port)
    end = time.monotonic() + seconds
    with open(out, "w", buffering=1) as log:
        while time.monotonic() < end:
            for key, _ in selector.select(0.2):
                data, source = key.fileobj.recvfrom(64)
                log.write(f"{time.time():.4f} {key.data} {int.from_bytes(data[:8], 'big')} {source[0]}\n")
                with contextlib.suppress(OSError):
                    key.fileobj.sendto(data[:8], source)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "receive":
        receive(args[0], float(args[1]), args[2], [int(p) for p in args[3:]])
    else:
        send(mode, args[0], int(args[1]), args[2], args[3], float(args[4]))
