"""revsync: instant, never-forgotten JWT revocation for Quart apps on many nodes.

Everything an app uses is importable from here (and the JWT layer from
``revsync.jwt``).  Modules whose names start with an underscore are internal: their
names may change in any release.
"""

from revsync._extension import RevSync
from revsync._redis_topology import UnsupportedRedis
from revsync.changes import Change, ChangeRequest, Kind, canonical_identity
from revsync.config import SettingError, Settings
from revsync.events import InvalidEvent, Op, RevocationEvent
from revsync.registry import (
    IssuedTokens,
    RefreshTokenReused,
    Registry,
    RevocationEngine,
    TokenRecord,
    TokenStore,
    UnknownToken,
)
from revsync.stores import store_from_url
from revsync.stores.base import PartialWriteError, Store, StoreError, StorePosition

__all__ = [
    "Change",
    "ChangeRequest",
    "InvalidEvent",
    "IssuedTokens",
    "Kind",
    "Op",
    "PartialWriteError",
    "RefreshTokenReused",
    "Registry",
    "RevSync",
    "RevocationEngine",
    "RevocationEvent",
    "SettingError",
    "Settings",
    "Store",
    "StoreError",
    "StorePosition",
    "TokenRecord",
    "TokenStore",
    "UnknownToken",
    "UnsupportedRedis",
    "canonical_identity",
    "store_from_url",
]
__version__ = "0.1.0"
