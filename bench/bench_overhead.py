"""Management overhead: the bytes per hour the agent's probes and heartbeats cost on each uplink.

The real agent runs in the namespace kit (`nomadkit.netkit.NetKit`) with the demo tour's kit-a
settings, probing an accepting TCP listener at the edge address and posting heartbeats (plus
check-in sync and the revocation pull) to a stand-in cloud there. Nothing else runs. The
kit's interface counters are read before and after a bounded interval and scaled to an hour;
nftables counters in the kit namespace split the active uplink's bytes into probes and cloud
traffic. veth counters include a 14-byte Ethernet header per packet that a raw-IP modem does
not send, so the figures slightly overstate a real modem's cost.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from bench.bench_failover import kit_agent, wait_healthy
from bench.report import Result, Table, described
from nomadkit import ROOT
from nomadkit.netkit import EDGE, NetKit, python
from nomadkit.tour import load_tour

TITLE = "Management overhead on metered uplinks"
UPLINKS = ("wwan0", "wwan1", "sat0")
CLOUD_PORT = 8000

# The edge (accepts probes) and the cloud's kit endpoints (heartbeat, check-ins, revocations).
STANDIN = """
import http.server, json, socket, sys, threading
probe = socket.create_server((sys.argv[1], 80))
def accept():
    while True:
        conn, _ = probe.accept(); conn.close()
threading.Thread(target=accept, daemon=True).start()
class Cloud(http.server.BaseHTTPRequestHandler):
    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        self.answer({"revoked": []})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.answer({"recorded": [], "duplicate": []})
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Cloud).serve_forever()
"""

COUNTERS = f"""table inet nkbench {{
  counter probes {{}}
  counter cloud {{}}
  chain count {{
    type filter hook output priority 0; policy accept;
    oifname "wwan0" tcp dport 80 counter name probes
    oifname "wwan0" tcp dport {CLOUD_PORT} counter name cloud
  }}
  chain back {{
    type filter hook input priority 0; policy accept;
    iifname "wwan0" tcp sport 80 counter name probes
    iifname "wwan0" tcp sport {CLOUD_PORT} counter name cloud
  }}
}}
"""


def link_bytes(netkit: NetKit) -> dict[str, int]:
    links = json.loads(subprocess.run(["ip", "-n", netkit.kit, "-s", "-j", "link", "show"],
                                      check=True, capture_output=True, text=True).stdout)
    return {link["ifname"]: link["stats64"]["rx"]["bytes"] + link["stats64"]["tx"]["bytes"]
            for link in links if link["ifname"] in UPLINKS}


def nft_bytes(netkit: NetKit) -> dict[str, int]:
    found = json.loads(subprocess.run(netkit.in_kit(["nft", "-j", "list", "counters"]),
                                      check=True, capture_output=True, text=True).stdout)
    return {item["counter"]["name"]: item["counter"]["bytes"]
            for item in found["nftables"] if "counter" in item}


def per_hour(count: int, seconds: float) -> str:
    return f"{count * 3600 / seconds / 1e6:.2f}"


def run(quick: bool) -> Result:
    seconds = 20.0 if quick else 90.0
    tour = load_tour(ROOT / "tours" / "demo.yaml")
    settings = tour.kit("kit-a").agent
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-overhead-") as scratch, \
            NetKit(UPLINKS, prefix="nkbov") as netkit:
        folder = Path(scratch)
        standin = subprocess.Popen(netkit.in_net(python(STANDIN, EDGE, str(CLOUD_PORT))))
        agent = kit_agent(netkit, folder, cloud_url=f"http://{EDGE}:{CLOUD_PORT}")
        try:
            wait_healthy(agent, folder)
            subprocess.run(netkit.in_kit(["nft", "-f", "-"]), input=COUNTERS, text=True, check=True)
            start, start_links = time.monotonic(), link_bytes(netkit)
            time.sleep(seconds)
            span = time.monotonic() - start
            links, split = link_bytes(netkit), nft_bytes(netkit)
            status = json.loads((folder / "run" / "status.json").read_text())
        finally:
            for proc in (agent, standin):
                proc.terminate()
                proc.wait(10)
    if not status.get("sync", {}).get("ok"):
        raise RuntimeError(f"the agent never reached the stand-in cloud: {status.get('sync')}")
    used = {name: links[name] - start_links[name] for name in UPLINKS}
    table = Table(f"Measured over {span:.0f} s, scaled to one hour",
                  ["uplink", "role", "bytes measured", "MB per hour", "MB per 30-day month"])
    for name in UPLINKS:
        role = "active: probes + heartbeats + sync" if name == status["active"] else "standby: probes only"
        table.rows.append([name, role, str(used[name]), per_hour(used[name], span),
                           f"{used[name] * 3600 * 24 * 30 / span / 1e6:.0f}"])
    split_table = Table("Active uplink (wwan0) by traffic (nftables counters, IP bytes)",
                        ["traffic", "bytes measured", "MB per hour"])
    for name, what in (("probes", f"probes: TCP connect every {settings.probe_interval_ms} ms"),
                       ("cloud", f"heartbeat + sync every {settings.heartbeat_s} s")):
        split_table.rows.append([what, str(split[name]), per_hour(split[name], span)])
    active = used[status["active"]]
    return Result(
        title=TITLE,
        measured=described(__doc__),
        on=(f"network namespaces on this host; agent settings from the demo tour: probe every "
            f"{settings.probe_interval_ms} ms on each of {len(UPLINKS)} uplinks, heartbeat every "
            f"{settings.heartbeat_s} s; {span:.0f} s measured"),
        summary=(f"{per_hour(active, span)} MB/h on the active uplink, "
                 f"{per_hour(used[UPLINKS[-1]], span)} MB/h on a standby uplink "
                 f"(probes {per_hour(split['probes'], span)} MB/h, heartbeats and sync "
                 f"{per_hour(split['cloud'], span)} MB/h)"),
        tables=[table, split_table],
        figures={"seconds": span, "bytes": used, "split_bytes": split})
