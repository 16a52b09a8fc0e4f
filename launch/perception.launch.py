"""Bring up the spatial_ttt_ros perception node.

    ros2 launch spatial_ttt_ros perception.launch.py camera_topic:=/camera/image_raw
    ros2 launch spatial_ttt_ros perception.launch.py namespace:=robot1 params_file:=/path/robot1.yaml

Arguments (`ros2 launch ... --show-args`): params_file, namespace, camera_topic, pose_topic,
camera_info_topic, and model_preset / checkpoint / base_model / device, which override the params
file only when given. Every node parameter lives in the params file (default:
config/perception.yaml). The arguments and the node are declared once, in
spatial_ttt_ros/ros/launch_args.py, which `spatial-ttt node` and the tests use too.
"""

from spatial_ttt_ros.ros.launch_args import generate_launch_description

__all__ = ["generate_launch_description"]
