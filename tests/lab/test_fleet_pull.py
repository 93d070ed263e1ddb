"""Pull mode on a booted lab kit (issue #9): a kit that cannot be reached by inbound SSH applies a
new signed bundle on its own, and refuses a tampered one, saying why.

kit-b is push-deployed once with a `pull:` section (the pull role installs the pull runtime,
pull.json and the timer, which checks every minute). After that nothing reaches into the kit to
make it pull: the bundle is built by `nomadkit bundle` in its own process and uploaded to the
tour's asset bucket, and the kit's own timer fetches it through the CDN, verifies it and applies
it with pyinfra's @local connector. While that happens, inbound SSH to the kit is dropped by a rule
the kit lifts by itself a few minutes later. The outcome is read from the kit's pull status file
(`nomadkit.fleet.pullkit.write_status`) over SSH once SSH is back, and from the agent's heartbeat
in the cloud: while SSH is blocked `nomadkit status` shows the kit from its heartbeat, and the
refusal of a tampered bundle reaches the cloud in one.

Afterwards kit-b is put back as the session deployed it: pull mode retired on the kit (timer,
units, runtime and state: the pull role's `pull_mode_off` stops the timer and removes its units,
config and secrets but keeps the runtime and the pull records), the published bundles deleted, and
the played tour deployed again. The kits are the session's `nomadkit up` of the demo's first stop
(tests/lab/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from nomadkit import paths, secrets
from nomadkit.cloud import local
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.fleet import bundle, pullkit
from nomadkit.lab.testing import LabTour, kept_figures
from nomadkit.roles import pull
from nomadkit.roles.ops import APPLIED
from nomadkit.status.cli import Heartbeats, from_heartbeat, read_status
from nomadkit.tour import load_tour

pytestmark = [pytest.mark.lab, pytest.mark.extended]

KIT = "kit-b"
REF = "secret:night_shift_lab_deploy_key"
STATUS = f"{pull.STATE_DIR}/status.json"
TIMER_UNIT = "nomadkit-pull.timer"
NO_SSH_TABLE = "nomadkit_test_no_ssh"
# Bounds of the waits. The timer's first run comes at once (its OnBootSec is long past) plus up to
# RandomizedDelaySec (60 s); then one run every interval_min (1, then 2 from the bundle) + up to 60 s.
FIRST_RUN_S = 300
NO_SSH_S = 360  # inbound SSH dropped: long enough for two timer periods and the fetch
SSH_BACK_S = 180  # after the kit lifts the rule
APPLY_S = 1800  # the whole kit deploy, run by pyinfra @local on a TCG kit
REFUSE_S = 600
POLL_S = 10
CLOCK_SKEW_S = 30  # status times are the kit's clock (chrony from this machine's)
HEARTBEAT_S = 120  # the agent reads the pull status every 10 s and posts a heartbeat every 15 s

FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[dict[str, Any]]:
    with kept_figures("fleet-pull", "pull-mode figures", FIGURES) as kept:
        yield kept


@dataclass(frozen=True)
class PullLab:
    """kit-b in pull mode, and what the tests publish with and watch."""

    kits: LabTour  # the played tour (deployed again at the end)
    bundled: Path  # the played tour with pull every 2 min: what the bundles carry
    public_key: str  # the deploy key the kit trusts
    cloud: CloudEndpoints  # the local cloud as this machine reaches it (publishing)
    edge_log: Path  # the CDN edge's access log: the kit's fetches, seen from the cloud side


def with_pull(kits: LabTour, public: str, interval_min: int, path: Path) -> Path:
    """The played tour with the pull section `nomadkit bundle-key` asks for."""
    data = yaml.safe_load(kits.tour_file.read_text())
    data["pull"] = {"signing_key": REF, "public_key": public, "interval_min": interval_min}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_tour(path)  # a tour nomadkit accepts, or the error says why
    return path


def retire_pull_mode(kits: LabTour) -> None:
    """Take pull mode off the kit by hand: timer and service stopped, units, config, runtime, kept
    secrets, status and applied records removed — more than a deploy of the played tour removes
    (`pull_mode_off` keeps the runtime and the records), so the kit is as the session deployed it."""
    gone = " ".join([pull.TIMER, pull.SERVICE, pull.CONFIG, pull.RUNTIME, f"{pull.PREFIX}/nomadkit/fleet",
                     pull.SECRETS, pull.STATE_DIR, f"{APPLIED}/pull-runtime", f"{APPLIED}/unit-{TIMER_UNIT}"])
    kits.on(KIT, f"systemctl disable --now {TIMER_UNIT} 2>/dev/null; "
                 "systemctl stop nomadkit-pull.service 2>/dev/null; "
                 f"rm -rf {gone}; systemctl daemon-reload; "
                 f"systemctl reset-failed nomadkit-pull.service {TIMER_UNIT} 2>/dev/null; true", timeout=180)


def clear_bundles(cloud: CloudEndpoints) -> None:
    """Delete every bundle published for the kit, so its next fetch finds none."""
    s3 = bundle.s3_client(cloud)
    listed = s3.list_objects_v2(Bucket=cloud.assets_bucket, Prefix=bundle.bundle_key(f"{KIT}/"))
    for item in listed.get("Contents", []):
        s3.delete_object(Bucket=cloud.assets_bucket, Key=item["Key"])


@pytest.fixture(scope="module")
def pull_lab(kits: LabTour, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PullLab]:
    """kit-b push-deployed with pull mode on (every minute); afterwards put back as played."""
    folder = tmp_path_factory.mktemp("pull")
    seed, public = bundle.new_deploy_key()
    secrets.store(REF, seed)  # what `nomadkit bundle-key` does, in the session's throwaway secrets
    deployed = with_pull(kits, public, 1, folder / "tour-pull.yaml")
    cloud = CloudEndpoints.read(paths.endpoints_file(kits.tour.name))
    edge_log = local.LocalCloud.for_tour(kits.tour).state / "edge" / "access.log"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in local.LOCAL_CREDENTIALS.items():
            patch.setenv(name, value)  # boto3 signs its requests to the local cloud's S3 with these
        try:
            retire_pull_mode(kits)  # what an interrupted run may have left
            clear_bundles(cloud)
            started = time.monotonic()
            result = replace(kits, tour_file=deployed).deploy(kit=KIT)[KIT]
            FIGURES["push deploy turning pull mode on (s)"] = round(time.monotonic() - started, 1)
            assert result.status == "ok", f"{KIT}: the deploy with pull mode failed: {result.error}"
            yield PullLab(kits, with_pull(kits, public, 2, folder / "tour-pull-bundled.yaml"), public,
                          cloud, edge_log)
        finally:
            retire_pull_mode(kits)
            clear_bundles(cloud)
            restored = kits.deploy(kit=KIT)[KIT]
            assert restored.status == "ok", f"{KIT} not put back with the played tour: {restored.error}"


def pull_status(kits: LabTour) -> dict[str, Any] | None:
    """The kit's pull status file (written atomically by the puller), None before its first run."""
    text = kits.on(KIT, f"cat {STATUS} 2>/dev/null || true").strip()
    return json.loads(text) if text else None


