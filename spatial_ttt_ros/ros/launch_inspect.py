"""Start a launch's node without `launch` installed (no rclpy).

On a ROS install the launch file runs in a real LaunchService. On the PyPI-only stack (no
`launch`/`launch_ros` wheels exist) `launch_args.node_spec` gives the node the launch would start
(package, executable, name, namespace, params files, parameter overrides, remappings) and
`node_command` builds the command line launch_ros runs for it, so tests start the installed
executable exactly as a launch would.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml


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


def package_config(name: str) -> Path:
    """config/<name> from the installed share dir, else from the source tree (a plain Python checkout)."""
    try:
        return find_package_share("spatial_ttt_ros") / "config" / name
    except ValueError:
        return Path(__file__).resolve().parents[2] / "config" / name


def node_cli(argv: list[str], prog: str, description: str, config_name: str,
             add_options: Callable[[argparse.ArgumentParser], None] | None = None,
             ) -> tuple[argparse.Namespace, list[str]] | None:
    """`prog [--params-file FILE] [options] [--ros-args ...]` of a node run without launch: (the
    options, the ROS arguments `--params-file FILE` + whatever followed `--ros-args`), or None
    after printing why when the params file (default config/<config_name>) does not exist."""
    argv = list(argv)
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--params-file", type=Path, default=None,
                        help=f"YAML with ros__parameters (default: config/{config_name})")
    if add_options is not None:
        add_options(parser)
    options = parser.parse_args(argv[:split])
    params_file = options.params_file or package_config(config_name)
    if not params_file.is_file():
        print(f"{prog}: params file {params_file} not found", file=sys.stderr)
        return None
    return options, ["--params-file", str(params_file), *argv[split + 1:]]


def find_executable(package: str, executable: str) -> Path:
    """The installed node executable (`ros2 run` looks in <prefix>/lib/<package>/)."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        path = Path(prefix) / "lib" / package / executable
        if prefix and path.is_file() and os.access(path, os.X_OK):
            return path
    raise ValueError(f"executable {executable!r} of package {package!r} not found on AMENT_PREFIX_PATH")


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
