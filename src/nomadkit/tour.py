"""The tour file model: the single source of truth for every value nomadkit uses.

Everything downstream (the Pulumi program, the pyinfra inventory, the roles, the agent, the
preflight) reads a validated `Tour`. Defaults live here and nowhere else.

Structural rules are pydantic field types; rules that span fields live in `Tour.problems()`,
which returns every problem at once so `nomadkit validate` can list them all.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nomadkit.lab.net import CLOUD_NAME as LAB_TIME_SERVER

# --- value types -----------------------------------------------------------------------------

SECRET_REF = re.compile(r"^(env|secret):[A-Za-z_][A-Za-z0-9_]*$")

# Shapes of credentials that must never be written into a tour file.
INLINE_SECRET_SHAPES = (
    re.compile(r"^(sk|rk)_(live|test)_[A-Za-z0-9]{8,}"),
    re.compile(r"^whsec_[A-Za-z0-9+/=]{8,}"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"^(ghp|gho|ghs)_[A-Za-z0-9]{20,}"),
    re.compile(r"^xox[abps]-[A-Za-z0-9-]{10,}"),
)


def _secret_ref(value: str) -> str:
    if re.fullmatch(r"\d{4,8}", value):
        raise PydanticCustomError(
            "inline_secret",
            "looks like an inline PIN — store it as a secret and write env:NAME or secret:NAME",
        )
    if not SECRET_REF.match(value):
        raise PydanticCustomError(
            "secret_ref",
            "is not a secret reference — write env:NAME (environment variable) or "
            "secret:NAME (file under the secrets directory), never the secret itself",
        )
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "timezone",
            "'{value}' is not a known time zone — use an IANA name such as Europe/Lisbon",
            {"value": value},
        ) from None
    return value


def _resolution(value: str) -> str:
    match = re.fullmatch(r"(\d{3,4})x(\d{3,4})", value)
    if not match or int(match[1]) % 2 or int(match[2]) % 2:
        raise PydanticCustomError(
            "resolution",
            "'{value}' is not a resolution — write WIDTHxHEIGHT with even numbers, e.g. 1280x720",
            {"value": value},
        )
    return value


SecretRef = Annotated[str, AfterValidator(_secret_ref)]
TimeZone = Annotated[str, AfterValidator(_timezone)]
Resolution = Annotated[str, AfterValidator(_resolution)]
# Patterns with the words an error uses to explain them.
PATTERNS = {
    r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$": "lowercase letters, digits and dashes, 2-32 long (e.g. kit-a)",
    r"^[a-z][a-z0-9]{1,14}$": "an interface name: lowercase letters and digits (e.g. wwan0)",
    r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$": "a MAC address in lowercase (e.g. 52:54:00:0a:00:01)",
    r"^[0-9a-f]{64}$": "a sha256 in hex, 64 characters (`sha256sum FILE`)",
    r"^[a-z]{2}(-[a-z]+)+-\d$": "an AWS region (e.g. eu-west-1)",
    r"^([a-z0-9-]+\.)+[a-z]{2,}$": "a domain name (e.g. live.example.org)",
    r"^[a-z_][a-z0-9_-]*$": "a Unix user name (e.g. root)",
    r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$": "a relative path (e.g. preview/index.html)",
    r"^[A-Z0-9][A-Z0-9-]{1,31}$": "an uppercase SKU (e.g. TEE-BLK-M)",
    r"^[A-Z]{3}$": "an ISO 4217 currency code (e.g. EUR)",
    r"^[A-Za-z0-9_-]{43}$":
        "an Ed25519 public key, base64url, 43 characters (`nomadkit bundle-key` prints it)",
}

Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]
IfName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{1,14}$")]
Mac = Annotated[str, Field(pattern=r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Model(BaseModel):
    """Base for every tour-file section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections --------------------------------------------------------------------------------


class LocalPorts(Model):
    """Fixed loopback ports of the local cloud, so kits get stable endpoints."""

    moto: int = Field(4566, ge=1024, le=65535)
    edge: int = Field(8080, ge=1024, le=65535)
    webhook: int = Field(8081, ge=1024, le=65535)
    relay_srt: int = Field(9000, ge=1024, le=65535)
    relay_http: int = Field(8082, ge=1024, le=65535)


class Cloud(Model):
    """Where the tour's cloud side lives."""

    region: str = Field("eu-west-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    domain: str | None = Field(None, pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$")
    local_host: str = Field(
        "127.0.0.1",
        description="Address the local cloud binds to (loopback; the lab adds its own gateway).",
    )
    ports: LocalPorts = Field(default_factory=LocalPorts)


