"""Unit tests of the status page's server: loopback only, the token, the headers, the page."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import re
import socket
from typing import Iterator

import pytest

from engine.ui.page import CONTENT_SECURITY_POLICY, HTML
from engine.ui.registry import Registry, active_registry
from engine.ui.server import StatusServer, host_allowed, token_matches

pytestmark = pytest.mark.unit

TOKEN = "s3cret-token_ABC"


@pytest.fixture
def server() -> Iterator[StatusServer]:
    status = StatusServer(Registry(), token=TOKEN, interval_s=0.05).start()
    try:
        yield status
    finally:
        status.stop()


def get(server: StatusServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def listening_addresses(port: int) -> list[str]:
    """Local addresses of the LISTEN sockets on ``port``, read from /proc (an oracle apart
    from the server's own view of its socket)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    if len(address) == 8:
                        found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                    else:
                        found.append("ipv6:" + address)
    return found


@pytest.mark.parametrize("given, expected", [
    (TOKEN, True), (TOKEN + "x", False), (TOKEN[:-1], False), ("", False), (None, False), ("ünïcode", False),
    (TOKEN.upper(), False),
])
def test_token_must_match_exactly(given: str | None, expected: bool) -> None:
    assert token_matches(TOKEN, given) is expected


@pytest.mark.parametrize("host, expected", [
    (None, True), ("127.0.0.1:8000", True), ("localhost:1", True), ("LOCALHOST", True), ("[::1]:80", True),
    ("evil.example:8000", False), ("127.0.0.1.evil.example", False), ("10.0.0.1:8000", False), ("[::2]:80", False),
])
def test_only_loopback_host_names_are_served(host: str | None, expected: bool) -> None:
    assert host_allowed(host) is expected


def test_it_listens_on_loopback_only(server: StatusServer) -> None:
    assert server.host == "127.0.0.1"
    assert listening_addresses(server.port) == ["127.0.0.1"]
    assert server.url == f"http://127.0.0.1:{server.port}/?token={TOKEN}"


@pytest.mark.parametrize("path", ["/", "/api/status", "/index.html", "/nothing/here", "/?token=wrong",
                                  "/api/status?token=", f"/api/status?token={TOKEN}x", f"/api/status?tok={TOKEN}"])
def test_requests_without_the_token_get_403(server: StatusServer, path: str) -> None:
    status, headers, body = get(server, path)
    assert status == 403
    assert TOKEN.encode() not in body


def test_a_foreign_host_header_gets_403_even_with_the_token(server: StatusServer) -> None:
    status, _, _ = get(server, f"/api/status?token={TOKEN}", {"Host": "rebound.example:80"})
    assert status == 403


def test_the_token_opens_the_page_and_the_json(server: StatusServer) -> None:
    status, headers, body = get(server, f"/?token={TOKEN}")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert body.decode() == HTML
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    status, headers, body = get(server, f"/api/status?token={TOKEN}")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["handles"] == []
    status, _, body = get(server, "/api/status", {"Authorization": f"token {TOKEN}"})
    assert status == 200 and json.loads(body)["handles"] == []
    assert get(server, f"/elsewhere?token={TOKEN}")[0] == 404


def test_requests_are_not_logged(server: StatusServer, capfd: pytest.CaptureFixture[str]) -> None:
    get(server, f"/?token={TOKEN}")
    get(server, "/?token=guess")
    captured = capfd.readouterr()
    assert TOKEN not in captured.err + captured.out and "guess" not in captured.err + captured.out


def test_start_feeds_engine_run_and_stop_ends_it() -> None:
    status = StatusServer(Registry(), interval_s=0.05)
    assert active_registry() is None
    status.start()
    try:
        assert active_registry() is status.registry
        assert len(status.token) >= 32
    finally:
        status.stop()
    assert active_registry() is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", status.port), timeout=2).close()


@pytest.mark.parametrize("port", [-1, 70000, "80", True])
def test_a_bad_port_is_one_clear_error(port: object) -> None:
    with pytest.raises(ValueError, match=r"status page port must be an int in 0\.\.65535"):
        StatusServer(Registry(), port=port)  # type: ignore[arg-type]


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_policy_allows_exactly_the_inline_script_and_style() -> None:
    scripts = re.findall(r"<script>(.*?)</script>", HTML, re.S)
    styles = re.findall(r"<style>(.*?)</style>", HTML, re.S)
    assert len(scripts) == 1 and len(styles) == 1
    policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == _csp_hash(scripts[0])
    assert policy["style-src"] == _csp_hash(styles[0])
    assert policy["connect-src"] == "'self'"


def test_the_page_loads_nothing_from_elsewhere_and_never_parses_html_from_data() -> None:
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", HTML)
    assert "@import" not in HTML and "url(" not in HTML
    script = re.findall(r"<script>(.*?)</script>", HTML, re.S)[0]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(",
                 "DOMParser", "createContextualFragment", "srcdoc"):
        assert sink not in script, sink
    # attributes set from data are never event handlers, links or styles
    for name in re.findall(r"setAttribute\(\"([^\"]+)\"", script):
        assert not name.startswith("on") and name not in ("href", "src", "style"), name
