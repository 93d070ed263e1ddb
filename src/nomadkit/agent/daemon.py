"""The agent's main loop: probe, judge, move traffic, pick the encoder profile, report.

One thread probes and decides (the part with a one-second budget); uploads, cloud sync, the
HTTP endpoint and the slow system facts (battery, clock, encoder units: each a subprocess) run in
their own threads so a slow S3, a slow phone or a busy CPU never delays a failover or leaves
the status file stale. Everything the status shows is also logged, for `journalctl -u nomadkit-agent`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from nomadkit.agent import routing, system
from nomadkit.agent.config import AgentConfig
from nomadkit.agent.door import Door, post_json, pull_revocations, sync
from nomadkit.agent.encoder import FALLBACK, LIVE, Encoder
from nomadkit.agent.health import HEALTHY, Health, Thresholds
from nomadkit.agent.policy import choose
from nomadkit.agent.probe import Prober, carrier, counters
from nomadkit.agent.uploads import Throttle, Uploader
from nomadkit.agent.web import serve

log = logging.getLogger("nomadkit.agent")

TICK_S = 0.1  # the decision loop's slowest beat; probe answers wake it sooner
CARRIER_S = 0.1  # carrier is re-read this often, not on every wake (each read is 3 syscalls)
FACTS_S = 10.0  # how often battery, disk, clock and encoder units are read (each costs a process)
LOCK_NAME = "doors-open"
ROLLBACK_NAME = "rollback"  # present: the operator forced the audio-only profile (`nomadkit rollback`)


class Agent:
    """One kit's agent, built from its config.

    + config: the parsed /etc/nomadkit/agent.json
    """

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        limits = Thresholds(config.window, config.dead_after_lost, config.degraded_loss_pct,
                            config.degraded_rtt_ms, config.recover_after_s)
        self.health = {u.name: Health(u.name, limits) for u in config.uplinks}
        self.active = self._active_from_rules()
        self.encoder = Encoder(config.systemctl, [s.name for s in config.streams])
        self.events: deque[dict[str, Any]] = deque(maxlen=100)
        self.alerts: dict[str, str] = {}
        self.rates: dict[str, dict[str, float]] = {}
        self._counters: dict[str, tuple[float, int, int]] = {}
        self.stopping = threading.Event()
        self.ready = threading.Event()  # every worker started: what the preflight waits for
        self.run_dir = Path(config.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = Path(config.state_dir)
        self.door = Door(state / "door.db", config.tour, config.ticket_public_keys, self.current_stop)
        self.throttle = Throttle(config.upload_max_kbps * 1000 / 8, self.uploads_allowed)
        self.uploader = (Uploader(state / "uploads.db", Path(config.recordings_dir), config.s3, self.throttle)
                         if config.s3 else None)
        self.sync_state: dict[str, Any] = {}
        self.facts: dict[str, Any] = {}
        self.carrier_read_at = float("-inf")

    # --- decisions ---------------------------------------------------------------------------

    def _active_from_rules(self) -> str | None:
        tables = routing.active_tables()
        for uplink in self.config.uplinks:
            if uplink.table in tables:
                return uplink.name
        return None

    def event(self, kind: str, **details: Any) -> None:
        entry = {"at": time.time(), "event": kind, **details}
        self.events.append(entry)
        log.info("%s %s", kind, json.dumps(details, sort_keys=True))

    def step(self, now: float) -> None:
        """Judge every uplink and move the traffic if another uplink should carry it."""
        if now - self.carrier_read_at >= CARRIER_S:
            self.carrier_read_at = now
            for h in self.health.values():
                h.carrier = carrier(h.name)
        states = {name: h.evaluate(now) for name, h in self.health.items()}
        target = choose(self.config.by_priority, states, self.active)
        if target is not None and target != self.active:
            self.switch(target, states)

    def switch(self, target: str, states: dict[str, str]) -> None:
        """Point rule 1000 at `target`'s table; reconnect the senders on the new path (in the
        background: systemctl takes a while on a slow kit, and the loop keeps judging)."""
        uplink = self.config.uplink(target)
        started = time.monotonic()
        routing.point_to(uplink.table)
        previous, self.active = self.active, target
        self.event("switch", to=target, frm=previous,
                   why=states.get(previous, "start") if previous else "start",
                   took_ms=round((time.monotonic() - started) * 1000, 1),
                   states=states)
        if previous is not None:
            threading.Thread(target=self.encoder.reconnect, name="reconnect", daemon=True).start()

    def carrying_ok(self) -> bool:
        """Can the live profile go out? Only over a healthy uplink."""
        return self.active is not None and self.health[self.active].state == HEALTHY

    def uploads_allowed(self) -> bool:
        """Uploads share a healthy modem with the stream; never the satellite, never in fallback."""
        return (self.carrying_ok() and self.config.uplink(self.active).kind != "satellite"
                and self.encoder.profile != FALLBACK and not self.stopping.is_set())

    def pick_profile(self) -> None:
        """Roll the encoder back to audio only when no uplink can carry video, or when the
        operator forced it; restore after."""
        forced = (self.run_dir / ROLLBACK_NAME).exists()
        want = LIVE if self.carrying_ok() and not forced else FALLBACK
        if want == self.encoder.profile:
            return
        errors = self.encoder.select(want)
        if errors:
            self.alerts["encoder"] = f"cannot start the {want} profile: {'; '.join(errors)}"
            return
        self.alerts.pop("encoder", None)
        if want == FALLBACK:
            self.alerts["rollback"] = (
                "rollback forced by the operator" if forced else
                "no uplink can carry the live bitrate") + ": streaming audio only; the local " \
                "recording continues and is uploaded later"
        else:
            self.alerts.pop("rollback", None)
        self.event("profile", profile=want, active=self.active)

    def current_stop(self) -> str | None:
        """The stop whose doors-open window is nearest now (the door serves that stop)."""
        if not self.config.windows:
            return None
        now = time.time()
        return min(self.config.windows, key=lambda w: 0 if w.start <= now <= w.end
                   else min(abs(now - w.start), abs(now - w.end))).stop

    def hold_lock(self) -> None:
        """Hold the update lock file during a doors-open window; release it after."""
        now = time.time()
        window = next((w for w in self.config.windows if w.start <= now <= w.end), None)
        path = self.run_dir / LOCK_NAME
        if window is None:
            path.unlink(missing_ok=True)
            return
        text = json.dumps({"stop": window.stop, "until": window.end, "kit": self.config.kit})
        if not path.exists() or path.read_text() != text:
            path.write_text(text)

    def measure_rates(self, now: float) -> None:
        for name in self.health:
            tx, rx = counters(name)
            last = self._counters.get(name)
            self._counters[name] = (now, tx, rx)
            if last and now > last[0]:
                span = now - last[0]
                self.rates[name] = {"tx_kbps": round((tx - last[1]) * 8 / 1000 / span, 1),
                                    "rx_kbps": round((rx - last[2]) * 8 / 1000 / span, 1)}

    # --- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Everything at a glance: what `GET /status`, the heartbeat and `nomadkit status` show."""
        uplinks = {}
        for u in self.config.by_priority:
            uplinks[u.name] = {"kind": u.kind, "priority": u.priority, **self.health[u.name].as_dict(),
                               **self.rates.get(u.name, {})}
        lock = self.run_dir / LOCK_NAME
        return {
            "kit": self.config.kit, "tour": self.config.tour, "at": time.time(),
            "ready": self.ready.is_set(),
            "active": self.active, "uplinks": uplinks,
            "encoder": {"profile": self.encoder.profile, "units": self.facts.get("units", {})},
            "uploads": self.uploader.status() if self.uploader else {"disabled": "no recordings bucket"},
            "door": {"stop": self.current_stop(), **self.door.counts()},
            "sync": self.sync_state,
            **{key: self.facts.get(key, {"ok": False, "error": "not read yet"})
               for key in ("battery", "disk", "clock")},
            "pull": self.facts.get("pull"),
            "facts_at": self.facts.get("at"),
            "doors_open_lock": json.loads(lock.read_text()) if lock.exists() else None,
            "alerts": dict(self.alerts),
            "events": list(self.events)[-20:],
        }

    def read_facts(self) -> None:
        """Battery, disk, clock and encoder units, replaced in one piece (readers never see half)."""
        self.facts = {"battery": system.battery(self.config.ups),
                      "disk": system.disk(self.config.recordings_dir),
                      "clock": system.clock(), "units": self.encoder.states(),
                      "pull": system.pull(self.config.pull_status), "at": time.time()}

    def write_status(self) -> dict[str, Any]:
        """Atomically replace <run_dir>/status.json (what `nomadkit status` reads over SSH)."""
        status = self.status()
        tmp = self.run_dir / "status.json.tmp"
        tmp.write_text(json.dumps(status, sort_keys=True))
        os.replace(tmp, self.run_dir / "status.json")
        return status

    # --- loops -------------------------------------------------------------------------------

    def probe_target(self) -> tuple[str, int] | None:
        if not self.config.probe_host:
            self.alerts["probe"] = "no probe target: the cloud endpoints were unknown at deploy time"
            return None
        try:
            info = socket.getaddrinfo(self.config.probe_host, self.config.probe_port,
                                      type=socket.SOCK_STREAM)
        except OSError as error:
            self.alerts["probe"] = f"cannot resolve {self.config.probe_host}: {error}"
            return None
        self.alerts.pop("probe", None)
        return info[0][4][0], self.config.probe_port

    def run_probes(self) -> None:
        """The decision loop: probes every interval, judgement every tick, reports every second."""
        interval = self.config.probe_interval_ms / 1000
        address = self.probe_target()
        prober = Prober(address, self.config.probe_timeout_ms / 1000) if address else None
        next_probe = next_second = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if prober is None and now >= next_second and (address := self.probe_target()):
                prober = Prober(address, self.config.probe_timeout_ms / 1000)
            if prober and now >= next_probe:
                results = [r for u in self.config.uplinks if (r := prober.send(u.name))]
                next_probe = max(next_probe + interval, now)
            else:
                results = []
            wait = max(0.0, min(TICK_S, next_probe - time.monotonic()))
            if prober:
                results += prober.poll(wait)
            else:
                time.sleep(wait)
            for name, rtt in results:
                self.health[name].observe(rtt)
            self.step(time.monotonic())
            if now >= next_second:
                next_second = now + 1.0
                self.pick_profile()
                self.hold_lock()
                self.measure_rates(now)
                self.write_status()

    def run_facts(self) -> None:
        while not self.stopping.is_set():
            self.read_facts()
            self.stopping.wait(FACTS_S)

    def run_uploads(self) -> None:
        """Warm the S3 client first (importing boto3 is the slowest part of a start: ~40 s on a
        TCG kit), then say the agent is ready; upload whenever the path allows."""
        if self.uploader:
            self.uploader.warm()
        self.ready.set()
        while not self.stopping.wait(5.0):
            if self.uploader and self.uploads_allowed():
                try:
                    self.uploader.run_once()
                    self.alerts.pop("uploads", None)
                except Exception as error:  # S3 down, credentials, disk: say so, retry later
                    self.alerts["uploads"] = f"recording upload failed, will retry: {error}"
                    log.warning("uploads: %s", error)

    def run_cloud(self) -> None:
        """Check-in sync, revocations and heartbeats, whenever the cloud can be reached."""
        url = self.config.cloud_url
        while url and not self.stopping.is_set():
            try:
                synced = sync(self.door, url, self.config.kit)
                revoked = pull_revocations(self.door, url)
                post_json(f"{url.rstrip('/')}/kits/heartbeat",
                          {"kit": self.config.kit, "status": self.status()})
                self.sync_state = {"ok": True, "at": time.time(), "checkins_sent": synced,
                                   "revoked": revoked}
                self.alerts.pop("cloud", None)
            except (OSError, ValueError) as error:
                self.sync_state = {"ok": False, "at": time.time(), "error": str(error)}
                self.alerts["cloud"] = f"cloud unreachable, check-ins wait on the kit: {error}"
            self.stopping.wait(self.config.heartbeat_s)

    def run(self) -> None:
        """Start the worker threads and run the decision loop until stopped."""
        threads = [threading.Thread(target=fn, name=fn.__name__, daemon=True)
                   for fn in (self.run_facts, self.run_uploads, self.run_cloud)]
        threads.append(threading.Thread(target=serve, args=(self,), name="http", daemon=True))
        for thread in threads:
            thread.start()
        log.info("agent for %s/%s started; active uplink %s", self.config.tour, self.config.kit,
                 self.active or "none yet")
        self.run_probes()
