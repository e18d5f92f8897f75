"""Encoding and decoding of tokens: the claims every token carries, and their checks.

Pure functions over PyJWT and a :class:`~revsync.jwt.config.JWTConfig`; they know
nothing of requests or loaders.
"""

from __future__ import annotations

import hmac
import json
import math
import time
import uuid
from contextlib import suppress
from datetime import timedelta
from typing import Any

import jwt
from jwt.exceptions import ExpiredSignatureError, ImmatureSignatureError
from quart import current_app

from revsync.config import span_from
from revsync.jwt.config import TOKEN_TYPES, Expiry, JWTConfig
from revsync.jwt.exceptions import CSRFError, JWTDecodeError

_pyjwt = jwt.PyJWT()

VERIFIED_CACHE_SIZE = 4096
"""Verified tokens remembered per config; the oldest is forgotten first."""

# Errors that malformed input can raise from inside PyJWT or the json module besides
# PyJWT's own; they are reported as an invalid token, never as a server error.
_MALFORMED = (ValueError, OverflowError, UnicodeError, RecursionError)


class AppJSONEncoder(json.JSONEncoder):
    """Serialises claims the way the current app's JSON provider does (dates, UUIDs...)."""

    def default(self, o: Any) -> Any:
        """Delegate values plain JSON cannot express to ``current_app.json.default``."""
        provider_default = getattr(current_app.json, "default", None)
        if provider_default is None:
            return super().default(o)
        return provider_default(o)


def build_payload(
    cfg: JWTConfig,
    kind: str,
    identity: Any,
    expires: Expiry,
    user_claims: Any,
    fresh: bool | timedelta = False,
) -> dict[str, Any]:
    """The claims of a new token: jti, iat, nbf, exp (unless ``expires`` is False), ...

    With CSRF protection on (``cfg.csrf_protect``), both token types carry a random
    ``csrf`` claim, as in quart-jwt-extended.
    """
    issued = time.time()
    now = int(issued)
    payload: dict[str, Any] = {
        # Milliseconds in iat (RFC 7519 allows a non-integer NumericDate) tell a
        # token issued just after a "log out everywhere" from one issued just before
        # it in the same second: the cut-off refuses iat <= its own time.
        "iat": math.floor(issued * 1000) / 1000,
        "nbf": now,
        "jti": str(uuid.uuid4()),
        "type": kind,
        cfg.identity_claim: identity,
    }
    if expires is not False:
        payload["exp"] = now + int(span_from(expires, now))
    if kind == "access":
        payload["fresh"] = (
            now + int(fresh.total_seconds()) if isinstance(fresh, timedelta) else fresh
        )
    if user_claims:
        payload[cfg.user_claims_key] = user_claims
    if cfg.csrf_protect:
        # The double-submit value: sent back in a header (or form field) by the client.
        payload["csrf"] = str(uuid.uuid4())
    if cfg.encode_issuer is not None:
        payload["iss"] = cfg.encode_issuer
    return payload


def encode_payload(
    cfg: JWTConfig, payload: dict[str, Any], key: Any, headers: dict[str, Any] | None
) -> str:
    """Sign ``payload`` with ``key`` using the configured algorithm."""
    return jwt.encode(
        payload, key, algorithm=cfg.algorithm, headers=headers, json_encoder=AppJSONEncoder
    )


