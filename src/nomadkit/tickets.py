"""Ticket tokens that a kit verifies offline at the door.

The payment webhook signs a token with the tour's Ed25519 ticket key when a checkout
completes; the kit holds only the public key, so the door keeps working when the venue
network does not. A token is three dot-separated parts::

    nk1.<base64url(JSON claims)>.<base64url(Ed25519 signature of "nk1.<claims>")>

This module has no AWS imports on purpose: the kit agent imports it too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

TOKEN_VERSION = "nk1"
MAX_TOKEN_CHARS = 2048


class TicketRejected(ValueError):
    """A token that must not open the door; ``str(error)`` says why, for the door screen."""


@dataclass(frozen=True)
class Ticket:
    """The claims a ticket token carries.

    + tid: ticket id (the checkout session id), what refunds revoke
    + tour: tour name, so a token from another tour is refused
    + stop: stop name, so a token for Lisbon does not open Porto
    + tier: ticket tier name
    + qty: number of admissions
    + iat: issue time, seconds since the epoch
    + kid: id of the signing key, so kits can hold old and new keys during rotation
    """

    tid: str
    tour: str
    stop: str
    tier: str
    qty: int
    iat: int
    kid: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_ticket_key() -> str:
    """A new private ticket key, as the base64url text of its 32-byte Ed25519 seed."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return _b64encode(seed)


def _private_key(private_key: str) -> Ed25519PrivateKey:
    try:
        seed = _b64decode(private_key.strip())
        return Ed25519PrivateKey.from_private_bytes(seed)
    except (binascii.Error, ValueError) as error:
        raise ValueError(
            "ticket key is not a base64url Ed25519 seed (32 bytes); "
            "generate one with `nomadkit cloud ticket-key`"
        ) from error


def _public_key(public_key: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(_b64decode(public_key.strip()))
    except (binascii.Error, ValueError) as error:
        raise ValueError("ticket public key is not a base64url Ed25519 key (32 bytes)") from error


def warm_verifier(public_keys: Collection[str]) -> None:
    """Check one dummy signature per key: the first verification initialises OpenSSL, which
    took 3 s holding the interpreter lock on a lab kit — paid at start, not by the first guest."""
    for public_key in public_keys:
        with contextlib.suppress(ValueError, InvalidSignature):
            _public_key(public_key).verify(bytes(64), b"warm")


def public_key_of(private_key: str) -> str:
    """The public half of a ticket key: what the cloud hands the kits."""
    return _b64encode(_private_key(private_key).public_key().public_bytes_raw())


def key_id(public_key: str) -> str:
    """A short stable id for a public key (first 8 bytes of its SHA-256, hex)."""
    return hashlib.sha256(_b64decode(public_key.strip())).hexdigest()[:16]


def sign_ticket(
    private_key: str,
    *,
    tid: str,
    tour: str,
    stop: str,
    tier: str,
    qty: int = 1,
    iat: int | None = None,
) -> str:
    """Sign a ticket token for one checkout.

    + private_key: the tour's ticket key (see ``generate_ticket_key``)
    + tid, tour, stop, tier, qty: the claims (see ``Ticket``)
    + iat: issue time; now by default

    Example: ``sign_ticket(key, tid="cs_123", tour="demo", stop="lisbon", tier="ga")``
    """
    key = _private_key(private_key)
    kid = key_id(public_key_of(private_key))
    ticket = Ticket(tid, tour, stop, tier, qty, int(time.time()) if iat is None else iat, kid)
    claims = json.dumps(asdict(ticket), separators=(",", ":"), sort_keys=True).encode()
    signed_part = f"{TOKEN_VERSION}.{_b64encode(claims)}"
    return f"{signed_part}.{_b64encode(key.sign(signed_part.encode('ascii')))}"


def verify_ticket(
    token: str,
    public_keys: Collection[str],
    *,
    tour: str,
    stop: str | None = None,
    revoked: Collection[str] = (),
) -> Ticket:
    """Check a token offline and return its claims, or raise ``TicketRejected``.

    + token: the text scanned at the door
    + public_keys: the tour's ticket public keys (several during a key rotation)
    + tour: the tour this kit serves; tokens of other tours are refused
    + stop: the stop at the door; when given, tokens for other stops are refused
    + revoked: ticket ids revoked by refunds (synced to the kit when it is online)

    Example: ``verify_ticket(scanned, [endpoints.ticket_public_key], tour="demo", stop="lisbon")``
    """
    if len(token) > MAX_TOKEN_CHARS:
        raise TicketRejected("token too long")
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise TicketRejected(f"not a {TOKEN_VERSION} ticket token")
    try:
        claims = json.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
        ticket = Ticket(**claims)
    except (binascii.Error, ValueError, TypeError) as error:
        raise TicketRejected("token is damaged (cannot decode its claims)") from error
    keys = {key_id(public_key): public_key for public_key in public_keys}
    if ticket.kid not in keys:
        raise TicketRejected(f"token signed with an unknown key ({ticket.kid})")
    try:
        _public_key(keys[ticket.kid]).verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature as error:
        raise TicketRejected("signature does not match: forged or altered token") from error
    if ticket.tour != tour:
        raise TicketRejected(f"ticket is for tour {ticket.tour!r}, not {tour!r}")
    if stop is not None and ticket.stop != stop:
        raise TicketRejected(f"ticket is for stop {ticket.stop!r}, not {stop!r}")
    if ticket.tid in revoked:
        raise TicketRejected(f"ticket {ticket.tid} was refunded")
    return ticket


def sign_document(private_key: str, data: bytes) -> str:
    """Sign any document (a preflight report) with the tour key: `<kid>.<base64url signature>`."""
    return f"{key_id(public_key_of(private_key))}.{_b64encode(_private_key(private_key).sign(data))}"


def verify_document(public_key: str, data: bytes, signature: str) -> bool:
    """True when `signature` (from `sign_document`) matches `data` and this public key."""
    kid, _, sig = signature.strip().partition(".")
    if kid != key_id(public_key):
        return False
    try:
        _public_key(public_key).verify(_b64decode(sig), data)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
