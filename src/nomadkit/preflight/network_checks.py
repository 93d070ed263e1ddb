"""Checks of a kit's uplinks: throughput while the stream runs, and failover drills.

Drills cut a real link (the lab's `set_link`, outside the kit) and watch the agent move the
traffic; they restore every link they cut, whatever happens.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from nomadkit.preflight.runner import Check, Context, Evidence, Failed, Skipped, Warned
from nomadkit.remote import quote
from nomadkit.status.cli import STATUS_FILE
from nomadkit.tour import Kit

HEADROOM = 1.5  # an uplink should carry the stream's top bitrate and half again
DRILL_TIMEOUT_S = 15.0
MOVE_GOAL_S = 2.0  # the agent's goal: traffic on another uplink within 2 s of a dead link
STREAM_BACK_S = 30.0  # after a move, a drill waits this long for the kit's stream at the edge
NEW_SEGMENTS = 2  # "back" is two segments the edge did not list before the move: one could be
#                   the relay flushing what it had when it let the old session go


STATUS_FRESH_S = 10.0
AGENT_START_S = 90.0  # a just-(re)started agent on a slow kit reports within this
AGENT_SETTLE_S = 300.0  # after a deploy restarted the agents: a TCG kit needs ~2 min (boto3)


def agent_status(ctx: Context, kit: Kit, wait_s: float = AGENT_START_S) -> dict:
    """The agent's own view, as it wrote it last (cheaper for a busy kit than asking it).

    Waits (at most `wait_s`) for an agent that is starting, as it is right after a deploy."""
    deadline = time.monotonic() + wait_s
    while True:
        text = ctx.remotes[kit.name].output(f"cat {STATUS_FILE} 2>/dev/null; echo; date +%s.%N")
        body, _, now = text.strip().rpartition("\n")
        try:
            status = json.loads(body)
            age = float(now) - status["at"]
        except (ValueError, KeyError, TypeError):
            why = f"the agent has written no status ({STATUS_FILE})"
        else:
            why = (f"the agent's status is {age:.0f} s old" if age > STATUS_FRESH_S else
                   "the agent has not finished starting")
            if age <= STATUS_FRESH_S and status.get("ready", True):
                return status
        if time.monotonic() > deadline:
            raise Failed(f"{why} — `systemctl status nomadkit-agent` and "
                         "`journalctl -u nomadkit-agent` on the kit")
        time.sleep(2)


def uplink_throughput(ctx: Context, kit: Kit | None) -> Evidence:
    """Every uplink carries the stream's top bitrate with headroom, measured while it streams:
    the live playlist's segments are fetched through the CDN over each uplink in turn."""
    assert kit
    if ctx.kit_endpoints is None or not kit.streams:
        raise Skipped("needs the cloud's endpoints and a stream on this kit")
    need_kbps = sum(s.bitrates_kbps[0] + s.audio_kbps for s in kit.streams) * HEADROOM
    live = f"{ctx.kit_endpoints.cdn_url.rstrip('/')}/live/{kit.streams[0].name}"
    remote = ctx.remotes[kit.name]
    playlist = remote.run(quote("curl", "-sf", "--max-time", "5", f"{live}/index.m3u8")).stdout
    segments = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    if not segments:
        raise Failed("no live segment at the CDN to measure with — the stream is not reaching the "
                     "relay; see encoder.warm and cdn.live")
    urls = [f"{live}/{name}" for name in segments]
    evidence: Evidence = {"need_kbps": round(need_kbps), "probe_segments": len(urls)}
    weak = []
    for uplink in sorted(kit.uplinks, key=lambda u: u.priority):
        out = remote.run(quote(
            "curl", "-s", "--interface", uplink.name, "--max-time", "20",
            "-w", "%{http_code} %{size_download} %{time_total} %{time_connect}\\n",
            *[a for url in urls for a in ("-o", "/dev/null", url)]), timeout=40).stdout
        rows = [line.split() for line in out.splitlines() if len(line.split()) == 4]
        size = sum(int(r[1]) for r in rows)
        seconds = sum(float(r[2]) for r in rows) or 1.0
        kbps = size * 8 / seconds / 1000
        ok = bool(rows) and all(r[0] == "200" for r in rows)
        evidence[uplink.name] = {"kbps": round(kbps), "bytes": size,
                                 "connect_ms": round(float(rows[0][3]) * 1000, 1) if rows else None}
        if not ok or kbps < need_kbps:
            weak.append(uplink.name)
    if weak and len(weak) == len(kit.uplinks):
        raise Failed(f"no uplink carries {need_kbps:.0f} kbps ({', '.join(weak)}) — check SIMs, APNs "
                     "and antenna placement, or lower the stream's bitrate ladder", **evidence)
    if weak:
        raise Warned(f"{', '.join(weak)} below {need_kbps:.0f} kbps — the stream runs, with less "
                     "margin for failover", **evidence)
    return evidence


@contextmanager
def cut(ctx: Context, kit: Kit, uplinks: list[str]) -> Iterator[None]:
    """Cut uplinks for the length of a drill; always restore them."""
    try:
        for name in uplinks:
            ctx.links.link(kit.name, name, False)
        yield
    finally:
        for name in uplinks:
            ctx.links.link(kit.name, name, True)


