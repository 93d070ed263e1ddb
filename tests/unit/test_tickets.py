"""Ticket tokens as the door sees them: offline, with only the public key."""

from __future__ import annotations

import pytest

from nomadkit import tickets


@pytest.fixture(scope="module")
def key() -> str:
    return tickets.generate_ticket_key()


def token(key: str, **claims: object) -> str:
    values = {"tid": "cs_1", "tour": "night-shift", "stop": "alfama", "tier": "general", "qty": 2}
    return tickets.sign_ticket(key, **{**values, **claims})


def test_valid_token_opens_the_door(key: str) -> None:
    ticket = tickets.verify_ticket(token(key), [tickets.public_key_of(key)],
                                   tour="night-shift", stop="alfama")
    assert (ticket.tid, ticket.tier, ticket.qty) == ("cs_1", "general", 2)


@pytest.mark.parametrize(("claims", "door", "reason"), [
    ({"stop": "belem"}, {"stop": "alfama"}, "for stop 'belem'"),
    ({"tour": "other-tour"}, {}, "for tour 'other-tour'"),
    ({}, {"revoked": {"cs_1"}}, "refunded"),
])
def test_wrong_or_refunded_tokens_are_refused(key: str, claims: dict, door: dict, reason: str) -> None:
    with pytest.raises(tickets.TicketRejected, match=reason):
        tickets.verify_ticket(token(key, **claims), [tickets.public_key_of(key)],
                              tour="night-shift", **door)


def test_altered_token_is_refused(key: str) -> None:
    version, claims, signature = token(key).split(".")
    forged = token(key, qty=9).split(".")[1]
    with pytest.raises(tickets.TicketRejected, match="forged or altered"):
        tickets.verify_ticket(f"{version}.{forged}.{signature}", [tickets.public_key_of(key)],
                              tour="night-shift")
    assert claims != forged


def test_token_from_another_key_is_refused(key: str) -> None:
    other = tickets.generate_ticket_key()
    with pytest.raises(tickets.TicketRejected, match="unknown key"):
        tickets.verify_ticket(token(other), [tickets.public_key_of(key)], tour="night-shift")


def test_kits_accept_old_and_new_keys_during_rotation(key: str) -> None:
    new = tickets.generate_ticket_key()
    both = [tickets.public_key_of(new), tickets.public_key_of(key)]
    assert tickets.verify_ticket(token(key), both, tour="night-shift").tid == "cs_1"
    assert tickets.verify_ticket(token(new), both, tour="night-shift").tid == "cs_1"


@pytest.mark.parametrize("garbage", ["", "nk1..", "nk2.a.b", "nk1.!!!.???", "x" * 5000])
def test_garbage_is_refused_not_crashed(key: str, garbage: str) -> None:
    with pytest.raises(tickets.TicketRejected):
        tickets.verify_ticket(garbage, [tickets.public_key_of(key)], tour="night-shift")
