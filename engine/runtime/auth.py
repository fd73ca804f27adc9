"""Keeping the embedded cluster's token authentication on, and its token private.

Ray (>= 2.52) guards the GCS, raylets and core workers — which listen on every interface
of the machine, whatever node IP is asked for — with a shared bearer token.  Ray writes
a generated token to ``~/.ray/auth_token`` with mode 644 inside a 755 directory, so any
local user who can enter the home directory can read it and reach the cluster.

The engine instead gives each embedded cluster its own random token through the
environment of the processes it starts (``RAY_AUTH_TOKEN``; a process's environment is
readable only by its own user), so no token file is written; it refuses to start an
embedded cluster with authentication switched off unless asked to; and when it finds
``~/.ray/auth_token`` (used by clusters started with ``ray start``) readable by others,
it tightens it to 600 and its directory to 700.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from engine.errors import SpecError

TOKEN_ENV = "RAY_AUTH_TOKEN"
MODE_ENV = "RAY_AUTH_MODE"
_log = logging.getLogger(__name__)


def default_token_file() -> Path:
    """Where Ray keeps a generated token: ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def tighten_token_file(path: Path | None = None) -> bool:
    """Make a token file readable by its owner only (600, directory 700); True if changed."""
    path = path or default_token_file()
    changed = False
    try:
        if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
            changed = True
        parent = path.parent
        if parent.name == ".ray" and parent.exists() and stat.S_IMODE(parent.stat().st_mode) & 0o077:
            parent.chmod(0o700)
            changed = True
    except OSError as error:  # not ours to change: say so, do not fail the connection
        _log.warning("could not make %s private: %s", path, error)
    if changed:
        _log.warning("made the Ray token file %s readable by its owner only", path)
    return changed


class EmbeddedToken:
    """The token of one embedded cluster, set in this process's environment while it runs."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}
        # Ray loads the token once per process and keeps it: every embedded cluster this
        # process starts gets the same one (a new one would be refused by Ray's cached copy).
        self._generated: str | None = None

    def install(self, allow_insecure: bool) -> None:
        """Before ``ray.init``: require token mode and provide a private random token (the same for every embedded cluster of this process)."""
        mode = os.environ.get(MODE_ENV, "token")
        if mode != "token":
            if not allow_insecure:
                raise SpecError(f"{MODE_ENV}={mode} would start the embedded cluster without token authentication "
                                "(its endpoints run code for whoever reaches them); unset it, or pass "
                                "connect(allow_insecure=True) on a machine nobody else can reach")
            _log.warning("starting the embedded Ray cluster WITHOUT token authentication (%s=%s)", MODE_ENV, mode)
            return
        # Ray itself turns token mode on for a local cluster (and records it in RAY_AUTH_MODE);
        # setting the mode here, after Ray was imported, would not reach its C++ config.
        self._saved = {MODE_ENV: os.environ.get(MODE_ENV), TOKEN_ENV: os.environ.get(TOKEN_ENV)}
        if not os.environ.get(TOKEN_ENV):
            self._generated = self._generated or secrets.token_hex(32)
            os.environ[TOKEN_ENV] = self._generated

    def remove(self) -> None:
        """After ``ray.shutdown``: restore the environment as it was before ``install``."""
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved = {}


def token_authentication_on() -> bool:
    """True when this process talks to Ray with token authentication."""
    return os.environ.get(MODE_ENV) == "token"
