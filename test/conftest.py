"""Test tiers by folder: test/unit -> unit, test/ros -> ros, test/gpu -> gpu, test/slow -> slow."""

from __future__ import annotations

from pathlib import Path

import pytest

_TIERS = ("unit", "ros", "gpu", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
