"""The package's floors, checked on every source file (imports inside functions included):
kernels < runtime < spatial < data < train < ros, a floor never imports one above it, and ROS
client code (rclpy, message_filters, launch, cv_bridge, our generated msg/srv) lives only under
spatial_ttt_ros/ros/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS = ["kernels", "runtime", "spatial", "data", "train", "ros"]
ROS_ONLY = {"rclpy", "message_filters", "launch", "launch_ros", "cv_bridge", "spatial_ttt_ros.msg",
            "spatial_ttt_ros.srv"}


def sources() -> list[tuple[str, Path]]:
    """(floor, file) for every Python file of the package; kernels/ is the top-level folder that
    spatial_ttt_ros/kernels links to."""
    files = [("kernels", p) for p in (ROOT / "kernels").rglob("*.py")]
    for floor in FLOORS[1:]:
        files += [(floor, p) for p in (ROOT / "spatial_ttt_ros" / floor).rglob("*.py")]
    return files


def package_of(path: Path) -> list[str]:
    """The dotted package a source file belongs to, as parts (kernels/ is spatial_ttt_ros.kernels)."""
    rel = path.relative_to(ROOT).parent.parts
    return ["spatial_ttt_ros", *rel] if rel[:1] == ("kernels",) else list(rel)


def imported(path: Path, text: str | None = None) -> list[tuple[str, int]]:
    """Every module (and from-imported name) a file imports, relative imports made absolute; `text`
    stands in for the file's contents."""
    names = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(path)[:len(package_of(path)) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names += [(module, node.lineno)] + [(f"{module}.{a.name}", node.lineno) for a in node.names]
    return names


def is_ros_only(name: str) -> bool:
    return any(name == r or name.startswith(r + ".") for r in ROS_ONLY)


def test_the_scan_sees_the_whole_package():
    found = {floor for floor, _ in sources()}
    assert found == set(FLOORS)
    assert len(sources()) > 60


@pytest.mark.parametrize("floor", FLOORS[:-1])
def test_no_ros_client_code_outside_ros(floor):
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for f, p in sources() if f == floor
           for name, line in imported(p) if is_ros_only(name)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("floor", FLOORS)
def test_no_floor_imports_one_above_it(floor):
    level = FLOORS.index(floor)
    bad = []
    for f, path in sources():
        if f != floor:
            continue
        for name, line in imported(path):
            parts = name.split(".")
            if parts[0] == "spatial_ttt_ros" and len(parts) > 1 and parts[1] in FLOORS:
                if FLOORS.index(parts[1]) > level:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_check_catches_a_violation():
    sample = ROOT / "spatial_ttt_ros" / "data" / "sample.py"  # never written: only its path is used
    text = "def f():\n    import rclpy\n    from spatial_ttt_ros.srv import SpatialQuery\n    from ..ros import inputs\n"
    names = [n for n, _ in imported(sample, text)]
    assert [n for n in names if is_ros_only(n)] == ["rclpy", "spatial_ttt_ros.srv", "spatial_ttt_ros.srv.SpatialQuery"]
    assert "spatial_ttt_ros.ros.inputs" in names  # a relative import, resolved: data importing ros
