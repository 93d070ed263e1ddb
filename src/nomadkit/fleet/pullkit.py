"""Kit side of pull mode: fetch the kit's latest deploy bundle, verify it, apply it, say how it went.

Kits behind carrier NAT cannot be reached by SSH, so they pull: a systemd timer runs
`python3 -m nomadkit.fleet.pullkit` with /etc/nomadkit/pull.json. It runs on Debian's python3 with
only the standard library and python3-cryptography (no nomadkit dependencies), because it is the
part that must keep working when a bundle is bad.

A bundle is a gzip'd tar::

    manifest.json   {"format", "tour", "kit", "version", "created", "entry", "runtime", "members"}
    manifest.sig    base64url Ed25519 signature of manifest.json's canonical bytes
    files/<path>    every member the manifest lists, with its sha256

It is refused unless the signature verifies with the tour's public deploy key, it is for this
kit, its version is newer than the one applied, and every file matches the manifest exactly (no
file missing, none added, no link, no path leaving the bundle). The outcome goes to a status file
the agent's heartbeat carries.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "nomadkit-bundle/1"
MAX_BUNDLE_BYTES = 64 << 20  # a bundle is code and data, a few MB; anything bigger is wrong
APPLY_TIMEOUT_S = 3600


class Refused(Exception):
    """A bundle that must not be applied; the message says why, for the status and the heartbeat."""


class Stale(Refused):
    """A correctly signed bundle that is not newer than the one applied."""

    def __init__(self, version: int, applied: int) -> None:
        super().__init__(f"bundle version {version} is not newer than the applied version {applied}"
                         + ("" if version == applied else " (an old bundle replayed?)"))
        self.version = version


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest and its files (path -> bytes)."""

    manifest: dict[str, Any]
    files: dict[str, bytes]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(manifest: dict[str, Any]) -> bytes:
    """The exact bytes that are signed: sorted keys, no spaces."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def safe_member(name: str) -> str:
    """A member path inside `files/`, refused if it could land outside the release folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not name or name != str(path):
        raise Refused(f"bundle member {name!r} has an unsafe path")
    return name


def read_tar(data: bytes) -> dict[str, bytes]:
    """Every regular file of the bundle's tar; links, devices and odd paths are refused."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise Refused(f"bundle is {len(data)} bytes, more than {MAX_BUNDLE_BYTES}")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            out = {}
            for member in tar.getmembers():
                if member.isdir():
                    continue
                if not member.isfile():
                    raise Refused(f"bundle member {member.name!r} is not a regular file")
                extracted = tar.extractfile(member)
                assert extracted is not None
                out[safe_member(member.name)] = extracted.read()
            return out
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Refused(f"not a bundle (damaged or not a gzip'd tar: {exc})") from None


def verify(data: bytes, public_key: str, kit: str, applied_version: int) -> Bundle:
    """Check a downloaded bundle completely, or raise `Refused` saying what is wrong.

    + data: the bundle as fetched
    + public_key: the tour's deploy public key (base64url), from pull.json
    + kit: this kit's name; a bundle for another kit is refused
    + applied_version: the version applied last; only newer bundles pass (no rollback by replay)
    """
    members = read_tar(data)
    if "manifest.json" not in members or "manifest.sig" not in members:
        raise Refused("bundle is unsigned (no manifest.json / manifest.sig)")
    try:
        manifest = json.loads(members["manifest.json"])
        signature = b64decode(members["manifest.sig"].decode().strip())
        key = Ed25519PublicKey.from_public_bytes(b64decode(public_key))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Refused(f"bundle manifest or signature cannot be read ({exc})") from None
    try:
        key.verify(signature, canonical(manifest))
    except InvalidSignature:
        raise Refused("signature does not verify with the tour's deploy key: forged or altered") from None
    if manifest.get("format") != FORMAT:
        raise Refused(f"bundle format {manifest.get('format')!r} is not {FORMAT}")
    if manifest.get("kit") != kit:
        raise Refused(f"bundle is for kit {manifest.get('kit')!r}, this is {kit!r}")
    if int(manifest["version"]) <= applied_version:
        raise Stale(int(manifest["version"]), applied_version)
    files = {name.removeprefix("files/"): body for name, body in members.items() if name.startswith("files/")}
    listed = manifest.get("members", {})
    if set(files) != set(listed):
        extra, missing = sorted(set(files) - set(listed)), sorted(set(listed) - set(files))
        raise Refused(f"bundle files differ from its manifest (extra: {extra}, missing: {missing})")
    for name, body in files.items():
        if hashlib.sha256(body).hexdigest() != listed[name]:
            raise Refused(f"{name}: sha256 does not match the manifest (tampered)")
    return Bundle(manifest, files)


@dataclass(frozen=True)
class Config:
    """/etc/nomadkit/pull.json, written by the pull role."""

    kit: str
    url: str | None  # None until the cloud is up (the pull role renders it from the endpoints)
    public_key: str
    state_dir: Path
    venv: Path
    secrets_dir: Path

    @classmethod
    def read(cls, path: Path) -> Config:
        raw = json.loads(path.read_text())
        return cls(raw["kit"], raw["url"], raw["public_key"], Path(raw["state_dir"]), Path(raw["venv"]),
                   Path(raw["secrets_dir"]))

    @property
    def status_file(self) -> Path:
        return self.state_dir / "status.json"


def applied_version(config: Config) -> int:
    """The version of the last bundle applied successfully (0 if none)."""
    try:
        return int(json.loads(config.status_file.read_text()).get("applied_version", 0))
    except (OSError, ValueError):
        return 0


def write_status(config: Config, **status: Any) -> dict[str, Any]:
    """Record the outcome atomically; the agent's heartbeat reads this file."""
    record = {"kit": config.kit, "applied_version": applied_version(config), "at": int(time.time()), **status}
    config.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = config.status_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(config.status_file)
    return record


