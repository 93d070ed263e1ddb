"""Issue #7's acceptance of the kit agent on lab VMs: failover, a power cut mid-upload, the door.

The same stories as the namespace tier (tests/unit/test_agent_netns.py, test_agent_door.py,
test_agent_uploads.py), told again on QEMU kits deployed by `nomadkit up` (the `tour_up`
fixture) against the real local cloud. Failures are made outside the kit, as in the field: the
lab cuts a link's carrier or impairs its wire, and pulls the plug by killing the kit's QEMU.
Every outcome is read where it lands: the agent's status file over SSH (the preflight's own
read), HLS segments at the relay, the object in the recordings bucket, rows in the ledger.
Switch times come from the agent's own switch events (the kit's clock is chrony-synced to this
machine by the lab's time server). Figures are printed and kept in the cache (bench/agent-lab.json).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import shlex
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nomadkit import tickets
from nomadkit.agent.uploads import PART_SIZE
from nomadkit.cloud import local
from nomadkit.errors import UserError
from nomadkit.lab.lab import Lab
from nomadkit.lab.testing import kept_figures
from nomadkit.netkit import longest_gap
from nomadkit.preflight.checks import build_context
from nomadkit.preflight.network_checks import DRILL_TIMEOUT_S, MOVE_GOAL_S, agent_status, cut
from nomadkit.preflight.runner import Context, Failed
from nomadkit.remote import Remote, Unreachable
from nomadkit.roles.agent import STATE_DIR
from nomadkit.secrets import resolve
from nomadkit.status.cli import line

# Extended: minutes of drills on TCG kits, with a power cut; `make test-extended` runs them.
pytestmark = [pytest.mark.lab, pytest.mark.extended]

STOP = "alfama"
KIT = "kit-a"
PRIMARY, SECONDARY, SATELLITE = "wwan0", "wwan1", "sat0"

CLOCK_SLACK_S = 0.5  # kit and host clocks agree to milliseconds under chrony; this is generous
SETTLE_S = 180.0  # links just restored: DHCP again, then recover_after_s of good probes
STREAM_KBPS = 100.0  # well above the probes' few kbps: the stream (or uploads) use the uplink
RESUME_S = 60.0  # the stream is back at the relay this long after a switch, at the latest
RESUMED_SEGMENTS = 3
FLAP_WATCH_S = 10.0
# The lab's wire drops each frame with loss_pct in each direction, so a probe (SYN out, answer
# back) is lost with 1 - (1 - p)^2. This per-direction figure makes 30 % of probes fail, as
# the namespace tier's 30 % drop on what the kit sends does.
PROBE_LOSS_PCT = 30.0
WIRE_LOSS_PCT = round(100 * (1 - math.sqrt(1 - PROBE_LOSS_PCT / 100)), 1)
LOSSY_LEAVE_S = 30.0

UPLOAD_BYTES = 40_000_000  # five multipart parts of PART_SIZE (8 MiB), the last one short
AGENT_BACK_S = 300.0  # after SSH answers, a TCG kit starts its units and the agent writes status

TICKETS = 200
SYNC_S = 180.0  # a heartbeat period or two, plus one 10 s request timeout

FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[dict[str, Any]]:
    with kept_figures("agent-lab", "agent acceptance figures", FIGURES) as kept:
        yield kept


@pytest.fixture(scope="module")
def ctx(tour_up: dict) -> Context:
    """The preflight's view of the stop: kits over SSH, the lab's links, the local cloud."""
    context = build_context(tour_up["played"], STOP)
    assert context.links is not None, "the stop's kits are not the lab's: no link control"
    assert context.endpoints is not None, "no local cloud endpoints: is the tour up?"
    return context


@pytest.fixture(scope="module")
def cloud(tour_up: dict) -> local.LocalCloud:
    return local.LocalCloud.for_tour(tour_up["tour"])


@pytest.fixture
def agent(ctx: Context) -> AgentWatch:
    return AgentWatch(ctx, KIT)


class AgentWatch:
    """A kit's agent as the preflight reads it (its status file over SSH), keeping every event it
    reports: the status shows only the last 20, and counting switches needs all of them."""

    def __init__(self, ctx: Context, kit: str) -> None:
        self.ctx = ctx
        self.kit = ctx.tour.kit(kit)
        self.events: dict[tuple[float, str, str | None], dict[str, Any]] = {}
        self.last: dict[str, Any] = {}

    def read(self) -> dict[str, Any]:
        status = agent_status(self.ctx, self.kit)
        for event in status.get("events", []):
            self.events[(event["at"], event["event"], event.get("to"))] = event
        self.last = status
        return status

    def wait(self, what: str, check: Callable[[dict[str, Any]], bool], timeout: float,
             every: float = 0.5) -> dict[str, Any]:
        """Poll until `check(status)` holds, at most `timeout` s. A kit that cannot answer now
        (busy, booting, status stale) is asked again; only the deadline fails the test."""
        end = time.monotonic() + timeout
        error = ""
        while time.monotonic() < end:
            try:
                status = self.read()
            except (Failed, Unreachable, RuntimeError, ValueError, KeyError) as exc:
                error = f"(last read failed: {exc})"
            else:
                error = ""
                if check(status):
                    return status
            time.sleep(every)
        shown = line(self.last) if self.last else "no status read"
        raise AssertionError(f"{self.kit.name}: no {what} within {timeout:.0f} s {error}\n{shown}\n"
                             f"events: {json.dumps(self.last.get('events', [])[-6:])}")

    def watch(self, seconds: float) -> None:
        """Keep reading for `seconds`, so events in that time are counted (flapping shows here)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with contextlib.suppress(Failed, Unreachable, RuntimeError, ValueError, KeyError):
                self.read()
            time.sleep(0.5)

    def switches(self, since: float) -> list[dict[str, Any]]:
        """The agent's switch events from `since` (host clock) on, oldest first."""
        return sorted((e for e in self.events.values()
                       if e["event"] == "switch" and e["at"] >= since - CLOCK_SLACK_S),
                      key=lambda e: e["at"])

    def first_switch(self, since: float, to: str | None = None) -> dict[str, Any]:
        found = [e for e in self.switches(since) if to is None or e["to"] == to]
        assert found, (f"the agent reports no switch{f' to {to}' if to else ''} since {since:.2f}; "
                       f"its events: {json.dumps(self.last.get('events', [])[-6:])}")
        return found[0]


