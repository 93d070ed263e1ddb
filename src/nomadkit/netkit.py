"""A kit's network in two namespaces: the fast tier for testing and measuring the agent.

`kit` holds the uplinks (veth ends named wwan0, wwan1, sat0) with the routing the uplinks role
sets up on a real kit: one table per uplink (100 + priority position), main-table default
routes in priority order, rule 900 (main, suppress default) and rule 1000 (the active uplink).
`net` holds the far ends and the edge address the agent probes. Cutting an uplink takes the far
end down, so the kit sees no carrier, as QEMU's set_link or a pulled modem do; loss is an
nftables `numgen random` drop on what the kit sends (this host's kernel has no netem; the QEMU
lab uses netem inside its guests). Real kernel routing, real link cuts; everything is torn down on
exit. Needs root. Traffic never leaves the two namespaces.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

EDGE = "10.99.0.1"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class NetKit:
    """Namespaces `<prefix>-kit` and `<prefix>-net` with one veth pair per uplink.

    + uplinks: interface names in priority order (e.g. wwan0, wwan1, sat0)
    + prefix: namespace name prefix (unique per test run)
    """

    uplinks: Sequence[str]
    prefix: str = field(default_factory=lambda: f"nk{os.getpid()}")
    loss: dict[str, float] = field(default_factory=dict)

    @property
    def kit(self) -> str:
        return f"{self.prefix}-kit"

    @property
    def net(self) -> str:
        return f"{self.prefix}-net"

    def table(self, uplink: str) -> int:
        return 101 + list(self.uplinks).index(uplink)

    def address(self, uplink: str) -> str:
        """The kit's address on an uplink (what the far side sees as the source)."""
        return f"10.91.{self.table(uplink) - 100}.2"

    def __enter__(self) -> NetKit:
        self.close()
        ip("netns", "add", self.kit)
        ip("netns", "add", self.net)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        for ns in (self.kit, self.net):
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.net, "addr", "add", f"{EDGE}/32", "dev", "lo")
        for uplink in self.uplinks:
            n, table = self.table(uplink) - 100, self.table(uplink)
            ip("link", "add", uplink, "netns", self.kit, "type", "veth",
               "peer", "name", f"up-{uplink}", "netns", self.net)
            ip("-n", self.kit, "addr", "add", f"10.91.{n}.2/24", "dev", uplink)
            ip("-n", self.net, "addr", "add", f"10.91.{n}.1/24", "dev", f"up-{uplink}")
            ip("-n", self.kit, "link", "set", uplink, "up")
            ip("-n", self.net, "link", "set", f"up-{uplink}", "up")
            gateway = f"10.91.{n}.1"
            ip("-n", self.kit, "route", "add", "default", "via", gateway, "dev", uplink, "metric", str(table))
            ip("-n", self.kit, "route", "add", "default", "via", gateway, "dev", uplink, "table", str(table))
        ip("-n", self.kit, "rule", "add", "priority", "900", "lookup", "main", "suppress_prefixlength", "0")
        ip("-n", self.kit, "rule", "add", "priority", "1000", "lookup", str(self.table(self.uplinks[0])))

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for ns in (self.kit, self.net):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def in_kit(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.kit, *argv]

    def in_net(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.net, *argv]

    def cut(self, uplink: str) -> None:
        """Take the far end down: the kit's interface loses carrier."""
        ip("-n", self.net, "link", "set", f"up-{uplink}", "down")

    def restore(self, uplink: str) -> None:
        ip("-n", self.net, "link", "set", f"up-{uplink}", "up")

    def impair(self, uplink: str, loss_pct: float) -> None:
        """Drop `loss_pct` % of what the kit sends over `uplink` (100: a silent blackhole)."""
        self.loss[uplink] = loss_pct
        self._apply_loss()

    def clear(self, uplink: str) -> None:
        self.loss.pop(uplink, None)
        self._apply_loss()

    def _apply_loss(self) -> None:
        rules = "".join(f'    oifname "{u}" ' + ("" if pct >= 100 else
                        f"numgen random mod 100 < {round(pct)} ") + "drop\n" for u, pct in self.loss.items())
        ruleset = ("table inet nomadkit_lab\ndelete table inet nomadkit_lab\n"
                   "table inet nomadkit_lab {\n  chain out {\n"
                   "    type filter hook output priority 0; policy accept;\n" + rules + "  }\n}\n")
        done = subprocess.run(self.in_kit(["nft", "-f", "-"]), input=ruleset, text=True,
                              capture_output=True)
        if done.returncode:
            raise RuntimeError(f"nft refused the loss rules: {done.stderr.strip()}\n{ruleset}")

    def active_rule(self) -> str:
        out = subprocess.run(["ip", "-n", self.kit, "rule", "show", "priority", "1000"],
                             check=True, capture_output=True, text=True).stdout
        return out.strip()


# A stream stand-in: numbered UDP datagrams every 10 ms, routed per packet like SRT's socket.
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
seq = 0
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        s.sendto(seq.to_bytes(8, "big"), (sys.argv[1], 5000))
    except OSError:
        pass
    seq += 1
    time.sleep(0.01)
"""

# The lab-side listener: one line per datagram: arrival time, sequence number, source address.
LISTENER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5000))
s.settimeout(float(sys.argv[2]))
out = open(sys.argv[3], "w", buffering=1)
try:
    while True:
        data, (src, _) = s.recvfrom(64)
        out.write(f"{time.time():.4f} {int.from_bytes(data, 'big')} {src}\\n")
except socket.timeout:
    pass
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def longest_gap(arrivals: Iterable[float]) -> float:
    """The longest silence between consecutive arrival times (datagrams at a listener, HLS segments
    at the relay): what a receiver went without across a failover. Shared by the namespace tests,
    the failover bench and the lab's agent acceptance, so all three measure it the same way."""
    return max((b - a for a, b in itertools.pairwise(sorted(arrivals))), default=0.0)