def fetch(url: str, timeout_s: float = 60) -> bytes:
    """Download the bundle (through the CDN); at most MAX_BUNDLE_BYTES are read."""
    request = urllib.request.Request(url, headers={"Cache-Control": "no-cache"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.read(MAX_BUNDLE_BYTES + 1)


def unpack(bundle: Bundle, release: Path) -> None:
    """Write the bundle's files under a fresh release folder."""
    if release.exists():
        shutil.rmtree(release)
    for name, body in bundle.files.items():
        target = release / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)


def apply(bundle: Bundle, release: Path, config: Config) -> subprocess.CompletedProcess[str]:
    """Run the bundle's deploy on this kit with pyinfra's @local connector.

    The bundle's own nomadkit code comes first on PYTHONPATH; secrets come from the kit's
    secrets folder (put there by the last push deploy), never from the bundle.
    """
    env = {**os.environ, "PYTHONPATH": str(release / "src"), "NOMADKIT_SECRETS": str(config.secrets_dir),
           "PYINFRA_PROGRESS": "off"}
    argv = [str(config.venv / "bin" / "pyinfra"), "-y",
            str(release / bundle.manifest["inventory"]), str(release / bundle.manifest["entry"])]
    return subprocess.run(argv, cwd=release, env=env, capture_output=True, text=True, timeout=APPLY_TIMEOUT_S)


def pull_once(config: Config, data: bytes | None = None) -> dict[str, Any]:
    """Fetch (unless `data` is given), verify, apply; return and record the status."""
    current = applied_version(config)
    if data is None and config.url is None:
        return write_status(config, state="unconfigured",
                            reason="no bundle URL yet: push-deploy the kit once the cloud is up")
    try:
        data = fetch(config.url) if data is None else data  # type: ignore[arg-type]
    except (urllib.error.URLError, OSError) as exc:
        return write_status(config, state="unreachable", reason=f"cannot fetch {config.url}: {exc}")
    try:
        bundle = verify(data, config.public_key, config.kit, current)
    except Stale as exc:
        return write_status(config, state="current" if exc.version == current else "refused", reason=str(exc))
    except Refused as exc:
        return write_status(config, state="refused", reason=str(exc))
    release = config.state_dir / "releases" / str(bundle.version)
    unpack(bundle, release)
    done = apply(bundle, release, config)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-800:]
        return write_status(config, state="failed", version=bundle.version,
                            reason=f"pyinfra exited {done.returncode}: {tail}")
    return write_status(config, state="applied", version=bundle.version, applied_version=bundle.version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nomadkit-pull", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("/etc/nomadkit/pull.json"))
    parser.add_argument("--file", type=Path, help="apply this bundle file instead of fetching")
    args = parser.parse_args(argv)
    config = Config.read(args.config)
    status = pull_once(config, args.file.read_bytes() if args.file else None)
    print(json.dumps(status))
    return 0 if status["state"] in ("applied", "current") else 1


if __name__ == "__main__":
    sys.exit(main())
