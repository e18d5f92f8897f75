"""Bus URL options: an unknown option is a start-up error naming it (docs/security.md,
TLS), on every scheme; and no option turns TLS verification off silently: either it
is refused, or a warning naming it is logged at start-up."""

from __future__ import annotations

import logging

import pytest
from quart import Quart

from revsync import RevSync

SCHEMES = ["rediss+sentinel://h:26379/m", "rediss+cluster://h:7000/0", "rediss://h:6379/0"]


def _revsync(url: str) -> RevSync:
    app = Quart(__name__)
    app.config.update(JWT_SECRET_KEY="x" * 32, JWT_BLACKLIST_ENABLED=True)
    return RevSync(app, redis_url=url, store_url="sqlite:///unused13.db")


@pytest.mark.parametrize("base", SCHEMES)
@pytest.mark.parametrize("option", ["bogus13", "SSL_CERT_REQS", "ssl"])
def test_an_unknown_option_is_refused_naming_it(base: str, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        _revsync(f"{base}?{option}=none")


@pytest.mark.parametrize("base", SCHEMES)
@pytest.mark.parametrize("option", ["ssl_cert_reqs=none", "ssl_check_hostname=false"])
def test_turning_verification_off_is_not_silent(
    base: str, option: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    try:
        _revsync(f"{base}?{option}")
    except ValueError as exc:
        refused = str(exc)
    else:
        refused = None
    if refused is not None:
        assert option.partition("=")[0] in refused
        return
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(option.partition("=")[0] in r.getMessage() for r in loud), [
        r.getMessage() for r in caplog.records
    ]
