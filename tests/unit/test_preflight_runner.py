"""The preflight runner: verdicts, GO / NO-GO, secrets kept out, drills run alone."""

from __future__ import annotations

import json
import threading
import time

import pytest

from nomadkit import ROOT
from nomadkit.preflight.checks import ALL_CHECKS
from nomadkit.preflight.report import Report, write
from nomadkit.preflight.runner import Check, Context, Failed, Skipped, Warned, run_all, run_one
from nomadkit.tour import load_tour

TOUR = load_tour(ROOT / "tours" / "demo.yaml")


def _ctx(**kw) -> Context:
    return Context(tour=TOUR, stop=TOUR.stops[0], endpoints=None, remotes={}, **kw)


def _check(id_: str, fn, **kw) -> Check:
    return Check(id_, id_, fn, **kw)


def test_all_passing_checks_make_go_and_failures_make_no_go() -> None:
    ok = _check("ok", lambda ctx, kit: {"kit": kit.name})
    report = run_all([ok], _ctx(), Report(TOUR.name, "alfama"))
    assert report.go and [r.evidence["kit"] for r in report.results] == ["kit-a", "kit-b"]

    def fails(ctx, kit):
        raise Failed("fix it", measured=3)

    report = run_all([ok, _check("bad", fails, per_kit=False)], _ctx(), Report(TOUR.name, "alfama"))
    assert not report.go
    bad = report.results[-1]
    assert (bad.id, bad.kit, bad.verdict, bad.hint, bad.evidence) == ("bad", None, "fail", "fix it",
                                                                       {"measured": 3})


def test_warnings_and_skips_do_not_block_but_are_reported() -> None:
    def warn(ctx, kit):
        raise Warned("battery low")

    def skip(ctx, kit):
        raise Skipped("no UPS on this kit")

    report = run_all([_check("w", warn), _check("s", skip)], _ctx(), Report(TOUR.name, "alfama"))
    assert report.go and report.counts() == {"pass": 0, "warn": 2, "fail": 0, "skip": 2}
    assert "SKIP" in report.to_markdown() and "no UPS on this kit" in report.to_markdown()


def test_a_crashing_check_is_a_failed_check_not_a_crashed_preflight() -> None:
    def crash(ctx, kit):
        raise KeyError("battery.runtime")

    report = run_all([_check("crash", crash), _check("ok", lambda c, k: {})], _ctx(),
                     Report(TOUR.name, "alfama"))
    assert [r.verdict for r in report.results] == ["fail", "fail", "pass", "pass"]
    assert "KeyError" in report.results[0].evidence["error"]


def test_secrets_never_reach_the_report(tmp_path) -> None:
    def leaky(ctx, kit):
        raise Failed("webhook said: bad secret whsec_s3cr3tvalue", header="t=1,v1=whsec_s3cr3tvalue")

    report = run_all([_check("leak", leaky, per_kit=False)], _ctx(secrets=["whsec_s3cr3tvalue"]),
                     Report(TOUR.name, "alfama"))
    paths = write(report, tmp_path, signature=None)
    for path in paths.values():
        assert "s3cr3t" not in path.read_text()
    assert json.loads(paths["json"].read_text())["verdict"] == "NO-GO"


def test_drills_run_alone_after_the_calm_checks() -> None:
    running, overlaps, order = [], [], []
    lock = threading.Lock()

    def tracked(name):
        def run(ctx, kit):
            with lock:
                running.append(name)
                if name == "drill" and len(running) > 1:
                    overlaps.append(list(running))
                order.append(name)
            with lock:
                running.remove(name)
            return {}
        return run

    checks = [_check("drill", tracked("drill"), exclusive=True), _check("calm", tracked("calm"))]
    report = run_all(checks, _ctx(), Report(TOUR.name, "alfama"))
    assert not overlaps and order.index("drill") > order.index("calm")
    assert [r.id for r in report.results] == ["drill", "drill", "calm", "calm"]  # the checks' order


