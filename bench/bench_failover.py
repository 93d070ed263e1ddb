"""Failover: dead-link detection and stream interruption, nomadkit's agent vs two baselines.

One kit network in two namespaces (`nomadkit.netkit.NetKit`: veth uplinks wwan0, wwan1, sat0
with the uplinks role's routing). In the same run, on the same links, three streams of numbered
datagrams (one every 10 ms) go from the kit to one receiver:
  - nomadkit: routed by rule 1000, which the real agent (`python -m nomadkit.agent`, the demo
    tour's settings as the agent role renders them) moves when it finds wwan0 dead or degraded;
  - SRT-bonding-style 4 s peer-idle timeout, and a 5 s ping check (bench/baselines.py): senders
    bound to wwan0 that move themselves to wwan1 when their detector fires.
Then wwan0 fails: a hard cut (far end down: no carrier), or a degrading link (loss on what the kit
sends over wwan0 rising 20 % -> 40 % -> 60 % -> 80 % -> 100 %, one step every 2 s). Detection is
the time from the failure to the switch; interruption is what the receiver saw: the longest gap
between datagrams, and the datagrams lost (x 10 ms = seconds of stream lost).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import Result, Spread, Table, described, ratio
from nomadkit import ROOT
from nomadkit.netkit import EDGE, SENDER, NetKit, longest_gap, python
from nomadkit.roles.agent import agent_config
from nomadkit.tour import load_tour

TITLE = "Failover: dead-link detection and stream interruption"
UPLINKS = ("wwan0", "wwan1", "sat0")
STREAMS = {5000: "nomadkit agent", 5001: "SRT-bonding-style 4 s idle timeout",
           5002: "5 s ping check"}
BASELINES = {5001: "idle", 5002: "ping"}
RAMP = (20, 40, 60, 80, 100)
RAMP_STEP_S = 2.0
RUN_S = 24.0  # per trial: the slowest detector (ping on a degrading link) needs ~15 s


def kit_agent(netkit: NetKit, folder: Path, cloud_url: str | None = None) -> subprocess.Popen:
    """The agent with the demo tour's kit-a settings, probing the namespace edge."""
    tour = load_tour(ROOT / "tours" / "demo.yaml")
    config = agent_config(tour, tour.kit("kit-a"), None) | {
        "probe_host": EDGE, "probe_port": 80, "state_dir": str(folder / "state"),
        "run_dir": str(folder / "run"), "http_bind": "127.0.0.1", "recordings_dir": str(folder),
        "systemctl": ["true"], "windows": [], "ups": "none@localhost", "cloud_url": cloud_url}
    (folder / "agent.json").write_text(json.dumps(config))
    proc = subprocess.Popen(netkit.in_kit([sys.executable, "-m", "nomadkit.agent", "--config",
                                           str(folder / "agent.json")]),
                            stdout=(folder / "agent.log").open("w"), stderr=subprocess.STDOUT)
    return proc


def agent_status(folder: Path) -> dict[str, Any]:
    path = folder / "run" / "status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def wait_healthy(proc: subprocess.Popen, folder: Path) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited: {(folder / 'agent.log').read_text()[-2000:]}")
        status = agent_status(folder)
        if status.get("active") == "wwan0" and all(u["state"] == "healthy" and u["rtt_ms"] is not None
                                                   for u in status["uplinks"].values()):
            return
        time.sleep(0.2)
    raise RuntimeError(f"agent never saw all uplinks healthy: {json.dumps(agent_status(folder))[:1000]}")


