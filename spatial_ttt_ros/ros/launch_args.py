"""The perception launch: its arguments and the node it starts, as data (no rclpy, no launch).

`launch/perception.launch.py` calls `generate_launch_description` here, which turns
`LAUNCH_ARGUMENTS` into DeclareLaunchArgument actions and `node_spec` into the launch_ros Node;
without launch (the PyPI-only stack) `launch_inspect.node_command(node_spec(...))` builds the
command line launch_ros would run, so both paths start the same node.

The params file (default: the package's config/perception.yaml) holds the node's parameters; the
model arguments (`model_preset`, `checkpoint`, `base_model`, `device`) override it only when
given: their default is empty, which means "the params file's value".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spatial_ttt_ros.ros.launch_inspect import NodeSpec, find_package_share
from spatial_ttt_ros.ros.params import NODE_NAME, SPECS

PACKAGE, EXECUTABLE = "spatial_ttt_ros", "perception_node"
MODEL_ARGUMENTS = ("model_preset", "checkpoint", "base_model", "device")
# launch argument -> the node's topic name it remaps
TOPIC_ARGUMENTS = {"camera_topic": "image", "pose_topic": "pose", "camera_info_topic": "camera_info"}


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("params_file", "", "YAML with the node's ros__parameters; empty = the package's "
                   "config/perception.yaml"),
    LaunchArgument("namespace", "", "namespace of the node and its topics"),
    LaunchArgument("camera_topic", "/camera/image_raw", "camera topic (sensor_msgs/Image, or CompressedImage on "
                   "<camera_topic>/compressed with image_transport: compressed)"),
    LaunchArgument("pose_topic", "/camera/pose", "camera pose topic (geometry_msgs/PoseStamped or nav_msgs/Odometry)"),
    LaunchArgument("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo topic (optional)"),
    *(LaunchArgument(name, "", f"{SPECS[name].description}; empty = the params file's value")
      for name in MODEL_ARGUMENTS),
)


def default_params_file() -> str:
    return str(find_package_share(PACKAGE) / "config" / "perception.yaml")


def node_spec(values: dict[str, str] | None = None) -> NodeSpec:
    """The node a launch with these argument values starts (unset arguments take their defaults)."""
    args = {a.name: a.default for a in LAUNCH_ARGUMENTS}
    unknown = set(values or {}) - set(args)
    if unknown:
        raise ValueError(f"unknown launch arguments: {sorted(unknown)}; expected some of {sorted(args)}")
    args.update({k: str(v) for k, v in (values or {}).items()})
    overrides = {name: SPECS[name].check(args[name]) for name in MODEL_ARGUMENTS if args[name] != ""}
    return NodeSpec(package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME, namespace=args["namespace"],
                    params_files=[args["params_file"] or default_params_file()], params=overrides,
                    remappings=[(topic, args[arg]) for arg, topic in TOPIC_ARGUMENTS.items()])


def generate_launch_description() -> Any:
    """The launch_ros description (needs `launch` and `launch_ros`)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import Node

    from launch import LaunchDescription

    def start_node(context: Any) -> list[Any]:
        spec = node_spec({a.name: context.launch_configurations.get(a.name, a.default) for a in LAUNCH_ARGUMENTS})
        parameters: list[Any] = [*spec.params_files] + ([spec.params] if spec.params else [])
        return [Node(package=spec.package, executable=spec.executable, name=spec.name,
                     namespace=spec.namespace, output="screen", parameters=parameters,
                     remappings=spec.remappings)]

    return LaunchDescription([
        *(DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
          for a in LAUNCH_ARGUMENTS),
        OpaqueFunction(function=start_node),
    ])