def test_reports_are_signed_with_the_tour_key_and_tampering_shows(tmp_path) -> None:
    from nomadkit import tickets

    key = tickets.generate_ticket_key()
    report = run_all([_check("ok", lambda c, k: {"x": 1})], _ctx(), Report(TOUR.name, "alfama"))
    signature = tickets.sign_document(key, report.canonical())
    paths = write(report, tmp_path, signature)
    document = json.loads(paths["json"].read_text())
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    public = tickets.public_key_of(key)
    assert tickets.verify_document(public, canonical, paths["signature"].read_text())
    document["verdict"] = "GO" if document["verdict"] == "NO-GO" else "NO-GO"
    tampered = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert not tickets.verify_document(public, tampered, paths["signature"].read_text())


def test_preflight_lists_its_checks_and_refuses_unknown_stops() -> None:
    import subprocess
    import sys

    listed = subprocess.run([sys.executable, "-m", "nomadkit.cli", "preflight", "--list"],
                            capture_output=True, text=True, timeout=60)
    for check_id in ("clock.sync", "payments.e2e", "failover.drill", "cdn.fallback",
                     "door.checkin", "cache.primed", "rollback.armed", "power.battery"):
        assert check_id in listed.stdout
    done = subprocess.run([sys.executable, "-m", "nomadkit.cli", "preflight",
                           str(ROOT / "tours" / "demo.yaml"), "--stop", "porto"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no stop named 'porto'" in done.stderr
    assert "alfama" in done.stderr and "Traceback" not in done.stderr


class ClockKit:
    """A kit's shell as clock.sync sees it: its clock `offset_s` from this machine's, and what
    `chronyc -c tracking` answers (chrony stopped: an error line)."""

    def __init__(self, offset_s: float, tracking: str) -> None:
        self.offset_s, self.tracking = offset_s, tracking

    def output(self, command: str, **_: object) -> str:
        return f"{time.time() + self.offset_s:.6f}\n{self.tracking}"


SYNCED = "A1B2C3D4,198.18.0.1,3,1764320000.1,-0.000012,0.0,0.0,1.0,0.0,0.0,0.1,0.001,0.002,Normal"


@pytest.mark.parametrize(("offset_s", "tracking", "verdict", "words"), [
    (0.0, SYNCED, "pass", None),
    (600.0, "506 Cannot talk to daemon", "fail", "clock is +600"),
    (0.0, "506 Cannot talk to daemon", "warn", "chrony is not running"),
    (0.0, SYNCED.replace("Normal", "Not synchronised"), "warn", "not synchronised"),
])
def test_clock_check_reads_the_kits_clock_even_when_chrony_is_stopped(
        offset_s: float, tracking: str, verdict: str, words: str | None) -> None:

    tour = TOUR
    ctx = Context(tour, tour.stops[0], None, {"kit-a": ClockKit(offset_s, tracking)})  # type: ignore[dict-item]
    check = next(c for c in ALL_CHECKS if c.id == "clock.sync")
    result = run_one(check, ctx, tour.kit("kit-a"))
    assert result.verdict == verdict, result
    assert words is None or (result.hint and words in result.hint), result.hint


class StatusKit:
    """A kit whose agent wrote `status` to its status file just now."""

    def __init__(self, status: dict) -> None:
        self.status = status

    def output(self, command: str, **_: object) -> str:
        return json.dumps({**self.status, "at": time.time(), "ready": True}) + f"\n{time.time():.6f}"


def test_every_uplink_dead_is_no_go_with_its_own_hint() -> None:
    dead = {"active": "wwan0", "uplinks": {u: {"state": "dead"} for u in ("wwan0", "wwan1", "sat0")}}
    ctx = Context(TOUR, TOUR.stops[0], None, {"kit-a": StatusKit(dead)}, links=object())  # type: ignore[dict-item]
    check = next(c for c in ALL_CHECKS if c.id == "failover.drill")
    result = run_one(check, ctx, TOUR.kit("kit-a"))
    assert result.verdict == "fail" and result.hint and "every uplink is down" in result.hint, result
    assert result.evidence["uplinks"] == {"wwan0": "dead", "wwan1": "dead", "sat0": "dead"}
