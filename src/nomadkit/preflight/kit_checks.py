"""Checks of one kit's own state: time, disk, power, cache, encoder, rollback, consent.

Each asks the kit a small question over SSH and compares the answer with what the tour file
says the night needs.
"""

from __future__ import annotations

import json
import time

from nomadkit.preflight.runner import Check, Context, Evidence, Failed, Skipped, Warned
from nomadkit.remote import quote
from nomadkit.roles import encoder
from nomadkit.tour import Kit

MAX_CLOCK_OFFSET_S = 0.1  # SRT timestamps and signed tickets both tolerate far more
SEGMENT_FRESH_S = 45.0  # a recording not written to for this long means the encoder stalled
BITRATE_TOLERANCE = 0.35  # x264 in ultrafast mode wanders around its target; more is wrong
SPACE_MARGIN = 1.25  # room for the night's recordings at the ladder's top, plus a quarter


def clock_sync(ctx: Context, kit: Kit | None) -> Evidence:
    """chrony is synchronised and the kit's clock agrees with this machine's."""
    assert kit
    remote = ctx.remotes[kit.name]
    before = time.time()
    fields = remote.output("date +%s.%N; chronyc -c tracking 2>&1 || true").split("\n")
    after = time.time()
    skew = float(fields[0]) - (before + after) / 2
    tracking = fields[1].split(",") if len(fields) > 1 else []
    evidence: Evidence = {"skew_vs_controller_ms": round(skew * 1000, 1),
                          "round_trip_ms": round((after - before) * 1000, 1)}
    if len(tracking) > 13:
        evidence |= {"stratum": int(tracking[2]), "chrony_offset_ms": round(float(tracking[4]) * 1000, 2),
                     "leap": tracking[13]}
    else:
        evidence["chrony"] = (fields[1] if len(fields) > 1 else "no answer")[:120]
    if abs(skew) > MAX_CLOCK_OFFSET_S + (after - before) / 2:
        raise Failed(f"the kit's clock is {skew:+.1f} s off — check chrony's sources "
                     "(`chronyc sources`) and the uplinks; tickets and recordings need true time",
                     **evidence)
    if "leap" not in evidence:
        raise Warned("chrony is not running on the kit — the clock is right now but will drift; "
                     "`systemctl start chrony`", **evidence)
    if evidence["leap"] != "Normal" or evidence["stratum"] in (0, 16):
        raise Warned("chrony is not synchronised to a source yet — it keeps the current time; "
                     "check `chronyc sources` once an uplink is up", **evidence)
    return evidence


def recording_space(ctx: Context, kit: Kit | None) -> Evidence:
    """Enough disk for the whole stop's recordings at the top bitrate."""
    assert kit
    kbps = sum(s.bitrates_kbps[0] + s.audio_kbps for s in kit.streams)
    needed = int(kbps * 1000 / 8 * ctx.stop.duration_hours * 3600 * SPACE_MARGIN)
    out = ctx.remotes[kit.name].output(
        f"mkdir -p {quote(kit.recordings_dir)} && df -B1 --output=avail {quote(kit.recordings_dir)}")
    free = int(out.split()[-1])
    evidence = {"free_bytes": free, "needed_bytes": needed, "hours": ctx.stop.duration_hours,
                "kbps": kbps}
    if free < needed:
        raise Failed(f"{free / 1e9:.1f} GB free but the night's recordings need {needed / 1e9:.1f} GB "
                     "— let the agent finish uploading, or clear old recordings that are already in "
                     "the cloud", **evidence)
    return evidence


def battery_runtime(ctx: Context, kit: Kit | None) -> Evidence:
    """The UPS reports a charge and enough runtime to ride through a power cut."""
    assert kit
    done = ctx.remotes[kit.name].run(f"timeout 10 upsc {quote(kit.agent.ups)} 2>/dev/null")
    values = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    if done.returncode or "battery.runtime" not in values:
        raise Failed(f"no battery reading from `upsc {kit.agent.ups}` — check the UPS cable and "
                     "`systemctl status nut-server`", returncode=done.returncode)
    runtime_min = float(values["battery.runtime"]) / 60
    evidence = {"runtime_min": round(runtime_min, 1), "charge_pct": values.get("battery.charge"),
                "status": values.get("ups.status")}
    if runtime_min < 15:
        raise Failed("under 15 minutes of battery — charge the UPS or bring the spare",
                     **evidence)
    if "OL" not in str(values.get("ups.status", "")):
        raise Warned("the kit runs on battery — plug it into mains power", **evidence)
    return evidence


def cache_primed(ctx: Context, kit: Kit | None) -> Evidence:
    """Every preview asset is served by the kit's cache with the manifest's checksum."""
    assert kit
    if not kit.cache:
        raise Skipped("this kit has no cache assets in the tour file")
    script = "; ".join(
        f"echo {quote(a.path)} $(curl -fsS --max-time 10 {quote('http://127.0.0.1/' + a.path)} "
        "| sha256sum | cut -c1-64)" for a in kit.cache)
    served = dict(line.split(" ", 1) for line in ctx.remotes[kit.name].output(script).splitlines())
    wrong = [a.path for a in kit.cache if served.get(a.path) != a.sha256]
    evidence = {"assets": len(kit.cache), "verified": len(kit.cache) - len(wrong), "wrong": wrong}
    if wrong:
        raise Failed(f"{len(wrong)} asset(s) missing or not matching the manifest — re-run the deploy "
                     "(the cache role re-primes and verifies), or fix the sha256 in the tour file",
                     **evidence)
    return evidence


