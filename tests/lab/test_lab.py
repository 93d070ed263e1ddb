"""The lab's promises, checked on booted kits: SSH, named uplinks, the cloud through every
uplink, link cuts the guest feels, impairments the guest measures, a working pyinfra inventory."""

from __future__ import annotations

import http.server
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from nomadkit.lab.lab import Lab
from nomadkit.lab.net import CLOUD_ADDRESS, CLOUD_NAME

pytestmark = pytest.mark.lab

KIT = "kit-a"  # the session lab runs the demo tour's kits
PAYLOAD = b"x" * 200_000


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAYLOAD if self.path == "/big" else b"hello from the cloud\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def cloud_port() -> Iterator[int]:
    """A stand-in cloud service on this machine's loopback, as the local cloud runs them."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def on_kit(lab: Lab, command: str, kit: str = KIT) -> str:
    done = lab.ssh(kit, command)
    assert done.returncode == 0, f"{kit}: `{command}` failed: {done.stderr}"
    return done.stdout


def ping_ms(lab: Lab, uplink: str, count: int = 8) -> list[float]:
    """Round-trip times from the kit to its lab gateway on one uplink."""
    gateway = lab.uplink(KIT, uplink)["gateway"]
    out = on_kit(lab, f"ping -n -q -c {count} -i 0.2 -I {uplink} {gateway} >/dev/null; "
                      f"ping -n -c {count} -i 0.2 -I {uplink} {gateway}")
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", out)]


def test_every_kit_accepts_ssh_by_key_only(lab: Lab) -> None:
    for name in lab.state()["kits"]:
        assert on_kit(lab, "hostname", kit=name).strip() == name
        sshd = on_kit(lab, "sshd -T", kit=name)
        assert "passwordauthentication no" in sshd
        assert "permitrootlogin without-password" in sshd


def test_uplinks_are_named_by_mac(lab: Lab) -> None:
    for name, kit in lab.state()["kits"].items():
        links = json.loads(on_kit(lab, "ip -j link show", kit=name))
        macs = {link["ifname"]: link.get("address") for link in links}
        for uplink, info in kit["uplinks"].items():
            assert macs.get(uplink) == info["mac"], f"{name}: {uplink} missing or wrong MAC"
        assert macs.get("mgmt0") == kit["mgmt_mac"]


def test_cloud_is_reachable_through_every_uplink(lab: Lab, cloud_port: int) -> None:
    for uplink in ("wwan0", "wwan1", "sat0"):
        body = on_kit(lab, f"curl -sS --max-time 20 --interface {uplink} "
                           f"http://{CLOUD_ADDRESS}:{cloud_port}/")
        assert body == "hello from the cloud\n", uplink


def test_cloud_name_resolves_on_the_kit(lab: Lab) -> None:
    assert CLOUD_ADDRESS in on_kit(lab, f"getent hosts {CLOUD_NAME}")


def test_cutting_wwan0_takes_its_carrier_away(lab: Lab) -> None:
    def carrier() -> str:
        return on_kit(lab, "cat /sys/class/net/wwan0/carrier 2>/dev/null || echo 0").strip()

    def wait_for(want: str) -> str:
        got = carrier()
        for _ in range(20):
            if got == want:
                break
            time.sleep(0.5)
            got = carrier()
        return got

    assert carrier() == "1"
    lab.link(KIT, "wwan0", up=False)
    try:
        assert wait_for("0") == "0", "the kit still sees carrier on wwan0 after the cut"
        assert lab.status()["kits"][KIT]["uplinks"]["wwan0"]["link"] == "down"
        # the other uplinks are untouched
        assert on_kit(lab, "cat /sys/class/net/wwan1/carrier").strip() == "1"
    finally:
        lab.link(KIT, "wwan0", up=True)
    assert wait_for("1") == "1", "wwan0's carrier did not come back"


def test_impaired_wwan0_shows_the_added_delay_inside_the_kit(lab: Lab) -> None:
    before = statistics.median(ping_ms(lab, "wwan0"))
    lab.impair(KIT, "wwan0", delay_ms=100)
    try:
        during = statistics.median(ping_ms(lab, "wwan0"))
        other = statistics.median(ping_ms(lab, "wwan1"))
    finally:
        lab.impair(KIT, "wwan0")
    added = during - before
    print(f"\nwwan0 ping: {before:.1f} ms clear, {during:.1f} ms with 100 ms each way "
          f"(added {added:.1f} ms); wwan1 meanwhile {other:.1f} ms")
    assert added >= 190, f"a 100 ms each-way delay added only {added:.1f} ms to the RTT"
    assert other < during - 150, "the delay leaked onto wwan1"


def test_full_loss_on_wwan0_leaves_wwan1_working(lab: Lab) -> None:
    gw0, gw1 = (lab.uplink(KIT, u)["gateway"] for u in ("wwan0", "wwan1"))
    lab.impair(KIT, "wwan0", loss_pct=100)
    try:
        lost = lab.ssh(KIT, f"ping -n -c 3 -W 1 -I wwan0 {gw0}")
        kept = lab.ssh(KIT, f"ping -n -c 3 -W 1 -I wwan1 {gw1}")
    finally:
        lab.impair(KIT, "wwan0")
    assert "0 received" in lost.stdout
    assert kept.returncode == 0


def test_rate_limit_slows_a_download_on_that_uplink(lab: Lab, cloud_port: int) -> None:
    url = f"http://{CLOUD_ADDRESS}:{cloud_port}/big"
    lab.impair(KIT, "sat0", rate_kbit=800)
    try:
        out = on_kit(lab, f"curl -sS -o /dev/null --max-time 60 --interface sat0 "
                          f"-w '%{{size_download}} %{{time_total}}' {url}")
    finally:
        lab.impair(KIT, "sat0")
    size, seconds = out.split()
    kbit = int(size) * 8 / 1000 / float(seconds)
    print(f"\nsat0 at 800 kbit/s: {size} bytes in {float(seconds):.2f} s = {kbit:.0f} kbit/s")
    assert int(size) == len(PAYLOAD)
    assert kbit <= 800 * 1.1, f"the rate limit let {kbit:.0f} kbit/s through"


def test_status_reports_running_kits_and_memory(lab: Lab) -> None:
    out = subprocess.run([sys.executable, "-m", "nomadkit.cli", "lab", "status", "--json"],
                         capture_output=True, text=True, check=True).stdout
    status = json.loads(out)
    assert status["accel"] in ("kvm", "tcg")
    for name, kit in status["kits"].items():
        assert kit["running"], name
        assert kit["rss_mb"] > 100, f"{name}: implausible VM memory {kit['rss_mb']} MiB"
        print(f"\n{name}: {kit['rss_mb']:.0f} MiB resident, up in {kit['boot_s']} s "
              f"({status['accel']})")


def test_pyinfra_reaches_kits_through_the_lab_inventory(lab: Lab) -> None:
    pyinfra = [sys.executable, "-m", "pyinfra", "-y", str(lab.inventory), "exec", "--",
               "hostname"]
    done = subprocess.run(pyinfra, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr  # pyinfra prints command output on stderr
    assert done.returncode == 0, output
    for name in lab.state()["kits"]:
        assert re.search(rf"\[{name}\]\s+{name}\b", output), output
