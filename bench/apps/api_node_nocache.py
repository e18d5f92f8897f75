"""Variant (a, no cache): the api node with revsync.jwt's cache of verified tokens off.

Shows what that cache is worth: every request runs PyJWT's full decode and checks,
as quart-jwt-extended does.  Done by making the cache's store step a no-op in this
process only (bench-only; revsync itself is unchanged).
"""

from __future__ import annotations

import revsync.jwt.tokens
from services.api.app import create_app


def _forget(*_args: object) -> None:
    """Remember nothing, so every token is decoded and verified by PyJWT."""


revsync.jwt.tokens._remember = _forget  # type: ignore[attr-defined]  # bench-only switch
app = create_app()
