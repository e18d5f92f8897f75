"""deploy/nginx.conf does what the README says: it fails over to another node when one
is down or answers 503 (not ready), with passive health checks per server.

Open-source nginx has no active health checks; the config is read and asserted here
(no nginx runs in the tests).
"""

from __future__ import annotations

import re

from tests.conftest import ROOT

CONF = ROOT / "deploy" / "nginx.conf"
README = ROOT / "README.md"


def _directives(block: str) -> dict[str, list[list[str]]]:
    """Simple directives of one block (nested blocks skipped), comments dropped."""
    text = re.sub(r"#[^\n]*", "", block)
    depth = 0
    flat = []
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif depth == 0:
            flat.append(char)
    out: dict[str, list[list[str]]] = {}
    for statement in "".join(flat).split(";"):
        words = statement.split()
        if words:
            out.setdefault(words[0], []).append(words[1:])
    return out


def _block(text: str, head: str) -> str:
    start = re.search(rf"{head}\s*\{{", text)
    assert start is not None, head
    depth, i = 1, start.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start.end() : i - 1]


def test_upstream_servers_have_passive_checks() -> None:
    upstream = _directives(_block(CONF.read_text(), r"upstream\s+revsync_api"))
    servers = upstream["server"]
    assert len(servers) == 3
    for server in servers:
        options = dict(o.split("=", 1) for o in server[1:])
        assert int(options["max_fails"]) >= 1, server
        assert re.fullmatch(r"\d+s", options["fail_timeout"]), server


def test_a_node_answering_503_is_skipped() -> None:
    conf = CONF.read_text()
    location = _directives(_block(_block(conf, r"server"), r"location\s+/"))
    (proxy_pass,) = location["proxy_pass"]
    assert proxy_pass == ["http://revsync_api"]
    (next_upstream,) = location["proxy_next_upstream"]
    assert {"error", "timeout", "http_503"} <= set(next_upstream)
    # Never replay a POST that a node may have acted on: only a 503 (nothing done) or a
    # failed connection moves a request to the next node.
    assert "non_idempotent" not in next_upstream
    assert not {"http_500", "http_502", "http_504"} & set(next_upstream)
    (tries,) = location["proxy_next_upstream_tries"]
    assert 1 < int(tries[0]) <= 3


def test_readme_tells_the_same_story() -> None:
    readme = README.read_text()
    assert "health checks on `/readyz`" not in readme  # what it used to claim
    assert "proxy_next_upstream" in readme
    assert "503" in readme
