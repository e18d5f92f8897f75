"""Run code that calls user loaders which may be plain or coroutine functions.

Code that calls loaders is written once, as a generator that yields each loader's
return value and receives the resolved value back::

    claims = yield manager.user_claims_callback(identity)

:func:`run_steps` drives it synchronously while every yielded value is plain, and
hands over to a coroutine at the first awaitable.  So the sync public helpers stay
sync for sync loaders, and async loaders are awaited instead of leaking coroutines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from inspect import isawaitable
from typing import Any, TypeVar, cast

T = TypeVar("T")

Steps = Generator[Any, Any, T]
"""A generator that yields loader results and returns the final value."""


def run_steps(steps: Steps[T]) -> T | Awaitable[T]:
    """Drive ``steps``: return its value, or an awaitable of it once a loader is async."""
    value: Any = None
    try:
        while True:
            pending = steps.send(value)
            if isawaitable(pending):
                return _finish(steps, pending)
            value = pending
    except StopIteration as stop:
        return cast(T, stop.value)


async def _finish(steps: Steps[T], pending: Any) -> T:
    try:
        while True:
            value = await pending
            pending = steps.send(value)
            while not isawaitable(pending):
                pending = steps.send(pending)
    except StopIteration as stop:
        return cast(T, stop.value)


async def settle(value: T | Awaitable[T]) -> T:
    """Await ``value`` if it is awaitable, else return it (for the async request path)."""
    if isawaitable(value):
        return cast(T, await value)
    return value
