"""Issue 5, items 3, 9 and 10, and the no-raw-token-in-logs check, on real API nodes:
``hypercorn services.api.app:app`` processes talking to a redis-server of the test's
own, a real SQLite file or PostgreSQL (through the suite's proxy when it must fail).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import time
import uuid
from typing import Any

import httpx
import jwt as pyjwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from revsync.events import RevocationEvent, encode_event
from tests.conftest import RedisServer
from tests.services.conftest import SECRET, NodeFactory, base_env, bearer, login

from .conftest import TcpProxy, ms


def _metric(node_url: str, name: str) -> float:
    text = httpx.get(f"{node_url}/metrics", timeout=5).text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def _wait_status(url: str, token: str, status: int, within: float) -> float:
    started = time.monotonic()
    while True:
        resp = httpx.get(url, headers=bearer(token), timeout=5)
        if resp.status_code == status:
            return time.monotonic() - started
        assert time.monotonic() - started < within, (resp.status_code, resp.text)
        time.sleep(0.01)


def test_slow_consumer_disconnected_by_the_output_buffer_limit_converges(
    start_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, figures: dict[str, Any]
) -> None:
    """Item 3: a node that stops reading is dropped by Redis (pubsub output buffer limit);
    the revocations published after that are recovered when it comes back, and its
    metrics show the reconnect and the resync."""
    admin = redis_server.client()
    admin.config_set("client-output-buffer-limit", "pubsub 256kb 128kb 1")
    env = base_env(redis_server.url, sqlite_url, REVSYNC_RESYNC_INTERVAL="600")
    b = start_node(env, name="slow")  # the channel's only subscriber
    channel, key = env["REVSYNC_CHANNEL"], env["REVSYNC_EVENT_KEY"].encode()
    tokens = [login(b)["access_token"] for _ in range(10)]
    for token in tokens:
        assert httpx.get(f"{b.url}/protected", headers=bearer(token)).status_code == 200
    resyncs_before = _metric(b.url, "revsync_resyncs_total")
    reconnects_before = _metric(b.url, "revsync_reconnects_total")

    assert b.proc is not None
    os.kill(b.proc.pid, signal.SIGSTOP)
    filler_bytes = 0
    try:
        filler = encode_event(RevocationEvent.ping("filler", "f" * 500, time.time()), key)
        # Flood the channel until Redis drops the stopped node's subscription.
        while admin.pubsub_numsub(channel)[0][1] >= 1:
            pipe = admin.pipeline(transaction=False)
            for _ in range(500):
                pipe.publish(channel, filler)
            pipe.execute()
            filler_bytes += 500 * len(filler)
            assert filler_bytes < 200_000_000, "Redis never dropped the slow subscriber"
        # B is gone from the channel: a writer (another node, as far as B can tell)
        # records these revocations and publishes them, and B misses every one.
        asyncio.run(_revoke_elsewhere(sqlite_url, tokens, admin, channel, key))
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    resumed = time.monotonic()
    # Ready again (not merely failing closed), and refusing exactly the revoked tokens.
    deadline = resumed + 10
    while httpx.get(f"{b.url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the slow node never became ready again"
        time.sleep(0.01)
    fresh = login(b)["access_token"]
    assert httpx.get(f"{b.url}/protected", headers=bearer(fresh)).status_code == 200
    lag = max(_wait_status(f"{b.url}/protected", t, 401, within=1) for t in tokens)
    converged = time.monotonic() - resumed
    assert _metric(b.url, "revsync_reconnects_total") > reconnects_before
    assert _metric(b.url, "revsync_resyncs_total") > resyncs_before
    ready = httpx.get(f"{b.url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    figures.update(
        output_buffer_limit="pubsub 256kb 128kb 1",
        filler_mb_until_dropped=round(filler_bytes / 1e6, 1),
        revocations_missed_on_the_bus=len(tokens),
        converged_ms_after_sigcont=ms(converged),
        slowest_token_ms=ms(lag),
        reconnects=_metric(b.url, "revsync_reconnects_total") - reconnects_before,
        resyncs=_metric(b.url, "revsync_resyncs_total") - resyncs_before,
    )
    admin.close()


async def _revoke_elsewhere(
    store_url: str, tokens: list[str], client: redis.Redis, channel: str, key: bytes
) -> None:
    from revsync.changes import ChangeRequest, Kind
    from revsync.stores import store_from_url

    store = store_from_url(store_url)
    await store.connect()
    try:
        for token in tokens:
            claims = pyjwt.decode(token, options={"verify_signature": False})
            change = await store.write(
                ChangeRequest(Kind.JTI, claims["jti"], True, float(claims["exp"]), "test")
            )
            event = RevocationEvent.from_change(change, "writer", time.time())
            assert client.publish(channel, encode_event(event, key)) == 0
    finally:
        await store.close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "jti": str(uuid.uuid4()),
        "identity": "test",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "type": "access",
        "fresh": False,
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name)
        else:
            claims[name] = value
    return claims


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["identity"] = "admin"
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PUBLIC_PEM = _RSA.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def _hs256_keyed_with(key: bytes) -> str:
    """What PyJWT refuses to build: an HS256 token whose HMAC key is a public key PEM."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(_claims()).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


