"""``python -m services.demo [--keep-running]``: see ``services.demo``."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from services.demo.cluster import Cluster
from services.processes import Node, ProcessError

POLL_TIMEOUT = 10.0


class StepFailed(Exception):
    pass


class Scenario:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.http = httpx.Client(timeout=5.0)
        self.number = 0
        self.figures: dict[str, float] = {}
        # Pollers get a warm client each and a ready thread, so the times they measure
        # are the cluster's, not the cost of building clients and threads.
        self.pool = ThreadPoolExecutor(len(cluster.nodes))
        self.pollers: dict[str, httpx.Client] = {}

    def warm(self) -> None:
        for node in self.nodes:
            client = self.pollers.get(node.name)
            if client is None:
                client = self.pollers[node.name] = httpx.Client(timeout=5.0)
            client.get(f"{node.url}/healthz")
        list(self.pool.map(lambda _: None, range(len(self.nodes))))

    def close(self) -> None:
        self.pool.shutdown()
        for client in self.pollers.values():
            client.close()
        self.http.close()

    @property
    def nodes(self) -> list[Node]:
        return self.cluster.nodes

    def step(self, title: str, check: Callable[[], str]) -> None:
        """Run one step; print it as PASS with its outcome, or FAIL and stop."""
        self.number += 1
        print(f"[{self.number}] {title}", flush=True)
        try:
            outcome = check()
        except (StepFailed, httpx.HTTPError, ProcessError) as exc:
            print(f"    FAIL: {exc}", flush=True)
            raise StepFailed(title) from None
        print(f"    PASS: {outcome}", flush=True)

    def call(
        self, node: Node, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, f"{node.url}{path}", headers=headers, **kwargs)

    def expect(self, resp: httpx.Response, status: int, what: str) -> dict[str, Any]:
        body: dict[str, Any] = resp.json()
        if resp.status_code != status:
            msg = f"{what}: expected {status}, got {resp.status_code} {body}"
            raise StepFailed(msg)
        return body

    def wait_refused(
        self,
        nodes: list[Node],
        token: str,
        path: str = "/protected",
        method: str = "GET",
        since: float | None = None,
    ) -> dict[str, float]:
        """Poll every node in parallel until it answers 401; ms from ``since`` for each."""
        start = time.perf_counter() if since is None else since

        def poll(node: Node) -> float:
            headers = {"Authorization": f"Bearer {token}"}
            client = self.pollers[node.name]
            deadline = time.monotonic() + POLL_TIMEOUT
            while True:
                resp = client.request(method, f"{node.url}{path}", headers=headers)
                if resp.status_code == 401:
                    elapsed = (time.perf_counter() - start) * 1000
                    if resp.json().get("msg") != "Token has been revoked":
                        msg = f"{node.name} answered 401 {resp.json()} instead of revoked"
                        raise StepFailed(msg)
                    return elapsed
                if time.monotonic() > deadline:
                    msg = f"{node.name} still accepts the token after {POLL_TIMEOUT:g}s"
                    raise StepFailed(msg)
                time.sleep(0.001)

        times = list(self.pool.map(poll, nodes))
        return {node.name: ms for node, ms in zip(nodes, times, strict=True)}

    def run(self) -> None:
        n1, n2, n3 = self.nodes[:3]
        tokens: dict[str, str] = {}

        def login() -> str:
            body = self.expect(
                self.call(n1, "POST", "/login", json={"username": "test", "password": "test"}),
                200,
                "login",
            )
            tokens.update(body)
            return "200, got an access token and a refresh token"

        self.step(f"login as test/test on node 1 ({n1.url})", login)

        def protected_ok() -> str:
            body = self.expect(
                self.call(n2, "GET", "/protected", tokens["access_token"]),
                200,
                "protected on node 2",
            )
            return f"200 {body}"

        self.step("GET /protected on node 2 with that token -> 200", protected_ok)

        def logout() -> str:
            self.warm()
            resp = self.call(n3, "DELETE", "/logout", tokens["access_token"])
            self.logout_done = time.perf_counter()
            body = self.expect(resp, 200, "logout on node 3")
            return f"200 {body}"

        self.step("DELETE /logout on node 3 (revokes the access token)", logout)

        def refused_1_2() -> str:
            times = self.wait_refused([n1, n2], tokens["access_token"], since=self.logout_done)
            self.figures.update({f"propagation_ms_{k}": v for k, v in times.items()})
            return (
                "401 'Token has been revoked' on both; refused "
                + ", ".join(f"{name} {ms:.1f} ms" for name, ms in times.items())
                + " after the logout returned"
            )

        self.step("GET /protected on nodes 1 and 2 -> 401 (propagation)", refused_1_2)

        def restart() -> str:
            n2.kill()
            n2.start()
            took = n2.wait_ready()
            return f"killed with SIGKILL, restarted, ready (backfilled) after {took:.2f}s"

        self.step("kill -9 node 2 and restart it", restart)

        def backfilled() -> str:
            resp = self.call(n2, "GET", "/protected", tokens["access_token"])
            self.expect(resp, 401, "protected on restarted node 2")
            if resp.json().get("msg") != "Token has been revoked":
                raise StepFailed(f"401 for the wrong reason: {resp.json()}")
            return "401 'Token has been revoked': the restarted node read it from the store"

        self.step("GET /protected on the restarted node 2 -> 401 (backfill)", backfilled)

        def login_again() -> str:
            login()
            for node in self.nodes:
                self.expect(
                    self.call(node, "GET", "/protected", tokens["access_token"]),
                    200,
                    f"new token on {node.name}",
                )
            return "new tokens accepted by all three nodes"

        self.step("log in again on node 1; the new token works on every node", login_again)

        def logout_all() -> str:
            self.warm()
            resp = self.call(n1, "POST", "/logout/all", tokens["access_token"])
            done = time.perf_counter()
            self.expect(resp, 200, "logout/all on node 1")
            times = self.wait_refused(self.nodes, tokens["access_token"], since=done)
            refresh = self.wait_refused(
                self.nodes, tokens["refresh_token"], path="/refresh", method="POST", since=done
            )
            self.figures.update({f"revoke_all_ms_{k}": v for k, v in times.items()})
            return (
                "every node refuses the access token ("
                + ", ".join(f"{k} {v:.1f} ms" for k, v in times.items())
                + f") and the refresh token (slowest {max(refresh.values()):.1f} ms)"
            )

        self.step(
            "POST /logout/all on node 1 (revoke every token of test) -> all refuse", logout_all
        )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _print_urls(cluster: Cluster) -> None:
    print("\nThe cluster is running (Ctrl-C stops it and everything it started):")
    for node in cluster.nodes:
        print(f"  {node.name}: {node.url}   ({node.url}/readyz, {node.url}/metrics)")
    print(f"  redis: {cluster.redis_url} ({cluster.redis_source})")
    print(f"  store: {cluster.store_url}")
    print(f"  admin token (X-Admin-Token header): {cluster.admin_token}")
    n1 = cluster.nodes[0].url
    print("\nTry:")
    print(
        f"  curl -s -X POST {n1}/login -H 'Content-Type: application/json' "
        '-d \'{"username": "test", "password": "test"}\''
    )
    print(f"  curl -s {n1}/protected -H 'Authorization: Bearer ACCESS_TOKEN'")
    print(f"  curl -s -X DELETE {n1}/logout -H 'Authorization: Bearer ACCESS_TOKEN'")
    print(
        f"  curl -s '{n1}/admin/revocations?identity=test' "
        f"-H 'X-Admin-Token: {cluster.admin_token}'",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.demo")
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="start the cluster and keep it running until Ctrl-C",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    with tempfile.TemporaryDirectory(prefix="revsync-demo-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            cluster.setup()
            print(f"redis:  {cluster.redis_url} ({cluster.redis_source})")
            print(f"store:  {cluster.store_url} (SQLite, shared by every node)")
            print("resync: python -m services.resync", flush=True)
            for line in cluster.resync().splitlines():
                print(f"    {line}")
            print("nodes:  starting 3 x hypercorn services.api.app:app ...", flush=True)
            cluster.start_nodes()
            for node in cluster.nodes:
                print(f"    {node.name} ready at {node.url}")
            print(flush=True)
            if args.keep_running:
                _print_urls(cluster)
                while all(n.running for n in cluster.nodes):
                    time.sleep(0.5)
                print("demo: a node exited; stopping the cluster", file=sys.stderr)
                return 1
            scenario = Scenario(cluster)
            try:
                scenario.run()
            finally:
                scenario.close()
        except ProcessError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 2
        except StepFailed as exc:
            print(f"\ndemo: step failed: {exc}", file=sys.stderr)
            for node in cluster.nodes:
                print(f"{node.name} log:\n{node.log_tail()}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ndemo: interrupted; stopping everything", file=sys.stderr)
            return 130
        else:
            print(f"\ndemo: all {scenario.number} steps passed")
            return 0
        finally:
            cluster.close()


if __name__ == "__main__":
    sys.exit(main())
