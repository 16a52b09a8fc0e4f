"""The synthetic renderer's speed at the 2B preset's frame size (slow tier: `make test-slow`).

A hang or a pathological slowdown guard with a wide margin, and the measured speed printed for
the log; exact numbers belong in benchmarks/, not in a test."""

from __future__ import annotations

import time

import numpy as np

from spatial_ttt_ros.data.render import Renderer
from spatial_ttt_ros.data.synth import generate_scene
from spatial_ttt_ros.data.trajectory import generate_trajectory
from spatial_ttt_ros.spatial.camera import CameraIntrinsics

INTR = CameraIntrinsics.from_fov(480, 352, 70.0)


def test_renderer_renders_a_walk_at_a_usable_speed():
    scene = generate_scene(3)
    poses = generate_trajectory(scene, 3, 60)
    renderer = Renderer(scene, INTR, seed=3)
    renderer.render(poses[0])
    t0 = time.perf_counter()
    frames = [renderer.render(pose).rgb for pose in poses]
    fps = len(frames) / (time.perf_counter() - t0)
    print(f"\nrender speed at {INTR.width}x{INTR.height}: {fps:.0f} frames/s "
          f"({len(scene.objects)} objects, {len(scene.rooms)} rooms)")
    assert all(f.shape == (352, 480, 3) and f.dtype == np.uint8 for f in frames)
    assert len({f.tobytes() for f in frames[::10]}) == len(frames[::10])  # the walk changes the view
    assert fps > 1.0, f"renderer at {fps:.2f} frames/s: far below any use as a data source"
