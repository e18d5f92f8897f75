"""Variant (b): the api node (services/api) with the revocation check switched off.

Same app, same JWT layer (and its cache of verified tokens), same middleware; only
``JWT_BLACKLIST_ENABLED`` is False, so /protected never calls ``is_revoked``.
"""

from __future__ import annotations

from services.api.app import create_app

app = create_app()
app.config["JWT_BLACKLIST_ENABLED"] = False