class Management(Model):
    """How pyinfra reaches the kit over SSH."""

    address: str
    port: int = Field(22, ge=1, le=65535)
    user: str = Field("root", pattern=r"^[a-z_][a-z0-9_-]*$")
    interface: IfName = Field("mgmt0", description="The NIC SSH arrives on (the only one SSH is allowed on).")
    admin: str = Field("kitadmin", pattern=r"^[a-z_][a-z0-9_-]*$",
                       description="Admin account made on the kit (SSH key only, sudo).")
    authorized_keys: list[str] = Field(default_factory=list, description=(
        "SSH public keys of the crew, for root and the admin; empty keeps the keys the image has."))


class Uplink(Model):
    """One path to the internet: a 5G modem, a satellite terminal or plain ethernet."""

    name: IfName
    kind: Literal["modem", "satellite", "ethernet"]
    priority: int = Field(ge=1, le=99, description="1 is tried first; modems before satellite.")
    mac: Mac | None = None
    apn: str | None = Field(None, min_length=1, max_length=100)
    carrier: str | None = None
    pin: SecretRef | None = None


class Stream(Model):
    """A live stream a kit encodes and sends to the tour's ingest relay."""

    name: Slug
    resolution: Resolution = "1280x720"
    fps: int = Field(30, ge=10, le=60)
    bitrates_kbps: list[Annotated[int, Field(ge=300, le=20000)]] = Field(
        default_factory=lambda: [3500, 2000, 1000], min_length=1, max_length=6
    )
    audio_kbps: int = Field(128, ge=32, le=320)
    audio_channels: Literal[1, 2] = Field(2, description="1 (mono) halves the audio encoder's work.")
    audio_rate: Literal[16000, 24000, 32000, 44100, 48000] = Field(
        48000, description="Audio sample rate, Hz.")
    audio_coder: Literal["twoloop", "fast"] = Field(
        "twoloop", description="AAC search: `fast` takes about half the CPU (small kits), "
                               "`twoloop` sounds better.")
    audio_only_kbps: int = Field(48, ge=16, le=128, description="The rollback profile.")
    latency_ms: int = Field(1200, ge=120, le=8000, description="SRT latency.")
    device: str = Field("/dev/video0", description="Capture device on a real kit.")
    audio_device: str = Field("hw:0", description="ALSA capture device on a real kit.")
    segment_seconds: int = Field(60, ge=2, le=3600, description="Length of each local recording segment.")
    keyframe_seconds: int = Field(2, ge=1, le=10, description="Keyframe interval (segments cut on them).")


class CacheAsset(Model):
    """A preview asset the kit's cache holds locally, checked by checksum."""

    path: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")]
    sha256: Sha256
    bytes: int = Field(ge=0)


class AgentSettings(Model):
    """How the kit agent judges uplinks, moves traffic and shares the uplink with uploads."""

    probe_interval_ms: int = Field(200, ge=50, le=2000, description="Probes per uplink, this often.")
    probe_timeout_ms: int = Field(400, ge=50, le=5000, description="A probe not answered by then is lost.")
    dead_after_lost: int = Field(3, ge=1, le=20, description="Lost probes in a row that make an uplink dead.")
    window: int = Field(20, ge=5, le=200, description="Recent probes that loss and RTT are measured over.")
    degraded_loss_pct: float = Field(10.0, gt=0, lt=100, description="Loss above this: degraded.")
    degraded_rtt_ms: int = Field(400, ge=10, le=10000, description="Median RTT above this: degraded.")
    recover_after_s: float = Field(8.0, ge=0, le=600, description=(
        "An uplink must be healthy this long before it is healthy again, and before traffic "
        "returns to a better uplink (the hysteresis)."))
    upload_max_kbps: int = Field(2000, ge=64, le=1_000_000, description=(
        "Ceiling for recording uploads, so they never starve the live stream."))
    http_port: int = Field(8765, ge=1024, le=65535, description="Status and door check-in endpoint.")
    heartbeat_s: int = Field(15, ge=1, le=3600, description="Heartbeat to the cloud, this often.")
    lock_before_doors_min: int = Field(60, ge=0, le=24 * 60, description=(
        "The update lock is held from this long before doors open until the stop ends."))
    ups: str = Field("kit@localhost", description="NUT UPS name that `upsc` reports battery from.")


