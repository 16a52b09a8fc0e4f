"""Which commit a result names: an explicit $SPATIAL_TTT_COMMIT wins over a checkout's HEAD (a tree
copied to a GPU machine may carry a stale .git), then git, then "unknown"."""

from __future__ import annotations

import subprocess

import pytest

from spatial_ttt_ros.provenance import source_commit

pytestmark = pytest.mark.unit


def test_the_named_commit_wins_then_git_then_unknown(tmp_path, monkeypatch):
    monkeypatch.delenv("SPATIAL_TTT_COMMIT", raising=False)
    monkeypatch.delenv("BENCH_COMMIT", raising=False)
    assert source_commit(tmp_path) == "unknown"
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    run = dict(cwd=tmp_path, check=True, capture_output=True, env={**env, "PATH": "/usr/bin:/bin"})
    subprocess.run(["git", "init", "-q"], **run)
    (tmp_path / "f").write_text("a")
    subprocess.run(["git", "add", "f"], **run)
    subprocess.run(["git", "commit", "-qm", "x"], **run)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run, text=True).stdout.strip()
    assert source_commit(tmp_path) == head
    (tmp_path / "f").write_text("b")
    assert source_commit(tmp_path) == head + "+dirty"
    monkeypatch.setenv("BENCH_COMMIT", "abc1234")
    assert source_commit(tmp_path) == "abc1234"
    monkeypatch.setenv("SPATIAL_TTT_COMMIT", "def5678")
    assert source_commit(tmp_path) == "def5678"
