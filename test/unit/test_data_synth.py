"""Synthetic scenes: determinism, layout rules, z-buffered rendering that agrees with the
annotation boxes, and a bag laid out like a real recording."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from spatial_ttt_ros.data import msgs
from spatial_ttt_ros.data.bag_reader import BagReader
from spatial_ttt_ros.data.render import Renderer
from spatial_ttt_ros.data.shapes import CATEGORIES, WALL_THICKNESS, object_parts
from spatial_ttt_ros.data.synth import START_NS, _overlap, cli_synth, generate_scene, synthesize
from spatial_ttt_ros.data.trajectory import FPS, generate_trajectory
from spatial_ttt_ros.spatial.camera import (
    CameraIntrinsics,
    CameraPose,
    look_at_pose,
    project,
    world_to_camera,
)
from spatial_ttt_ros.spatial.geometry import OrientedBox
from spatial_ttt_ros.spatial.scene import load_scene, scene_to_dict, validate_scene

INTR = CameraIntrinsics.from_fov(480, 352, 70.0)


@pytest.fixture(scope="module")
def world():
    scene = generate_scene(3)
    return scene, generate_trajectory(scene, 3, 120), Renderer(scene, INTR, seed=3)


def test_scenes_are_deterministic_valid_and_follow_the_layout_rules():
    a, b = generate_scene(11), generate_scene(11)
    assert scene_to_dict(a) == scene_to_dict(b) and scene_to_dict(a) != scene_to_dict(generate_scene(12))
    assert scene_to_dict(validate_scene(scene_to_dict(a))) == scene_to_dict(a)
    seen = set()
    for seed in range(6):
        scene = generate_scene(seed)
        objs = scene.objects
        seen |= {o.category for o in objs}
        assert not [(p.id, q.id) for i, p in enumerate(objs) for q in objs[i + 1:] if _overlap(p.box, q.box, 0.0)]
        for o in objs:
            cat = CATEGORIES[o.category]
            assert scene.room_of(o) is not None, o.id
            assert np.all(o.box.size >= np.array(cat.size_min) - 1e-3) and np.all(o.box.size <= np.array(cat.size_max) + 1e-3)
            if cat.placement in ("floor", "wall") or o.category == "door":
                assert abs(o.box.z_min) < 1e-6, f"{o.id} does not stand on the floor"
            if cat.placement in ("wall", "mount"):  # the back touches the wall's inner face
                room = np.asarray(scene.room_of(o).polygon)
                back = o.box.center[:2] - o.box.rotation[:2, 1] * o.box.half[1]
                to_wall = np.min([back[0] - room[:, 0].min(), room[:, 0].max() - back[0],
                                  back[1] - room[:, 1].min(), room[:, 1].max() - back[1]])
                assert WALL_THICKNESS - 1e-6 <= to_wall <= WALL_THICKNESS + 0.02, o.id
    assert len(seen) >= 12, sorted(seen)


def test_trajectory_is_deterministic_and_robot_like(world):
    scene, poses, _ = world
    again = generate_trajectory(scene, 3, 120)
    assert all(np.array_equal(p.position, q.position) and np.array_equal(p.orientation, q.orientation)
               for p, q in zip(poses, again))
    pos = np.array([p.position for p in poses])
    assert np.all((pos[:, 2] > 1.18) & (pos[:, 2] < 1.52))
    assert np.linalg.norm(np.diff(pos[:, :2], axis=0), axis=1).max() < 0.4 / FPS * 1.5  # walking speed
    assert np.linalg.norm(pos[-1, :2] - pos[0, :2]) > 0.5  # it goes somewhere
    for p in poses:
        assert p.forward[2] < 0  # looks slightly down
        assert p.rotation[2, 1] < -0.9  # optical y (image down) is close to world down: no roll
        assert not any(o.box.contains(p.position[None])[0] for o in scene.objects)
    yaw = np.unwrap([math.atan2(p.forward[1], p.forward[0]) for p in poses])
    assert np.abs(np.diff(yaw)).max() < math.radians(12)  # smooth turns, no jumps


def test_render_is_deterministic(world):
    scene, poses, renderer = world
    one, two = renderer.render(poses[30]), Renderer(scene, INTR, seed=3).render(poses[30])
    assert np.array_equal(one.rgb, two.rgb) and np.array_equal(one.object_index, two.object_index)
    assert one.rgb.shape == (352, 480, 3) and one.rgb.dtype == np.uint8
    assert not np.array_equal(one.rgb, Renderer(scene, INTR, seed=4).render(poses[30]).rgb)  # lighting


def _solid_at_centre(obj) -> bool:
    """Whether one of the object's parts contains its box centre (chairs' air gaps, stools ... do not)."""
    return any(np.all(np.array(p.lo) <= 0) and np.all(np.array(p.hi) >= 0)
               for p in object_parts(obj.category, obj.box.size, obj.color, obj.id))


def _blocked(cam: np.ndarray, target: np.ndarray, boxes: list[OrientedBox]) -> bool:
    for box in boxes:
        o, d = box.to_local(cam[None])[0], (target - cam) @ box.rotation
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-box.half - o) / d, (box.half - o) / d
        t_in = np.nanmax(np.where(d == 0, np.where(np.abs(o) <= box.half, -np.inf, np.inf), np.minimum(t1, t2)))
        t_out = np.nanmin(np.where(d == 0, np.where(np.abs(o) <= box.half, np.inf, -np.inf), np.maximum(t1, t2)))
        if max(t_in, 0.0) < min(t_out, 0.999):
            return True
    return False


def test_rendered_pixels_agree_with_annotation_boxes(world):
    scene, poses, renderer = world
    checked_inside = checked_centre = 0
    for pose in poses[::6]:
        frame = renderer.render(pose)
        for k, obj in enumerate(scene.objects):
            ys, xs = np.nonzero(frame.object_index == k)
            if len(xs) < 30:
                continue
            uv, depth, front = project(world_to_camera(obj.box.corners(), pose), INTR, 0.05)
            if not front.all():
                continue
            # Every pixel of the object lies in the projection of its box (1 px of rasteriser slack).
            hull = np.zeros((INTR.height + 40, INTR.width + 40), np.uint8)  # 20 px margin each side
            cv2.fillConvexPoly(hull, np.round((cv2.convexHull(uv.astype(np.float32))[:, 0] + 20) * 16).astype(np.int32),
                               1, shift=4)
            hull = cv2.dilate(hull, np.ones((3, 3), np.uint8))
            assert hull[ys + 20, xs + 20].all(), f"{obj.id}: pixels outside its projected box"
            checked_inside += 1
            # The box centre of a visible object projects onto the object where nothing is in between.
            c_uv, _, _ = project(world_to_camera(obj.box.center[None], pose), INTR)
            cu, cv_ = np.round(c_uv[0]).astype(int)
            others = [o.box for o in scene.objects if o is not obj] + renderer.occluders
            if (2 <= cu < INTR.width - 2 and 2 <= cv_ < INTR.height - 2 and _solid_at_centre(obj)
                    and not _blocked(pose.position, obj.box.center, others)):
                assert (frame.object_index[cv_ - 1:cv_ + 2, cu - 1:cu + 2] == k).any(), obj.id
                checked_centre += 1
    assert checked_inside >= 20 and checked_centre >= 8, (checked_inside, checked_centre)


def _two_box_scene(order: list[int]):
    objs = [{"id": "near_cabinet", "category": "cabinet", "center": [3.0, 2.0, 0.5], "size": [0.8, 0.5, 1.0],
             "yaw": math.pi / 2, "color": [200, 40, 40]},
            {"id": "far_sofa", "category": "sofa", "center": [6.0, 2.0, 0.45], "size": [2.4, 0.9, 0.9],
             "yaw": math.pi / 2, "color": [40, 40, 200]}]
    return validate_scene({"format": "spatial_ttt_scene/1", "frame_id": "map",
                           "rooms": [{"name": "hall", "polygon": [[0, 0], [8, 0], [8, 4], [0, 4]], "height": 2.6}],
                           "objects": [objs[i] for i in order]})


def test_depth_test_near_occludes_far_whatever_the_drawing_order():
    pose = look_at_pose([0.5, 2.0, 0.8], [8.0, 2.0, 0.8])
    frames, ids = [], []
    for order in ([0, 1], [1, 0]):
        scene = _two_box_scene(order)
        frames.append(Renderer(scene, INTR).render(pose))
        ids.append({o.id: k for k, o in enumerate(scene.objects)})
    a, b = frames
    names = lambda f, m: np.vectorize({-1: "", **{v: k for k, v in m.items()}}.get)(f.object_index)  # noqa: E731
    assert (names(a, ids[0]) == names(b, ids[1])).all() and np.array_equal(a.depth, b.depth)
    cy, cx = INTR.height // 2, INTR.width // 2
    assert a.object_index[cy, cx] == ids[0]["near_cabinet"]
    far = a.object_index == ids[0]["far_sofa"]
    assert far.sum() > 500 and far[:, :cx - 40].any() and far[:, cx + 40:].any()  # seen beside the near one
    assert abs(a.depth[cy, cx + 20] - (3.0 - 0.25 - 0.5)) < 1e-3  # a cabinet door, optical z
    assert abs(a.depth[cy, cx] - (3.0 - 0.25 + 0.02 - 0.5)) < 1e-3  # the gap between its doors
    # Floor pixels: depth from the exact ray-plane intersection (correct perspective).
    v, u = INTR.height - 5, 40
    ray = pose.rotation @ np.array([(u - INTR.cx) / INTR.fx, (v - INTR.cy) / INTR.fy, 1.0])
    assert a.object_index[v, u] == -1 and abs(a.depth[v, u] - 0.8 / -ray[2]) < 0.01 * a.depth[v, u]


def test_synthesize_writes_a_recording_like_bag(tmp_path):
    res = synthesize(tmp_path / "rec", seed=5, n_frames=12, width=160, height=120)
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["bag", "scene.yaml"]
    assert sorted(p.name for p in res.bag.iterdir()) == ["bag_0.mcap", "metadata.yaml"]
    assert scene_to_dict(load_scene(res.scene_file)) == scene_to_dict(generate_scene(5))
    poses = generate_trajectory(generate_scene(5), 5, 12)
    with BagReader(res.bag) as bag:
        assert bag.counts == {msgs.TOPIC_IMAGE: 12, msgs.TOPIC_CAMERA_INFO: 12, msgs.TOPIC_POSE: 12}
        got = {}
        for raw, m in bag.decoded():
            i = (raw.stamp_ns - START_NS) // (10**9 // FPS)
            assert msgs.stamp_ns_of(m) == raw.stamp_ns == START_NS + i * 10**8
            got.setdefault(raw.topic, []).append(m)
    assert [msgs.image_from_msg(m).shape for m in got[msgs.TOPIC_IMAGE]] == [(120, 160, 3)] * 12
    assert np.allclose(msgs.k_from_camera_info(got[msgs.TOPIC_CAMERA_INFO][0]),
                       CameraIntrinsics.from_fov(160, 120, 70.0).matrix)
    for m, pose in zip(got[msgs.TOPIC_POSE], poses):
        pos, q = msgs.pose_from_msg(m)
        assert m.header.frame_id == "map" and np.allclose(pos, pose.position)
        assert np.allclose(CameraPose(pos, q).rotation, pose.rotation, atol=1e-9)
    # Same seed, same bytes.
    synthesize(tmp_path / "again", seed=5, n_frames=12, width=160, height=120)
    first = [r.data for r in BagReader(res.bag).raw([msgs.TOPIC_IMAGE])]
    second = [r.data for r in BagReader(tmp_path / "again" / "bag").raw([msgs.TOPIC_IMAGE])]
    assert first == second


def test_cli_synth_compressed(tmp_path, capsys):
    assert cli_synth(["--out", str(tmp_path / "c"), "--seed", "2", "--frames", "3", "--width", "96",
                      "--height", "64", "--compressed"]) == 0
    assert "wrote 3 frames" in capsys.readouterr().out
    with BagReader(tmp_path / "c" / "bag") as bag:
        assert bag.counts[msgs.TOPIC_IMAGE_COMPRESSED] == 3
    assert cli_synth(["--out", str(tmp_path / "c"), "--frames", "3"]) == 1  # the bag exists already
