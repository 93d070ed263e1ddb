"""The kit deploy on booted lab kits: converges, stays converged, repairs drift, survives a kill
and a reboot, and the kits do what the tour says (uplinks, firewall, SSH, cache, encoder, power).

The kits are the session's `nomadkit up` of the demo's first stop (tests/lab/conftest.py): the
tour as the lab plays it, deployed against the real local cloud, which the kits reach through
their uplinks at the lab's cloud address. Change counts are pyinfra's own results
(nomadkit.deploy.runner). Figures (first apply, no-change re-run, 1 vs 2 kits) are printed, not
asserted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nomadkit import ROOT
from nomadkit.cloud import local
from nomadkit.deploy import write_tree
from nomadkit.deploy.runner import KitResult
from nomadkit.lab.lab import free_port
from nomadkit.lab.testing import LabTour, kept_figures
from nomadkit.roles import encoder, power

pytestmark = pytest.mark.lab

FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[dict[str, Any]]:
    with kept_figures("kit-deploy", "kit deploy figures", FIGURES) as kept:
        yield kept


@pytest.fixture(scope="module")
def first(tour_up: dict) -> dict[str, KitResult]:
    """The first deploy of both kits together: `nomadkit up`'s, from the lab's fresh kits."""
    FIGURES["first apply, 2 kits together (wall s)"] = tour_up["deploy_s"]
    for name, r in tour_up["deploy"].items():
        FIGURES[f"first apply {name} (s)"] = round(r.seconds, 1)
    return tour_up["deploy"]


def test_first_deploy_of_two_kits_succeeds(first: dict[str, KitResult]) -> None:
    assert len(first) == 2
    for name, result in first.items():
        assert (result.status, result.error) == ("ok", ""), name
        assert result.operations > 50, name


def test_second_run_reports_zero_changes(kits: LabTour, first: dict[str, KitResult]) -> None:
    t0 = time.monotonic()
    results = kits.deploy()
    FIGURES["no-change re-run, 2 kits together (wall s)"] = round(time.monotonic() - t0, 1)
    for name, result in results.items():
        FIGURES[f"no-change re-run {name} (s)"] = round(result.seconds, 1)
        assert result.status == "ok", result.error
        assert (result.changed, result.changes) == (0, []), name
        assert result.operations > 50


@pytest.mark.extended
def test_one_kit_alone_reports_zero_changes(kits: LabTour, first: dict[str, KitResult]) -> None:
    t0 = time.monotonic()
    one = kits.deploy(kit=kits.names[0])
    FIGURES["no-change re-run, 1 kit alone (wall s)"] = round(time.monotonic() - t0, 1)
    assert one[kits.names[0]].changed == 0


def test_uplinks_have_their_connections_metrics_and_routing_tables(kits: LabTour, first: Any) -> None:
    for name in kits.names:
        active = kits.on(name, "nmcli -t -f NAME,DEVICE connection show --active")
        for uplink in ("wwan0", "wwan1", "sat0"):
            assert f"nk-{uplink}:{uplink}" in active.split(), active
        routes = kits.on(name, "ip -4 route show default")
        metrics = {m[0]: int(m[1]) for m in re.findall(r"dev (\w+) .*metric (\d+)", routes)}
        assert metrics == {"wwan0": 101, "wwan1": 102, "sat0": 103}, routes
        assert "900:\tfrom all lookup main suppress_prefixlength 0" in kits.on(name, "ip -4 rule show")
        for uplink in ("wwan0", "wwan1", "sat0"):
            table = kits.on(name, f"ip -4 route show table nk-{uplink}")
            assert re.search(rf"default via [\d.]+ dev {uplink}", table), table


def test_firewall_on_the_kit_is_the_rendered_ruleset(kits: LabTour, first: Any, tmp_path: Path) -> None:
    for kit in kits.tour.kits:
        write_tree(kits.tour, kit, kits.endpoints, tmp_path / kit.name)
        rendered = tmp_path / kit.name / "etc/nftables.conf"
        # listed as the kit lists it: without /etc/protocols (no netbase), protocols are numbers
        want = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
                               "mount --bind /dev/null /etc/protocols && "
                               f"nft -f {rendered} && nft list table inet nomadkit"],
                              capture_output=True, text=True, check=True).stdout
        assert kits.on(kit.name, "nft list table inet nomadkit") == want


def test_ssh_by_password_is_refused(kits: LabTour, first: Any) -> None:
    for name in kits.names:
        port = kits.lab.kit(name)["ssh_port"]
        done = subprocess.run(["ssh", "-p", str(port), "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no",
                               "-o", "PreferredAuthentications=password,keyboard-interactive",
                               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                               "root@127.0.0.1", "true"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 255
        assert "Permission denied (publickey)" in done.stderr, done.stderr
        assert "passwordauthentication no" in kits.on(name, "sshd -T").split("\n")


def test_cache_serves_primed_assets_that_match_the_manifest(kits: LabTour, first: Any) -> None:
    for kit in kits.tour.kits:
        for asset in kit.cache:
            headers = kits.on(kit.name, f"curl -fsS -o /tmp/asset -D - http://127.0.0.1/{asset.path}")
            assert "X-Nomadkit-Cache: primed" in headers
            assert kits.on(kit.name, "sha256sum /tmp/asset").split()[0] == asset.sha256
    # kit-b's manifest has no style.css: it comes through the CDN once, then from nginx's cache
    kit = kits.tour.kits[1]
    assert "preview/style.css" not in [a.path for a in kit.cache]
    first_get = kits.on(kit.name, "curl -fsS -o /tmp/style -D - http://127.0.0.1/preview/style.css")
    second_get = kits.on(kit.name, "curl -fsS -o /tmp/style -D - http://127.0.0.1/preview/style.css")
    assert "X-Nomadkit-Cache: MISS" in first_get or "X-Nomadkit-Cache: HIT" in first_get
    assert "X-Nomadkit-Cache: HIT" in second_get
    assert kits.tour.assets_dir
    want = hashlib.sha256((Path(kits.tour.assets_dir) / "preview/style.css").read_bytes()).hexdigest()
    assert kits.on(kit.name, "sha256sum /tmp/style").split()[0] == want


def wait_for_segments(kits: LabTour, kit: str, folder: str, count: int, timeout: float = 300) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        listed = kits.lab.ssh(kit, f"cat {folder}/segments.csv 2>/dev/null").stdout.split()
        if len(listed) >= count or time.monotonic() > deadline:
            return [line.split(",")[0] for line in listed]
        time.sleep(5)


def probe(path: str, *args: str, on: Callable[[str], str] | None = None) -> dict[str, Any]:
    """ffprobe's JSON about a media file, here or (with `on`) on a kit."""
    argv = ["ffprobe", "-v", "error", *args, "-of", "json", path]
    if on:
        return json.loads(on(" ".join(argv)))
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def test_encoder_records_segments_at_the_configured_size_and_bitrate_and_feeds_the_relay(
        kits: LabTour, first: Any) -> None:
    relay = local.LocalCloud.for_tour(kits.tour).hls / "live"
    for kit in kits.tour.kits:
        stream = kit.streams[0]
        folder = f"{kit.recordings_dir}/{stream.name}"
        live = encoder.unit("live", stream.name)
        assert kits.on(kit.name, f"systemctl is-active {live}").strip() == "active"
        segments = wait_for_segments(kits, kit.name, folder, 2)
        assert len(segments) >= 2, f"{kit.name}: only {segments} finished recording segments"
        segment = f"{folder}/{segments[-1]}"
        on_kit = functools.partial(kits.on, kit.name)
        video = next(s for s in probe(segment, "-show_streams", on=on_kit)["streams"]
                     if s["codec_type"] == "video")
        width, height = (int(n) for n in stream.resolution.split("x"))
        assert (video["codec_name"], video["width"], video["height"]) == ("h264", width, height)
        packets = probe(segment, "-select_streams", "v:0", "-show_entries", "packet=size,pts_time",
                        on=on_kit)["packets"]
        times = sorted(float(p["pts_time"]) for p in packets)
        kbps = sum(int(p["size"]) for p in packets) * 8 / (times[-1] - times[0]) / 1000
        progress = kits.on(kit.name, f"tail -n 12 /run/nomadkit-encoder/{stream.name}/progress")
        speed = re.findall(r"speed=\s*([\d.]+)x", progress)
        FIGURES[f"encoder {kit.name} {stream.resolution}@{stream.fps} speed (x real time)"] = (
            float(speed[-1]) if speed else None)
        FIGURES[f"encoder {kit.name} video kbps (configured {stream.bitrates_kbps[0]})"] = round(kbps)
        assert 0.7 * stream.bitrates_kbps[0] < kbps < 1.3 * stream.bitrates_kbps[0]
        at_relay = sorted((relay / stream.name).glob("seg*.ts"))
        assert at_relay, f"nothing of {stream.name} reached the relay ({relay / stream.name})"
        assert "video" in {s["codec_type"] for s in probe(str(at_relay[-1]), "-show_streams")["streams"]}


