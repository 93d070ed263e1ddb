"""The lab's "internet": a network namespace with one tap per kit uplink, and the way to the cloud.

Address scheme (import these, never retype them):
- every kit uplink is its own /24 in carrier-grade NAT space, as a 5G modem or a satellite
  terminal would hand out: uplink `u` (0 wwan0, 1 wwan1, 2 sat0, …) of kit `k` (0, 1, …) is
  `100.(64+u).k.0/24`, the lab-side gateway `.1`, the kit `.2` (by DHCP from the lab);
- the cloud is one address, `CLOUD_ADDRESS` (198.18.0.1, the RFC 2544 test range), reachable
  from a kit through ANY of its uplinks. Packets to it reach the services the local cloud runs
  on this machine's loopback (same port: `CLOUD_ADDRESS:8080` is `127.0.0.1:8080`): the
  namespace routes them over a veth pair to the root namespace, where one nftables DNAT rule
  (with `route_localnet` on that veth only) hands them to 127.0.0.1. The namespace masquerades
  them first, so the root namespace needs no route back to the kits;
- DNS on each gateway answers `cloud.lab` with `CLOUD_ADDRESS` and nothing else (no upstream);
- NTP to `CLOUD_ADDRESS` is answered inside the namespace by a chronyd serving this machine's
  clock (it never sets it), so lab kits keep true time as real kits do from the pool.
Everything lives in the namespace `NETNS`; deleting it (`nomadkit lab down`) removes the taps,
the veth pair and its routes; the root-namespace nftables table is deleted with it.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nomadkit.errors import UserError

NETNS = "nomadkit-lab"
CLOUD_ADDRESS = "198.18.0.1"
CLOUD_NAME = "cloud.lab"
LAB_VETH_ADDRESS = "198.18.0.2"
VETH_PREFIX = 30
HOST_VETH = "nklab-cloud"
LAB_VETH = "cloud0"
NFT_TABLE = "nomadkit_lab"
DEFAULT_UPLINKS = ("wwan0", "wwan1", "sat0")


@dataclass(frozen=True)
class UplinkNet:
    """One kit uplink's wiring: the tap in the lab namespace and the addresses either side."""

    kit: str
    name: str
    kit_index: int
    uplink_index: int
    mac: str

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"100.{64 + self.uplink_index}.{self.kit_index}.0/24")

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def address(self) -> str:
        return str(self.network.network_address + 2)

    @property
    def tap(self) -> str:
        """Lab-side tap name: short (IFNAMSIZ 15) and unique per kit and uplink."""
        return f"nk{self.kit_index}-{self.name}"[:15]

    @property
    def tap_mac(self) -> str:
        """Fixed per kit and uplink, so a kit resumed from a snapshot keeps valid ARP entries."""
        return f"52:54:00:fe:{self.kit_index:02x}:{self.uplink_index:02x}"


def lab_mac(kit_index: int, nic_index: int) -> str:
    """Deterministic guest MAC for a lab kit's NIC (nic 0 is management, uplinks from 1)."""
    return f"52:54:00:4e:{kit_index:02x}:{nic_index:02x}"


def ip(*args: str, netns: bool = True) -> str:
    """Run `ip` (in the lab namespace by default); a failure says which command and why."""
    cmd = ["ip", *(["-n", NETNS] if netns else []), *args]
    return sh(cmd)


def sh(cmd: list[str], input: str | None = None) -> str:
    proc = subprocess.run(cmd, text=True, capture_output=True, input=input)
    if proc.returncode != 0:
        raise UserError(f"lab network: `{' '.join(cmd)}` failed: {proc.stderr.strip()}\n"
                        "the lab needs root (network namespaces, taps, nftables); "
                        "`nomadkit lab down` clears a half-made lab")
    return proc.stdout


def netns_exists() -> bool:
    return Path(f"/run/netns/{NETNS}").exists()


