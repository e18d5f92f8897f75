"""JWT layer with the API of quart-jwt-extended's blacklist feature.

An app switches by changing its import line from ``quart_jwt_extended`` to
``revsync.jwt``.  Tokens are read from the locations of ``JWT_TOKEN_LOCATION``:
headers, cookies (with CSRF double submit), the query string, a JSON body.
"""

from revsync.jwt.cookies import (
    set_access_cookies,
    set_refresh_cookies,
    unset_access_cookies,
    unset_jwt_cookies,
    unset_refresh_cookies,
)
from revsync.jwt.exceptions import (
    CSRFError,
    FreshTokenRequired,
    InvalidHeaderError,
    JWTDecodeError,
    JWTExtendedException,
    NoAuthorizationError,
    RevocationNotConfiguredError,
    RevocationStateUnavailable,
    RevokedTokenError,
    UserClaimsVerificationError,
    UserLoadError,
    WrongTokenError,
)
from revsync.jwt.manager import JWTManager, on_manager
from revsync.jwt.utils import (
    create_access_token,
    create_refresh_token,
    current_user,
    decode_token,
    get_csrf_token,
    get_current_user,
    get_jti,
    get_jwt,
    get_jwt_claims,
    get_jwt_identity,
    get_raw_jwt,
    get_raw_jwt_header,
    get_unverified_jwt_headers,
)
from revsync.jwt.view_decorators import (
    fresh_jwt_required,
    jwt_optional,
    jwt_refresh_token_required,
    jwt_required,
    verify_fresh_jwt_in_request,
    verify_jwt_in_request,
    verify_jwt_in_request_optional,
    verify_jwt_refresh_token_in_request,
)

__all__ = [
    "CSRFError",
    "FreshTokenRequired",
    "InvalidHeaderError",
    "JWTDecodeError",
    "JWTExtendedException",
    "JWTManager",
    "NoAuthorizationError",
    "RevocationNotConfiguredError",
    "RevocationStateUnavailable",
    "RevokedTokenError",
    "UserClaimsVerificationError",
    "UserLoadError",
    "WrongTokenError",
    "create_access_token",
    "create_refresh_token",
    "current_user",
    "decode_token",
    "fresh_jwt_required",
    "get_csrf_token",
    "get_current_user",
    "get_jti",
    "get_jwt",
    "get_jwt_claims",
    "get_jwt_identity",
    "get_raw_jwt",
    "get_raw_jwt_header",
    "get_unverified_jwt_headers",
    "jwt_optional",
    "jwt_refresh_token_required",
    "jwt_required",
    "on_manager",
    "set_access_cookies",
    "set_refresh_cookies",
    "unset_access_cookies",
    "unset_jwt_cookies",
    "unset_refresh_cookies",
    "verify_fresh_jwt_in_request",
    "verify_jwt_in_request",
    "verify_jwt_in_request_optional",
    "verify_jwt_refresh_token_in_request",
]
