"""`locate` over the real /spatial_query service of a real perception node whose model has the pose
channel on (the tiny preset with pose_text: true): camera frames with optical-frame poses in, a
position + frame_id out. The tiny model is random, so its text is not a position: the response
must say so (position_set false, a reason, zeros) and never make one up; a model whose answer is
"x y" gets exactly that position in the poses' frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml

from spatial_ttt_ros.ros.hosting import hosted_perception_node, wait_for
from spatial_ttt_ros.runtime.config import presets_dir
from spatial_ttt_ros.spatial.answers import parse_answer
from spatial_ttt_ros.spatial.camera import look_at_pose
from spatial_ttt_ros.spatial.prompts import build_prompt
from spatial_ttt_ros.srv import SpatialQuery

FRAMES = 5


def pose_preset(tmp: Path) -> Path:
    """The tiny preset with the pose channel on, as a preset file the node's model_preset takes."""
    data = yaml.safe_load((presets_dir() / "tiny.yaml").read_text())
    data.update(name="tiny_pose", pose_text=True)
    path = tmp / "tiny_pose.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def optical_pose_msg(helpers, stamp_s: float, i: int, frame_id: str) -> object:  # noqa: ANN001
    from geometry_msgs.msg import PoseStamped

    eye = np.array([0.5 * i, -1.0, 1.3])
    p = look_at_pose(eye, eye + np.array([1.0, 0.2 * i, -0.1]))
    msg = PoseStamped()
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in p.position)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in p.orientation)
    helpers.set_stamp(msg, stamp_s)
    msg.header.frame_id = frame_id
    return msg


def ask_locate(helpers, params: dict) -> tuple[object, object]:  # noqa: ANN001
    """A pose-aware node fed FRAMES frames with optical-frame poses stamped in frame "odom", asked
    `locate chair` over /spatial_query; (its status view, the response)."""
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image

    context = rclpy.context.Context()
    rclpy.init(context=context)
    client = rclpy.create_node("locate_test_client", context=context)
    try:
        with hosted_perception_node({"keyframe_max_rate_hz": 0.0, "max_new_tokens": 8, "map_frame": "world",
                                     **params}) as node:
            image_pub = client.create_publisher(Image, "/image", 10)
            pose_pub = client.create_publisher(PoseStamped, "/pose", 10)
            assert wait_for(lambda: all(v > 0 for v in node.input_publishers().values())
                            and image_pub.get_subscription_count() > 0 and pose_pub.get_subscription_count() > 0,
                            60.0), node.input_publishers()
            for i in range(FRAMES):
                stamp = 100.0 + i
                before = node.status_view().ingest.keyframes
                for _ in range(3):  # best-effort link: a lost pair is sent again (same stamp)
                    pose_pub.publish(optical_pose_msg(helpers, stamp, i, "odom"))
                    image_pub.publish(helpers.make_image(stamp))
                    if wait_for(lambda n=before: node.status_view().ingest.keyframes > n, 10.0):
                        break
            assert wait_for(lambda: node.status_view().worker.frames_in_memory == FRAMES, 120.0), node.status_view()
            request = SpatialQuery.Request(kind="locate", objects=["chair"])
            response = helpers.call(client, SpatialQuery, "/spatial_query", request, 60.0)
            return node.status_view(), response
    finally:
        client.destroy_node()
        rclpy.shutdown(context=context)


def test_locate_over_the_service_never_makes_up_a_position(helpers, tmp_path):
    view, response = ask_locate(helpers, {"model_preset": str(pose_preset(tmp_path)),
                                          "memory_dir": str(tmp_path / "memory")})
    assert view.worker.last_error == "" and view.ingest.rejected == 0, view
    assert response.success, response.message
    assert response.frames_in_memory == FRAMES
    assert "Where is the chair?" in response.prompt
    prompt = build_prompt("locate", ["chair"])
    parsed = parse_answer(prompt, response.answer)
    # The random tiny model's text is not a position (checked, so this test cannot pass vacuously).
    assert not parsed.ok, response.answer
    assert not response.position_set
    assert "not a readable position" in response.message and parsed.reason in response.message
    assert (response.position.x, response.position.y, response.position.z) == (0.0, 0.0, 0.0)
    assert response.frame_id == "odom"  # the frame of the poses the memory was built from
    assert response.unit == "" and response.choice == ""


