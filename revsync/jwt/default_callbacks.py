"""The behaviour of each loader until an app registers its own.

The error responses are quart-jwt-extended's, word for word: a JSON object with the
message under ``JWT_ERROR_MESSAGE_KEY`` (``"msg"``) and the same status codes.
"""

from __future__ import annotations

from typing import Any

from revsync.jwt.config import current_config
from revsync.jwt.exceptions import RevocationStateUnavailable

ErrorResponse = tuple[dict[str, str], int]


def _error(message: str, status: int) -> ErrorResponse:
    return {current_config().error_msg_key: message}, status


def default_user_claims_callback(identity: Any) -> dict[str, Any]:
    """No extra claims."""
    return {}


def default_user_identity_callback(identity: Any) -> Any:
    """The object given to ``create_access_token`` is itself the identity."""
    return identity


def default_jwt_headers_callback(identity: Any) -> dict[str, Any] | None:
    """No extra JOSE headers."""
    return None


def default_expired_token_callback(expired_token: dict[str, Any]) -> ErrorResponse:
    """401 ``Token has expired``."""
    return _error("Token has expired", 401)


def default_invalid_token_callback(error_string: str) -> ErrorResponse:
    """422 with the reason the token is invalid."""
    return _error(error_string, 422)


def default_unauthorized_callback(error_string: str) -> ErrorResponse:
    """401 with the reason no token was found."""
    return _error(error_string, 401)


def default_needs_fresh_token_callback() -> ErrorResponse:
    """401 ``Fresh token required``."""
    return _error("Fresh token required", 401)


def default_revoked_token_callback() -> ErrorResponse:
    """401 ``Token has been revoked``."""
    return _error("Token has been revoked", 401)


def default_revocation_unavailable_callback(
    error: RevocationStateUnavailable,
) -> tuple[dict[str, str], int, dict[str, str]]:
    """503 with ``Retry-After`` and the reason: the token was not judged, not refused.

    Not quart-jwt-extended's (it has no such case): a 401 here would make clients log
    their users out over a revocation-state outage.
    """
    return (
        {current_config().error_msg_key: str(error)},
        503,
        {"Retry-After": str(error.retry_after)},
    )


def default_user_loader_error_callback(identity: Any) -> ErrorResponse:
    """401 ``Error loading the user <identity>``."""
    return _error(f"Error loading the user {identity}", 401)


def default_verify_claims_failed_callback() -> ErrorResponse:
    """400 ``User claims verification failed``."""
    return _error("User claims verification failed", 400)