def trial(scenario: str, folder: Path) -> dict[int, dict[str, float | None]]:
    """One failure of wwan0 with all three streams running; per stream: detection, gap, lost."""
    with NetKit(UPLINKS, prefix="nkbfo") as netkit:
        agent = kit_agent(netkit, folder)
        procs: list[subprocess.Popen] = [agent]
        try:
            wait_healthy(agent, folder)
            arrivals = folder / "receiver.txt"
            procs.append(subprocess.Popen(netkit.in_net([
                sys.executable, "-m", "bench.baselines", "receive", EDGE, str(RUN_S + 3), str(arrivals),
                *map(str, STREAMS)]), cwd=ROOT))
            time.sleep(0.3)
            procs.append(subprocess.Popen(netkit.in_kit(python(SENDER, EDGE, str(RUN_S)))))
            baseline_out = {port: (folder / f"baseline-{port}.txt").open("w") for port in BASELINES}
            procs += [subprocess.Popen(netkit.in_kit([
                sys.executable, "-m", "bench.baselines", policy, EDGE, str(port), "wwan0", "wwan1",
                str(RUN_S)]), cwd=ROOT, stdout=baseline_out[port]) for port, policy in BASELINES.items()]
            time.sleep(3)  # steady streams; the ping baseline has seen its link healthy
            failed_at = time.time()
            if scenario == "hard cut":
                netkit.cut("wwan0")
            else:
                for loss in RAMP:
                    netkit.impair("wwan0", loss_pct=loss)
                    time.sleep(RAMP_STEP_S)
            for proc in procs[1:]:
                proc.wait(RUN_S + 30)
            for out in baseline_out.values():
                out.close()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(10)
        switched = {5000: next((e["at"] for e in agent_status(folder).get("events", [])
                                if e["event"] == "switch" and e.get("frm") == "wwan0"), None)}
        for port in BASELINES:
            lines = (folder / f"baseline-{port}.txt").read_text().split()
            switched[port] = float(lines[1]) if lines[:1] == ["switch"] else None
        rows = [line.split() for line in arrivals.read_text().splitlines()]
        figures: dict[int, dict[str, float | None]] = {}
        for port in STREAMS:
            seen = [(float(t), int(seq)) for t, p, seq, _ in rows if int(p) == port]
            before = max(seq for t, seq in seen if t < failed_at)
            after = sorted(t for t, seq in seen if t >= failed_at - 0.05)
            last_seq = max(seq for _, seq in seen)
            received_after = sum(1 for _, seq in seen if seq > before)
            figures[port] = {
                "detection_s": None if switched[port] is None else switched[port] - failed_at,
                "longest_gap_s": longest_gap(after),
                "lost_s": (last_seq - before - received_after) * 0.01,
            }
        return figures


def run(quick: bool) -> Result:
    repeats = {"hard cut": 1 if quick else 3, "degrading link": 1 if quick else 2}
    found: dict[tuple[str, int], list[dict[str, float | None]]] = {}
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-failover-") as scratch:
        for scenario, count in repeats.items():
            for i in range(count):
                folder = Path(scratch) / f"{scenario.replace(' ', '-')}-{i}"
                folder.mkdir()
                print(f"bench failover: {scenario} {i + 1}/{count}", file=sys.stderr)
                for port, figures in trial(scenario, folder).items():
                    found.setdefault((scenario, port), []).append(figures)
    tables, figures, medians = [], {}, {}
    for scenario in repeats:
        table = Table(f"{scenario}: seconds (min / median / max over {repeats[scenario]} runs)",
                      ["detector", "detection min", "median", "max", "longest gap at receiver (median)",
                       "stream lost, s (median)", "detection vs nomadkit"])
        for port, name in STREAMS.items():
            runs = found[(scenario, port)]
            detections = [r["detection_s"] for r in runs if r["detection_s"] is not None]
            missed = len(runs) - len(detections)
            spread = Spread.of(detections) if detections else None
            gap = Spread.of(r["longest_gap_s"] for r in runs).median
            lost = Spread.of(r["lost_s"] for r in runs).median
            medians[(scenario, port)] = spread.median if spread else None
            ours = medians[(scenario, 5000)]
            cells = spread.cells() if spread else ["never", "never", "never"]
            if missed and spread:
                cells[2] += f" ({missed} run(s) never switched)"
            table.rows.append([name, *cells, f"{gap:.2f}", f"{lost:.2f}",
                               "" if port == 5000 or not spread or not ours else ratio(spread.median, ours)])
            figures[f"{scenario}/{name}"] = runs
        tables.append(table)
    tour = load_tour(ROOT / "tours" / "demo.yaml")
    a = tour.kit("kit-a").agent
    parts = []
    for scenario in repeats:
        ours = medians[(scenario, 5000)]
        others = ", ".join(f"{STREAMS[p]} {medians[(scenario, p)]:.1f} s" if medians[(scenario, p)]
                           is not None else f"{STREAMS[p]} never" for p in BASELINES)
        parts.append(f"{scenario}: nomadkit detects in {ours:.2f} s vs {others}" if ours is not None
                     else f"{scenario}: nomadkit never switched")
    return Result(
        title=TITLE,
        measured=described(__doc__),
        on=(f"network namespaces on this host (real kernel routing, veth links, nftables loss); agent "
            f"settings from the demo tour: probe every {a.probe_interval_ms} ms, timeout "
            f"{a.probe_timeout_ms} ms, dead after {a.dead_after_lost} lost, degraded above "
            f"{a.degraded_loss_pct:g} % loss over {a.window} probes"),
        summary="; ".join(parts),
        tables=tables, figures=figures)