ATTACKS: dict[str, tuple[Any, int, str]] = {
    "alg none": (
        lambda _: pyjwt.encode(_claims(), None, algorithm="none"),
        422,
        "The specified alg value is not allowed",
    ),
    "RS256 instead of HS256": (
        lambda _: pyjwt.encode(_claims(), _RSA, algorithm="RS256"),
        422,
        "The specified alg value is not allowed",
    ),
    "HS256 keyed with a public key (key confusion)": (
        lambda _: _hs256_keyed_with(_PUBLIC_PEM),
        422,
        "Signature verification failed",
    ),
    "tampered payload, old signature": (_tampered, 422, "Signature verification failed"),
    "signed with another key": (
        lambda _: pyjwt.encode(_claims(), "another-key-of-at-least-32-bytes!!"),
        422,
        "Signature verification failed",
    ),
    # No exp, or no iat: accepted as in quart-jwt-extended; neither, or no jti, cannot
    # be checked for revocation (tests/jwt/test_jwt_foreign_tokens.py).
    "neither exp nor iat": (
        lambda _: pyjwt.encode(_claims(exp=None, iat=None), SECRET),
        422,
        "Token has no exp and no iat claim, so its revocation cannot be checked "
        "(it never expires and tells no issue time)",
    ),
    "missing jti": (
        lambda _: pyjwt.encode(_claims(jti=None), SECRET),
        422,
        "Token has no jti claim, so its revocation cannot be checked",
    ),
    "future nbf": (
        lambda _: pyjwt.encode(_claims(nbf=int(time.time()) + 3600), SECRET),
        422,
        "The token is not yet valid (nbf)",
    ),
    "absurd exp (1e999)": (
        lambda _: pyjwt.api_jws.encode(
            json.dumps(_claims(exp=0)).replace('"exp": 0', '"exp": 1e999').encode(),
            SECRET,
            algorithm="HS256",
        ),
        422,
        "Expiration Time claim (exp) must be an integer.",
    ),
    "expired long ago": (
        lambda _: pyjwt.encode(_claims(exp=1, iat=0, nbf=0), SECRET),
        401,
        "Token has expired",
    ),
}


