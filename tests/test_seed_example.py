"""The seed example, served by a real hypercorn process and driven over HTTP.

quart-jwt-extended's blacklist example with only its import line changed must behave
as the original: log in, use, log out, and have the revoked tokens refused.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from services.processes import Server


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """services.seed_example.app:app under hypercorn on a free loopback port."""
    server = Server("seed", "services.seed_example.app:app", None, tmp_path_factory.mktemp("seed"))
    server.start()
    try:
        server.wait_ready("/protected", timeout=20, any_answer=True)
        yield server.url
    finally:
        server.stop()  # the whole process group: hypercorn's worker too


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_logout_and_revocation(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        bad = client.post("/login", json={"username": "test", "password": "wrong"})
        assert (bad.status_code, bad.json()) == (401, {"msg": "Bad username or password"})

        login = client.post("/login", json={"username": "test", "password": "test"})
        assert login.status_code == 200
        access, refresh = login.json()["access_token"], login.json()["refresh_token"]

        hello = client.get("/protected", headers=bearer(access))
        assert (hello.status_code, hello.json()) == (200, {"hello": "world"})

        fresh = client.post("/refresh", headers=bearer(refresh))
        assert fresh.status_code == 200
        new_access = fresh.json()["access_token"]
        assert client.get("/protected", headers=bearer(new_access)).status_code == 200

        logout = client.delete("/logout", headers=bearer(access))
        assert (logout.status_code, logout.json()) == (200, {"msg": "Successfully logged out"})
        revoked = client.get("/protected", headers=bearer(access))
        assert (revoked.status_code, revoked.json()) == (401, {"msg": "Token has been revoked"})
        # Only that access token was revoked.
        assert client.get("/protected", headers=bearer(new_access)).status_code == 200

        logout2 = client.delete("/logout2", headers=bearer(refresh))
        assert (logout2.status_code, logout2.json()) == (200, {"msg": "Successfully logged out"})
        again = client.post("/refresh", headers=bearer(refresh))
        assert (again.status_code, again.json()) == (401, {"msg": "Token has been revoked"})


def test_missing_and_wrong_tokens(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        missing = client.get("/protected")
        assert (missing.status_code, missing.json()) == (
            401,
            {"msg": "Missing Authorization Header"},
        )
        login = client.post("/login", json={"username": "test", "password": "test"}).json()
        wrong = client.get("/protected", headers=bearer(login["refresh_token"]))
        assert (wrong.status_code, wrong.json()) == (422, {"msg": "Only access tokens are allowed"})
        garbage = client.get("/protected", headers=bearer("garbage"))
        assert (garbage.status_code, garbage.json()) == (422, {"msg": "Not enough segments"})


def test_huge_headers_are_a_clean_4xx(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        # hypercorn itself refuses a 100 KB header block: 431, and the app never runs.
        huge = client.get("/protected", headers=bearer("A" * 100_000))
        assert huge.status_code == 431
        # One small enough for hypercorn reaches the app and is refused there.
        large = client.get("/protected", headers=bearer("A" * 10_000))
        assert (large.status_code, large.json()) == (422, {"msg": "Not enough segments"})
