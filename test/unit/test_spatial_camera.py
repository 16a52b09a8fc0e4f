"""Camera conventions: quaternions, optical frame, projection, look-at."""

import numpy as np
import pytest

from spatial_ttt_ros.spatial.camera import (
    CameraIntrinsics,
    CameraPose,
    camera_to_world,
    in_image,
    look_at_pose,
    matrix_to_quaternion,
    pixel_rays,
    project,
    quaternion_to_matrix,
    world_to_camera,
)

INTR = CameraIntrinsics(fx=500.0, fy=500.0, cx=320.0, cy=240.0, width=640, height=480)


def test_quaternion_matrix_round_trip():
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(50, 4)):
        q /= np.linalg.norm(q)
        r = quaternion_to_matrix(q)
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
        q2 = matrix_to_quaternion(r)
        assert np.allclose(q2, q if q[3] >= 0 else -q, atol=1e-9)
    # 90 degrees about z: x -> y.
    r = quaternion_to_matrix([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    assert np.allclose(r @ [1, 0, 0], [0, 1, 0])
    with pytest.raises(ValueError, match="non-zero"):
        quaternion_to_matrix([0, 0, 0, 0])


def test_look_at_builds_the_optical_frame():
    pose = look_at_pose([0, 0, 1], [5, 0, 1])  # looking along world +x, z up
    r = pose.rotation
    assert np.allclose(r[:, 2], [1, 0, 0])  # optical z forward
    assert np.allclose(r[:, 0], [0, -1, 0])  # optical x right = world -y
    assert np.allclose(r[:, 1], [0, 0, -1])  # optical y down
    with pytest.raises(ValueError, match="parallel to up"):
        look_at_pose([0, 0, 0], [0, 0, 3])


def test_point_straight_ahead_projects_to_principal_point():
    pose = look_at_pose([0, 0, 1], [5, 0, 1])
    pts = np.array([[4, 0, 1], [4, -1, 1], [4, 0, 2], [-1, 0, 1]], dtype=float)
    uv, depth, front = project(world_to_camera(pts, pose), INTR)
    assert np.allclose(uv[0], [320, 240]) and depth[0] == pytest.approx(4.0)
    assert uv[1, 0] == pytest.approx(320 + 500 / 4)  # world -y is image right
    assert uv[2, 1] == pytest.approx(240 - 500 / 4)  # world up is image up
    assert front.tolist() == [True, True, True, False] and np.all(np.isnan(uv[3]))
    assert in_image(uv, INTR).tolist() == [True, True, True, False]
    assert np.allclose(camera_to_world(world_to_camera(pts, pose), pose), pts)


def test_pixel_rays_invert_projection():
    ray = pixel_rays([[320 + 125, 240]], INTR)[0]
    assert np.allclose(ray, np.array([0.25, 0, 1]) / np.linalg.norm([0.25, 0, 1]))


def test_intrinsics_from_k_and_validation():
    k = [500, 0, 320, 0, 510, 240, 0, 0, 1]
    assert CameraIntrinsics.from_k(k, 640, 480) == CameraIntrinsics(500, 510, 320, 240, 640, 480)
    with pytest.raises(ValueError, match="fx must be a positive finite number of pixels, got 0"):
        CameraIntrinsics(0, 1, 0, 0, 10, 10)
    with pytest.raises(ValueError, match="width must be a positive whole number"):
        CameraIntrinsics(1, 1, 0, 0, 0, 10)
    with pytest.raises(ValueError, match="position must be 3 finite numbers"):
        CameraPose(np.array([0, 0]), np.array([0, 0, 0, 1]))
