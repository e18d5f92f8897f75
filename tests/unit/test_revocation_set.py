"""The per-node revocation set: lookups, applying changes, loading, pruning."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revsync import _revocation_set as revsync_set
from revsync._revocation_set import RevocationSet
from revsync.changes import Change, Kind
from revsync.stores.base import Snapshot

NOW = 1_000_000.0


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def jti(key: str, expires_at: float, *, revoked: bool = True, seq: int = 1) -> Change:
    return Change(seq, Kind.JTI, key, revoked, expires_at, "alice", None, NOW)


def identity_change(
    key: str, cutoff: float | None, expires_at: float, *, revoked: bool = True, seq: int = 1
) -> Change:
    return Change(seq, Kind.IDENTITY, key, revoked, expires_at, key, cutoff, NOW)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def revocations(clock: Clock) -> RevocationSet:
    return RevocationSet(clock=clock, bucket_seconds=10)


def filed(revocations: RevocationSet) -> int:
    """How many keys the jti expiry buckets hold, stale copies included."""
    return sum(len(keys) for keys in revocations._jti_index.buckets.values())


# -- lookups ------------------------------------------------------------------------


def test_an_empty_set_revokes_nothing(revocations: RevocationSet) -> None:
    assert not revocations.is_revoked("a", "alice", NOW)
    assert not revocations.is_revoked("a", None, None)
    assert len(revocations) == 0
    assert revocations.jti_count == 0
    assert revocations.identity_count == 0


def test_a_revoked_jti_is_revoked(revocations: RevocationSet) -> None:
    revocations.apply(jti("a", NOW + 60))

    assert revocations.is_revoked("a", None, None)
    assert revocations.is_revoked("a", "bob", NOW)
    assert not revocations.is_revoked("b", "alice", NOW)
    assert revocations.contains_jti("a")
    assert revocations.expires_at("a") == NOW + 60
    assert revocations.snapshot_jtis() == {"a": NOW + 60}
    assert (len(revocations), revocations.jti_count, revocations.identity_count) == (1, 1, 0)


def test_a_fresh_copy_of_the_jti_string_matches(revocations: RevocationSet) -> None:
    revocations.apply(jti("3f0c9a4e-1b2c-4d5e-8f90-a1b2c3d4e5f6", NOW + 60))

    fresh = b"3f0c9a4e-1b2c-4d5e-8f90-a1b2c3d4e5f6".decode()
    assert revocations.is_revoked(fresh, None, None)


@pytest.mark.parametrize("claim", [None, 5, 5.0, ("a",)])
def test_a_jti_that_is_not_a_string_matches_no_string(
    revocations: RevocationSet, claim: object
) -> None:
    revocations.apply(jti("5", NOW + 60))

    assert not revocations.is_revoked(claim, None, None)


@pytest.mark.parametrize("claim", [["a"], {"a": 1}])
def test_an_unhashable_jti_counts_as_revoked(revocations: RevocationSet, claim: object) -> None:
    assert revocations.is_revoked(claim, None, None)


def test_the_snapshot_is_a_copy(revocations: RevocationSet) -> None:
    revocations.apply(jti("a", NOW + 60))

    revocations.snapshot_jtis().clear()

    assert revocations.contains_jti("a")


# -- identity cut-offs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iat", "revoked"),
    [
        (NOW - 100, True),
        (NOW - 100.5, True),
        (NOW, True),
        (int(NOW), True),
        (NOW + 0.001, False),
        (NOW + 100, False),
        (10**30, False),
    ],
)
def test_a_cutoff_revokes_tokens_issued_at_or_before_it(
    revocations: RevocationSet, iat: object, revoked: bool
) -> None:
    revocations.apply(identity_change("alice", NOW, NOW + 3600))

    assert revocations.is_revoked("t1", "alice", iat) is revoked
    assert revocations.cutoff("alice") == NOW


def test_a_cutoff_concerns_only_its_identity(revocations: RevocationSet) -> None:
    revocations.apply(identity_change("alice", NOW, NOW + 3600))

    assert not revocations.is_revoked("t1", "bob", NOW - 100)
    assert not revocations.is_revoked("t1", None, NOW - 100)
    assert revocations.cutoff("bob") is None
    assert (len(revocations), revocations.jti_count, revocations.identity_count) == (1, 0, 1)
    assert revocations.snapshot_identities() == {"alice": (NOW, NOW + 3600)}


@pytest.mark.parametrize(
    "iat", [None, "1000", b"1", True, False, math.nan, math.inf, -math.inf, [1], {"a": 1}]
)
def test_an_iat_that_is_not_a_finite_number_is_revoked_under_a_cutoff(
    revocations: RevocationSet, iat: object
) -> None:
    assert not revocations.is_revoked("t1", "alice", iat)

    revocations.apply(identity_change("alice", NOW, NOW + 3600))

    assert revocations.is_revoked("t1", "alice", iat)
    assert not revocations.is_revoked("t1", "bob", iat)


def test_a_nan_cutoff_revokes_every_token_of_the_identity(revocations: RevocationSet) -> None:
    revocations.apply(identity_change("alice", math.nan, NOW + 3600))

    assert revocations.is_revoked("t1", "alice", NOW + 100)


def test_the_latest_cutoff_row_wins(revocations: RevocationSet) -> None:
    revocations.apply(identity_change("alice", NOW, NOW + 3600, seq=1))
    revocations.apply(identity_change("alice", NOW + 50, NOW + 3650, seq=2))

    assert revocations.is_revoked("t1", "alice", NOW + 50)
    assert revocations.snapshot_identities() == {"alice": (NOW + 50, NOW + 3650)}


def test_unrevoking_an_identity_removes_its_cutoff(revocations: RevocationSet) -> None:
    revocations.apply(identity_change("alice", NOW, NOW + 3600))
    revocations.apply(identity_change("alice", None, NOW + 3600, revoked=False))

    assert not revocations.is_revoked("t1", "alice", NOW - 100)
    assert revocations.identity_count == 0


def test_an_identity_revocation_without_a_cutoff_is_refused(revocations: RevocationSet) -> None:
    with pytest.raises(ValueError, match="cutoff"):
        revocations.apply(identity_change("alice", None, NOW + 3600))
    assert revocations.identity_count == 0


def test_a_change_of_unknown_kind_is_refused(revocations: RevocationSet) -> None:
    change = jti("a", NOW + 60)._replace(kind="session")  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="unknown change kind"):
        revocations.apply(change)
    with pytest.raises(ValueError, match="unknown change kind"):
        revocations.load([change])


# -- applying changes ---------------------------------------------------------------------


def test_an_unrevoke_removes_the_jti(revocations: RevocationSet) -> None:
    revocations.apply(jti("a", NOW + 60, seq=1))
    revocations.apply(jti("a", NOW + 60, seq=2, revoked=False))

    assert not revocations.is_revoked("a", None, None)
    assert len(revocations) == 0


def test_an_unrevoke_of_an_unknown_jti_does_nothing(revocations: RevocationSet) -> None:
    revocations.apply(jti("a", NOW + 60, revoked=False))

    assert len(revocations) == 0


def test_a_revoke_already_expired_is_not_added(revocations: RevocationSet) -> None:
    revocations.apply(jti("a", NOW - 1))
    revocations.apply(identity_change("alice", NOW - 100, NOW - 1))

    assert len(revocations) == 0


def test_a_revoke_expired_only_within_the_leeway_is_added(clock: Clock) -> None:
    revocations = RevocationSet(leeway=30, clock=clock)

    revocations.apply(jti("a", NOW - 29))
    revocations.apply(jti("b", NOW - 31))

    assert revocations.snapshot_jtis() == {"a": NOW - 29}
    assert revocations.leeway == 30


def test_a_revoke_expiring_exactly_now_is_added(revocations: RevocationSet) -> None:
    revocations.apply(jti("a", NOW))

    assert revocations.contains_jti("a")


def test_an_expired_revoke_leaves_an_existing_entry_alone(
    revocations: RevocationSet, clock: Clock
) -> None:
    revocations.apply(jti("a", NOW + 60, seq=1))
    clock.now += 120
    revocations.apply(jti("a", NOW + 60, seq=2))

    assert revocations.contains_jti("a")  # until prune drops it
    assert revocations.sweep() == 1


def test_an_expired_unrevoke_still_removes_the_entry(
    revocations: RevocationSet, clock: Clock
) -> None:
    revocations.apply(jti("a", NOW + 60, seq=1))
    revocations.apply(identity_change("alice", NOW, NOW + 60, seq=2))
    clock.now += 120

    revocations.apply(jti("a", NOW + 60, seq=3, revoked=False))
    revocations.apply(identity_change("alice", None, NOW + 60, seq=4, revoked=False))

    assert len(revocations) == 0


def test_the_rows_expiry_wins_later_or_earlier(revocations: RevocationSet) -> None:
    revocations.apply(jti("a", NOW + 60, seq=1))
    revocations.apply(jti("a", NOW + 600, seq=2))
    assert revocations.expires_at("a") == NOW + 600

    revocations.apply(jti("a", NOW + 30, seq=3))
    assert revocations.expires_at("a") == NOW + 30


def test_a_plain_string_kind_is_understood(revocations: RevocationSet) -> None:
    revocations.apply(jti("a", NOW + 60)._replace(kind="jti"))  # type: ignore[arg-type]
    revocations.load([jti("b", NOW + 60)._replace(kind="jti")])  # type: ignore[arg-type]

    assert revocations.snapshot_jtis() == {"a": NOW + 60, "b": NOW + 60}


@pytest.mark.parametrize("expires_at", [math.inf, math.nan])
def test_a_revoke_that_never_expires_is_kept_through_sweeps(
    revocations: RevocationSet, expires_at: float
) -> None:
    revocations.apply(jti("a", expires_at))
    revocations.load([jti("b", expires_at)])
    revocations.apply(identity_change("alice", NOW, expires_at))

    assert revocations.sweep(1e300) == 0
    assert revocations.is_revoked("a", None, None)
    assert revocations.is_revoked("b", None, None)
    assert revocations.is_revoked("t", "alice", NOW)


def test_a_never_expiring_entry_can_be_given_an_expiry_and_swept(
    revocations: RevocationSet, clock: Clock
) -> None:
    revocations.apply(jti("a", math.nan, seq=1))
    revocations.apply(jti("a", NOW + 60, seq=2))

    assert revocations.sweep(NOW + 61) == 1


def test_a_revoke_expired_at_minus_infinity_is_not_added(revocations: RevocationSet) -> None:
    revocations.apply(jti("a", -math.inf))
    revocations.load([jti("b", -math.inf)])

    assert len(revocations) == 0


def test_reapplying_a_change_files_its_key_once(revocations: RevocationSet) -> None:
    change = jti("a", NOW + 60)
    for _ in range(100):
        revocations.apply(change)
        revocations.load([change, jti("b", NOW + 61)])

    assert filed(revocations) == 2


def test_clear_forgets_everything(revocations: RevocationSet) -> None:
    revocations.apply(jti("a", NOW + 60))
    revocations.apply(identity_change("alice", NOW, NOW + 60))

    revocations.clear()

    assert len(revocations) == 0
    assert not revocations.is_revoked("a", "alice", NOW)
    assert revocations.sweep(NOW + 1000) == 0
    revocations.apply(jti("a", NOW + 60))
    assert revocations.sweep(NOW + 1000) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"leeway": -1}, {"leeway": math.nan}, {"bucket_seconds": 0}, {"bucket_seconds": math.inf}],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be a finite number"):
        RevocationSet(**kwargs)  # type: ignore[arg-type]


# -- load -----------------------------------------------------------------------------


def test_load_applies_a_snapshot_and_counts_what_it_read(revocations: RevocationSet) -> None:
    changes = [
        jti("a", NOW + 60, seq=1),
        jti("b", NOW - 60, seq=2),
        jti("c", NOW + 60, seq=3, revoked=False),
        identity_change("alice", NOW, NOW + 60, seq=4),
        jti("d", NOW + 90, seq=5),
    ]

    assert revocations.load(iter(changes)) == 5

    assert revocations.snapshot_jtis() == {"a": NOW + 60, "d": NOW + 90}
    assert revocations.cutoff("alice") == NOW


def test_load_keeps_the_order_of_changes(revocations: RevocationSet) -> None:
    revocations.load(
        [
            jti("a", NOW + 60, seq=1),
            jti("a", NOW + 60, seq=2, revoked=False),
            jti("b", NOW + 60, seq=3, revoked=False),
            jti("b", NOW + 60, seq=4),
            jti("c", NOW + 60, seq=5),
            jti("c", NOW + 900, seq=6),
        ]
    )

    assert revocations.snapshot_jtis() == {"b": NOW + 60, "c": NOW + 900}


def test_load_onto_a_populated_set_replaces_expiries(revocations: RevocationSet) -> None:
    revocations.load([jti("a", NOW + 60), jti("b", NOW + 60)])
    revocations.load([jti("a", NOW + 900), jti("b", NOW + 61), jti("c", NOW + 60)])

    assert revocations.snapshot_jtis() == {"a": NOW + 900, "b": NOW + 61, "c": NOW + 60}
    assert revocations.sweep(NOW + 100) == 2
    assert revocations.snapshot_jtis() == {"a": NOW + 900}


# -- prune ------------------------------------------------------------------------------


def test_sweep_drops_what_expired_and_keeps_the_rest(
    revocations: RevocationSet, clock: Clock
) -> None:
    revocations.load([jti("a", NOW + 10), jti("b", NOW + 20), jti("c", NOW + 3600)])
    revocations.apply(identity_change("alice", NOW, NOW + 15))
    revocations.apply(identity_change("bob", NOW, NOW + 3600))

    assert revocations.sweep(NOW + 10) == 0  # expires_at == now: not yet
    assert revocations.sweep(NOW + 16) == 2
    assert revocations.snapshot_jtis() == {"b": NOW + 20, "c": NOW + 3600}
    assert revocations.cutoff("alice") is None
    clock.now = NOW + 21
    assert revocations.sweep() == 1
    assert revocations.snapshot_jtis() == {"c": NOW + 3600}
    assert revocations.cutoff("bob") == NOW


def test_sweep_waits_for_the_leeway(clock: Clock) -> None:
    revocations = RevocationSet(leeway=30, clock=clock, bucket_seconds=10)
    revocations.apply(jti("a", NOW + 10))

    assert revocations.sweep(NOW + 40) == 0
    assert revocations.sweep(NOW + 40.5) == 1


def test_a_re_revoke_with_a_later_expiry_survives_the_earlier_bucket(
    revocations: RevocationSet,
) -> None:
    revocations.apply(jti("a", NOW + 5, seq=1))
    revocations.apply(jti("a", NOW + 500, seq=2))
    revocations.apply(identity_change("alice", NOW, NOW + 5, seq=3))
    revocations.apply(identity_change("alice", NOW + 1, NOW + 500, seq=4))

    assert revocations.sweep(NOW + 100) == 0
    assert revocations.is_revoked("a", None, None)
    assert revocations.is_revoked("t", "alice", NOW + 1)
    assert revocations.sweep(NOW + 501) == 2


def test_a_key_removed_and_revoked_again_is_swept_once(revocations: RevocationSet) -> None:
    for seq in range(0, 6, 2):
        revocations.apply(jti("a", NOW + 5, seq=seq + 1))
        revocations.apply(jti("a", NOW + 5, seq=seq + 2, revoked=False))
    revocations.apply(jti("a", NOW + 5, seq=7))

    assert revocations.sweep(NOW + 6) == 1
    assert filed(revocations) == 0


def test_sweep_of_a_partly_due_bucket_keeps_its_live_keys(revocations: RevocationSet) -> None:
    revocations.load([jti("a", NOW + 1), jti("b", NOW + 5), jti("c", NOW + 9)])

    assert revocations.sweep(NOW + 4) == 1
    assert revocations.sweep(NOW + 6) == 1
    assert revocations.snapshot_jtis() == {"c": NOW + 9}
    assert filed(revocations) == 1


def test_sweep_leaves_buckets_that_are_not_due_untouched(revocations: RevocationSet) -> None:
    revocations.load([jti(f"late-{i}", NOW + 1000 + i) for i in range(1000)])
    revocations.apply(jti("soon", NOW + 1))
    late = {
        bucket: keys
        for bucket, keys in revocations._jti_index.buckets.items()
        if bucket * 10 > NOW + 100
    }
    copies = {bucket: list(keys) for bucket, keys in late.items()}

    assert revocations.sweep(NOW + 100) == 1

    for bucket, keys in late.items():
        assert revocations._jti_index.buckets[bucket] is keys
        assert keys == copies[bucket]


# -- against a model ---------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d"])
TIMES = st.floats(min_value=-50, max_value=200, allow_nan=False) | st.sampled_from(
    [0.0, 10.0, 20.0, 19.999, math.inf, math.nan]
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("revoke"), KEYS, TIMES),
        st.tuples(st.just("unrevoke"), KEYS, TIMES),
        st.tuples(st.just("revoke_identity"), KEYS, TIMES),
        st.tuples(st.just("unrevoke_identity"), KEYS, TIMES),
        st.tuples(st.just("advance"), st.just(""), st.floats(min_value=0, max_value=40)),
        st.tuples(st.just("prune"), st.just(""), st.just(0.0)),
    ),
    max_size=60,
)


def _change(step: tuple[str, str, float], seq: int) -> Change | None:
    op, key, at = step
    if op in ("revoke", "unrevoke"):
        return jti(key, at, revoked=op == "revoke", seq=seq)
    if op in ("revoke_identity", "unrevoke_identity"):
        return identity_change(key, 1.0, at, revoked=op == "revoke_identity", seq=seq)
    return None


def _same(left: object, right: object) -> bool:
    return repr(left) == repr(right)  # NaN equals NaN here


@settings(max_examples=400, deadline=None)
@given(steps=STEPS, leeway=st.sampled_from([0.0, 5.0]), width=st.sampled_from([1.0, 10.0, 7.5]))
def test_the_set_matches_a_dict_model_and_never_drops_a_live_entry(
    steps: list[tuple[str, str, float]], leeway: float, width: float
) -> None:
    clock = Clock(0.0)
    revocations = RevocationSet(leeway=leeway, clock=clock, bucket_seconds=width)
    jtis: dict[str, float] = {}
    identities: dict[str, float] = {}
    for seq, step in enumerate(steps, start=1):
        op, key, at = step
        change = _change(step, seq)
        if change is not None:
            model = jtis if change.kind is Kind.JTI else identities
            if not change.revoked:
                model.pop(key, None)
            elif not at + leeway < clock.now:
                model[key] = at
            revocations.apply(change)
        elif op == "advance":
            clock.now += at
        else:
            expired = {k for k, e in jtis.items() if e + leeway < clock.now}
            expired_identities = {k for k, e in identities.items() if e + leeway < clock.now}
            assert revocations.sweep() == len(expired) + len(expired_identities)
            for k in expired:
                del jtis[k]
            for k in expired_identities:
                del identities[k]
        assert _same(revocations.snapshot_jtis(), jtis)
        assert _same({k: e for k, (_c, e) in revocations.snapshot_identities().items()}, identities)
        for k in "abcd":
            assert revocations.is_revoked(k, None, None) is (k in jtis)
            assert revocations.is_revoked("x", k, 1.0) is (k in identities)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, split=st.integers(min_value=0, max_value=60))
def test_load_is_apply_in_order(steps: list[tuple[str, str, float]], split: int) -> None:
    changes = [c for seq, s in enumerate(steps, 1) if (c := _change(s, seq)) is not None]
    one_by_one = RevocationSet(clock=Clock(20.0), bucket_seconds=10)
    loaded = RevocationSet(clock=Clock(20.0), bucket_seconds=10)

    for change in changes:
        one_by_one.apply(change)
    loaded.load(changes[:split])
    loaded.load(changes[split:])

    assert _same(loaded.snapshot_jtis(), one_by_one.snapshot_jtis())
    assert _same(loaded.snapshot_identities(), one_by_one.snapshot_identities())
    for now in (25.0, 100.0, 1000.0):
        assert loaded.sweep(now) == one_by_one.sweep(now)
        assert _same(loaded.snapshot_jtis(), one_by_one.snapshot_jtis())


def test_removed_keys_do_not_pile_up_in_the_expiry_buckets(
    revocations: RevocationSet,
) -> None:
    """A flood of forged far-future revocations, each shed at the next catch-up: the
    set must not keep every removed key filed until its bucket comes due (years)."""
    for n in range(5000):
        key = f"forged-{n}"
        revocations.restrict(jti(key, NOW + 1e6 + 60 * n))
        revocations.apply(jti(key, NOW + 1e6 + 60 * n, revoked=False))
        revocations.restrict(identity_change(f"id-{n}", NOW, NOW + 1e6 + 60 * n))
        revocations.apply(identity_change(f"id-{n}", None, NOW, revoked=False))
    for index in (revocations._jti_index, revocations._identity_index):
        filed = sum(len(keys) for keys in index.buckets.values())
        assert filed <= 2 * revsync_set.COMPACT_AFTER
        assert len(index.heap) <= 2 * revsync_set.COMPACT_AFTER
        assert set(index.heap) == set(index.buckets)
    assert len(revocations) == 0


def test_a_rebuild_keeps_every_live_entry_and_its_expiry(
    revocations: RevocationSet, clock: Clock
) -> None:
    live = {f"live-{n}": NOW + 100 + n for n in range(50)}
    for key, until in live.items():
        revocations.apply(jti(key, until))
    for n in range(3 * revsync_set.COMPACT_AFTER):
        revocations.apply(jti(f"gone-{n}", NOW + 5000))
        revocations.apply(jti(f"gone-{n}", NOW + 5000, revoked=False))
    assert revocations.snapshot_jtis() == live
    clock.now = NOW + 125
    assert revocations.sweep() == 25  # expires_at + leeway < now: live-0 .. live-24
    assert set(revocations.snapshot_jtis()) == {f"live-{n}" for n in range(25, 50)}


# -- restrictions (what a bus message may do), state, adopt ------------------------------


def test_a_restriction_adds_a_jti_or_extends_it_never_shortens(
    revocations: RevocationSet,
) -> None:
    assert revocations.restrict(jti("a", NOW + 100))
    assert revocations.expires_at("a") == NOW + 100
    assert not revocations.restrict(jti("a", NOW + 50))  # earlier: nothing changes
    assert not revocations.restrict(jti("a", NOW + 100))
    assert revocations.expires_at("a") == NOW + 100
    assert revocations.restrict(jti("a", NOW + 200))
    assert revocations.expires_at("a") == NOW + 200
    assert revocations.is_revoked("a", None, None)


def test_a_restriction_of_an_expired_token_adds_nothing(
    clock: Clock,
) -> None:
    revocations = RevocationSet(clock=clock, leeway=10)
    assert not revocations.restrict(jti("gone", NOW - 11))
    assert not revocations.contains_jti("gone")
    assert revocations.restrict(jti("late", NOW - 9))  # still within the leeway
    assert revocations.contains_jti("late")


def test_a_restriction_raises_the_cut_off_and_its_expiry_never_lowers_them(
    revocations: RevocationSet,
) -> None:
    assert revocations.restrict(identity_change("alice", NOW - 10, NOW + 100))
    assert not revocations.restrict(identity_change("alice", NOW - 50, NOW + 50))
    assert revocations.snapshot_identities()["alice"] == (NOW - 10, NOW + 100)
    assert revocations.restrict(identity_change("alice", NOW - 50, NOW + 300))  # expiry only
    assert revocations.snapshot_identities()["alice"] == (NOW - 10, NOW + 300)
    assert revocations.restrict(identity_change("alice", NOW, NOW + 10))  # cut-off only
    assert revocations.snapshot_identities()["alice"] == (NOW, NOW + 300)
    assert revocations.is_revoked("x", "alice", NOW)


@pytest.mark.parametrize(
    "change",
    [
        jti("a", NOW + 100, revoked=False),
        identity_change("alice", NOW, NOW + 100, revoked=False),
        Change(1, Kind.ISSUED, "t", True, NOW + 100, None, None, NOW),
        identity_change("alice", None, NOW + 100),
    ],
)
def test_only_a_revocation_with_what_it_needs_is_a_restriction(
    revocations: RevocationSet, change: Change
) -> None:
    with pytest.raises(ValueError, match=r"restriction|cutoff"):
        revocations.restrict(change)
    assert len(revocations) == 0


def test_state_tells_what_is_held_for_each_kind(revocations: RevocationSet) -> None:
    assert revocations.state(Kind.JTI, "a") == Change(0, Kind.JTI, "a", False, 0.0, None, None, 0.0)
    revocations.apply(jti("a", NOW + 100))
    assert revocations.state(Kind.JTI, "a") == Change(
        0, Kind.JTI, "a", True, NOW + 100, None, None, 0.0
    )
    revocations.apply(identity_change("alice", NOW - 1, NOW + 50))
    assert revocations.state(Kind.IDENTITY, "alice") == Change(
        0, Kind.IDENTITY, "alice", True, NOW + 50, "alice", NOW - 1, 0.0
    )
    assert not revocations.state(Kind.IDENTITY, "bob").revoked
    registered = Change(1, Kind.ISSUED, "t", False, NOW + 70, "alice", None, NOW)
    assert revocations.state(Kind.ISSUED, "t").revoked  # not registered: not allowed
    revocations.apply(registered)
    assert revocations.state(Kind.ISSUED, "t") == Change(
        0, Kind.ISSUED, "t", False, NOW + 70, None, None, 0.0
    )
    # What state() returns puts the same state back.
    for kind, key in ((Kind.JTI, "a"), (Kind.IDENTITY, "alice"), (Kind.ISSUED, "t")):
        held = revocations.state(kind, key)
        revocations.apply(held)
        assert revocations.state(kind, key) == held


def test_adopt_takes_over_every_entry_at_once(revocations: RevocationSet, clock: Clock) -> None:
    revocations.apply(jti("old", NOW + 100))
    fresh = RevocationSet(clock=clock, bucket_seconds=10)
    fresh.apply(jti("new", NOW + 100))
    fresh.apply(identity_change("alice", NOW, NOW + 100))
    fresh.apply(Change(1, Kind.ISSUED, "t", False, NOW + 100, "alice", None, NOW))
    revocations.adopt(fresh)
    assert revocations.snapshot_jtis() == {"new": NOW + 100}
    assert not revocations.is_revoked("old", None, None)
    assert revocations.cutoff("alice") == NOW
    assert revocations.is_allowed("t")
    clock.now = NOW + 200
    assert revocations.sweep() == 3  # the adopted indexes prune too


def test_sweep_counts_registrations_too(revocations: RevocationSet, clock: Clock) -> None:
    revocations.apply(Change(1, Kind.ISSUED, "t", False, NOW + 10, "alice", None, NOW))
    revocations.apply(Change(2, Kind.ISSUED, "t", True, NOW + 10, "alice", None, NOW))
    assert not revocations.is_allowed("t")
    revocations.apply(Change(3, Kind.ISSUED, "u", False, NOW + 10, "alice", None, NOW))
    clock.now = NOW + 20
    assert revocations.sweep() == 1


# -- a snapshot loaded in bulk ----------------------------------------------------------


def _bucketed(revocations: RevocationSet) -> bool:
    """Whether every live, finite jti is filed in the bucket of its expiry."""
    index = revocations._jti_index
    return all(
        key in index.buckets.get(expires_at // index.width, [])
        for key, expires_at in index.expiries.items()
        if math.isfinite(expires_at)
    )


@settings(max_examples=300, deadline=None)
@given(
    rows=st.dictionaries(
        st.sampled_from("abcdefgh"), st.floats(min_value=0, max_value=200), max_size=8
    ),
    steps=STEPS,
    slices=st.lists(st.sampled_from([None, 0, 1, 2, 5]), max_size=60),
    width=st.sampled_from([1.0, 10.0, 7.5]),
)
def test_a_snapshot_loaded_in_bulk_is_load_of_its_rows(
    rows: dict[str, float],
    steps: list[tuple[str, str, float]],
    slices: list[int | None],
    width: float,
) -> None:
    """Keys loaded in bulk and filed later, a slice at a time, while changes and sweeps
    go on: the set holds what loading the same rows one by one gives, at every step."""
    clock = Clock(0.0)
    bulk = RevocationSet(clock=clock, bucket_seconds=width)
    model = RevocationSet(clock=clock, bucket_seconds=width)
    keys = list(rows)
    bulk.load_snapshot(Snapshot(9, (keys, [rows[k] for k in keys]), ([], []), [], []))
    model.load([jti(k, e) for k, e in rows.items()])
    assert bulk.pending == len(rows)
    for n, step in enumerate(steps):
        if n < len(slices):
            bulk.file_pending(slices[n])
        change = _change(step, 10 + n)
        if change is not None:
            bulk.apply(change)
            model.apply(change)
        elif step[0] == "advance":
            clock.now += step[2]
        else:
            assert bulk.sweep() == model.sweep()
        assert _same(bulk.snapshot_jtis(), model.snapshot_jtis())
        assert _same(bulk.snapshot_identities(), model.snapshot_identities())
    bulk.file_pending()
    assert bulk.pending == 0
    assert _bucketed(bulk)
    for now in (clock.now + 50, clock.now + 1000):
        assert bulk.sweep(now) == model.sweep(now)
        assert _same(bulk.snapshot_jtis(), model.snapshot_jtis())


def test_a_snapshot_with_a_non_finite_expiry_takes_the_general_path(
    revocations: RevocationSet, clock: Clock
) -> None:
    keys, expiries = ["a", "b", "c"], [NOW + 5, math.inf, math.nan]
    revocations.load_snapshot(Snapshot(3, (keys, expiries), ([], []), [], []))
    assert revocations.pending == 0  # filed at once, one by one
    assert revocations.sweep(NOW + 100) == 1
    assert set(revocations.snapshot_jtis()) == {"b", "c"}  # never expire: fail closed


def test_a_snapshot_onto_a_set_that_holds_entries_replaces_them(
    revocations: RevocationSet,
) -> None:
    revocations.apply(jti("a", NOW + 5))
    revocations.load_snapshot(Snapshot(3, (["a", "b"], [NOW + 500, NOW + 6]), ([], []), [], []))
    assert revocations.pending == 0
    assert revocations.snapshot_jtis() == {"a": NOW + 500, "b": NOW + 6}
    assert _bucketed(revocations)
    assert revocations.sweep(NOW + 100) == 1


def test_a_snapshot_fills_every_map(revocations: RevocationSet) -> None:
    cut = identity_change("bob", NOW - 1, NOW + 50)
    snapshot = Snapshot(9, (["a"], [NOW + 5]), (["r"], [NOW + 7]), [cut], [])
    assert revocations.load_snapshot(snapshot) == 3
    assert revocations.is_revoked("a", None, None)
    assert revocations.is_allowed("r")
    assert revocations.cutoff("bob") == NOW - 1
    assert revocations.pending == 2
    assert revocations.file_pending(1) == 1
    assert revocations.file_pending() == 0
    assert revocations.sweep(NOW + 10) == 2


# -- refused on arrival ----------------------------------------------------------------


def test_a_jti_refused_on_arrival_is_refused_and_held_nowhere_else(
    revocations: RevocationSet,
) -> None:
    assert revocations.refuse_now("a") is True
    assert revocations.is_revoked("a", None, None)
    assert revocations.refuse_now("a") is True  # a second message: settled on its own
    # Nothing of the set's own state: no entry, no expiry, no bucket.
    assert len(revocations) == 0
    assert revocations.expires_at("a") is None
    assert revocations.snapshot_jtis() == {}
    assert filed(revocations) == 0
    assert not revocations.state(Kind.JTI, "a").revoked


def test_settle_keeps_a_refusal_only_if_the_set_holds_the_jti(
    revocations: RevocationSet,
) -> None:
    revocations.refuse_now("forged")
    revocations.refuse_now("real")
    revocations.restrict(jti("real", NOW + 60))  # the applier applied this one
    revocations.settle("forged")
    revocations.settle("real")
    assert not revocations.is_revoked("forged", None, None)
    assert revocations.is_revoked("real", None, None)
    assert revocations.expires_at("real") == NOW + 60


def test_settle_never_lifts_a_revocation_the_set_holds(revocations: RevocationSet) -> None:
    revocations.apply(jti("held", NOW + 60))
    assert revocations.refuse_now("held") is False
    revocations.settle("held")
    assert revocations.is_revoked("held", None, None)


def test_a_store_unrevoke_read_meanwhile_wins_over_a_refusal_on_arrival(
    revocations: RevocationSet,
) -> None:
    """A newer store change that lifts the revocation ends the early refusal at once."""
    revocations.refuse_now("a")
    revocations.apply(jti("a", NOW + 60, revoked=False, seq=9))
    assert not revocations.is_revoked("a", None, None)
    revocations.settle("a")
    assert not revocations.is_revoked("a", None, None)


def test_sweeping_and_loading_keep_a_pending_refusal(
    revocations: RevocationSet, clock: Clock
) -> None:
    revocations.refuse_now("pending")
    revocations.load([jti("other", NOW + 5)])
    clock.now = NOW + 100
    assert revocations.sweep() == 1
    assert revocations.is_revoked("pending", None, None)
    revocations.settle("pending")
    assert not revocations.is_revoked("pending", None, None)
