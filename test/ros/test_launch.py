"""The launch: its arguments come from the parameter table, the params file reaches the node with
and without a namespace, and model arguments override the file only when given. Started through
a real LaunchService where launch_ros is installed, else through the launch inspection
(`launch_args.node_spec` -> `launch_inspect.node_command`, the command launch_ros runs)."""

from __future__ import annotations

import ast
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rcl_interfaces.srv import GetParameters

from spatial_ttt_ros.ros.launch_args import LAUNCH_ARGUMENTS, MODEL_ARGUMENTS, node_spec
from spatial_ttt_ros.ros.launch_inspect import find_package_share, node_command
from spatial_ttt_ros.ros.params import DEFAULTS, NODE_NAME, SPECS

LAUNCH = "perception.launch.py"
# What the test's params file says, unlike the defaults.
FILE_VALUES = {"device": "cpu", "status_rate_hz": 7.0, "max_new_tokens": 9, "sync_slop_s": 0.02}


def _launch_path() -> Path:
    return find_package_share("spatial_ttt_ros") / "launch" / LAUNCH


def _params_file(tmp_path: Path) -> str:
    """The shipped params file with FILE_VALUES changed (the user's copy of config/perception.yaml)."""
    shipped = yaml.safe_load((find_package_share("spatial_ttt_ros") / "config" / "perception.yaml").read_text())
    shipped["/**"]["ros__parameters"].update(FILE_VALUES)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(shipped))
    return str(path)


def test_launch_arguments_derive_from_the_table_and_default_to_the_params_file():
    names = [a.name for a in LAUNCH_ARGUMENTS]
    assert len(names) == len(set(names)) and all(a.description for a in LAUNCH_ARGUMENTS)
    for name in MODEL_ARGUMENTS:
        argument = next(a for a in LAUNCH_ARGUMENTS if a.name == name)
        assert argument.default == "" and argument.description.startswith(SPECS[name].description)
    spec = node_spec()
    assert spec.params == {}  # nothing overrides the params file unless given
    (params_file,) = spec.params_files
    assert yaml.safe_load(Path(params_file).read_text())["/**"]["ros__parameters"] == DEFAULTS
    assert node_spec({"device": "cuda:1"}).params == {"device": "cuda:1"}
    with pytest.raises(ValueError, match="unknown launch arguments"):
        node_spec({"preset": "tiny"})
    # The installed launch file is the one description: it hands over to launch_args.
    tree = ast.parse(_launch_path().read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert any(n.module == "spatial_ttt_ros.ros.launch_args" and n.names[0].name == "generate_launch_description"
               for n in imports)


def _check_node(helpers, client, namespace: str, expected: dict) -> None:
    fqn = f"/{namespace}/{NODE_NAME}" if namespace else f"/{NODE_NAME}"
    assert helpers.spin(client, lambda: (NODE_NAME, f"/{namespace}") in client.get_node_names_and_namespaces(), 60)
    assert helpers.wait_for(lambda: helpers.call(client, GetState, f"{fqn}/get_state", GetState.Request())
                            .current_state.id == State.PRIMARY_STATE_ACTIVE, 60)
    names = sorted(expected)
    reply = helpers.call(client, GetParameters, f"{fqn}/get_parameters", GetParameters.Request(names=names))
    from rclpy.parameter import parameter_value_to_python

    got = {name: parameter_value_to_python(v) for name, v in zip(names, reply.values)}
    assert got == expected


@pytest.mark.parametrize("namespace, arguments, expected", [
    # a namespace, no model argument: every value from the file (device too), the default model demo
    ("robot1", {}, {**FILE_VALUES, "model_preset": "demo"}),
    # no namespace, device given: the argument wins, the rest from the file
    ("", {"device": "auto"}, {**FILE_VALUES, "device": "auto"}),
])
def test_launched_node_takes_the_params_file_and_given_arguments(ros_node, helpers, processes, tmp_path,
                                                                namespace, arguments, expected):
    spec = node_spec({"params_file": _params_file(tmp_path), "namespace": namespace, **arguments})
    proc = subprocess.Popen(node_command(spec, workdir=tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    processes.append(proc)
    _check_node(helpers, ros_node, namespace, expected)


def test_launch_file_runs_in_launch_service(ros_node, helpers, tmp_path):
    pytest.importorskip("launch_ros")
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    from launch import LaunchDescription, LaunchService

    service = LaunchService()
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(_launch_path())),
        launch_arguments={"namespace": "robot2", "params_file": _params_file(tmp_path)}.items())]))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        _check_node(helpers, ros_node, "robot2", {**FILE_VALUES, "model_preset": "demo"})
    finally:
        service.shutdown()
        thread.join(timeout=60)