def encoders_warm(ctx: Context, kit: Kit | None) -> Evidence:
    """Each stream's encoder runs and its newest segment has the configured picture and bitrate."""
    assert kit
    if not kit.streams:
        raise Skipped("this kit has no streams in the tour file")
    evidence: Evidence = {}
    remote = ctx.remotes[kit.name]
    for stream in kit.streams:
        folder = f"{kit.recordings_dir}/{stream.name}"
        units = [encoder.unit("live", stream.name), encoder.sender_unit(stream.name)]
        answer = remote.run("systemctl is-active " + " ".join(quote(u) for u in units)).stdout.split()
        state, sender = [*answer, "", ""][:2]
        segments = remote.run(f"ls -t {quote(folder)}/*.ts 2>/dev/null | head -2").stdout.split()
        if state != "active" or not segments:
            raise Failed(f"encoder for '{stream.name}' is {state or 'missing'} with no recording "
                         f"in {folder} — check the capture device ({stream.device}) and "
                         f"`journalctl -u nomadkit-encoder@{stream.name}`", state=state)
        if sender != "active":
            raise Failed(f"the SRT sender for '{stream.name}' is {sender or 'missing'}: the stream is "
                         f"recorded but not sent — `journalctl -u nomadkit-sender@{stream.name}`, then "
                         "re-run the deploy", state=state, sender=sender)
        # The newest segment is still being written (a second-old one has no readable header
        # yet); the one before it is complete and carries the real bitrate.
        newest, finished = segments[0], segments[-1]
        probed = remote.run("ffprobe -v error -of json -show_entries format=bit_rate:stream=width,height "
                            f"-select_streams v:0 {quote(finished)}")
        if probed.returncode:
            raise Failed(f"'{stream.name}' has no complete recording segment yet ({finished}: "
                         f"{probed.stderr.strip()[:120]}) — the encoder has just started; run the "
                         "preflight again in a minute", state=state, sender=sender)
        probe = json.loads(probed.stdout)
        age = float(remote.output(f"echo $(( $(date +%s) - $(stat -c %Y {quote(newest)}) ))"))
        video = probe["streams"][0]
        kbps = float(probe["format"]["bit_rate"]) / 1000
        target = stream.bitrates_kbps[0] + stream.audio_kbps
        evidence[stream.name] = {"resolution": f"{video['width']}x{video['height']}",
                                 "kbps": round(kbps), "target_kbps": target, "segment_age_s": round(age)}
        if f"{video['width']}x{video['height']}" != stream.resolution:
            raise Failed(f"'{stream.name}' encodes {video['width']}x{video['height']}, the tour says "
                         f"{stream.resolution} — re-run the deploy", **evidence)
        if abs(kbps - target) > target * BITRATE_TOLERANCE or age > SEGMENT_FRESH_S:
            raise Warned(f"'{stream.name}' runs at {kbps:.0f} kbps (target {target}), newest segment "
                         f"{age:.0f} s old — the encoder is not keeping up; lower the resolution or "
                         "the ladder's top bitrate", **evidence)
    return evidence


def rollback_armed(ctx: Context, kit: Kit | None) -> Evidence:
    """The audio-only profile is installed and the upload queue can take recordings."""
    assert kit
    remote = ctx.remotes[kit.name]
    missing = [s.name for s in kit.streams if remote.run(
        f"systemctl cat nomadkit-encoder-fallback@{quote(s.name)} >/dev/null").returncode]
    agent = remote.run("systemctl is-active nomadkit-agent").stdout.strip()
    writable = remote.run(f"test -w {quote(kit.recordings_dir)}").returncode == 0
    evidence = {"fallback_profiles": len(kit.streams) - len(missing), "agent": agent,
                "recordings_writable": writable}
    if missing or agent != "active" or not writable:
        raise Failed("rollback is not armed — re-run the deploy (the encoder and agent roles install "
                     "the audio-only profile and the upload queue)", missing=missing, **evidence)
    return evidence


def consent_defaults(ctx: Context, kit: Kit | None) -> Evidence:
    """The kit captures with the tour's consent defaults, and this stop has a consent page."""
    assert kit
    identity = json.loads(ctx.remotes[kit.name].output("cat /etc/nomadkit/kit.json"))
    on_kit = identity.get("consent")
    wanted = ctx.tour.consent.model_dump(mode="json")
    evidence = {"default_capture": (on_kit or {}).get("default_capture"),
                "consent_url": str(ctx.stop.consent_url)}
    if on_kit != wanted:
        raise Failed("the kit's capture defaults differ from the tour's consent policy — re-run the "
                     "deploy before anyone is filmed", on_kit=on_kit, wanted=wanted)
    return evidence


KIT_CHECKS = [
    Check("clock.sync", "clock synchronised", clock_sync),
    Check("disk.recordings", "disk space for the night's recordings", recording_space),
    Check("power.battery", "battery runtime", battery_runtime),
    Check("cache.primed", "cache primed (checksums)", cache_primed),
    Check("encoder.warm", "encoders warm at target bitrate", encoders_warm),
    Check("rollback.armed", "rollback armed", rollback_armed),
    Check("consent.defaults", "consent capture defaults set", consent_defaults),
]