@pytest.fixture(scope="module")
def attack_node(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Any:  # a services.processes.Node
    factory = NodeFactory(tmp_path_factory.mktemp("attack"))
    store = f"sqlite:///{tmp_path_factory.mktemp('attack-store') / 'r.db'}"
    try:
        yield factory(base_env(redis_url, store))
    finally:
        factory.stop()


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_jwt_attack_through_the_http_api_is_refused(attack_node: Any, attack: str) -> None:
    """Item 9: each forged or malformed token gets the documented 401/422 from a node."""
    make, status, message = ATTACKS[attack]
    genuine = login(attack_node)["access_token"]
    token = make(genuine)
    resp = httpx.get(f"{attack_node.url}/protected", headers=bearer(token), timeout=5)
    assert (resp.status_code, resp.json()) == (status, {"msg": message})
    # The genuine token still works: the attack changed nothing.
    assert httpx.get(f"{attack_node.url}/protected", headers=bearer(genuine)).status_code == 200


async def test_store_unreachable_during_logout(
    start_node: NodeFactory,
    redis_url: str,
    postgres_schema_url: str,
    proxy_factory: Any,
    figures: dict[str, Any],
) -> None:
    """Item 10: PostgreSQL cut off (proxy) during logout: 503, nothing published, the
    token stays valid everywhere and never flips; with the store back, logout works
    again without a restart and every node refuses the token."""
    proxy: TcpProxy = await proxy_factory(5432)
    via_proxy = postgres_schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    env = base_env(redis_url, via_proxy)
    a = await asyncio.to_thread(start_node, env, name="cut-off")
    b = await asyncio.to_thread(start_node, {**env, "REVSYNC_STORE_URL": postgres_schema_url})
    async with httpx.AsyncClient(timeout=10) as http:
        tokens = await http.post(f"{a.url}/login", json={"username": "test", "password": "test"})
        access = tokens.json()["access_token"]
        published = await asyncio.to_thread(_metric, a.url, "revsync_revocations_published_total")
        tap = redis.Redis.from_url(redis_url).pubsub()
        tap.subscribe(env["REVSYNC_CHANNEL"])

        proxy.refuse()
        proxy.cut()
        started = time.monotonic()
        resp = await http.delete(f"{a.url}/logout", headers=bearer(access))
        failed_after = time.monotonic() - started
        assert resp.status_code == 503, resp.text
        assert "NOT revoked" in resp.json()["msg"]
        assert (
            await asyncio.to_thread(_metric, a.url, "revsync_revocations_published_total")
            == published
        )
        # The token is valid on every node, and stays so: never revoked-then-forgotten.
        accepted = 0
        for _ in range(20):
            for node in (a, b):
                got = await http.get(f"{node.url}/protected", headers=bearer(access))
                accepted += got.status_code == 200
            await asyncio.sleep(0.02)
        assert accepted == 40
        revocations = []
        while (message := tap.get_message(timeout=0.05)) is not None:
            if message["type"] == "message" and b'"op":"revoke"' in message["data"]:
                revocations.append(message)
        assert revocations == []

        proxy.refuse(False)
        resp = await http.delete(f"{a.url}/logout", headers=bearer(access))
        assert resp.status_code == 200, resp.text  # no restart needed
        started = time.monotonic()
        for node in (a, b):
            while (
                await http.get(f"{node.url}/protected", headers=bearer(access))
            ).status_code != 401:
                assert time.monotonic() - started < 5
                await asyncio.sleep(0.01)
        refused_after = time.monotonic() - started
    tap.close()
    figures.update(
        logout_503_after_ms=ms(failed_after),
        accepted_checks_while_store_down=accepted,
        revoke_events_published_while_down=0,
        refused_everywhere_ms_after_retry=ms(refused_after),
    )


def test_no_raw_token_in_any_log_line(
    start_node: NodeFactory, redis_url: str, sqlite_url: str, figures: dict[str, Any]
) -> None:
    """Security: a whole flow at debug level on two nodes; no token, nor its payload or
    signature segment, appears anywhere in either node's output."""
    env = base_env(redis_url, sqlite_url, REVSYNC_LOG_LEVEL="debug")
    a = start_node(env, name="log-a")
    b = start_node(env, name="log-b")
    http = httpx.Client(timeout=5)
    secrets_seen: list[str] = []
    for _ in range(3):
        tokens = login(a, http)
        access, refresh = tokens["access_token"], tokens["refresh_token"]
        secrets_seen += [access, refresh]
        assert http.get(f"{b.url}/protected", headers=bearer(access)).status_code == 200
        new = http.post(f"{b.url}/refresh", headers=bearer(refresh)).json()["access_token"]
        secrets_seen.append(new)
        assert http.delete(f"{a.url}/logout", headers=bearer(access)).status_code == 200
        _wait_status(f"{b.url}/protected", access, 401, within=5)
        assert http.delete(f"{b.url}/logout2", headers=bearer(refresh)).status_code == 200
        assert http.post(f"{a.url}/logout/all", headers=bearer(new)).status_code == 200
        _wait_status(f"{b.url}/protected", new, 401, within=5)
        # A tampered token is logged as refused: still not in the clear.
        bad = _tampered(new)
        secrets_seen.append(bad)
        assert http.get(f"{b.url}/protected", headers=bearer(bad)).status_code == 422
    http.close()
    for node in (a, b):
        node.stop()
    text = a.log.read_text() + b.log.read_text()
    lines = text.count("\n")
    assert "revsync.revoked" in text  # debug logging really was on and captured
    for token in secrets_seen:
        _header, payload, signature = token.split(".")
        assert token not in text
        assert payload not in text
        assert signature not in text
    figures.update(tokens_checked=len(secrets_seen), log_lines_scanned=lines)