def wait_status(kits: LabTour, what: str, done: Callable[[dict[str, Any]], bool], timeout: float,
                give_up: Callable[[dict[str, Any]], bool] = lambda _s: False) -> dict[str, Any]:
    """Read the pull status until `done` (bounded in time and count); fail at once on `give_up`."""
    deadline = time.monotonic() + timeout
    status = None
    for _ in range(int(timeout / POLL_S) + 2):
        with contextlib.suppress(UserError, subprocess.TimeoutExpired, ValueError):
            status = pull_status(kits)
        if status and done(status):
            return status
        if status and give_up(status):
            raise AssertionError(f"{what}: the kit says {status}")
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    raise AssertionError(f"no {what} within {timeout:.0f} s; the kit's pull status: {status}")


def wait_heartbeat(heartbeats: Heartbeats, check: Callable[[dict[str, Any]], bool], timeout: float) -> float:
    """When the cloud received a heartbeat of the kit whose pull status passes `check`."""
    last = None
    for _ in range(int(timeout / POLL_S) + 2):
        found = heartbeats.last(KIT)
        last = found and found[0].get("pull")
        if last and check(last):
            return found[1]
        time.sleep(POLL_S)
    raise AssertionError(f"no heartbeat of the kit reported it within {timeout:.0f} s; its pull: {last}")


