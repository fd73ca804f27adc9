"""The status page's HTTP server: loopback only, behind a random token.

``StatusServer`` binds 127.0.0.1 (never another address) on a free port, and answers
only requests that carry its token, as ``?token=...`` or an ``Authorization: token ...``
header (compared with ``hmac.compare_digest``); every other request gets 403, whatever
its path.  A ``Host`` header naming anything but this machine's loopback names is
refused too (a DNS-rebinding page cannot read it even if it guessed the token).  A
sampler thread samples the registered handles once a second and keeps the JSON document
ready, so any number of open pages cost the handles nothing more.  Requests are never
logged: the log would hold the token.

It is the standard library's ``ThreadingHTTPServer``: the page is one static document
and one JSON endpoint, which needs no framework.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.ui.page import CONTENT_SECURITY_POLICY, HTML
from engine.ui.plain import dumps
from engine.ui.registry import Registry, activate, deactivate

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LOOPBACK_NAMES = frozenset(("127.0.0.1", "localhost", "[::1]"))
_PAGE = HTML.encode("utf-8")
_COMMON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                   "X-Frame-Options": "DENY", "Cross-Origin-Resource-Policy": "same-origin"}


def token_matches(expected: str, given: str | None) -> bool:
    """True when ``given`` is exactly ``expected`` (constant-time comparison)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def host_allowed(host_header: str | None) -> bool:
    """True for a missing Host header or one naming a loopback name (any port: SSH
    forwarding may change it); False for any other name."""
    if not host_header:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):
        name = host.split("]", 1)[0] + "]"
    else:
        name = host.rsplit(":", 1)[0] if ":" in host else host
    return name in LOOPBACK_NAMES


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    status_server: "StatusServer"

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (getfqdn), which can take seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(BaseHTTPRequestHandler):
    server_version = "engine-status"
    sys_version = ""
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Never log requests: their URLs carry the token."""

    def _send(self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            for name, value in {**_COMMON_HEADERS, **(extra or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _given_token(self, query: dict[str, list[str]]) -> str | None:
        values = query.get("token")
        if values:
            return values[0]
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() in ("token", "bearer") else None

    def do_GET(self) -> None:
        """The page (``/``) and the JSON document (``/api/status``), for the token only."""
        status = self.server.status_server
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not host_allowed(self.headers.get("Host")) or not token_matches(status.token, self._given_token(query)):
            self._send(403, b"403 forbidden: this page needs the token printed when it started\n",
                       "text/plain; charset=utf-8")
            return
        if parts.path in ("/", "/index.html"):
            self._send(200, _PAGE, "text/html; charset=utf-8", {"Content-Security-Policy": CONTENT_SECURITY_POLICY})
        elif parts.path == "/api/status":
            self._send(200, status.document_bytes(), "application/json")
        else:
            self._send(404, b"404 not found\n", "text/plain; charset=utf-8")

    do_HEAD = do_GET


class StatusServer:
    """The status page of this process: ``start()``, ``url``, ``stop()``."""

    def __init__(self, registry: Registry | None = None, port: int = 0, interval_s: float = 1.0,
                 token: str | None = None) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"status page port must be an int in 0..65535 (0: any free port), got {port!r}")
        self.registry = registry if registry is not None else Registry()
        self.token = token or secrets.token_urlsafe(32)
        self.interval_s = interval_s
        self._httpd = _Server((LOOPBACK, port), _Handler)
        self._httpd.status_server = self
        self.host, self.port = self._httpd.server_address[:2]
        self._lock = threading.Lock()
        self._document = dumps({"generated_at": time.time(), "handles": []})
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """The page's address, token included (give it to nobody else)."""
        return f"http://{self.host}:{self.port}/?token={self.token}"

    def start(self) -> "StatusServer":
        """Serve in background threads and feed ``engine.run``'s handles to this page."""
        activate(self.registry)
        self._threads = [threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.25},
                                          name="engine-ui-http", daemon=True),
                         threading.Thread(target=self._sample_loop, name="engine-ui-sampler", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def refresh(self) -> None:
        """Sample every handle (waiting at most ``interval_s`` for slow ones) and rebuild
        the JSON document."""
        self.registry.sample_all(timeout_s=self.interval_s)
        document = dumps(self.registry.document())
        with self._lock:
            self._document = document

    def document_bytes(self) -> bytes:
        """The newest JSON document (what ``/api/status`` returns)."""
        with self._lock:
            return self._document

    def _sample_loop(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.refresh()
            except Exception:  # the page must outlive any one bad sample; the next tick tries again
                logger.warning("the status page failed to refresh", exc_info=True)
            changed = self.registry.changed
            changed.wait(max(0.05, self.interval_s - (time.monotonic() - started)))
            changed.clear()

    def stop(self) -> None:
        """Stop serving and sampling (registered handles are forgotten)."""
        deactivate(self.registry)
        self._stopping.set()
        self.registry.changed.set()
        if self._threads:  # shutdown() waits for serve_forever, which only runs once started
            self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=15)
