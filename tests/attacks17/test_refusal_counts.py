"""A refusal on arrival lasts until its own message is judged, whatever else happens to
the set meanwhile (docs/design.md, "Refused on arrival"): another message of the same
jti settled first, a re-read that swaps in a fresh set, a sweep of the jti's old entry."""

from __future__ import annotations

from revsync._revocation_set import RevocationSet
from revsync.changes import Change, Kind

NOW = 1_000_000.0


def _jti(key: str, expires_at: float) -> Change:
    return Change(1, Kind.JTI, key, True, expires_at, None, None, NOW)


def test_two_messages_of_one_jti_are_settled_one_at_a_time() -> None:
    revocations = RevocationSet(clock=lambda: NOW)
    assert revocations.refuse_now("x") is True  # a forgery
    assert revocations.refuse_now("x") is True  # the genuine message, queued behind it
    revocations.settle("x")  # the forgery, judged suspect
    assert revocations.is_revoked("x", None, None)
    revocations.settle("x")  # the genuine message, judged (not applied here)
    assert not revocations.is_revoked("x", None, None)


def test_a_re_read_keeps_the_refusals_of_messages_still_queued() -> None:
    revocations = RevocationSet(clock=lambda: NOW)
    revocations.apply(_jti("old", NOW + 60))
    revocations.refuse_now("pending")
    fresh = RevocationSet(clock=lambda: NOW)
    fresh.apply(_jti("new", NOW + 60))
    revocations.adopt(fresh)
    assert revocations.is_revoked("pending", None, None)
    assert not revocations.is_revoked("old", None, None)
    revocations.settle("pending")
    assert not revocations.is_revoked("pending", None, None)
    assert revocations.is_revoked("new", None, None)


def test_a_sweep_of_an_older_entry_keeps_a_queued_message_refused() -> None:
    clock = [NOW]
    revocations = RevocationSet(clock=lambda: clock[0])
    revocations.refuse_now("x")  # a message re-revoking x, queued
    revocations.apply(_jti("x", NOW + 5))  # a store read of an older change of x
    clock[0] = NOW + 100
    assert revocations.sweep() == 1
    assert revocations.is_revoked("x", None, None)  # its message is still to be judged
    revocations.settle("x")
    assert not revocations.is_revoked("x", None, None)
