"""Our signature check agrees with Stripe's own library, and is stricter about the future."""

from __future__ import annotations

import time

import pytest
import stripe

from nomadkit.webhook import signature

SECRET = "whsec_unit_test_secret"
BODY = b'{"id": "evt_1", "type": "ping", "created": 1, "data": {"object": {}}}'


def test_header_from_stripe_verifies_with_both_libraries() -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, timestamp=now)
    assert signature.verify(header, BODY, [SECRET], now) == now
    assert stripe.WebhookSignature.verify_header(BODY, header, SECRET, tolerance=300)


def test_our_signature_is_what_stripe_computes() -> None:
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, timestamp=42)
    assert header == f"t=42,v1={signature.compute_signature(42, BODY, SECRET)}"


@pytest.mark.parametrize(("header", "error"), [
    ("v1=abc", signature.MalformedHeader),
    ("t=1,t=2,v1=abc", signature.MalformedHeader),
    ("t=1,v0=abc", signature.MalformedHeader),
    ("t=" + "1" * 5000, signature.MalformedHeader),
    ("t=1,v1=ünïcode", signature.SignatureError),
])
def test_unreadable_headers_are_refused(header: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        signature.verify(header, BODY, [SECRET], 1)


def test_tolerance_bounds_both_directions() -> None:
    now = 1_000_000
    for at, ok in ((now - 300, True), (now - 301, False), (now + 300, True), (now + 301, False)):
        header = f"t={at},v1={signature.compute_signature(at, BODY, SECRET)}"
        if ok:
            assert signature.verify(header, BODY, [SECRET], now) == at
        else:
            with pytest.raises(signature.SignatureError):
                signature.verify(header, BODY, [SECRET], now)