ANSWER = "1.2 -0.4"


def overfit_locate_checkpoint(helpers, preset: Path, out: Path) -> Path:  # noqa: ANN001
    """The tiny pose model trained (seconds, CPU) to answer ANSWER to the locate question about
    exactly the frames and poses the test then publishes: a real model whose text is a position."""
    import torch
    from safetensors.torch import save_file

    from spatial_ttt_ros.runtime.engine import StreamingEngine
    from spatial_ttt_ros.train.forward import forward_logits
    from spatial_ttt_ros.train.samples import IGNORE, layout_sample

    torch.manual_seed(0)
    engine = StreamingEngine.from_preset(str(preset), device="cpu")
    frames, stamps, poses = [], [], []
    for i in range(FRAMES):
        msg = helpers.make_image(100.0 + i)
        frames.append(np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3))
        stamps.append(100.0 + i)
        p = optical_pose_msg(helpers, 100.0 + i, i, "odom").pose
        poses.append(np.array([p.position.x, p.position.y, p.position.z,
                               p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w]))
    prompt = build_prompt("locate", ["chair"]).text
    sample = layout_sample(engine.config, engine.tokenizer, engine.layout, frames, stamps, prompt, ANSWER,
                           poses=poses)
    # Only the LM head learns (the decoder's hidden states do not depend on it, so they are
    # computed once): the answer tokens' positions are mapped to ANSWER, then the streaming
    # engine must produce it.
    model = engine.model
    captured = []
    hook = model.lm_head.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
    with torch.no_grad():
        forward_logits(model, engine.config, [sample], checkpoint_chunks=False)
    hook.remove()
    at = (sample.labels[1:] != IGNORE).nonzero().flatten()
    hidden, targets = captured[0].reshape(-1, captured[0].shape[-1])[at], sample.labels[1:][at]
    weight = model.lm_head.weight
    weight.requires_grad_(True)
    opt = torch.optim.Adam([weight], lr=0.05)
    for _step in range(500):
        loss = torch.nn.functional.cross_entropy(hidden @ weight.T, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.01:
            break
    weight.requires_grad_(False)
    model.eval()
    for image, stamp, pose in zip(frames, stamps, poses):
        engine.push_frame(image, stamp, pose)
    got = engine.ask(prompt, max_new_tokens=8).text
    assert got == ANSWER, (got, loss.item())  # what the node must then return
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(out))
    return out


def test_locate_over_the_service_returns_the_models_position_in_the_pose_frame(helpers, tmp_path):
    preset = pose_preset(tmp_path)
    checkpoint = overfit_locate_checkpoint(helpers, preset, tmp_path / "model.safetensors")
    view, response = ask_locate(helpers, {"model_preset": str(preset), "checkpoint": str(checkpoint),
                                          "memory_dir": str(tmp_path / "memory")})
    assert view.ingest.rejected == 0, view
    assert response.success and response.message == "ok", response.message
    assert response.answer == ANSWER and response.position_set
    assert (response.position.x, response.position.y, response.position.z) == (1.2, -0.4, 0.0)
    assert response.frame_id == "odom" and response.frames_in_memory == FRAMES


def test_a_pose_model_without_a_pose_input_is_refused_at_configure(tmp_path):
    with pytest.raises(RuntimeError, match="has pose_text on .* but pose_type is none"):
        with hosted_perception_node({"model_preset": str(pose_preset(tmp_path)), "pose_type": "none",
                                     "memory_dir": str(tmp_path / "memory")}):
            pass
