"""revsync: instant, never-forgotten JWT revocation for Quart apps on many nodes."""

from revsync.changes import Change, Kind
from revsync.extension import RevSync
from revsync.stores.base import Store, StoreError

__all__ = ["Change", "Kind", "RevSync", "Store", "StoreError"]
__version__ = "0.1.0"
