"""Exponential backoff with full jitter, shared by every reconnect loop."""

from __future__ import annotations

import random
from typing import Final

BACKOFF_BASE: Final = 0.1
BACKOFF_CAP: Final = 5.0


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0, 1, ...): jittered, so that nodes
    restarted together do not reconnect in step."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)
