"""Which code made a result: the git commit of the source tree, for result files (evaluation,
benchmarks). Outside a git checkout (an installed package, a copied tree on a GPU machine) the
commit comes from $SPATIAL_TTT_COMMIT (or $BENCH_COMMIT), else "unknown"."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def source_commit(root: str | os.PathLike = SOURCE_ROOT) -> str:
    """Short hash of HEAD, with "+dirty" when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("SPATIAL_TTT_COMMIT") or os.environ.get("BENCH_COMMIT") or "unknown"