def settled(agent: AgentWatch) -> dict[str, Any]:
    """Where every story starts: each uplink healthy, traffic on the primary, the live profile."""
    return agent.wait(f"settled kit (every uplink healthy, traffic on {PRIMARY}, live profile)",
                      lambda s: s["active"] == PRIMARY and s["encoder"]["profile"] == "live"
                      and all(u["state"] == "healthy" for u in s["uplinks"].values()), SETTLE_S)


def tx_kbps(status: dict[str, Any], uplink: str) -> float:
    return float(status["uplinks"][uplink].get("tx_kbps") or 0.0)


@contextlib.contextmanager
def impaired(lab: Lab, kit: str, uplink: str, **impairment: float) -> Iterator[None]:
    """An uplink's wire impaired for the length of a story; always cleared after."""
    try:
        lab.impair(kit, uplink, **impairment)
        yield
    finally:
        lab.impair(kit, uplink)


class RelaySegments:
    """New HLS segments of one stream at the local relay, with when each appeared: what a viewer's
    player gets. The relay writes them on this machine's disk, so they are watched there (no
    network). A segment is new when its name was not there a poll ago: the relay's restart loop
    empties the folder and numbers from seg00000 again."""

    def __init__(self, folder: Path, every: float = 0.1) -> None:
        self.folder = folder
        self.every = every
        self.arrivals: list[float] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="relay-segments", daemon=True)

    def __enter__(self) -> RelaySegments:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)

    def _names(self) -> set[str]:
        try:
            return {e.name for e in os.scandir(self.folder) if e.name.endswith(".ts")}
        except OSError:  # no stream yet: the relay has not made the folder
            return set()

    def _run(self) -> None:
        seen = self._names()
        while not self.stopping.wait(self.every):
            names = self._names()
            now = time.time()
            self.arrivals.extend(now for _ in names - seen)
            seen = names

    def wait_new(self, since: float, count: int, timeout: float) -> float | None:
        """When the `count`-th segment after `since` appeared; None if not within `timeout` s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            after = [t for t in list(self.arrivals) if t > since]
            if len(after) >= count:
                return after[count - 1]
            time.sleep(0.2)
        return None

    def interval(self, before: float) -> float | None:
        """The usual time between segments before `before` (the relay's segment length)."""
        times = [t for t in list(self.arrivals) if t < before]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return statistics.median(gaps) if gaps else None

    def gap_across(self, failed_at: float) -> float | None:
        """The longest silence from the last segment before `failed_at` on: the interruption."""
        times = list(self.arrivals)
        before = [t for t in times if t < failed_at]
        return longest_gap([before[-1], *(t for t in times if t >= failed_at)]) if before else None


def relay_figures(relay: RelaySegments, failed_at: float, name: str) -> dict[str, float | None]:
    gap, usual = relay.gap_across(failed_at), relay.interval(failed_at)
    return {f"{name}_relay_gap_s": None if gap is None else round(gap, 2),
            f"{name}_relay_segment_s": None if usual is None else round(usual, 2),
            f"{name}_stream_lost_s": None if gap is None or usual is None else round(max(gap - usual, 0), 2)}


def show(name: str) -> None:
    print(f"\nFIGURE {name}: " + " ".join(f"{k}={v}" for k, v in FIGURES[name].items()))


# --- 1. failover ------------------------------------------------------------------------------


def test_cutting_uplinks_moves_the_stream_down_the_priorities_and_back_without_flapping(
        tour_up: dict, ctx: Context, cloud: local.LocalCloud, agent: AgentWatch) -> None:
    """Cut wwan0 while streaming: wwan1 carries the stream; cut wwan1 too: the satellite does;
    restore both: back on wwan0 once it has been good for recover_after_s, one move, no flapping."""
    kit = tour_up["played"].kit(KIT)
    hold = kit.agent.recover_after_s
    stream = kit.streams[0].name
    figures = FIGURES.setdefault("failover", {"recover_after_s": hold})
    with RelaySegments(cloud.hls / "live" / stream) as relay:
        settled(agent)
        assert relay.wait_new(time.time(), 2, 30) is not None, (
            f"no HLS segments of {stream} reach the relay ({relay.folder}): the stream is not "
            "running before the drill — see the preflight's encoder.warm and cdn.live")
        status = agent.wait(f"the stream going out over {PRIMARY}",
                            lambda s: tx_kbps(s, PRIMARY) >= STREAM_KBPS, 30)
        figures.update({"clock_offset_ms": status["clock"].get("offset_ms"),
                        f"{PRIMARY}_tx_kbps_before": tx_kbps(status, PRIMARY)})

        with contextlib.ExitStack() as cuts:
            cut_at = time.time()
            cuts.enter_context(cut(ctx, kit, [PRIMARY]))
            status = agent.wait(f"traffic on {SECONDARY}", lambda s: s["active"] == SECONDARY,
                                DRILL_TIMEOUT_S)
            moved = agent.first_switch(cut_at, to=SECONDARY)
            assert status["uplinks"][PRIMARY]["state"] == "dead"
            resumed = relay.wait_new(moved["at"], RESUMED_SEGMENTS, RESUME_S)
            figures.update({"cut_wwan0_detect_s": round(moved["at"] - cut_at, 3),
                            "cut_wwan0_rule_swap_ms": moved.get("took_ms"),
                            "cut_wwan0_stream_back_at_relay_s": None if resumed is None
                            else round(resumed - cut_at, 2),
                            **relay_figures(relay, cut_at, "cut_wwan0")})
            assert resumed is not None, (f"the stream did not come back at the relay within "
                                         f"{RESUME_S:.0f} s of the move to {SECONDARY}")
            status = agent.wait(f"the stream going out over {SECONDARY}",
                                lambda s: tx_kbps(s, SECONDARY) >= STREAM_KBPS, 30)
            figures[f"{SECONDARY}_tx_kbps_after"] = tx_kbps(status, SECONDARY)

            cut_at_2 = time.time()
            cuts.enter_context(cut(ctx, kit, [SECONDARY]))
            agent.wait(f"traffic on {SATELLITE}", lambda s: s["active"] == SATELLITE, DRILL_TIMEOUT_S)
            moved_2 = agent.first_switch(cut_at_2, to=SATELLITE)
            resumed_2 = relay.wait_new(moved_2["at"], RESUMED_SEGMENTS, RESUME_S)
            figures.update({"cut_wwan1_detect_s": round(moved_2["at"] - cut_at_2, 3),
                            "cut_wwan1_stream_back_at_relay_s": None if resumed_2 is None
                            else round(resumed_2 - cut_at_2, 2),
                            **relay_figures(relay, cut_at_2, "cut_wwan1")})
            assert resumed_2 is not None, (f"the stream did not come back at the relay within "
                                           f"{RESUME_S:.0f} s of the move to {SATELLITE}")
            restored_at = time.time()
        # leaving the stack restored both modems (also on any failure above)

        agent.wait(f"traffic back on {PRIMARY}", lambda s: s["active"] == PRIMARY, hold + SETTLE_S)
        back = agent.first_switch(restored_at, to=PRIMARY)
        agent.watch(FLAP_WATCH_S)
        moves = [e["to"] for e in agent.switches(restored_at)]
        figures.update({"restore_back_on_wwan0_s": round(back["at"] - restored_at, 2),
                        "restore_moves": moves})
    show("failover")
    assert figures["cut_wwan0_detect_s"] <= MOVE_GOAL_S, f"wwan0 cut: moved after {figures}"
    assert figures["cut_wwan1_detect_s"] <= MOVE_GOAL_S, f"wwan1 cut: moved after {figures}"
    # both modems came back together: wwan1 may win a moment before wwan0 does; nothing else
    assert moves in ([PRIMARY], [SECONDARY, PRIMARY]), f"flapping after the restore: {moves}"
    assert back["at"] - restored_at >= hold - CLOCK_SLACK_S, (
        f"back on {PRIMARY} {back['at'] - restored_at:.1f} s after the restore, before the "
        f"{hold:.0f} s hysteresis")


def test_lossy_wwan0_is_left_while_it_still_works_and_regained_after_the_hysteresis(
        tour_up: dict, lab: Lab, agent: AgentWatch) -> None:
    """30 % of wwan0's probes lost: the agent moves to wwan1 because wwan0 is degraded (not yet
    dead); once clean again, wwan0 gets the traffic back after recover_after_s, once."""
    kit = tour_up["played"].kit(KIT)
    hold = kit.agent.recover_after_s
    settled(agent)
    impaired_at = time.time()
    with impaired(lab, KIT, PRIMARY, loss_pct=WIRE_LOSS_PCT):
        status = agent.wait(f"traffic off the lossy {PRIMARY}", lambda s: s["active"] != PRIMARY,
                            LOSSY_LEAVE_S)
        left = agent.first_switch(impaired_at)
        lossy = status["uplinks"][PRIMARY]
        cleared_at = time.time()
    agent.wait(f"traffic back on {PRIMARY}", lambda s: s["active"] == PRIMARY, hold + SETTLE_S)
    back = agent.first_switch(cleared_at, to=PRIMARY)
    agent.watch(FLAP_WATCH_S)
    moves = [e["to"] for e in agent.switches(impaired_at)]
    FIGURES["lossy_wwan0"] = {
        "wire_loss_pct_each_way": WIRE_LOSS_PCT, "left_after_s": round(left["at"] - impaired_at, 2),
        "left_because": left["why"], "wwan0_loss_pct_seen": lossy["loss_pct"],
        "wwan0_rtt_ms_seen": lossy["rtt_ms"], "back_after_clear_s": round(back["at"] - cleared_at, 2),
        "moves": moves}
    show("lossy_wwan0")
    assert left["frm"] == PRIMARY and left["to"] == SECONDARY, left
    assert left["why"] == "degraded", (
        f"left {PRIMARY} only once it was {left['why']} (states then: {left.get('states')})")
    assert lossy["carrier"] and lossy["rtt_ms"] is not None, f"{PRIMARY} should still answer: {lossy}"
    assert moves == [SECONDARY, PRIMARY], f"flapping around the lossy link: {moves}"
    assert back["at"] - cleared_at >= hold - CLOCK_SLACK_S, (
        f"back on {PRIMARY} {back['at'] - cleared_at:.1f} s after clearing, before the "
        f"{hold:.0f} s hysteresis")


# --- 2. the door, offline ---------------------------------------------------------------------

DOOR_BODY = '{"token": "%s", "door": "lab-door"}'  # printf format: tokens are base64url and dots


def door_loop(url: str) -> str:
    """A shell loop on the kit: one POST /checkin per token read from stdin, each answer on one
    line followed by its HTTP status."""
    return (f"while read -r t; do printf {shlex.quote(DOOR_BODY)} \"$t\" | curl -sS --max-time 10 "
            f"-H 'content-type: application/json' --data-binary @- -w ' %{{http_code}}\\n' "
            f"{shlex.quote(url)}; done")


def scan(remote: Remote, url: str, tokens: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """Scan tokens at the kit's door as the door phone does (POST /checkin, made on the kit):
    one (HTTP status, answer) per token. Tokens go on stdin: 200 of them overflow a command line."""
    out = remote.output(door_loop(url), timeout=60 + 2 * len(tokens),
                        input="\n".join(tokens) + "\n")
    answers = []
    for row in out.splitlines():
        body, _, code = row.rpartition(" ")
        answers.append((int(code), json.loads(body) if body.strip() else {}))
    assert len(answers) == len(tokens), f"{len(tokens)} scans, {len(answers)} answers: {out[-500:]}"
    return answers


def ledger_checkins(ctx: Context, cloud: local.LocalCloud, prefix: str) -> int:
    """Check-in rows of this kit in the tour's ledger whose ticket ids start with `prefix`."""
    assert ctx.endpoints is not None
    pages = local.aws_client_factory(cloud)("dynamodb").get_paginator("scan").paginate(
        TableName=ctx.endpoints.ledger_table, Select="COUNT",
        FilterExpression="#kind = :c AND #kit = :k AND begins_with(#tid, :p)",
        ExpressionAttributeNames={"#kind": "kind", "#kit": "kit", "#tid": "ticket_id"},
        ExpressionAttributeValues={":c": {"S": "checkin"}, ":k": {"S": KIT}, ":p": {"S": prefix}})
    return sum(page["Count"] for page in pages)


def test_door_admits_200_offline_refuses_repeats_and_forgeries_and_syncs_each_once(
        tour_up: dict, ctx: Context, cloud: local.LocalCloud, agent: AgentWatch) -> None:
    """Every uplink cut: 200 tickets admitted at the door, a second scan and a forged ticket
    refused with a reason. Back online, the first sync fails (the cloud stops answering after
    taking the request); the retry completes and the ledger holds each check-in once."""
    played = tour_up["played"]
    kit = played.kit(KIT)
    status = settled(agent)
    serving = status["door"]["stop"]
    assert serving, "the agent serves no stop at the door (no doors-open windows in agent.json)"
    held_before = status["door"]["tickets"]
    key = resolve(played.commerce.ticket_key)
    prefix = f"lab-door-{uuid.uuid4().hex[:8]}-"
    claims = {"tour": played.name, "stop": serving, "tier": "general"}
    tokens = [tickets.sign_ticket(key, tid=f"{prefix}{i:03d}", **claims) for i in range(TICKETS)]
    forged = tickets.sign_ticket(tickets.generate_ticket_key(), tid=f"{prefix}forged", **claims)
    url = f"http://127.0.0.1:{kit.agent.http_port}/checkin"
    remote = ctx.remotes[KIT]
    webhook = local.running_pid(cloud, "webhook")
    assert webhook, "the local cloud's webhook is not running"
    paused = False
    try:
        with cut(ctx, kit, [u.name for u in kit.uplinks]):
            agent.wait("every uplink dead (the kit offline)",
                       lambda s: all(u["state"] == "dead" for u in s["uplinks"].values()), DRILL_TIMEOUT_S)
            started = time.monotonic()
            answers = scan(remote, url, tokens)
            scan_s = time.monotonic() - started
            refused = [a for a in answers if a[0] != 200 or not a[1].get("ok")]
            assert not refused, f"{len(refused)} valid tickets refused offline, e.g. {refused[:3]}"
            [(again_code, again)] = scan(remote, url, [tokens[17]])
            [(forged_code, fake)] = scan(remote, url, [forged])
            status = agent.read()
            assert ledger_checkins(ctx, cloud, prefix) == 0, "check-ins reached the cloud while offline"
            # The cloud stops answering (SIGSTOP: its socket still accepts, so a request is taken
            # in and only its answer never comes) before the links come back.
            os.killpg(webhook, signal.SIGSTOP)
            paused = True
        restored_at = time.time()
        failed = agent.wait("a failed sync attempt after the links came back (no answer)",
                            lambda s: s["sync"].get("ok") is False and s["sync"]["at"] > restored_at
                            and s["sync"].get("error") == "timed out", SYNC_S, every=1.0)
        os.killpg(webhook, signal.SIGCONT)
        paused = False
        resumed_at = time.time()
        time.sleep(3)  # the request the kit gave up on is handled now
        held_by_cloud_before_retry = ledger_checkins(ctx, cloud, prefix)
        synced = agent.wait("every check-in synced", lambda s: s["door"]["unsynced"] == 0
                            and s["sync"].get("ok") is True and s["sync"]["at"] > resumed_at, SYNC_S,
                            every=1.0)
    finally:
        if paused:
            os.killpg(webhook, signal.SIGCONT)
    rows = ledger_checkins(ctx, cloud, prefix)
    FIGURES["door"] = {"stop": serving, "scans": TICKETS, "scan_s": round(scan_s, 1),
                       "scans_per_s": round(TICKETS / scan_s, 1), "failed_sync": failed["sync"]["error"],
                       "cloud_held_before_retry": held_by_cloud_before_retry,
                       "synced_after_resume_s": round(synced["sync"]["at"] - resumed_at, 1),
                       "ledger_rows": rows}
    show("door")
    assert again_code == 409 and again.get("duplicate"), (again_code, again)
    assert "already checked in" in again["reason"], again
    assert forged_code == 422 and "unknown key" in fake["reason"], (forged_code, fake)
    assert status["door"]["tickets"] == held_before + TICKETS, status["door"]
    assert rows == TICKETS, f"the ledger holds {rows} of the {TICKETS} check-ins of {KIT}"


# --- 3. power cut mid-upload ------------------------------------------------------------------

QUEUE_ROW = """
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
row = db.execute("SELECT state, upload_id, error FROM segments WHERE path = ?", (sys.argv[2],)).fetchone()
parts = db.execute("SELECT COUNT(*) FROM parts WHERE path = ?", (sys.argv[2],)).fetchone()[0]
print(json.dumps(row and {"state": row[0], "upload_id": row[1], "error": row[2], "parts": parts}))
"""


def queue_row(remote: Remote, path: str) -> dict[str, Any] | None:
    """The upload queue's row for one file, read from the agent's SQLite on the kit."""
    out = remote.output(shlex.join(["python3", "-c", QUEUE_ROW, f"{STATE_DIR}/uploads.db", path]))
    return json.loads(out)


def wait_row(remote: Remote, path: str, check: Callable[[dict[str, Any]], bool], what: str,
             timeout: float) -> dict[str, Any]:
    end = time.monotonic() + timeout
    row: dict[str, Any] | None = None
    while time.monotonic() < end:
        with contextlib.suppress(Unreachable, RuntimeError, ValueError):
            row = queue_row(remote, path)
            if row and check(row):
                return row
        time.sleep(5)
    raise AssertionError(f"no {what} within {timeout:.0f} s; the queue says {row}")


@pytest.mark.timeout(3000)  # the sum of its bounded waits, a cold boot on TCG among them
def test_power_cut_mid_upload_resumes_the_same_upload_and_the_object_matches(
        tour_up: dict, lab: Lab, ctx: Context, cloud: local.LocalCloud, agent: AgentWatch) -> None:
    """A finished 40 MB recording segment is uploading when the plug is pulled; after a cold
    boot the same multipart upload goes on, and the bucket holds exactly the kit's bytes."""
    kit = tour_up["played"].kit(KIT)
    assert ctx.endpoints is not None
    rate = kit.agent.upload_max_kbps * 1000 / 8  # bytes per second
    stream = kit.streams[0].name
    name = f"{stream}-lab-powercut-{uuid.uuid4().hex[:8]}.ts"
    path = f"{kit.recordings_dir}/{stream}/{name}"
    key = f"{KIT}/{stream}/{name}"  # the agent's S3 prefix is "<kit>/"
    remote = ctx.remotes[KIT]
    s3 = local.aws_client_factory(cloud)("s3")
    bucket = ctx.endpoints.recordings_bucket
    status = settled(agent)
    assert "disabled" not in status["uploads"], f"the agent does not upload: {status['uploads']}"
    waiting = status["uploads"].get("bytes_waiting", 0)
    tmp = shlex.quote(f"{path}.tmp")
    try:
        # Written aside (.tmp is skipped), dated ten minutes back (finished, never "the newest
        # being written"), synced to disk, then renamed into the folder the uploader scans.
        out = remote.output(f"head -c {UPLOAD_BYTES} /dev/urandom > {tmp} && touch -d '-10 min' {tmp} "
                            f"&& sync && mv {tmp} {shlex.quote(path)} && sync && "
                            f"sha256sum {shlex.quote(path)}", timeout=300)
        written = out.split()[0]
        queued_at = time.time()
        to_part_2 = 120 + 3 * (waiting + 2 * PART_SIZE) / rate
        agent.wait(f"part 2 of {key} on its way (part 1 uploaded)",
                   lambda s: ((s["uploads"].get("current") or {}).get("key") == key
                              and s["uploads"]["current"]["part"] >= 2), to_part_2, every=2.0)
        before = queue_row(remote, path)
        assert before and before["state"] == "uploading" and before["upload_id"], before
        assert before["parts"] >= 1, before
        held = s3.list_parts(Bucket=bucket, Key=key, UploadId=before["upload_id"]).get("Parts", [])
        assert held, "the queue records a part the bucket does not hold"

        cut_at = time.time()
        lab.power_cut(KIT)
        boot_s = lab.power_on(KIT)
        back = agent.wait("the agent running again after the cold boot", lambda s: s["at"] > cut_at,
                          AGENT_BACK_S, every=2.0)
        remaining = UPLOAD_BYTES - len(held) * PART_SIZE
        done = wait_row(remote, path, lambda r: r["state"] not in ("queued", "uploading"),
                        f"end of the upload of {key}", 300 + 3 * remaining / rate)
        finished_at = time.time()
        on_kit = remote.output(f"sha256sum {shlex.quote(path)}").split()[0]
        head = s3.head_object(Bucket=bucket, Key=key)
        digest = hashlib.sha256()
        for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
            digest.update(chunk)
    finally:
        if not lab.status()["kits"][KIT]["running"]:
            lab.power_on(KIT)  # never leave the kit off for the tests after this one
        with contextlib.suppress(UserError, OSError):
            remote.run(f"rm -f {shlex.quote(path)} {tmp}")
    FIGURES["power_cut_upload"] = {
        "bytes": UPLOAD_BYTES, "upload_max_kbps": kit.agent.upload_max_kbps,
        "parts_held_at_cut": len(held), "queued_to_cut_s": round(cut_at - queued_at, 1),
        "cold_boot_to_ssh_s": round(boot_s, 1), "agent_status_after_cut_s": round(back["at"] - cut_at, 1),
        "cut_to_uploaded_s": round(finished_at - cut_at, 1),
        "same_upload_id": done["upload_id"] == before["upload_id"]}
    show("power_cut_upload")
    assert done["state"] == "done", f"the upload ended {done['state']}: {done['error']}"
    assert done["upload_id"] == before["upload_id"], (
        "the upload started over after the power cut instead of resuming its multipart upload")
    assert on_kit == written, "the recording on the kit changed across the power cut"
    assert digest.hexdigest() == on_kit == head["Metadata"].get("sha256"), (
        f"bucket object sha256 {digest.hexdigest()}, metadata {head['Metadata']}, kit {on_kit}")
