"""Read a launch_ros Python launch file without `launch` installed, and start its nodes.

On a ROS install the launch file runs in a real LaunchService. On the PyPI-only stack (no
`launch`/`launch_ros` wheels exist) this module reads the file's literal structure with `ast`:
`DeclareLaunchArgument` defaults, and for each `Node(...)` its package, executable, name,
namespace, parameters (params files and dicts) and remappings, resolving `LaunchConfiguration`,
`PathJoinSubstitution` and `FindPackageShare`. `node_command` then builds the command line
launch_ros would run, so tests can start the installed executables exactly as a launch would.
Anything non-literal is reported as an error: the launch file is meant to stay declarative.
"""

from __future__ import annotations

import ast
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class LaunchArgument:
    name: str
    default: str | None
    description: str


@dataclass
class NodeSpec:
    package: str
    executable: str
    name: str
    namespace: str
    params_files: list[str] = field(default_factory=list)
    params: dict[str, object] = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)


def find_package_share(package: str) -> Path:
    """The share directory of an installed package, searched on AMENT_PREFIX_PATH."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix and (Path(prefix) / "share" / package / "package.xml").is_file():
            return Path(prefix) / "share" / package
    raise ValueError(f"package {package!r} not found on AMENT_PREFIX_PATH")


def find_executable(package: str, executable: str) -> Path:
    """The installed node executable (`ros2 run` looks in <prefix>/lib/<package>/)."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        path = Path(prefix) / "lib" / package / executable
        if prefix and path.is_file() and os.access(path, os.X_OK):
            return path
    raise ValueError(f"executable {executable!r} of package {package!r} not found on AMENT_PREFIX_PATH")


class _Resolver:
    def __init__(self, overrides: dict[str, str]) -> None:
        self.arguments: dict[str, LaunchArgument] = {}
        self.overrides = overrides

    def value(self, node: ast.AST) -> object:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [self.value(a) for a in node.args]
            if node.func.id == "LaunchConfiguration":
                name = args[0]
                if name in self.overrides:
                    return self.overrides[name]
                if name not in self.arguments or self.arguments[name].default is None:
                    raise ValueError(f"LaunchConfiguration {name!r} has no declared default")
                return self.arguments[name].default
            if node.func.id == "FindPackageShare":
                return str(find_package_share(args[0]))
            if node.func.id == "PathJoinSubstitution":
                return str(Path(*[str(p) for p in args[0]]))
        raise ValueError(f"non-literal launch expression at line {getattr(node, 'lineno', '?')}: {ast.unparse(node)}")

    @staticmethod
    def kwargs(call: ast.Call) -> dict[str, ast.AST]:
        return {k.arg: k.value for k in call.keywords if k.arg}


def inspect_launch_file(path: str | Path, overrides: dict[str, str] | None = None) -> tuple[
        dict[str, LaunchArgument], list[NodeSpec]]:
    """Parse a launch file into its declared arguments and node specs (resolved values)."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    resolver = _Resolver(dict(overrides or {}))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    for call in calls:
        if call.func.id == "DeclareLaunchArgument":
            kw = resolver.kwargs(call)
            name = resolver.value(call.args[0])
            default = resolver.value(kw["default_value"]) if "default_value" in kw else None
            description = resolver.value(kw["description"]) if "description" in kw else ""
            resolver.arguments[name] = LaunchArgument(name, None if default is None else str(default), str(description))
    nodes = []
    for call in calls:
        if call.func.id != "Node":
            continue
        kw = resolver.kwargs(call)
        spec = NodeSpec(package=str(resolver.value(kw["package"])), executable=str(resolver.value(kw["executable"])),
                        name=str(resolver.value(kw.get("name", kw["executable"]))),
                        namespace=str(resolver.value(kw["namespace"])) if "namespace" in kw else "")
        for entry in resolver.value(kw["parameters"]) if "parameters" in kw else []:
            if isinstance(entry, dict):
                spec.params.update(entry)
            else:
                spec.params_files.append(str(entry))
        spec.remappings = [tuple(map(str, r)) for r in resolver.value(kw["remappings"])] if "remappings" in kw else []
        nodes.append(spec)
    return resolver.arguments, nodes


def node_command(spec: NodeSpec, workdir: str | Path | None = None) -> list[str]:
    """The command line launch_ros runs for `spec` (dict parameters go through a params file)."""
    cmd = [str(find_executable(spec.package, spec.executable)), "--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        # rcl rejects a relative namespace on the command line; launch_ros makes it absolute.
        cmd += ["-r", f"__ns:={spec.namespace if spec.namespace.startswith('/') else '/' + spec.namespace}"]
    for params_file in spec.params_files:
        cmd += ["--params-file", params_file]
    if spec.params:
        handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=workdir, delete=False)
        with handle:
            yaml.safe_dump({"/**": {"ros__parameters": spec.params}}, handle)
        cmd += ["--params-file", handle.name]
    for src, dst in spec.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd
