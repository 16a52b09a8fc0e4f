"""Which code made a result: the git commit of the source tree, for result files (evaluation,
benchmarks). $SPATIAL_TTT_COMMIT (or $BENCH_COMMIT), when set, names it: a tree copied to a GPU
machine may carry a .git whose HEAD is not the tree's (seen: results stamped with an older commit
+dirty). Otherwise git's HEAD of the source tree; outside a checkout (an installed package) "unknown"."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def source_commit(root: str | os.PathLike = SOURCE_ROOT) -> str:
    """$SPATIAL_TTT_COMMIT / $BENCH_COMMIT when set, else the short hash of HEAD with "+dirty" when
    tracked files differ from it, else "unknown"."""
    named = os.environ.get("SPATIAL_TTT_COMMIT") or os.environ.get("BENCH_COMMIT")
    if named:
        return named
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