def test_battery_runtime_is_readable_for_the_agent(kits: LabTour, first: Any) -> None:
    for kit in kits.tour.kits:
        assert kits.on(kit.name, f"upsc {kit.agent.ups} battery.runtime 2>/dev/null").strip() == "5400"
        assert power.ups_name(kit) == kit.agent.ups.split("@")[0]


@pytest.mark.extended
def test_drift_is_shown_by_dry_and_repaired_by_the_next_run(kits: LabTour, first: Any) -> None:
    drifted, clean = kits.names
    kits.on(drifted, "echo 'pool drift.invalid iburst' >> /etc/chrony/chrony.conf && systemctl stop nginx")
    dry = kits.deploy(dry=True)
    assert dry[clean].changed == 0, dry[clean].changes
    assert dry[drifted].changed >= 2
    assert any("/etc/chrony/chrony.conf" in c for c in dry[drifted].changes), dry[drifted].changes
    assert any("nginx: enabled, running" in c for c in dry[drifted].changes), dry[drifted].changes
    assert "drift.invalid" in kits.on(drifted, "cat /etc/chrony/chrony.conf"), "--dry changed the kit"
    repaired = kits.deploy()
    assert repaired[drifted].status == "ok" and repaired[drifted].changed >= 2
    assert repaired[clean].changed == 0
    assert "drift.invalid" not in kits.on(drifted, "cat /etc/chrony/chrony.conf")
    assert kits.on(drifted, "systemctl is-active nginx chrony").split() == ["active", "active"]


