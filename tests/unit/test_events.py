"""The bus wire format: encoding, decoding, validation and signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revsync.changes import Change, Kind
from revsync.events import (
    ANNOUNCE_MARGIN,
    MAX_EVENT_BYTES,
    MAX_KEY_CHARS,
    MAX_ORIGIN_CHARS,
    MAX_SEQ,
    MAX_TIME,
    REJECT_REASONS,
    SCHEMA_VERSION,
    InvalidEvent,
    Op,
    RevocationEvent,
    check_announceable,
    decode_event,
    encode_event,
)

KEY = b"test-event-key"
NOW = 1_700_000_000.0


def revoke(**overrides: Any) -> RevocationEvent:
    fields: dict[str, Any] = {
        "op": Op.REVOKE,
        "seq": 42,
        "key": "3f0c9a4e-1b2c-4d5e-8f90-a1b2c3d4e5f6",
        "expires_at": NOW + 900,
        "identity": "alice",
        "cutoff": None,
        "origin": "api-1",
        "sent_at": NOW + 0.125,
    }
    fields.update(overrides)
    return RevocationEvent(**fields)


def message(signing_key: bytes | None = None, /, **overrides: Any) -> dict[str, Any]:
    """A valid message as a dict, with members replaced (or removed, with ...)."""
    fields: dict[str, Any] = json.loads(encode_event(revoke(), signing_key))
    for name, value in overrides.items():
        if value is ...:
            del fields[name]
        else:
            fields[name] = value
    return fields


def raw(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


def rejected(data: bytes | str, key: bytes | None = None) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_event(data, key)
    assert info.value.reason in REJECT_REASONS
    return info.value


EVENTS = [
    revoke(),
    revoke(op=Op.UNREVOKE, identity=None),
    revoke(op=Op.REVOKE_IDENTITY, key="alice", cutoff=NOW),
    revoke(op=Op.UNREVOKE_IDENTITY, key="alice", cutoff=NOW),
    revoke(op=Op.UNREVOKE_IDENTITY, key="alice", cutoff=None),
    RevocationEvent.ping("api-1", "nonce-1", NOW),
    revoke(key="jti-ünïcödé-😀", identity='ålice\n"quoted"\\', origin="nœud"),
    revoke(seq=2**63 - 1, expires_at=0.0, sent_at=1e15),
]


# -- the format ------------------------------------------------------------------------


def test_the_constants_are_as_documented() -> None:
    assert SCHEMA_VERSION == 1
    assert (MAX_EVENT_BYTES, MAX_KEY_CHARS, MAX_ORIGIN_CHARS) == (2048, 512, 128)
    assert REJECT_REASONS == (
        "too_large",
        "not_json",
        "bad_schema",
        "bad_version",
        "bad_field",
        "unsigned",
        "bad_signature",
    )
    assert [op.value for op in Op] == [
        "revoke",
        "unrevoke",
        "revoke_identity",
        "unrevoke_identity",
        "ping",
        "issue",
    ]


def test_an_unsigned_message_is_compact_json_in_field_order() -> None:
    data = encode_event(revoke(), None)

    assert data == (
        b'{"v":1,"op":"revoke","seq":42,"key":"3f0c9a4e-1b2c-4d5e-8f90-a1b2c3d4e5f6",'
        b'"exp":1700000900,"id":"alice","cutoff":null,"origin":"api-1","ts":1700000000.125}'
    )


def test_the_signature_is_hmac_sha256_of_the_sorted_compact_json_of_the_rest() -> None:
    fields = json.loads(encode_event(revoke(op=Op.REVOKE_IDENTITY, key="alice", cutoff=NOW), KEY))

    sig = fields.pop("sig")

    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert sig == hmac.new(KEY, canonical.encode(), hashlib.sha256).hexdigest()
    assert list(fields) == ["v", "op", "seq", "key", "exp", "id", "cutoff", "origin", "ts"]


def test_whole_times_go_out_as_integers_and_others_exactly() -> None:
    fields = json.loads(encode_event(revoke(expires_at=5.0, sent_at=0.1 + 0.2), None))

    assert type(fields["exp"]) is int
    assert fields["ts"] == 0.1 + 0.2


def test_non_ascii_is_sent_as_utf8() -> None:
    data = encode_event(revoke(key="ключ"), KEY)

    assert "ключ".encode() in data


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: str(e.op))
@pytest.mark.parametrize("key", [None, KEY])
def test_an_event_round_trips(event: RevocationEvent, key: bytes | None) -> None:
    data = encode_event(event, key)

    assert decode_event(data, key) == event
    assert decode_event(data.decode(), key) == event
    assert len(data) <= MAX_EVENT_BYTES


def test_the_same_bytes_replayed_decode_identically() -> None:
    data = encode_event(revoke(), KEY)

    assert decode_event(data, KEY) == decode_event(data, KEY) == revoke()


def test_a_change_round_trips_through_an_event() -> None:
    changes = [
        Change(7, Kind.JTI, "j1", True, NOW + 900, "alice", None, NOW),
        Change(8, Kind.JTI, "j1", False, NOW + 900, None, None, NOW),
        Change(9, Kind.IDENTITY, "alice", True, NOW + 3600, "alice", NOW, NOW),
        Change(10, Kind.IDENTITY, "alice", False, NOW + 3600, "alice", None, NOW),
    ]
    for change in changes:
        event = RevocationEvent.from_change(change, "api-1", NOW + 1)

        assert event.kind == change.kind
        assert event.revoked is change.revoked
        assert (event.origin, event.sent_at) == ("api-1", NOW + 1)
        assert decode_event(encode_event(event, KEY), KEY).to_change(NOW) == change
        assert event.to_change().created_at == NOW + 1


def test_ops_map_to_kinds_and_revoked() -> None:
    assert [(e.kind, e.revoked) for e in EVENTS[:4]] == [
        (Kind.JTI, True),
        (Kind.JTI, False),
        (Kind.IDENTITY, True),
        (Kind.IDENTITY, False),
    ]


def test_a_ping_names_no_change() -> None:
    ping = RevocationEvent.ping("api-1", "nonce-1", NOW)

    assert (ping.op, ping.seq, ping.key, ping.origin, ping.sent_at) == (
        Op.PING,
        0,
        "nonce-1",
        "api-1",
        NOW,
    )
    assert not ping.revoked
    with pytest.raises(ValueError, match="ping"):
        _ = ping.kind
    with pytest.raises(ValueError, match="ping"):
        ping.to_change()


def test_construction_normalises_an_op_string_and_int_times() -> None:
    event = revoke(op="unrevoke", expires_at=10, sent_at=20)

    assert event.op is Op.UNREVOKE
    assert type(event.expires_at) is float
    assert type(event.sent_at) is float


@pytest.mark.parametrize(
    "overrides",
    [
        {"op": "delete"},
        {"op": 1},
        {"seq": True},
        {"seq": -1},
        {"seq": 0},
        {"seq": 2**63},
        {"seq": 1.0},
        {"key": ""},
        {"key": 5},
        {"key": "k" * (MAX_KEY_CHARS + 1)},
        {"key": "\ud800"},
        {"identity": 5},
        {"identity": "i" * (MAX_KEY_CHARS + 1)},
        {"origin": ""},
        {"origin": "o" * (MAX_ORIGIN_CHARS + 1)},
        {"expires_at": math.nan},
        {"expires_at": math.inf},
        {"expires_at": -1.0},
        {"expires_at": 1e16},
        {"expires_at": 10**400},
        {"expires_at": "1"},
        {"expires_at": True},
        {"sent_at": None},
        {"cutoff": NOW},
        {"op": Op.REVOKE_IDENTITY, "cutoff": None},
        {"op": Op.PING, "seq": 1},
    ],
)
def test_constructing_an_event_outside_the_format_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent) as info:
        revoke(**overrides)
    assert info.value.reason == "bad_field"
    assert isinstance(info.value, ValueError)


def test_an_event_too_large_to_send_is_refused() -> None:
    event = revoke(key="\x01" * MAX_KEY_CHARS, identity="\x01" * MAX_KEY_CHARS)

    with pytest.raises(InvalidEvent) as info:
        encode_event(event, KEY)
    assert info.value.reason == "too_large"


def test_an_empty_signing_key_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode_event(revoke(), b"")
    with pytest.raises(ValueError, match="empty"):
        decode_event(encode_event(revoke(), None), b"")


# -- every reject reason ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b" " * (MAX_EVENT_BYTES + 1),
        " " * (MAX_EVENT_BYTES + 1),
        "é" * (MAX_EVENT_BYTES // 2 + 1),  # few characters, too many bytes
    ],
)
def test_too_large(data: bytes | str) -> None:
    assert rejected(data).reason == "too_large"


def test_exactly_the_limit_is_not_too_large() -> None:
    data = encode_event(revoke(), None)
    padded = data[:-1] + b" " * (MAX_EVENT_BYTES - len(data)) + b"}"

    assert len(padded) == MAX_EVENT_BYTES
    assert decode_event(padded, None) == revoke()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\xff\xfe{}",
        '{"v":1}'.encode("utf-16"),
        b'{"v":1,"op":"revoke"',
        b"[" * 1500,
        b"NaN-ish",
        "\ud800",
        "\ufeff{}",
        123,
        None,
        bytearray(b"{}"),
    ],
)
def test_not_json(data: Any) -> None:
    assert rejected(data).reason == "not_json"


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b"1",
        b'"v"',
        b"null",
        raw(message(v=...)),
        raw(message(seq=...)),
        raw(message(extra=1)),
        raw({**message(), "Op": "revoke"}),
        encode_event(revoke(), None)[:-1] + b',"op":"unrevoke"}',
    ],
)
def test_bad_schema(data: bytes) -> None:
    assert rejected(data).reason == "bad_schema"


@pytest.mark.parametrize("version", [2, 0, "1", 1.0, True, None, [1], {"v": 1}])
def test_bad_version(version: object) -> None:
    error = rejected(raw(message(v=version)))

    assert error.reason == "bad_version"


def test_a_future_version_with_other_members_is_a_bad_version() -> None:
    assert rejected(b'{"v":2,"events":[]}').reason == "bad_version"


@pytest.mark.parametrize(
    "overrides",
    [
        {"op": "delete"},
        {"op": None},
        {"op": ["revoke"]},
        {"seq": True},
        {"seq": -1},
        {"seq": 0},
        {"seq": 2**63},
        {"seq": 10**30},
        {"seq": 42.0},
        {"seq": "42"},
        {"key": ""},
        {"key": None},
        {"key": "k" * (MAX_KEY_CHARS + 1)},
        {"key": {"a": 1}},
        {"id": 7},
        {"id": "i" * (MAX_KEY_CHARS + 1)},
        {"origin": None},
        {"origin": "o" * (MAX_ORIGIN_CHARS + 1)},
        {"exp": "1700000900"},
        {"exp": None},
        {"exp": False},
        {"exp": -0.5},
        {"exp": 1e16},
        {"ts": []},
        {"cutoff": NOW},
        {"op": "revoke_identity"},
        {"op": "ping"},
        {"sig": 5},
        {"sig": None},
    ],
)
def test_bad_field(overrides: dict[str, Any]) -> None:
    error = rejected(raw(message(**overrides)))

    assert error.reason == "bad_field"


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_a_time_that_is_not_finite_is_a_bad_field(constant: bytes) -> None:
    data = raw(message(exp=0)).replace(b'"exp":0', b'"exp":' + constant)

    assert rejected(data).reason == "bad_field"


def test_a_lone_surrogate_escape_is_a_bad_field() -> None:
    data = raw(message(key="x")).replace(b'"key":"x"', b'"key":"\\ud800"')

    assert rejected(data).reason == "bad_field"


def test_unsigned() -> None:
    error = rejected(encode_event(revoke(), None), KEY)

    assert error.reason == "unsigned"


def test_a_signature_made_with_another_key_is_bad() -> None:
    assert rejected(encode_event(revoke(), b"another key"), KEY).reason == "bad_signature"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 43),
        ("key", "another-jti"),
        ("exp", NOW + 901),
        ("op", "unrevoke"),
        ("id", None),
        ("origin", "api-2"),
        ("ts", NOW),
    ],
)
def test_a_tampered_field_breaks_the_signature(field: str, value: object) -> None:
    assert rejected(raw(message(KEY, **{field: value})), KEY).reason == "bad_signature"


@pytest.mark.parametrize("sig", ["", "00" * 32, "zz", "é" * 64, "\ud800"])
def test_a_malformed_signature_is_bad(sig: str) -> None:
    fields = message(KEY, sig=sig)
    data = json.dumps(fields, separators=(",", ":")).encode()

    assert rejected(data, KEY).reason == "bad_signature"


def test_the_signature_does_not_depend_on_member_order_or_spacing() -> None:
    fields = message(KEY)
    data = json.dumps(dict(reversed(fields.items())), indent=2).encode()

    assert decode_event(data, KEY) == revoke()


def test_without_a_key_a_signature_is_ignored() -> None:
    assert decode_event(raw(message(sig="not a signature")), None) == revoke()
    assert decode_event(encode_event(revoke(), KEY), None) == revoke()


def test_the_error_says_what_was_wrong() -> None:
    error = rejected(raw(message(seq=-1)))

    assert "seq" in error.detail
    assert str(error) == f"bad_field: {error.detail}"


# -- any input --------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FIELD_NAMES = st.sampled_from(
    ["v", "op", "seq", "key", "exp", "id", "cutoff", "origin", "ts", "sig"]
)


def _decode_or_reject(data: bytes | str, key: bytes | None) -> None:
    try:
        event = decode_event(data, key)
    except InvalidEvent as exc:
        reason = exc.reason
    else:
        assert isinstance(event, RevocationEvent)
        return
    assert reason in REJECT_REASONS


@settings(max_examples=300)
@given(data=st.binary(max_size=MAX_EVENT_BYTES + 10), key=st.sampled_from([None, KEY]))
def test_arbitrary_bytes_raise_nothing_but_invalid_event(data: bytes, key: bytes | None) -> None:
    _decode_or_reject(data, key)


@settings(max_examples=300)
@given(data=st.text(max_size=300), key=st.sampled_from([None, KEY]))
def test_arbitrary_text_raises_nothing_but_invalid_event(data: str, key: bytes | None) -> None:
    _decode_or_reject(data, key)


@settings(max_examples=300)
@given(value=JSON, key=st.sampled_from([None, KEY]))
def test_arbitrary_json_raises_nothing_but_invalid_event(value: object, key: bytes | None) -> None:
    _decode_or_reject(json.dumps(value), key)


@settings(max_examples=600)
@given(
    replacements=st.dictionaries(FIELD_NAMES, JSON, max_size=3),
    removals=st.sets(FIELD_NAMES, max_size=2),
    signed=st.booleans(),
    key=st.sampled_from([None, KEY]),
)
def test_a_message_with_arbitrary_members_raises_nothing_but_invalid_event(
    replacements: dict[str, object], removals: set[str], signed: bool, key: bytes | None
) -> None:
    fields = message(KEY if signed else None)
    fields.update(replacements)
    for name in removals:
        fields.pop(name, None)
    _decode_or_reject(json.dumps(fields), key)


TIMES = st.floats(min_value=0, max_value=1e15) | st.integers(min_value=0, max_value=10**15)
TEXT = st.text(min_size=1, max_size=60)


@st.composite
def events(draw: st.DrawFn) -> RevocationEvent:
    op = draw(st.sampled_from(Op))
    if op is Op.PING:
        return RevocationEvent.ping(draw(TEXT), draw(TEXT), draw(TIMES))
    cutoff = None
    if op is Op.REVOKE_IDENTITY:
        cutoff = draw(TIMES)
    elif op is Op.UNREVOKE_IDENTITY:
        cutoff = draw(st.none() | TIMES)
    return RevocationEvent(
        op=op,
        seq=draw(st.integers(min_value=1, max_value=2**63 - 1)),
        key=draw(TEXT),
        expires_at=draw(TIMES),
        identity=draw(st.none() | st.text(max_size=60)),
        cutoff=cutoff,
        origin=draw(TEXT),
        sent_at=draw(TIMES),
    )


@settings(max_examples=300)
@given(event=events(), key=st.sampled_from([None, KEY, b"\x00" * 64]))
def test_any_valid_event_round_trips(event: RevocationEvent, key: bytes | None) -> None:
    data = encode_event(event, key)

    assert decode_event(data, key) == event
    if key is not None:
        assert rejected(data, key + b"!").reason == "bad_signature"


# -- checking a change before it is written ---------------------------------------------


def _change(key: str, identity: str | None = None, **fields: Any) -> Change:
    values: dict[str, Any] = {
        "seq": 0,
        "kind": Kind.JTI,
        "key": key,
        "revoked": True,
        "expires_at": 1_700_003_600.0,
        "identity": identity,
        "cutoff": None,
        "created_at": 1_700_000_000.0,
    }
    values.update(fields)
    return Change(**values)


def _fits(change: Change, origin: str = "api-1") -> bool:
    """The truth, built the slow way: the event with the largest seq, signed."""
    event = RevocationEvent.from_change(change._replace(seq=MAX_SEQ), origin, change.created_at)
    try:
        return len(encode_event(event, b"k")) + ANNOUNCE_MARGIN <= MAX_EVENT_BYTES
    except InvalidEvent:
        return False


@pytest.mark.parametrize(
    ("key", "identity"),
    [
        ("j" * 512, "i" * 512),  # the longest plain strings: fit
        ('"' * 512, '"' * 512),  # every character escaped to two bytes: do not
        ('"' * 400, "i" * 300),
        ("é" * 500, "é" * 500),  # two bytes each in UTF-8
        ("\x01" * 300, None),  # six bytes each as \u0001
        ("j" * 512, None),
    ],
)
def test_a_change_is_announceable_exactly_when_its_event_fits(
    key: str, identity: str | None
) -> None:
    change = _change(key, identity)
    if _fits(change):
        check_announceable(change, "api-1")
    else:
        with pytest.raises(InvalidEvent) as raised:
            check_announceable(change, "api-1")
        assert raised.value.reason == "too_large"
        assert "event" in str(raised.value)


@pytest.mark.parametrize(
    "fields",
    [
        {"key": "k" * 513},
        {"key": ""},
        {"identity": "i" * 513},
        {"expires_at": -1.0},
        {"expires_at": MAX_TIME * 2},
        {"expires_at": math.nan},
        {"kind": Kind.IDENTITY, "cutoff": None},
        {"kind": Kind.IDENTITY, "cutoff": -5.0},
        {"created_at": math.inf},
    ],
)
def test_a_change_the_format_cannot_carry_is_refused(fields: dict[str, Any]) -> None:
    change = _change("jti-1")._replace(**fields)
    with pytest.raises(InvalidEvent) as raised:
        check_announceable(change, "api-1")
    assert raised.value.reason in ("bad_field", "too_large")
    assert str(raised.value).startswith(raised.value.reason)


def test_an_identity_cut_off_and_a_registration_are_announceable() -> None:
    check_announceable(_change("alice", "alice", kind=Kind.IDENTITY, cutoff=1.7e9), "n")
    check_announceable(_change("jti-1", "alice", kind=Kind.ISSUED, revoked=False), "n")


def test_a_revoked_registration_has_no_event() -> None:
    with pytest.raises(ValueError, match="no event for a change of kind"):
        RevocationEvent.from_change(_change("t", kind=Kind.ISSUED), "n", 1.0)


def test_a_text_message_over_the_limit_is_too_large_before_parsing() -> None:
    with pytest.raises(InvalidEvent) as raised:
        decode_event("{" * (MAX_EVENT_BYTES + 1), None)
    assert raised.value.reason == "too_large"
