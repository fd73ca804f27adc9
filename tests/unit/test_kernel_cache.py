"""Where compiled kernels are cached, and that importing the engine does not load numba."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SHOW = "import json, os, engine.kernels._jit as j, numba; print(json.dumps([os.environ['NUMBA_CACHE_DIR'], numba.config.CACHE_DIR]))"


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "ARROW_PATTERNS_ENGINE_NUMBA_CACHE")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                          env={**clean, "PYTHONPATH": str(ROOT), **env})


def test_default_cache_is_private_per_user_and_per_source(tmp_path: Path) -> None:
    chosen, configured = json.loads(run(SHOW, XDG_CACHE_HOME=str(tmp_path)).stdout)
    assert chosen == configured
    path = Path(chosen)
    assert path.parent == tmp_path / "arrow-patterns-engine" / "numba"
    assert len(path.name) == 16
    for directory in (path, path.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_home_cache_when_xdg_is_unset(tmp_path: Path) -> None:
    chosen, _ = json.loads(run(SHOW, HOME=str(tmp_path), XDG_CACHE_HOME="").stdout)
    assert Path(chosen).parent == tmp_path / ".cache" / "arrow-patterns-engine" / "numba"


def test_a_users_numba_cache_dir_is_kept(tmp_path: Path) -> None:
    chosen, configured = json.loads(run(SHOW, NUMBA_CACHE_DIR=str(tmp_path / "mine")).stdout)
    assert chosen == configured == str(tmp_path / "mine")


def test_a_directory_chosen_by_a_parent_is_chosen_again(tmp_path: Path) -> None:
    inherited = str(tmp_path / "parent-choice")
    chosen, _ = json.loads(run(SHOW, XDG_CACHE_HOME=str(tmp_path), NUMBA_CACHE_DIR=inherited,
                               ARROW_PATTERNS_ENGINE_NUMBA_CACHE=inherited).stdout)
    assert Path(chosen).parent == tmp_path / "arrow-patterns-engine" / "numba"


def test_importing_the_engine_and_its_text_kernels_does_not_load_numba() -> None:
    code = "import sys, engine, engine.kernels, engine.kernels.text, engine.io.text; print('numba' in sys.modules)"
    assert run(code).stdout.strip() == "False"
    assert run("import engine.kernels as k, sys; k.count_words; print('numba' in sys.modules)").stdout.strip() == "False"
    assert run("import engine.kernels as k, sys; k.hash_binary; print('numba' in sys.modules)").stdout.strip() == "True"


def test_warm_up_reports_every_kernel() -> None:
    from engine.kernels import warm_up

    seconds = warm_up()
    assert set(seconds) == {"import_numba", "waited_for_lock", "count_words", "hash_binary", "utf8", "aggregate", "int_groupby", "idset",
                             "total"}
    assert all(value >= 0 for value in seconds.values())


def test_two_copies_of_the_same_sources_share_compiled_kernels(tmp_path: Path) -> None:
    import shutil

    # A checkout and an installed package hold the same sources at different paths (and
    # times): the second copy loads what the first compiled instead of compiling again.
    code = ("import json, numpy as np, engine.kernels.hashing as h; h.fmix64(np.uint64(7)); "
            "print(json.dumps([h.__file__, sum(h.fmix64.stats.cache_hits.values()), "
            "sum(h.fmix64.stats.cache_misses.values())]))")
    stats = []
    for name in ("checkout", "installed"):
        copy = tmp_path / name
        shutil.copytree(ROOT / "engine", copy / "engine", ignore=shutil.ignore_patterns("__pycache__"))
        clean = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "ARROW_PATTERNS_ENGINE_NUMBA_CACHE")}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=copy, check=True,
                              env={**clean, "PYTHONPATH": str(copy), "XDG_CACHE_HOME": str(tmp_path / "cache")})
        stats.append(json.loads(done.stdout))
    (first_file, first_hits, first_misses), (second_file, second_hits, second_misses) = stats
    assert first_file.startswith(str(tmp_path / "checkout")) and second_file.startswith(str(tmp_path / "installed"))
    assert (first_hits, first_misses) == (0, 1)
    assert (second_hits, second_misses) == (1, 0)
