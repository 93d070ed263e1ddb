"""Stripe-style webhook signatures, checked exactly as Stripe's libraries produce them.

Stripe sends ``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]`` where each ``v1``
is HMAC-SHA256, keyed with the endpoint secret (``whsec_...``, the whole string), of
``"{t}.{raw body}"``. While a secret is being rolled Stripe sends one ``v1`` per live
secret, and we may hold more than one secret ourselves; any pair that matches is enough.
Unlike Stripe's own verifier we also refuse timestamps too far in the future, so a
captured request cannot be pre-dated for later replay.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SCHEME = "v1"
TOLERANCE_SECONDS = 300
MAX_HEADER_CHARS = 4096


class SignatureError(ValueError):
    """The request is not provably from the payment provider; ``str(error)`` says why."""


class MalformedHeader(SignatureError):
    """The ``Stripe-Signature`` header cannot be read at all."""


def parse_header(header: str) -> tuple[int, list[str]]:
    """Split a ``Stripe-Signature`` header into its timestamp and ``v1`` signatures."""
    if len(header) > MAX_HEADER_CHARS:
        raise MalformedHeader("Stripe-Signature header too long")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        raise MalformedHeader("Stripe-Signature header has no valid t= timestamp")
    if not signatures:
        raise MalformedHeader(f"Stripe-Signature header has no {SCHEME}= signature")
    return int(timestamps[0]), signatures


def compute_signature(timestamp: int, body: bytes, secret: str) -> str:
    """The ``v1`` value for a body signed at ``timestamp`` with ``secret``."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    header: str,
    body: bytes,
    secrets: Sequence[str],
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> int:
    """Check a signature header against the raw body; return its timestamp.

    + header: the ``Stripe-Signature`` header value
    + body: the raw request body, byte for byte as received
    + secrets: every endpoint secret currently accepted (current first, then old ones)
    + now: the current time (seconds since the epoch)
    + tolerance: how far, in seconds, the timestamp may be from ``now`` either way

    Raises ``SignatureError`` with the reason when the request must be refused.
    """
    timestamp, signatures = parse_header(header)
    expected = [compute_signature(timestamp, body, secret) for secret in secrets if secret]
    if not any(hmac.compare_digest(e.encode(), s.encode()) for e in expected for s in signatures):
        raise SignatureError("no v1 signature matches the body for any current secret")
    if timestamp < now - tolerance:
        raise SignatureError(f"stale: signed {int(now - timestamp)} s ago (limit {tolerance} s)")
    if timestamp > now + tolerance:
        raise SignatureError(f"signed {int(timestamp - now)} s in the future (limit {tolerance} s)")
    return timestamp
