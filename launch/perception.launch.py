"""Bring up the spatial_ttt_ros perception node.

    ros2 launch spatial_ttt_ros perception.launch.py camera_topic:=/camera/image_raw

Declarative on purpose: arguments, one node, a params file; every default of the node lives in
config/perception.yaml. Without `ros2 launch`, `spatial-ttt node --params-file FILE` brings up
the same node from the same YAML.
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("spatial_ttt_ros"), "config", "perception.yaml"]),
            description="YAML with the node's ros__parameters (defaults: config/perception.yaml)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="camera topic (sensor_msgs/Image, or CompressedImage with image_transport:=compressed)"),
        DeclareLaunchArgument("pose_topic", default_value="/camera/pose",
                              description="camera pose topic (geometry_msgs/PoseStamped or nav_msgs/Odometry)"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info",
                              description="sensor_msgs/CameraInfo topic (optional)"),
        DeclareLaunchArgument("model_preset", default_value="tiny",
                              description="model preset name in models/ (spatial_ttt_2b, tiny) or a YAML path"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="Spatial-TTT model.safetensors (file or directory); empty for none"),
        DeclareLaunchArgument("base_model", default_value="",
                              description="local Qwen3-VL-2B-Instruct directory (config + weights); empty for the preset's"),
        DeclareLaunchArgument("device", default_value="auto", description="torch device: auto, cpu, cuda, cuda:N"),
        Node(
            package="spatial_ttt_ros",
            executable="perception_node",
            name="spatial_ttt_perception",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=[
                LaunchConfiguration("params_file"),
                {
                    "model_preset": LaunchConfiguration("model_preset"),
                    "checkpoint": LaunchConfiguration("checkpoint"),
                    "base_model": LaunchConfiguration("base_model"),
                    "device": LaunchConfiguration("device"),
                },
            ],
            remappings=[
                ("image", LaunchConfiguration("camera_topic")),
                ("pose", LaunchConfiguration("pose_topic")),
                ("camera_info", LaunchConfiguration("camera_info_topic")),
            ],
        ),
    ])
