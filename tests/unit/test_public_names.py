"""The public face: what an app may import, from two places, listed in ``__all__``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import revsync
import revsync.jwt


@pytest.mark.parametrize("package", [revsync, revsync.jwt])
def test_all_lists_importable_names_once(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    assert names == sorted(set(names))
    for name in names:
        assert getattr(package, name) is not None, name


def test_the_registry_and_settings_names_are_public() -> None:
    for name in (
        "RevSync",
        "Registry",
        "IssuedTokens",
        "TokenRecord",
        "RefreshTokenReused",
        "UnknownToken",
        "SettingError",
        "Settings",
        "Store",
        "StoreError",
        "Change",
        "Kind",
    ):
        assert name in revsync.__all__, name


def _modules() -> list[str]:
    found = []
    for info in pkgutil.walk_packages(revsync.__path__, "revsync."):
        found.append(info.name)
    return found


def test_every_exception_revsync_raises_can_be_imported_from_the_public_face() -> None:
    public = {
        id(getattr(package, n)) for package in (revsync, revsync.jwt) for n in package.__all__
    }
    missing = []
    for name in _modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__ == name
                and not attr.startswith("_")
                and id(value) not in public
                and name != "revsync._bus"  # BusError never leaves the subscriber
            ):
                missing.append(f"{name}.{attr}")
    assert missing == []


def test_internal_modules_are_marked_private() -> None:
    # A module an app should not import starts with an underscore; the public ones
    # are the package, its JWT layer, the data model, the settings, the event format,
    # the registry, the stores, the test helpers, and the operator's and deployment's
    # modules.
    public = {
        "revsync.cli",
        "revsync.health",
        "revsync.prometheus",
        "revsync.changes",
        "revsync.config",
        "revsync.events",
        "revsync.registry",
        "revsync.stores",
        "revsync.stores.base",
        "revsync.stores.sqlite",
        "revsync.stores.postgres",
        "revsync.stores.redis",
        "revsync.testing",
    }
    for name in _modules():
        last = name.rsplit(".", 1)[-1]
        if name.startswith("revsync.jwt") or last.startswith("_"):
            continue
        assert name in public, f"{name}: public by its name but not meant to be"
