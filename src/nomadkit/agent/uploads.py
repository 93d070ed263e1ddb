"""The recording upload queue: finished segments to the recordings bucket, whatever happens.

Durable: the queue, each multipart UploadId and each part's ETag live in SQLite (WAL, fsync on
commit), so after a reboot or a power cut the upload resumes where it stopped. S3 is the
authority on which parts it holds (`list_parts`); the local file is the authority on content.

Checked end to end: the file's sha256 travels as object metadata, each part carries its
Content-MD5 (S3 refuses a part that arrived damaged), and after completion the object's size,
sha256 metadata and multipart ETag (md5 of the part md5s) must all match the local file.

Throttled: a token bucket caps the upload rate, and uploads pause entirely while the agent says
the live stream needs the uplink (no healthy uplink, satellite, or fallback profile).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nomadkit.agent.config import S3Conf

log = logging.getLogger("nomadkit.agent.uploads")

PART_SIZE = 8 * 1024 * 1024  # S3's minimum is 5 MiB (except the last part)
IDLE_S = 60.0  # the newest segment of a stream counts as finished once untouched this long
SKIP_SUFFIXES = (".part", ".tmp", ".csv")  # .csv: the encoder's segment list, not a recording

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    path TEXT PRIMARY KEY, key TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    upload_id TEXT, state TEXT NOT NULL DEFAULT 'queued', queued_at REAL NOT NULL,
    done_at REAL, error TEXT);
CREATE TABLE IF NOT EXISTS parts (
    path TEXT NOT NULL, number INTEGER NOT NULL, etag TEXT NOT NULL, PRIMARY KEY (path, number));
"""


def open_db(path: Path, schema: str) -> sqlite3.Connection:
    """A SQLite database that survives power cuts: WAL journal, full fsync on commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db


class Throttle:
    """A token bucket in bytes per second, with a gate that pauses it entirely.

    + rate: bytes per second
    + allowed: returns False while uploads must wait (the live stream needs the uplink)
    """

    def __init__(self, rate: float, allowed: Callable[[], bool]) -> None:
        self.rate = rate
        self.allowed = allowed
        self.tokens = 0.0
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self, n: int) -> None:
        while not self.allowed():
            time.sleep(0.25)
            self.stamp = time.monotonic()
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate) - n
            self.stamp = now
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait:
            time.sleep(wait)


class ThrottledReader(io.RawIOBase):
    """A part's bytes, handed to the HTTP client no faster than the throttle allows."""

    def __init__(self, data: bytes, throttle: Throttle, chunk: int = 16384) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.throttle = throttle
        self.chunk = chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: len(self.data)}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        size = min(self.chunk if size is None or size < 0 else size, self.chunk)
        out = bytes(self.data[self.pos:self.pos + size])
        if out:
            self.throttle.take(len(out))
        self.pos += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        out = self.read(len(buffer))
        buffer[:len(out)] = out
        return len(out)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def multipart_etag(md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: md5 of the part md5s, dash, number of parts."""
    return f'"{hashlib.md5(b"".join(md5s)).hexdigest()}-{len(md5s)}"'


def s3_client(conf: S3Conf) -> Any:
    """An S3 client that reads each part's body once, as it sends it: every read goes through the
    throttle, so a payload hash (SigV4 signs the body over plain HTTP) or a CRC32 (botocore 1.36
    and later) computed in a pass of their own would each cut the real upload rate — measured:
    three passes, 663 kbps for a 2000 kbps ceiling. Content-MD5 per part and the sha256 check
    after completion already guard the bytes."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "retries": {"max_attempts": 3, "mode": "standard"}, "connect_timeout": 5, "read_timeout": 60,
        "s3": {"payload_signing_enabled": False,
               **({"addressing_style": "path"} if conf.endpoint_url else {})}}
    try:
        config = Config(request_checksum_calculation="when_required", **options)
    except TypeError:  # botocore before 1.36 (Debian 12's) has no such option and no such pass
        config = Config(**options)
    return boto3.client("s3", region_name=conf.region, endpoint_url=conf.endpoint_url, config=config)