def wait_active(ctx: Context, kit: Kit, wanted: set[str], timeout: float) -> tuple[str, float]:
    """Poll the agent until its active uplink is one of `wanted`; return it and the seconds."""
    start = time.monotonic()
    active = ""
    while time.monotonic() - start < timeout:
        active = agent_status(ctx, kit).get("active") or ""
        if active in wanted:
            return active, time.monotonic() - start
        time.sleep(0.2)
    return active, time.monotonic() - start


def edge_get(ctx: Context, path: str) -> tuple[int, str, bytes]:
    """GET through the CDN edge, as a viewer: (status, which origin answered, body)."""
    assert ctx.endpoints
    request = urllib.request.Request(f"{ctx.endpoints.cdn_url.rstrip('/')}{path}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers.get("X-Nomadkit-Origin", ""), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("X-Nomadkit-Origin", ""), b""


def edge_segments(ctx: Context, stream: str) -> set[str]:
    """The media segments the edge's live playlist of `stream` lists now (none while the slate
    or an error is served)."""
    try:
        status, origin, body = edge_get(ctx, f"/live/{stream}/index.m3u8")
    except OSError:
        return set()
    if status != 200 or origin == "slate":
        return set()
    return {line for line in body.decode(errors="replace").splitlines() if line and not line.startswith("#")}


def stream_back(ctx: Context, stream: str, moved_at: float) -> float | None:
    """Seconds from `moved_at` (epoch) until the edge lists NEW_SEGMENTS segments of `stream` it
    did not list at the move: viewers have the stream again, over the new uplink. None if not
    within STREAM_BACK_S."""
    before = edge_segments(ctx, stream)
    while time.time() - moved_at < STREAM_BACK_S:
        if len(edge_segments(ctx, stream) - before) >= NEW_SEGMENTS:
            return time.time() - moved_at
        time.sleep(0.25)
    return None


def moved_after(status: dict, target: str, cut_at: float, seen_s: float) -> float:
    """Seconds from the cut to the agent's own switch to `target`, from its event log, rather
    than to when SSH polling saw it; `seen_s` when the kit's clock makes that implausible."""
    for event in status.get("events", []):
        if event.get("event") == "switch" and event.get("to") == target:
            moved = event["at"] - cut_at
            if 0 <= moved <= seen_s:
                return moved
    return seen_s


def _drill(ctx: Context, kit: Kit, cut_these: list[str], expect: set[str]) -> Evidence:
    if ctx.links is None:
        raise Skipped("drills cut links with the lab's link control; on a real kit pull the "
                      "active modem's antenna and watch `nomadkit status`")
    before = agent_status(ctx, kit).get("active")
    stream = kit.streams[0].name if kit.streams and ctx.endpoints else None
    cut_at = time.time()
    with cut(ctx, kit, cut_these):
        active, seen_s = wait_active(ctx, kit, expect, DRILL_TIMEOUT_S)
        seconds = moved_after(agent_status(ctx, kit), active, cut_at, seen_s)
        back_at_edge = stream_back(ctx, stream, cut_at + seconds) if stream and active in expect else None
    back, back_s = wait_active(ctx, kit, {before}, DRILL_TIMEOUT_S * 2)
    evidence = {"before": before, "cut": cut_these, "after": active, "moved_s": round(seconds, 2),
                "seen_by_controller_s": round(seen_s, 2), "returned_to": back,
                "return_s": round(back_s, 1)}
    if stream:
        evidence["stream_back_at_edge_s"] = None if back_at_edge is None else round(back_at_edge, 1)
    if active not in expect:
        raise Failed(f"traffic did not move to {' or '.join(sorted(expect))} within "
                     f"{DRILL_TIMEOUT_S:.0f} s — check `journalctl -u nomadkit-agent`", **evidence)
    if seconds > MOVE_GOAL_S:
        raise Warned(f"traffic moved in {seconds:.1f} s, over the {MOVE_GOAL_S:.0f} s goal — "
                     "check the agent's probe settings in the tour file", **evidence)
    if stream and back_at_edge is None:
        raise Warned(f"'{stream}' was not live at the edge again within {STREAM_BACK_S:.0f} s of the "
                     f"move — check `journalctl -u nomadkit-sender@{stream}` on the kit", **evidence)
    return evidence


def failover_drill(ctx: Context, kit: Kit | None) -> Evidence:
    """Cut the active uplink: the agent moves the traffic to the next one."""
    assert kit
    status = agent_status(ctx, kit)
    active = status.get("active")
    states = {name: u.get("state") for name, u in status.get("uplinks", {}).items()}
    if not active or all(state == "dead" for state in states.values()):
        raise Failed("the agent has no working uplink — every uplink is down; check the modems' "
                     "SIMs and APNs and that the satellite terminal is on", uplinks=states)
    others = {u.name for u in kit.uplinks if u.name != active}
    return _drill(ctx, kit, [active], others)


def satellite_fallback(ctx: Context, kit: Kit | None) -> Evidence:
    """Cut every modem: the agent falls back to the satellite."""
    assert kit
    modems = [u.name for u in kit.uplinks if u.kind == "modem"]
    satellites = {u.name for u in kit.uplinks if u.kind == "satellite"}
    if not satellites:
        raise Skipped("this kit has no satellite uplink in the tour file")
    return _drill(ctx, kit, modems, satellites)


NETWORK_CHECKS = [
    Check("uplink.throughput", "each uplink's throughput while streaming", uplink_throughput),
    Check("failover.drill", "failover drill: cut the active uplink", failover_drill, exclusive=True),
    Check("failover.satellite", "satellite fallback: cut every modem", satellite_fallback,
          exclusive=True),
]
