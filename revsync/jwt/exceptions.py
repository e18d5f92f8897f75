"""Exceptions raised by the JWT layer.

The names match quart-jwt-extended's, so code that catches them keeps working after
the import switch.  Errors from PyJWT itself (``jwt.ExpiredSignatureError``,
``jwt.InvalidTokenError`` and its subclasses) are raised unchanged, as the original does.
"""

from __future__ import annotations

import math


class JWTExtendedException(Exception):
    """Base class of every error this JWT layer raises."""


class JWTDecodeError(JWTExtendedException):
    """A token decoded but lacks a claim this layer needs, or has a bad one."""


class InvalidHeaderError(JWTExtendedException):
    """The request carries the token header in the wrong format."""


class NoAuthorizationError(JWTExtendedException):
    """A protected endpoint was called without a token."""


class CSRFError(JWTExtendedException):
    """The CSRF double-submit value is missing or does not match."""


class WrongTokenError(JWTExtendedException):
    """A refresh token was used where an access token is needed, or the reverse."""


class RevokedTokenError(JWTExtendedException):
    """The token has been revoked (the denylist loader said so)."""


class RevocationStateUnavailable(JWTExtendedException):
    """The denylist loader cannot say whether the token is revoked right now.

    Raised by a loader (RevSync's, while its node is not ready yet, or stale in
    fail-closed mode) instead of answering "revoked": the token may well be fine, and
    a client that treats 401 as "log the user out" must not do so over an outage.
    Answered through :meth:`JWTManager.revocation_unavailable_loader` (by default
    503 with ``Retry-After``).  ``str(error)`` is safe to show a client.
    """

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = _retry_seconds(retry_after)
        """Whole seconds a client should wait before trying again (at least 1)."""


class FreshTokenRequired(JWTExtendedException):
    """A valid but non-fresh access token was used on a fresh-only endpoint."""


class UserLoadError(JWTExtendedException):
    """The user loader returned ``None`` for the token's identity."""


class UserClaimsVerificationError(JWTExtendedException):
    """The claims verification loader refused the token's user claims."""


class RevocationNotConfiguredError(JWTExtendedException):
    """Revocation checks are enabled but no denylist loader is registered.

    A server misconfiguration, answered with a 500 and an error log line; never the
    caller's fault, and never silently treated as "not revoked".
    """


MAX_RETRY_AFTER = 3600
"""An hour: beyond it a client should not be told to wait, but to ask again."""


def _retry_seconds(value: object) -> int:
    """Whole seconds for Retry-After, rounded up, within 1..MAX_RETRY_AFTER (1 when the
    value is not a finite number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        try:
            seconds = math.ceil(float(value))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return 1
    return min(max(1, seconds), MAX_RETRY_AFTER)