@pytest.mark.extended
def test_a_killed_pyinfra_run_converges_on_the_next_run(kits: LabTour, first: Any) -> None:
    kit = kits.names[1]
    kits.on(kit, "rm -f /etc/nginx/conf.d/nomadkit-cache.conf /etc/nut/ups.conf /etc/chrony/chrony.conf "
                 "/etc/nomadkit/kit.json /usr/local/bin/nomadkit-encoder && rm -rf /var/lib/nomadkit/applied")
    proc = subprocess.Popen([sys.executable, "-m", "pyinfra", "-y", "inventories/tour.py", "deploys/kit.py",
                             "--limit", kit], cwd=ROOT, env=kits.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:  # killed after it put the nginx site, before nginx is reloaded
        seen.append(line)
        if "nginx: enabled, running" in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "pyinfra finished before it could be killed:\n" + "".join(seen)
    converged = kits.deploy(kit=kit)
    assert converged[kit].status == "ok", converged[kit].error
    assert converged[kit].changed > 0
    assert kits.deploy(kit=kit)[kit].changed == 0
    assert kits.on(kit, "systemctl is-active nginx chrony nut-driver@kit").split() == ["active"] * 3
    assert kits.on(kit, "ls /var/lib/nomadkit/applied | wc -l").strip() != "0"


@pytest.mark.extended
def test_pyinfra_used_directly_runs_the_same_deploy(kits: LabTour, first: Any) -> None:
    done = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "inventories/tour.py", "deploys/kit.py"],
                          cwd=ROOT, env=kits.env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr  # (pyinfra's summary has an "Error" column)


@pytest.mark.extended
def test_an_unreachable_kit_is_named_and_the_others_still_deploy(kits: LabTour, first: Any,
                                                                 tmp_path: Path) -> None:
    connect = json.loads(kits.connect.read_text())
    ghost = kits.names[0]
    connect[ghost] |= {"ssh_port": free_port(), "ssh_connect_timeout": 5}
    broken = tmp_path / "connect-ghost.json"
    broken.write_text(json.dumps(connect))
    results = kits.deploy(connect_file=broken)
    assert results[ghost].status == "unreachable"
    assert ghost in results[ghost].error
    other = kits.names[1]
    assert (results[other].status, results[other].changed) == ("ok", 0)


@pytest.mark.extended
def test_after_a_reboot_every_service_comes_back(kits: LabTour, first: Any) -> None:
    kit = kits.tour.kits[0]
    kits.lab.ssh(kit.name, "systemctl reboot", timeout=30)
    time.sleep(5)
    deadline = time.monotonic() + 300
    while kits.lab.ssh(kit.name, "systemctl is-system-running --wait", timeout=120).returncode not in (0, 1):
        assert time.monotonic() < deadline, f"{kit.name} did not come back over SSH"
        time.sleep(5)
    units = ["ssh", "NetworkManager", "nftables", "chrony", "nginx", "nut-driver@kit", "nut-server",
             "nut-monitor", "nomadkit-policy-routing", encoder.unit("live", kit.streams[0].name)]
    deadline = time.monotonic() + 120
    while (states := kits.lab.ssh(kit.name, f"systemctl is-active {' '.join(units)}").stdout.split()) \
            != ["active"] * len(units) and time.monotonic() < deadline:
        time.sleep(3)
    assert dict(zip(units, states, strict=True)) == dict.fromkeys(units, "active")
    assert "table inet nomadkit" in kits.on(kit.name, "nft list tables")
    assert "suppress_prefixlength 0" in kits.on(kit.name, "ip -4 rule show")
    assert kits.deploy(kit=kit.name)[kit.name].changed == 0


