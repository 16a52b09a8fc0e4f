"""Test tiers by folder: test/unit -> unit, test/ros -> ros, test/gpu -> gpu, test/slow -> slow.

``--without-triton`` runs a session as on a machine without the Triton wheel (the Jetson images of
the deployment profiles): ``import triton`` fails, so every ``kernel_backend: auto`` resolves to the
PyTorch kernels on CUDA and the Triton-only GPU files skip themselves (``pytest.importorskip``):
``make test-gpu ARGS=--without-triton`` is the fallback's proof on CUDA.

Tests import the INSTALLED package (install/, built by `make setup`), so a session starts by
comparing every source file with its installed copy and stops at once, naming the files, when
they differ: testing stale code without noticing is not possible.
"""

from __future__ import annotations

import filecmp
import sys
from pathlib import Path

import pytest

_TIERS = ("unit", "ros", "gpu", "slow")
ROOT = Path(__file__).resolve().parents[1]


def stale_files(installed_package: Path, share: Path | None) -> list[str]:
    """Source files whose installed copy is missing or different."""
    pairs = [(p, installed_package / p.relative_to(ROOT / "spatial_ttt_ros"))
             for p in (ROOT / "spatial_ttt_ros").rglob("*.py") if "kernels" not in p.relative_to(ROOT).parts[1:2]]
    pairs += [(p, installed_package / "kernels" / p.relative_to(ROOT / "kernels")) for p in (ROOT / "kernels").rglob("*.py")]
    if share is not None:
        pairs += [(p, share / p.relative_to(ROOT)) for folder in ("config", "launch", "models")
                  for p in (ROOT / folder).glob("*") if p.is_file()]
    return [str(src.relative_to(ROOT)) for src, dst in pairs
            if "__pycache__" not in src.parts and (not dst.is_file() or not filecmp.cmp(src, dst, shallow=False))]


def pytest_sessionstart(session: pytest.Session) -> None:
    import spatial_ttt_ros

    installed = Path(spatial_ttt_ros.__path__[0]).resolve()
    if installed == (ROOT / "spatial_ttt_ros").resolve():
        return  # running on the source tree itself: nothing can be stale
    share = installed.parents[3] / "share" / "spatial_ttt_ros"  # <prefix>/lib/pythonX.Y/site-packages/pkg
    stale = stale_files(installed, share if share.is_dir() else None)
    if stale:
        shown = ", ".join(stale[:8]) + (f" and {len(stale) - 8} more" if len(stale) > 8 else "")
        pytest.exit(f"the installed package ({installed}) is older than the sources: {shown}. "
                    f"Run `make setup` (tests import the installed copy).", returncode=4)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--without-triton", action="store_true",
                     help="hide the triton package: the GPU tier on the PyTorch kernel backend")


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--without-triton"):
        return
    if sys.modules.get("triton") is not None:
        raise pytest.UsageError("--without-triton: triton was imported before the tests started")
    # what a missing wheel looks like to `import triton` (ModuleNotFoundError) and to
    # importlib.util.find_spec("triton") (None), which torch itself consults on CUDA
    sys.modules["triton"] = None


@pytest.fixture
def without_triton(request: pytest.FixtureRequest) -> bool:
    """Whether this session hides triton (--without-triton)."""
    return bool(request.config.getoption("--without-triton"))