class Uploader:
    """Finds finished segments, queues them durably and uploads them one at a time.

    + db_path: the queue's SQLite file (on the kit: /var/lib/nomadkit/agent/uploads.db)
    + recordings: the recordings directory, one folder per stream
    + s3: bucket, kit prefix and endpoint
    + throttle: the shared upload throttle
    """

    def __init__(self, db_path: Path, recordings: Path, s3: S3Conf, throttle: Throttle,
                 client: Any = None) -> None:
        self.db = open_db(db_path, SCHEMA)
        self.recordings = recordings
        self.s3 = s3
        self.throttle = throttle
        self._client = client
        self.current: dict[str, Any] | None = None
        self.summary: dict[str, Any] = {}
        self._summarise()

    def scan(self, now: float | None = None) -> int:
        """Queue every finished segment not queued yet; return how many were added."""
        now = time.time() if now is None else now
        added = 0
        for stream in sorted(p for p in self.recordings.iterdir() if p.is_dir()):
            files = sorted((f for f in stream.iterdir() if f.is_file() and not f.name.startswith(".")
                            and not f.name.endswith(SKIP_SUFFIXES)), key=lambda f: f.stat().st_mtime)
            for f in files:
                newest = f == files[-1]
                if newest and now - f.stat().st_mtime < IDLE_S:
                    continue
                if self.db.execute("SELECT 1 FROM segments WHERE path = ?", (str(f),)).fetchone():
                    continue
                key = f"{self.s3.prefix}{stream.name}/{f.name}"
                with self.db:
                    self.db.execute(
                        "INSERT INTO segments (path, key, size, sha256, queued_at) "
                        "VALUES (?, ?, ?, ?, ?)", (str(f), key, f.stat().st_size, sha256_of(f), now))
                added += 1
        self._summarise()
        return added

    def pending(self) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM segments WHERE state != 'done' ORDER BY queued_at, path").fetchall()

    def _parts_on_s3(self, row: sqlite3.Row) -> dict[int, str] | None:
        """Parts S3 holds for this upload (number -> ETag), or None if the upload is gone."""
        found: dict[int, str] = {}
        marker = 0
        while True:
            try:
                page = self.client.list_parts(Bucket=self.s3.bucket, Key=row["key"],
                                              UploadId=row["upload_id"], PartNumberMarker=marker)
            except self.client.exceptions.NoSuchUpload:
                return None
            found.update({p["PartNumber"]: p["ETag"] for p in page.get("Parts", [])})
            if not page.get("IsTruncated"):
                return found
            marker = page["NextPartNumberMarker"]

    @property
    def client(self) -> Any:
        """The S3 client, made on first use in the upload thread: importing boto3 takes most of
        a minute on a slow kit, and the agent must report and fail over from its first second."""
        if self._client is None:
            self._client = s3_client(self.s3)
        return self._client

    def warm(self) -> None:
        """Make the client and put one request through it that is answered here, not sent:
        credentials, endpoint rules and signing load now (seconds holding the interpreter lock
        on a slow kit), not during the first door scan, and with or without a network."""
        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import ClientError

        class NoBody:
            def stream(self, **_: Any) -> Iterator[bytes]:
                return iter(())

        events, event, handler_id = self.client.meta.events, "before-send.s3.HeadObject", "nomadkit-warm"
        events.register_first(event, lambda request, **_: AWSResponse(request.url, 404, {}, NoBody()),
                              unique_id=handler_id)
        try:
            with contextlib.suppress(ClientError):
                self.client.head_object(Bucket=self.s3.bucket, Key=f"{self.s3.prefix}/.warm")
        finally:
            events.unregister(event, unique_id=handler_id)

    def _already_there(self, row: sqlite3.Row) -> bool:
        """True when the object exists and matches the file (completed before a crash)."""
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.s3.bucket, Key=row["key"])
        except ClientError:
            return False
        return head["ContentLength"] == row["size"] and head["Metadata"].get("sha256") == row["sha256"]

    def _start(self, row: sqlite3.Row) -> str:
        upload_id = self.client.create_multipart_upload(
            Bucket=self.s3.bucket, Key=row["key"], Metadata={"sha256": row["sha256"]},
            ContentType="video/mp2t" if row["key"].endswith(".ts") else "application/octet-stream",
        )["UploadId"]
        with self.db:
            self.db.execute("DELETE FROM parts WHERE path = ?", (row["path"],))
            self.db.execute("UPDATE segments SET upload_id = ?, state = 'uploading' WHERE path = ?",
                            (upload_id, row["path"]))
        return upload_id

    def upload(self, row: sqlite3.Row) -> None:
        """Upload (or resume) one segment, then verify it; mark it done."""
        path = Path(row["path"])
        if not path.exists():
            self._finish(row, "missing", "file vanished before upload")
            return
        if sha256_of(path) != row["sha256"]:
            self._finish(row, "failed", "file changed after it was queued")
            return
        held = self._parts_on_s3(row) if row["upload_id"] else None
        if held is None:
            if row["upload_id"] and self._already_there(row):
                self._finish(row, "done", None)
                return
            upload_id = self._start(row)
            held = {}
        else:
            upload_id = row["upload_id"]
        recorded = dict(self.db.execute("SELECT number, etag FROM parts WHERE path = ?",
                                        (row["path"],)).fetchall())
        md5s, parts = [], []
        count = max(1, -(-row["size"] // PART_SIZE))
        with path.open("rb") as f:
            for number in range(1, count + 1):
                data = f.read(PART_SIZE)
                md5 = hashlib.md5(data)
                etag = f'"{md5.hexdigest()}"'
                md5s.append(md5.digest())
                self.current = {"key": row["key"], "part": number, "parts": count,
                                "bytes": row["size"]}
                if not (held.get(number) == etag == recorded.get(number)):
                    etag = self.client.upload_part(
                        Bucket=self.s3.bucket, Key=row["key"], UploadId=upload_id, PartNumber=number,
                        Body=ThrottledReader(data, self.throttle),
                        ContentMD5=base64.b64encode(md5.digest()).decode(), ContentLength=len(data),
                    )["ETag"]
                    with self.db:
                        self.db.execute("INSERT OR REPLACE INTO parts VALUES (?, ?, ?)",
                                        (row["path"], number, etag))
                parts.append({"PartNumber": number, "ETag": etag})
        self.client.complete_multipart_upload(Bucket=self.s3.bucket, Key=row["key"], UploadId=upload_id,
                                              MultipartUpload={"Parts": parts})
        self.current = None
        head = self.client.head_object(Bucket=self.s3.bucket, Key=row["key"])
        problems = [what for what, ok in (
            ("size", head["ContentLength"] == row["size"]),
            ("sha256", head["Metadata"].get("sha256") == row["sha256"]),
            ("etag", head["ETag"] == multipart_etag(md5s)),
        ) if not ok]
        if problems:
            error = f"verification failed: {', '.join(problems)}"
            with self.db:  # start over: the next attempt uploads it whole again
                self.db.execute("UPDATE segments SET upload_id = NULL, state = 'queued', error = ? "
                                "WHERE path = ?", (error, row["path"]))
            return
        self._finish(row, "done", None)

    def _finish(self, row: sqlite3.Row, state: str, error: str | None) -> None:
        with self.db:
            self.db.execute("UPDATE segments SET state = ?, error = ?, done_at = ? WHERE path = ?",
                            (state, error, time.time(), row["path"]))
            self.db.execute("DELETE FROM parts WHERE path = ?", (row["path"],))
        self._summarise()
        log.info("%s: %s%s", row["key"], state, f" ({error})" if error else "")

    def run_once(self) -> int:
        """Queue new segments and upload what is pending; return how many were uploaded."""
        self.scan()
        done = 0
        for row in self.pending():
            if row["state"] in ("missing", "failed"):
                continue
            self.upload(row)
            done += 1
        return done

    def _summarise(self) -> None:
        """Refresh the queue summary the status endpoint reads (from another thread)."""
        counts = dict(self.db.execute("SELECT state, COUNT(*) FROM segments GROUP BY state").fetchall())
        waiting = self.db.execute("SELECT COALESCE(SUM(size), 0) FROM segments "
                                  "WHERE state IN ('queued', 'uploading')").fetchone()[0]
        self.summary = {"segments": counts, "bytes_waiting": waiting}

    def status(self) -> dict[str, Any]:
        return {**self.summary, "current": self.current, "paused": not self.throttle.allowed(),
                "rate_kbps": round(self.throttle.rate * 8 / 1000)}
