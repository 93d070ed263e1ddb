"""The agent's settings: /etc/nomadkit/agent.json, read into frozen dataclasses.

The `agent` role writes this file from the Tour model and the cloud endpoints; the agent never
invents a value of its own, so every default lives in `nomadkit.tour.AgentSettings`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("/etc/nomadkit/agent.json")


@dataclass(frozen=True)
class UplinkConf:
    """One uplink as the agent sees it: its interface, kind and routing table."""

    name: str
    kind: str
    priority: int
    table: int


@dataclass(frozen=True)
class StreamConf:
    """One live stream: its units and the bitrate the live profile needs."""

    name: str
    bitrate_kbps: int
    audio_only_kbps: int


@dataclass(frozen=True)
class Window:
    """A doors-open window of one stop, in seconds since the epoch."""

    stop: str
    start: float
    end: float


@dataclass(frozen=True)
class S3Conf:
    """Where finished recordings go: the recordings bucket, under the kit's prefix."""

    bucket: str
    prefix: str
    region: str
    endpoint_url: str | None = None


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs, as rendered by the `agent` role."""

    tour: str
    kit: str
    uplinks: tuple[UplinkConf, ...]
    probe_host: str | None
    probe_port: int
    probe_interval_ms: int
    probe_timeout_ms: int
    dead_after_lost: int
    window: int
    degraded_loss_pct: float
    degraded_rtt_ms: int
    recover_after_s: float
    streams: tuple[StreamConf, ...]
    recordings_dir: str
    state_dir: str
    run_dir: str
    http_bind: str
    http_port: int
    heartbeat_s: int
    upload_max_kbps: int
    ups: str
    windows: tuple[Window, ...] = ()
    s3: S3Conf | None = None
    cloud_url: str | None = None
    ticket_public_keys: tuple[str, ...] = ()
    pull_status: str | None = None  # pull mode's outcome file, carried in the heartbeat
    systemctl: tuple[str, ...] = ("systemctl",)

    def uplink(self, name: str) -> UplinkConf:
        return next(u for u in self.uplinks if u.name == name)

    @property
    def by_priority(self) -> list[UplinkConf]:
        return sorted(self.uplinks, key=lambda u: u.priority)


def parse(data: dict[str, Any]) -> AgentConfig:
    """Build the config from the JSON document; an unknown key means a role/agent mismatch."""
    unknown = set(data) - {f.name for f in fields(AgentConfig)}
    if unknown:
        raise KeyError(f"unknown keys {sorted(unknown)}: the agent is older than its config")
    values = dict(data)
    values["uplinks"] = tuple(UplinkConf(**u) for u in data["uplinks"])
    values["streams"] = tuple(StreamConf(**s) for s in data.get("streams", ()))
    values["windows"] = tuple(Window(**w) for w in data.get("windows", ()))
    values["s3"] = S3Conf(**data["s3"]) if data.get("s3") else None
    values["ticket_public_keys"] = tuple(data.get("ticket_public_keys", ()))
    values["systemctl"] = tuple(data.get("systemctl", ("systemctl",)))
    return AgentConfig(**values)


def load(path: Path = DEFAULT_PATH) -> AgentConfig:
    """Read agent.json; a missing or broken file says which and how to fix it."""
    try:
        return parse(json.loads(path.read_text()))
    except FileNotFoundError:
        raise SystemExit(f"{path}: missing — deploy the agent role (`nomadkit deploy`)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: not a valid agent config ({exc}) — re-run the agent role") from None
