"""The embedded cluster's token stays private (no Ray started here)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engine.errors import SpecError
from engine.runtime.auth import EmbeddedToken, tighten_token_file

pytestmark = pytest.mark.unit


def test_a_readable_token_file_is_made_private(tmp_path: Path) -> None:
    directory = tmp_path / ".ray"
    directory.mkdir(mode=0o755)
    token_file = directory / "auth_token"
    token_file.write_text("x" * 64)
    token_file.chmod(0o644)
    assert tighten_token_file(token_file)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert not tighten_token_file(token_file)


def test_the_embedded_token_is_random_per_process_and_removed_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    import os

    first, second = EmbeddedToken(), EmbeddedToken()
    first.install(allow_insecure=False)
    token = os.environ["RAY_AUTH_TOKEN"]
    assert len(token) == 64
    first.remove()
    assert "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_MODE" not in os.environ
    second.install(allow_insecure=False)  # another process's token
    assert os.environ["RAY_AUTH_TOKEN"] != token
    second.remove()
    # A second embedded cluster of the same process gets the same token: Ray keeps the
    # first one it loaded for the life of the process (a new one was refused).
    first.install(allow_insecure=False)
    assert os.environ["RAY_AUTH_TOKEN"] == token
    first.remove()
    assert "RAY_AUTH_TOKEN" not in os.environ


def test_authentication_switched_off_is_refused_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(SpecError, match="without token authentication"):
        EmbeddedToken().install(allow_insecure=False)
    EmbeddedToken().install(allow_insecure=True)  # allowed, with a warning