def create_namespace() -> None:
    """The namespace, its forwarding, the veth to the root namespace and the NAT to loopback."""
    sh(["ip", "netns", "add", NETNS])
    ip("link", "set", "lo", "up")
    sh(["ip", "netns", "exec", NETNS, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    ip("link", "add", HOST_VETH, "type", "veth", "peer", "name", LAB_VETH, "netns", NETNS,
       netns=False)
    ip("addr", "add", f"{CLOUD_ADDRESS}/{VETH_PREFIX}", "dev", HOST_VETH, netns=False)
    ip("link", "set", HOST_VETH, "up", netns=False)
    ip("addr", "add", f"{LAB_VETH_ADDRESS}/{VETH_PREFIX}", "dev", LAB_VETH)
    ip("link", "set", LAB_VETH, "up")
    sh(["sysctl", "-qw", f"net.ipv4.conf.{HOST_VETH}.route_localnet=1"])
    sh(["nft", "-f", "-"], input=root_ruleset())
    sh(["ip", "netns", "exec", NETNS, "nft", "-f", "-"], input=lab_ruleset())


def root_ruleset() -> str:
    """Root namespace: packets for the cloud address arriving from the lab go to loopback."""
    return f"""table ip {NFT_TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "{HOST_VETH}" ip daddr {CLOUD_ADDRESS} dnat to 127.0.0.1
    }}
}}
"""


def lab_ruleset() -> str:
    """Lab namespace: kits reach only the cloud; their traffic leaves as the veth address; their
    NTP stays in the namespace, with the lab's time server."""
    return f"""table ip {NFT_TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {CLOUD_ADDRESS} udp dport 123 dnat to {LAB_VETH_ADDRESS}
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        oifname "{LAB_VETH}" ip daddr {CLOUD_ADDRESS} accept
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{LAB_VETH}" masquerade
    }}
}}
"""


def add_tap(uplink: UplinkNet) -> None:
    """A persistent tap for one kit uplink, with its gateway address, up."""
    ip("tuntap", "add", "dev", uplink.tap, "mode", "tap")
    ip("link", "set", uplink.tap, "address", uplink.tap_mac)
    ip("addr", "add", f"{uplink.gateway}/24", "dev", uplink.tap)
    ip("link", "set", uplink.tap, "up")


def dnsmasq_config(uplinks: list[UplinkNet], run_dir: Path) -> str:
    """DHCP (each kit uplink always gets its .2) and a DNS that knows only the cloud."""
    lines = [
        "no-resolv", "no-hosts", "bind-interfaces", "dhcp-authoritative", "log-dhcp",
        f"address=/{CLOUD_NAME}/{CLOUD_ADDRESS}",
        f"dhcp-leasefile={run_dir / 'dnsmasq.leases'}",
        f"pid-file={run_dir / 'dnsmasq.pid'}",
        f"log-facility={run_dir / 'dnsmasq.log'}",
    ]
    for u in uplinks:
        lines += [f"interface={u.tap}",
                  f"dhcp-range=set:{u.tap},{u.address},{u.address},255.255.255.0,1h"]
    return "\n".join(lines) + "\n"


def chrony_config(run_dir: Path) -> str:
    """The lab's time server: this machine's clock served to the kits, never adjusted."""
    return "\n".join([
        "# nomadkit lab time server (run as `chronyd -x`: it serves the clock, never sets it)",
        "port 123", f"bindaddress {LAB_VETH_ADDRESS}", "cmdport 0", "local stratum 8",
        "allow 100.64.0.0/10", f"pidfile {run_dir / 'chronyd.pid'}",
    ]) + "\n"


def delete_namespace() -> None:
    """Remove the namespace (taps, veth, routes go with it) and the root-namespace NAT table."""
    if netns_exists():
        subprocess.run(["ip", "netns", "del", NETNS], check=False, capture_output=True)
    subprocess.run(["ip", "link", "del", HOST_VETH], check=False, capture_output=True)
    subprocess.run(["nft", "delete", "table", "ip", NFT_TABLE], check=False,
                   capture_output=True)
