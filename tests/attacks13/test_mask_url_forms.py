"""No secret in any output: URL forms whose password ``mask_url`` misses.

A password holding an unencoded ``#``, ``?`` or ``/`` (a common copy-paste of a
generated password) makes ``urlsplit`` end the netloc early, so ``parts.password``
is None and the URL is shown as written, in the very error that rejects it.  A
PostgreSQL key=value DSN (``host=... password=...``, libpq's other form) is shown as
written too.  Each case: the secret must not appear in the error, whatever it says.
"""

from __future__ import annotations

import pytest
from quart import Quart

from revsync import RevSync
from revsync._urls import mask_url
from revsync.stores import store_from_url

SECRET = "Zq9SECRETzz"


def _app() -> Quart:
    app = Quart(__name__)
    app.config.update(JWT_SECRET_KEY="x" * 32, JWT_BLACKLIST_ENABLED=True)
    return app


HELD = [
    f"redis://u:p@{SECRET}@127.0.0.1:6379/0",  # '@' in the password
    f"redis://u:p:{SECRET}@127.0.0.1:6379/0",  # ':' in the password
    f"redis://:{SECRET}%40x@127.0.0.1:6379/0",  # password only, '%40' encoded
    f"unix://:{SECRET}@/tmp/redis.sock",
    f"unix:///tmp/redis.sock?password={SECRET}",
    f"redis://u:{SECRET}@[::1]:6379/0",
    f"redis+sentinel://u:{SECRET}@h1:26379,h2:26379/m?sentinel_password={SECRET}",
    f"postgresql://u@h/db?pass%77ord={SECRET}",
    f"redis://u:{SECRET}@h/0?ssl_password={SECRET}",
]
BROKE = [
    f"redis://u:p#{SECRET}@127.0.0.1:6379/0",
    f"redis://u:p?{SECRET}@127.0.0.1:6379/0",
    f"redis://u:p/{SECRET}@127.0.0.1:6379/0",
    f"postgresql://u:p#{SECRET}@127.0.0.1:5432/test",
]


@pytest.mark.parametrize("url", HELD + BROKE)
def test_mask_url_hides_the_password(url: str) -> None:
    assert SECRET not in mask_url(url)


@pytest.mark.parametrize("url", BROKE)
def test_a_rejected_store_url_does_not_echo_its_password(url: str) -> None:
    with pytest.raises(ValueError, match="URL") as caught:
        store_from_url(url)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("url", BROKE[:3])
def test_a_rejected_bus_url_does_not_echo_its_password(url: str) -> None:
    with pytest.raises(ValueError, match="URL") as caught:
        RevSync(_app(), redis_url=url, store_url="sqlite:///unused13.db")
    assert SECRET not in str(caught.value)


def test_a_key_value_dsn_does_not_echo_its_password() -> None:
    with pytest.raises(ValueError, match="URL") as caught:
        store_from_url(f"host=127.0.0.1 dbname=test password={SECRET}")
    assert SECRET not in str(caught.value)