def decode_complete(
    cfg: JWTConfig, token: str, key: Any, *, allow_expired: bool = False, cacheable: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify ``token`` and return ``(claims, header)``, both fresh dicts.

    Raises PyJWT's errors (``ExpiredSignatureError``, ``InvalidTokenError`` and
    subclasses) or :class:`JWTDecodeError`; nothing else for malformed input.

    A client sends the same token on every request until it expires, and PyJWT spends
    far more time parsing and re-checking it than on the signature itself.  So a token
    that passed under ``cfg`` is remembered (``cacheable``: its key came from the
    config, not from a per-token loader); seeing the exact same string again only
    re-runs the checks that depend on the clock.  Revocation is never cached.
    """
    use_cache = cacheable and not allow_expired
    if use_cache:
        hit = cfg.verified.get(token)
        if hit is not None:
            claims = json.loads(hit[0])
            _check_times(cfg, claims)
            return claims, json.loads(hit[1])
    claims, header = _decode_with_pyjwt(cfg, token, key, allow_expired)
    if use_cache:
        _remember(cfg.verified, token, (json.dumps(claims), json.dumps(header)))
    return claims, header


def _decode_with_pyjwt(
    cfg: JWTConfig, token: str, key: Any, allow_expired: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    options = cfg.decode_options
    if allow_expired:
        options = {**options, "verify_exp": False}
    try:
        complete = _pyjwt.decode_complete(
            token,
            key,
            algorithms=cfg.decode_algorithms,
            options=options,  # type: ignore[arg-type]  # a plain dict of known options
            audience=cfg.audience,
            issuer=cfg.decode_issuer,
            leeway=cfg.leeway,
        )
    except _MALFORMED as exc:
        msg = f"Invalid token: {type(exc).__name__}"
        raise JWTDecodeError(msg) from exc
    claims: dict[str, Any] = complete["payload"]
    # quart-jwt-extended's order and defaults, for tokens minted elsewhere that carry
    # only some claims: the identity first, a missing type reads as "access", a
    # missing fresh as False, a missing jti as None (a revocation check refuses such a
    # token: manager.check_not_revoked).  No iat or exp: not required either.
    if cfg.identity_claim not in claims:
        msg = f"Missing claim: {cfg.identity_claim}"
        raise JWTDecodeError(msg)
    for name in ("exp", "iat", "nbf"):
        # PyJWT takes anything int() reads ("1000", true); revsync's checks and its
        # revoke(claims) need a real number, so a present one must be one.
        value = claims.get(name)
        if value is not None and (type(value) is bool or not isinstance(value, int | float)):
            msg = f"Invalid claim: {name} must be a number"
            raise JWTDecodeError(msg)
    claims.setdefault("jti", None)
    kind = claims.setdefault("type", "access")
    if kind not in TOKEN_TYPES:
        msg = "Missing or invalid claim: type"
        raise JWTDecodeError(msg)
    if kind == "access":
        claims.setdefault("fresh", False)
    claims.setdefault(cfg.user_claims_key, {})
    return claims, complete["header"]


def _check_times(cfg: JWTConfig, claims: dict[str, Any]) -> None:
    """PyJWT's clock checks, for a token whose other checks passed before."""
    now = time.time()
    leeway = cfg.leeway
    exp = claims.get("exp")
    if exp is not None and int(exp) <= now - leeway:
        msg = "Signature has expired"
        raise ExpiredSignatureError(msg)
    iat = claims.get("iat")
    if iat is not None and int(iat) > now + leeway:
        msg = "The token is not yet valid (iat)"
        raise ImmatureSignatureError(msg)
    nbf = claims.get("nbf")
    if nbf is not None and int(nbf) > now + leeway:
        msg = "The token is not yet valid (nbf)"
        raise ImmatureSignatureError(msg)


def _remember(cache: dict[str, tuple[str, str]], token: str, entry: tuple[str, str]) -> None:
    if len(cache) >= VERIFIED_CACHE_SIZE:
        # Forget the oldest entry; tolerate another thread having changed the dict.
        with suppress(RuntimeError, StopIteration, KeyError):
            del cache[next(iter(cache))]
    cache[token] = entry


def read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(claims, header)`` of ``token`` WITHOUT checking its signature or claims.

    Only for choosing a decode key; never trust what it returns.
    """
    try:
        complete = _pyjwt.decode_complete(token, options={"verify_signature": False})
    except _MALFORMED as exc:
        msg = f"Invalid token: {type(exc).__name__}"
        raise JWTDecodeError(msg) from exc
    return complete["payload"], complete["header"]


def check_csrf(claims: dict[str, Any], csrf_value: str) -> None:
    """Compare the token's ``csrf`` claim with the double-submit value, in constant time."""
    expected = claims.get("csrf")
    if not isinstance(expected, str):
        msg = "Missing claim: csrf"
        raise JWTDecodeError(msg)
    if not hmac.compare_digest(expected.encode(), csrf_value.encode()):
        msg = "CSRF double submit tokens do not match"
        raise CSRFError(msg)