def ssh_answers(kits: LabTour, timeout: float = 30) -> bool:
    try:
        return kits.lab.ssh(KIT, "true", timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@contextmanager
def no_inbound_ssh(kits: LabTour, seconds: float) -> Iterator[float]:
    """Drop new inbound SSH connections to the kit for `seconds` (its outbound traffic, the fetch
    included, is untouched). Nothing can reach in to lift the rule, so the kit lifts it itself: a
    transient systemd timer, armed before the rule goes in. Yields when it will be lifted
    (monotonic); on exit waits, bounded, for SSH to answer again, and as a last resort power-cycles
    the kit (the rule lives only in the running kernel, so a cold boot forgets it)."""
    lift = f"nomadkit-test-ssh-back-{int(time.time())}"
    kits.on(KIT, f"systemd-run --quiet --unit={lift} --on-active={int(seconds)}s "
                 f"/usr/sbin/nft delete table inet {NO_SSH_TABLE} && "
                 f"nft add table inet {NO_SSH_TABLE} && "
                 f"nft add chain inet {NO_SSH_TABLE} input '{{ type filter hook input priority -10; }}' && "
                 f"nft add rule inet {NO_SSH_TABLE} input tcp dport 22 ct state new drop")
    lifted_at = time.monotonic() + seconds
    try:
        assert not ssh_answers(kits), "inbound SSH still answers with the drop rule in place"
        yield lifted_at
    finally:
        deadline = lifted_at + SSH_BACK_S
        back = False
        for _ in range(int((deadline - time.monotonic()) / POLL_S) + 2):
            if back := ssh_answers(kits):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        if not back:
            kits.lab.power_cut(KIT)
            kits.lab.power_on(KIT)
        kits.on(KIT, f"nft delete table inet {NO_SSH_TABLE} 2>/dev/null; "
                     f"systemctl stop {lift}.timer 2>/dev/null; true")
        assert back, f"{KIT} did not answer SSH {SSH_BACK_S} s after lifting the rule; power-cycled it"


def make_bundle(pull_lab: PullLab, version: int, out: Path) -> bytes:
    """`nomadkit bundle TOUR --kit kit-b`, in its own process, as an operator builds one.

    Uploaded by the test (`bundle.publish`), not by `--publish`: the CLI uploads to the endpoints
    its host data carries, and on the lab those are the endpoints as the kits see them (the lab's
    cloud address, which only the lab's namespace forwards to this machine)."""
    code, made, err = pull_lab.kits.nomadkit("bundle", str(pull_lab.bundled), "--kit", KIT, "--out", str(out),
                                             "--version", str(version), timeout=300)
    assert (code, made["version"], made["published"]) == (0, version, []), (made, err[-2000:])
    data = out.read_bytes()
    host_data = json.loads(pullkit.read_tar(data)["files/host_data.json"])
    assert host_data["nomadkit_endpoints"]["cdn_url"] == pull_lab.kits.endpoints.cdn_url  # the kits' view
    return data


def publish(pull_lab: PullLab, data: bytes) -> float:
    """Upload a bundle as bundles/kit-b/latest (and by version); when it was published (epoch s)."""
    built = bundle.Built(data, json.loads(pullkit.read_tar(data)["manifest.json"]))
    bundle.publish(pull_lab.cloud, built)
    assert bundle.published_version(pull_lab.cloud, KIT) == built.version
    return time.time()


def edge_fetches(log: Path, offset: int) -> list[str]:
    """HTTP status of each GET of the kit's latest bundle the CDN edge logged after byte `offset`."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return re.findall(rf'"GET /{re.escape(bundle.latest_key(KIT))} HTTP/[\d.]+" (\d{{3}})', text)


@pytest.mark.timeout(3600)  # pull deploy (runtime wheels, a venv on TCG) + SSH-less window + a kit deploy
def test_a_kit_without_inbound_ssh_applies_a_new_bundle_on_its_own(pull_lab: PullLab, tmp_path: Path) -> None:
    kits = pull_lab.kits
    config = json.loads(kits.on(KIT, f"cat {pull.CONFIG}"))
    assert config["url"] == f"{kits.endpoints.cdn_url.rstrip('/')}/{bundle.latest_key(KIT)}", config
    assert config["public_key"] == pull_lab.public_key
    timer = kits.on(KIT, f"systemctl is-enabled {TIMER_UNIT}; systemctl is-active {TIMER_UNIT}; true")
    assert timer.split() == ["enabled", "active"], timer
    first = wait_status(kits, "first run of the pull timer", lambda _s: True, FIRST_RUN_S)
    assert first["applied_version"] == 0, first  # nothing published yet

    version = bundle.next_version(bundle.published_version(pull_lab.cloud, KIT))
    data = make_bundle(pull_lab, version, tmp_path / f"{KIT}-{version}.bundle.tar.gz")
    offset = pull_lab.edge_log.stat().st_size
    with no_inbound_ssh(kits, NO_SSH_S) as lifted_at:
        published_at = publish(pull_lab, data)
        codes: list[str] = []
        for _ in range(int(NO_SSH_S / 5) + 2):
            codes = edge_fetches(pull_lab.edge_log, offset)
            # one refused fetch may have started before the upload; two mean the CDN refuses it
            if "200" in codes or len(codes) >= 2 or time.monotonic() > lifted_at:
                break
            time.sleep(5)
        assert "200" in codes, (f"the kit's fetches of its bundle through the CDN while SSH was blocked "
                                f"got HTTP {codes or 'nothing'} (edge log {pull_lab.edge_log})")
        FIGURES["publish -> the kit fetches it (s)"] = round(time.time() - published_at, 1)
        # what `nomadkit status` shows of a kit SSH cannot reach: its last heartbeat
        seen = from_heartbeat(read_status(kits.tour.kit(KIT), kits.lab.connect_overrides()[KIT]),
                              Heartbeats(pull_lab.cloud))
        assert seen.get("via") == "heartbeat", seen
        assert time.time() - seen["received_at"] < HEARTBEAT_S, seen

    status = wait_status(kits, f"bundle {version} applied", lambda s: s.get("applied_version") == version,
                         APPLY_S, give_up=lambda s: (s["state"] in ("failed", "refused")
                                                     and s["at"] >= published_at - CLOCK_SKEW_S))
    assert status["state"] in ("applied", "current"), status
    if status["state"] == "applied":
        FIGURES["publish -> applied by the kit (s)"] = round(status["at"] - published_at, 1)
    # what only the bundle's tour says, put there by the kit's own deploy
    assert "OnUnitInactiveSec=2min" in kits.on(KIT, f"cat {pull.TIMER}").splitlines()
    release = f"{pull.STATE_DIR}/releases/{version}"
    assert kits.on(KIT, f"test -f {release}/deploys/kit.py && echo kept").strip() == "kept"


@pytest.mark.timeout(2400)  # a timer period or two, then kit-b put back as played (the module's teardown)
def test_a_tampered_bundle_is_refused_and_reported(pull_lab: PullLab, tmp_path: Path) -> None:
    kits = pull_lab.kits
    before = wait_status(kits, "a pull status", lambda _s: True, FIRST_RUN_S)
    applied = before["applied_version"]
    timer = kits.on(KIT, f"cat {pull.TIMER}")
    version = bundle.next_version(max(applied, bundle.published_version(pull_lab.cloud, KIT) or 0))
    items = pullkit.read_tar(make_bundle(pull_lab, version, tmp_path / "signed.bundle.tar.gz"))
    body = items["files/deploys/kit.py"]
    at = body.rindex(b"configure_kit()")
    items["files/deploys/kit.py"] = body[:at] + b"C" + body[at + 1:]  # one byte, after signing
    published_at = publish(pull_lab, bundle.tar_gz(items))

    status = wait_status(kits, f"the kit's verdict on the tampered bundle {version}",
                         lambda s: s["state"] == "refused" and s["at"] >= published_at - CLOCK_SKEW_S,
                         REFUSE_S, give_up=lambda s: s.get("version") == version)
    FIGURES["publish -> tampered bundle refused (s)"] = round(status["at"] - published_at, 1)
    assert status["reason"] == "deploys/kit.py: sha256 does not match the manifest (tampered)", status
    assert status["applied_version"] == applied, status
    release = f"{pull.STATE_DIR}/releases/{version}"
    assert kits.lab.ssh(KIT, f"test -e {release}").returncode == 1, f"refused, yet unpacked: {release}"
    assert kits.on(KIT, f"cat {pull.TIMER}") == timer
    reported = wait_heartbeat(Heartbeats(pull_lab.cloud), lambda p: p.get("state") == "refused"
                              and p.get("at", 0) >= published_at - CLOCK_SKEW_S, HEARTBEAT_S)
    FIGURES["publish -> refusal in the cloud's heartbeat (s)"] = round(reported - published_at, 1)
    journal = kits.on(KIT, f"journalctl --no-pager -o cat -u nomadkit-pull.service "
                           f"--since @{int(published_at) - CLOCK_SKEW_S}")
    assert "sha256 does not match the manifest" in journal, journal[-2000:]
