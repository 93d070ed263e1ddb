"""Operator side of pull mode: build a kit's signed deploy bundle and publish it for the kit to fetch.

A bundle holds the deploy code (deploys/, src/nomadkit, templates/), the kit's pyinfra host data
and a one-host `@local` inventory, a manifest with the sha256 of every file and a version that only
goes up, and the manifest's Ed25519 signature with the tour's deploy key (`Tour.pull.signing_key`).
Kits hold only the public key (`Tour.pull.public_key`); `nomadkit.fleet.pullkit` verifies and
applies. Bundles carry no secret: kits keep theirs from the last push deploy.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import importlib.metadata
import io
import json
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nomadkit import ROOT
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.fleet.hosts import Fleet
from nomadkit.fleet.pullkit import FORMAT, canonical
from nomadkit.secrets import resolve
from nomadkit.tickets import generate_ticket_key, public_key_of
from nomadkit.tour import PullMode, Tour

# What the kit needs to run the deploy: the code the roles import and the templates they render.
CODE = (("deploys", "*.py"), ("src/nomadkit", "**/*.py"), ("templates", "**/*"))
ENTRY = "deploys/kit.py"
INVENTORY = "inventory.py"
HOST_DATA = "host_data.json"
# Python distributions the kit's pull runtime must match (see nomadkit.roles.pull).
RUNTIME = ("pyinfra", "pydantic", "jinja2", "PyYAML")

INVENTORY_SOURCE = '''"""This kit applying its own bundle: pyinfra's @local connector, bundled data."""
import json
from pathlib import Path

kits = [("@local", json.loads((Path(__file__).parent / "host_data.json").read_text()))]
'''


def bundle_key(path: str) -> str:
    """Where a kit's bundles live in the tour's asset bucket (and so under the CDN)."""
    return f"bundles/{path}"


def latest_key(kit: str) -> str:
    return bundle_key(f"{kit}/latest")


def pull_settings(tour: Tour) -> PullMode:
    if tour.pull is None:
        raise UserError(f"tour {tour.name} has no pull section — add `pull: {{signing_key: secret:NAME, "
                        "public_key: …}}` (`nomadkit bundle-key FILE` makes the key and prints both)")
    return tour.pull


def signing_key(tour: Tour) -> Ed25519PrivateKey:
    """The tour's deploy key, checked against the public key the kits trust."""
    pull = pull_settings(tour)
    seed = resolve(pull.signing_key)
    try:
        if public_key_of(seed) != pull.public_key:
            raise UserError(f"{pull.signing_key} is not the key whose public half is pull.public_key "
                            "in the tour file — kits would refuse its bundles; fix one or the other")
        return Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(seed + "=" * (-len(seed) % 4)))
    except (ValueError, binascii.Error):
        raise UserError(f"{pull.signing_key} is not an Ed25519 deploy key — make one with "
                        "`nomadkit bundle-key FILE`") from None


def new_deploy_key() -> tuple[str, str]:
    """A fresh deploy key (private seed, public key), both base64url; the ticket keys' format."""
    seed = generate_ticket_key()
    return seed, public_key_of(seed)


def code_files(root: Path = ROOT) -> dict[str, bytes]:
    """The deploy code, path relative to the repository -> content (no caches, nothing else)."""
    out = {}
    for folder, pattern in CODE:
        for path in sorted((root / folder).glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                out[str(path.relative_to(root))] = path.read_bytes()
    return out


def runtime_versions() -> dict[str, str]:
    """Versions of the libraries the deploy runs with here; the kit's runtime must match them."""
    return {name: importlib.metadata.version(name) for name in RUNTIME}


@dataclass(frozen=True)
class Built:
    """A signed bundle: its bytes and its manifest."""

    data: bytes
    manifest: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])


def build(fleet: Fleet, kit: str, version: int, key: Ed25519PrivateKey, *,
          entry: str = ENTRY, code: dict[str, bytes] | None = None) -> Built:
    """Put one kit's bundle together and sign it.

    + version: must exceed every version published before (see `next_version`)
    + entry: the deploy file the kit runs (the kit deploy; tests give a smaller one)
    + code: the files to ship (default: the deploy code of this checkout)
    """
    data = {**fleet.host(kit), "nomadkit_pull": True}
    for key_name in [k for k in data if k.startswith("ssh_")]:
        del data[key_name]  # the kit applies to itself: SSH settings do not apply
    files = {**(code if code is not None else code_files()),
             HOST_DATA: json.dumps(data, indent=1, sort_keys=True).encode(),
             INVENTORY: INVENTORY_SOURCE.encode()}
    if entry not in files:
        raise UserError(f"bundle entry {entry} is not among the bundled files")
    manifest = {"format": FORMAT, "tour": fleet.tour.name, "kit": kit, "version": version,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "entry": entry,
                "inventory": INVENTORY, "runtime": runtime_versions(),
                "members": {name: hashlib.sha256(body).hexdigest() for name, body in sorted(files.items())}}
    signature = base64.urlsafe_b64encode(key.sign(canonical(manifest))).rstrip(b"=")
    members = {"manifest.json": json.dumps(manifest, indent=1, sort_keys=True).encode(),
               "manifest.sig": signature + b"\n",
               **{f"files/{name}": body for name, body in files.items()}}
    return Built(tar_gz(members), manifest)


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A reproducible gzip'd tar: sorted members, fixed owner, times and modes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(members[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(members[name]))
    return gzip.compress(raw.getvalue(), mtime=0)


def next_version(published: int | None) -> int:
    """Seconds since the epoch, or one more than what is published if that is later (never down)."""
    return max(int(time.time()), (published or 0) + 1)


def s3_client(endpoints: CloudEndpoints) -> Any:
    import boto3

    return boto3.client("s3", region_name=endpoints.region, endpoint_url=endpoints.s3_endpoint)


def published_version(endpoints: CloudEndpoints, kit: str) -> int | None:
    """The version of the kit's latest published bundle (from its object metadata), None if none."""
    from botocore.exceptions import ClientError

    try:
        head = s3_client(endpoints).head_object(Bucket=endpoints.assets_bucket, Key=latest_key(kit))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise UserError(f"cannot read s3://{endpoints.assets_bucket}/{latest_key(kit)}: {exc}") from None
    return int(head["Metadata"].get("nomadkit-version", 0))


def publish(endpoints: CloudEndpoints, built: Built) -> list[str]:
    """Upload the bundle as `bundles/<kit>/<version>.tar.gz` and as `bundles/<kit>/latest`."""
    kit, version = built.manifest["kit"], built.version
    client = s3_client(endpoints)
    keys = [bundle_key(f"{kit}/{version}.tar.gz"), latest_key(kit)]
    for key in keys:
        client.put_object(Bucket=endpoints.assets_bucket, Key=key, Body=built.data,
                          ContentType="application/gzip", CacheControl="no-cache",
                          Metadata={"nomadkit-version": str(version)})
    return [f"s3://{endpoints.assets_bucket}/{key}" for key in keys]
