"""TourStorage: the tour's two private buckets and what goes in the assets bucket."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

# Recordings are uploaded once, read rarely after the tour: cheaper storage classes soon.
RECORDINGS_TO_INFREQUENT_DAYS = 30
RECORDINGS_TO_GLACIER_DAYS = 90
ABORT_INCOMPLETE_UPLOADS_DAYS = 7
NONCURRENT_VERSIONS_DAYS = 30
SLATE_PREFIX = "slate"

CACHE_CONTROL = {".m3u8": "max-age=1", ".ts": "max-age=86400"}


@dataclass(frozen=True)
class TourStorageArgs:
    """+ prefix: resource name prefix (tour-stack)
    + account_id: AWS account, to make bucket names globally unique
    + slate_dir: the fallback slate (HLS playlist + segments) to upload per stream
    + streams: stream names; each gets the slate under slate/live/<stream>/
    + assets_dir: preview assets kits prime their cache from (None: none)
    """

    prefix: str
    account_id: pulumi.Input[str]
    slate_dir: Path
    streams: list[str]
    assets_dir: Path | None


def _content_type(path: Path) -> str:
    if path.suffix == ".m3u8":
        return "application/vnd.apple.mpegurl"
    if path.suffix == ".ts":
        return "video/mp2t"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class TourStorage(pulumi.ComponentResource):
    """Assets (preview assets, fallback slate) and recordings: private, versioned, encrypted."""

    assets: aws.s3.Bucket
    recordings: aws.s3.Bucket

    def __init__(self, name: str, args: TourStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nomadkit:cloud:TourStorage", name, None, opts)
        self.args = args
        self.assets = self._private_bucket("assets")
        self.recordings = self._private_bucket("recordings")
        self._recordings_lifecycle()
        for stream in args.streams:
            self._upload_dir(args.slate_dir, f"{SLATE_PREFIX}/live/{stream}", f"slate-{stream}")
        if args.assets_dir is not None:
            self._upload_dir(args.assets_dir, "", "asset")
        self.register_outputs({"assets": self.assets.bucket, "recordings": self.recordings.bucket})

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _private_bucket(self, role: str) -> aws.s3.Bucket:
        """A bucket nobody reaches publicly: access blocked, owner-enforced, versioned, SSE."""
        name = f"{self.args.prefix}-{role}"
        bucket = aws.s3.Bucket(
            name,
            bucket=pulumi.Output.concat(name, "-", self.args.account_id),
            tags={"nomadkit:role": role},
            opts=self._child(),
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=self._child(),
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=self._child(),
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=self._child(),
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"},
                    "bucket_key_enabled": True}],
            opts=self._child(),
        )
        return bucket

    def _recordings_lifecycle(self) -> None:
        aws.s3.BucketLifecycleConfiguration(
            f"{self.args.prefix}-recordings-lifecycle",
            bucket=self.recordings.id,
            rules=[
                {
                    "id": "recordings-to-cheaper-storage",
                    "status": "Enabled",
                    "filter": {},
                    "transitions": [
                        {"days": RECORDINGS_TO_INFREQUENT_DAYS, "storage_class": "STANDARD_IA"},
                        {"days": RECORDINGS_TO_GLACIER_DAYS, "storage_class": "GLACIER_IR"},
                    ],
                    "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSIONS_DAYS},
                },
                {
                    "id": "abort-stalled-uploads",
                    "status": "Enabled",
                    "filter": {},
                    "abort_incomplete_multipart_upload": {
                        "days_after_initiation": ABORT_INCOMPLETE_UPLOADS_DAYS},
                },
            ],
            opts=self._child(),
        )

    def _upload_dir(self, folder: Path, key_prefix: str, label: str) -> None:
        """Upload every file of ``folder`` to the assets bucket under ``key_prefix``."""
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(folder).as_posix()
            key = f"{key_prefix}/{relative}" if key_prefix else relative
            aws.s3.BucketObjectv2(
                f"{self.args.prefix}-{label}-{relative.replace('/', '-')}",
                bucket=self.assets.id,
                key=key,
                source=pulumi.FileAsset(str(path)),
                content_type=_content_type(path),
                cache_control=CACHE_CONTROL.get(path.suffix),
                opts=self._child(),
            )