class Kit(Model):
    """A nomad kit: mini PC, modems, satellite terminal, capture, UPS."""

    name: Slug
    management: Management
    hardware: Literal["mini-pc", "lab"] = "mini-pc"
    uplinks: list[Uplink] = Field(min_length=1)
    streams: list[Stream] = Field(default_factory=list)
    cache: list[CacheAsset] = Field(default_factory=list)
    lan_interface: IfName = "lan0"
    recordings_dir: str = "/var/lib/nomadkit/recordings"
    agent: AgentSettings = Field(default_factory=AgentSettings)
    cache_port: int = Field(80, ge=1, le=65535, description="The venue LAN reaches the asset cache here.")
    handoff_port: int = Field(5600, ge=1024, le=65000, description=(
        "Loopback UDP port where the encoder hands its stream to the SRT sender (the listed "
        "streams take this port and the next ones). Only the sender reconnects when the uplink "
        "changes; the encoder and the recording never stop."))
    cache_max_mb: int = Field(2048, ge=16, le=1_000_000, description="proxy_cache size, assets not primed.")
    journal_max_mb: int = Field(200, ge=16, le=100_000, description="journald's disk cap.")
    time_servers: list[str] | None = Field(None, description=(
        "NTP servers; None: Debian's pool on real kits, the lab's own time server in the lab."))

    def ntp_servers(self) -> list[str]:
        """The NTP servers chrony uses: explicit ones, else the default for this hardware."""
        if self.time_servers is not None:
            return self.time_servers
        return [LAB_TIME_SERVER] if self.hardware == "lab" else ["2.debian.pool.ntp.org"]


class Stop(Model):
    """One event of the tour."""

    name: Slug
    city: str = Field(min_length=1)
    venue: str = Field(min_length=1)
    date: date
    doors_open: time
    duration_hours: float = Field(3.0, gt=0, le=24)
    timezone: TimeZone
    capacity: int = Field(ge=1, le=5000)
    kits: list[str] = Field(min_length=1)
    consent_url: HttpUrl


class Tier(Model):
    """A ticket tier; members-only tiers open early to members."""

    name: Slug
    price: Decimal = Field(ge=0, max_digits=8, decimal_places=2)
    capacity: int = Field(ge=1)
    members_only: bool = False


class MerchItem(Model):
    sku: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")]
    name: str = Field(min_length=1)
    price: Decimal = Field(ge=0, max_digits=8, decimal_places=2)
    stock: int = Field(ge=0)


class Commerce(Model):
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    tiers: list[Tier] = Field(min_length=1)
    members_early_access_hours: int = Field(48, ge=0, le=24 * 30)
    general_sale_opens: AwareDatetime | None = Field(
        None, description="When tickets go on sale to everyone (with a UTC offset); members-only "
        "tiers open members_early_access_hours earlier. None: sales are open.")
    merch: list[MerchItem] = Field(default_factory=list)
    webhook_secret: SecretRef
    ticket_key: SecretRef


class Consent(Model):
    """Consent-forward capture defaults."""

    default_capture: Literal["stage-only", "opted-in", "everyone"] = "stage-only"
    blur_unconsented: bool = True
    signage_required: bool = True
    filmable: list[Literal["performers", "crew", "opted-in-guests"]] = Field(
        default_factory=lambda: ["performers", "crew", "opted-in-guests"]
    )


class PullMode(Model):
    """Pull-mode deploys for kits behind carrier NAT: signed bundles the kits fetch through the CDN."""

    signing_key: SecretRef = Field(description=(
        "The tour's deploy key (Ed25519 seed, base64url) that signs bundles; "
        "`nomadkit bundle-key` makes one."))
    public_key: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$", description=(
        "The deploy key's public half: kits apply only bundles it verifies."))
    interval_min: int = Field(10, ge=1, le=24 * 60,
                              description="Each kit checks for a new bundle this often.")


class Rollout(Model):
    """How `nomadkit deploy --rolling` goes through the kits: one canary, then batches."""

    batch: int = Field(2, ge=1, le=100, description=(
        "Kits deployed together after the canary; a batch with a failed kit halts the rest."))


# --- the tour --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A rule broken across fields: where (a field path), what, and what to do."""

    loc: tuple[str | int, ...]
    message: str


