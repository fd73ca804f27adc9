"""Where ``MasterChaos`` makes a master crash, without crashing anything (``os._exit`` is faked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.testing import MasterChaos
from engine.testing import chaos as chaos_module

pytestmark = pytest.mark.unit


class Crashed(Exception):
    pass


@pytest.fixture
def crashes(monkeypatch: pytest.MonkeyPatch) -> None:
    def exit_(code: int) -> None:
        raise Crashed(code)

    monkeypatch.setattr(chaos_module.os, "_exit", exit_)


def test_commit_point_crashes_the_first_primary_at_its_nth_completion_only(crashes: None) -> None:
    chaos = MasterChaos(die_after_completions=3)
    chaos.after_commit(0, 2, 0)
    chaos.after_commit(1, 5, 5)  # another master: not this fault
    with pytest.raises(Crashed):
        chaos.after_commit(0, 3, 0)


def test_reduce_point_counts_reduce_completions(crashes: None) -> None:
    chaos = MasterChaos(die_after_completions=2, at="reduce")
    chaos.after_commit(0, 10, 1)
    with pytest.raises(Crashed):
        chaos.after_commit(0, 11, 2)


def test_snapshot_point_leaves_a_torn_temporary_file_and_no_snapshot(crashes: None, tmp_path: Path) -> None:
    chaos = MasterChaos(die_after_completions=2, at="snapshot")
    chaos.after_commit(0, 5, 0)  # the snapshot point never fires on a commit
    chaos.before_snapshot(0, 1, str(tmp_path / "snaps"), {"tasks": []})
    assert not (tmp_path / "snaps").exists()
    with pytest.raises(Crashed):
        chaos.before_snapshot(0, 2, str(tmp_path / "snaps"), {"tasks": [{"task_id": f"map-{i}"} for i in range(9)]})
    [torn] = list((tmp_path / "snaps").iterdir())
    assert torn.name.startswith(".tmp-")
    with pytest.raises(json.JSONDecodeError):
        json.loads(torn.read_text())


def test_the_standby_that_took_over_dies_after_its_own_completions(crashes: None) -> None:
    chaos = MasterChaos(die_after_completions=4, standby_after_completions=1)
    chaos.after_commit(2, 1, 0)  # a later master is spared
    with pytest.raises(Crashed):
        chaos.after_commit(1, 1, 0)


def test_an_unknown_point_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="MasterChaos.at must be one of commit, snapshot, reduce, got 'mid'"):
        MasterChaos(die_after_completions=1, at="mid")
