"""The spatial layer is pure Python + numpy: no torch, no rclpy, no other spatial_ttt_ros subpackage."""

import ast
from pathlib import Path

import spatial_ttt_ros.spatial as spatial

ALLOWED_THIRD_PARTY = {"numpy", "yaml"}


def test_spatial_imports_only_stdlib_numpy_yaml_and_itself():
    import sys

    for path in sorted(Path(spatial.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "spatial_ttt_ros":
                    assert name.startswith("spatial_ttt_ros.spatial"), f"{path.name} imports {name}"
                else:
                    assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, f"{path.name} imports {name}"