class Tour(Model):
    """A whole tour, as written in its tour file."""

    name: Slug
    cloud: Cloud = Field(default_factory=Cloud)
    stops: list[Stop] = Field(min_length=1)
    kits: list[Kit] = Field(min_length=1)
    commerce: Commerce
    consent: Consent = Field(default_factory=Consent)
    assets_dir: str | None = Field(
        None, description="Folder of preview assets (relative to the tour file) for the asset bucket.")
    pull: PullMode | None = Field(None, description=(
        "Set to let kits fetch and apply signed deploy bundles on their own (no inbound SSH needed)."))
    rollout: Rollout = Field(default_factory=Rollout)

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> Tour:
        problems = self.problems()
        collector = (info.context or {}).get("problems")
        if collector is not None:
            collector.extend(problems)
        elif problems:
            first = problems[0]
            raise PydanticCustomError("tour_rule", "{where}: {message}", {
                "where": format_loc(first.loc), "message": first.message})
        return self

    def kit(self, name: str) -> Kit:
        return next(k for k in self.kits if k.name == name)

    def stop(self, name: str) -> Stop:
        return next(s for s in self.stops if s.name == name)

    def problems(self) -> list[Problem]:
        """Every rule that spans fields, all at once."""
        return [
            *_unique(self.stops, "name", ("stops",)),
            *_unique(self.kits, "name", ("kits",)),
            *_unique(self.commerce.tiers, "name", ("commerce", "tiers")),
            *_unique(self.commerce.merch, "sku", ("commerce", "merch")),
            *self._stop_rules(),
            *(p for i, kit in enumerate(self.kits) for p in _kit_rules(kit, ("kits", i))),
            *_inline_secrets(self.model_dump(mode="json"), ()),
        ]

    def _stop_rules(self) -> list[Problem]:
        kit_names = [k.name for k in self.kits]
        found = []
        for i, stop in enumerate(self.stops):
            for j, name in enumerate(stop.kits):
                if name not in kit_names:
                    found.append(Problem(("stops", i, "kits", j), (
                        f"no kit named '{name}' — define it under kits: "
                        f"(known: {', '.join(dict.fromkeys(kit_names))})")))
            if i and stop.date < self.stops[i - 1].date:
                found.append(Problem(("stops", i, "date"), (
                    f"must not be before stops[{i - 1}].date ({self.stops[i - 1].date}) "
                    "— reorder the stops or fix the date")))
            seats = sum(t.capacity for t in self.commerce.tiers)
            if seats > stop.capacity:
                found.append(Problem(("stops", i, "capacity"), (
                    f"ticket tiers sell {seats} seats but the venue holds {stop.capacity} "
                    "— lower the tier capacities or raise the stop's capacity")))
        return found


def _unique(items: list[BaseModel], key: str, where: tuple[str | int, ...]) -> list[Problem]:
    seen: dict[str, int] = {}
    found = []
    for i, item in enumerate(items):
        value = getattr(item, key)
        if value in seen:
            found.append(Problem((*where, i, key), (
                f"'{value}' is already used by {format_loc((*where, seen[value]))} "
                f"— give each one a unique {key}")))
        seen.setdefault(value, i)
    return found


def _kit_rules(kit: Kit, where: tuple[str | int, ...]) -> list[Problem]:
    found = [*_unique(kit.uplinks, "name", (*where, "uplinks")),
             *_unique(kit.uplinks, "priority", (*where, "uplinks")),
             *_unique(kit.streams, "name", (*where, "streams"))]
    if kit.streams and len(kit.uplinks) < 2:
        found.append(Problem((*where, "uplinks"), (
            "a kit that streams needs at least two uplinks — add a second modem or the satellite")))
    modem_priorities = [u.priority for u in kit.uplinks if u.kind == "modem"]
    for i, uplink in enumerate(kit.uplinks):
        if uplink.kind == "modem" and not uplink.apn:
            found.append(Problem((*where, "uplinks", i, "apn"), (
                "a modem uplink needs its carrier's APN — add apn: (e.g. internet)")))
        if uplink.kind == "satellite" and any(p > uplink.priority for p in modem_priorities):
            found.append(Problem((*where, "uplinks", i, "priority"), (
                "satellite must come after every modem — give it a larger priority number")))
    for i, stream in enumerate(kit.streams):
        ladder = stream.bitrates_kbps
        if ladder != sorted(ladder, reverse=True) or len(set(ladder)) != len(ladder):
            found.append(Problem((*where, "streams", i, "bitrates_kbps"), (
                "the bitrate ladder must go from highest to lowest without repeats "
                f"— e.g. {sorted(set(ladder), reverse=True)}")))
    return found


def _inline_secrets(data: object, where: tuple[str | int, ...]) -> list[Problem]:
    """Walk the whole document: a credential pasted anywhere is refused."""
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _inline_secrets(v, (*where, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _inline_secrets(v, (*where, i))]
    if isinstance(data, str) and any(shape.search(data) for shape in INLINE_SECRET_SHAPES):
        return [Problem(where, (
            "looks like an inline secret — remove it from the file, store it as a secret and "
            "write env:NAME or secret:NAME"))]
    return []


def format_loc(loc: tuple[str | int, ...]) -> str:
    """('stops', 2, 'date') -> 'stops[2].date' (how users read paths in errors)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_tour(path: str | Path) -> Tour:
    """Read and validate a tour file; raise `TourFileError` listing every problem."""
    from nomadkit.tourfile import load  # the YAML reader with positions lives beside, not here

    return load(Path(path))
