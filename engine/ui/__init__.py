"""The status page: a live view of everything this process runs, on 127.0.0.1 behind a token.

``engine.connect(ui=True)`` starts it (or ``engine.ui.start_ui()``, e.g. for inline runs
without Ray); the URL, with its token, is printed once to standard error.  Every handle
``engine.run`` returns is shown (``engine.ui.register`` shows another).  ``/`` is the page
(refreshing itself every second), ``/api/status`` the same data as JSON.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, TextIO

from engine.ui.registry import register

if TYPE_CHECKING:
    from engine.ui.server import StatusServer

__all__ = ["register", "start_ui", "stop_ui", "ui_url"]

_lock = threading.Lock()
_server = None


def start_ui(port: int = 0, announce: bool = True, stream: TextIO | None = None) -> "StatusServer":
    """Start this process's status page (once; later calls return the running one).

    It listens on 127.0.0.1 only, on ``port`` (0: a free port), and answers only requests
    carrying its random token.  With ``announce`` the URL is printed once to ``stream``
    (standard error by default).
    """
    global _server
    from engine.ui.server import StatusServer

    with _lock:
        if _server is None:
            _server = StatusServer(port=port).start()
            if announce:
                print(f"engine: status page at {_server.url} (this machine only; the token in it is "
                      f"the key: do not share it)", file=stream or sys.stderr, flush=True)
        return _server


def stop_ui() -> None:
    """Stop the status page, if one is running."""
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        server.stop()


def ui_url() -> str | None:
    """The running status page's URL (token included), or None."""
    server = _server
    return server.url if server is not None else None

