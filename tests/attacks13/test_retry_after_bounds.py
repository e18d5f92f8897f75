"""Retry-After is whole seconds, rounded up, between 1 and an hour, whatever the
resync interval or the value given (the attack round found 2.7 -> 2, 1e300 -> 301
digits, NaN raising)."""

from __future__ import annotations

import pytest

from revsync.jwt import RevocationStateUnavailable


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (2.7, 3),
        (3, 3),
        (0, 1),
        (-5, 1),
        (float("nan"), 1),
        (float("inf"), 1),
        (None, 1),
        (1e300, 3600),
        (10**400, 3600),
        ("3", 3),
    ],
)
def test_retry_after_is_bounded_whole_seconds(given: object, expected: int) -> None:
    assert RevocationStateUnavailable("x", given).retry_after == expected  # type: ignore[arg-type]
