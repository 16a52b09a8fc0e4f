"""Boxes, exact closest-point distances, directions, areas and visibility with occlusion."""

import math

import numpy as np
import pytest

from spatial_ttt_ros.spatial.camera import CameraIntrinsics, look_at_pose
from spatial_ttt_ros.spatial.geometry import (
    OrientedBox,
    box_distance,
    convex_polygon_distance,
    point_in_polygon,
    polygon_area,
    relative_angle,
    relative_direction,
    turn_action,
    visibility,
)


def box(center, size, yaw=0.0):
    return OrientedBox(np.array(center, float), np.array(size, float), yaw)


def dense_surface(b: OrientedBox, n: int) -> np.ndarray:
    """Face grids that include edges and vertices (unlike surface_samples' cell centres)."""
    g = np.linspace(-1, 1, n)
    u, v = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    faces = []
    for axis in range(3):
        others = [k for k in range(3) if k != axis]
        for s in (-1.0, 1.0):
            local = np.zeros((len(u), 3))
            local[:, axis], local[:, others[0]], local[:, others[1]] = s, u, v
            faces.append(local * b.half)
    return np.concatenate(faces) @ b.rotation.T + b.center


def brute_force_distance(a: OrientedBox, b: OrientedBox, n: int) -> float:
    """Upper bound converging to the distance: sampled surface of one box, exact distance to the other."""
    return min(b.distance_to_points(dense_surface(a, n)).min(), a.distance_to_points(dense_surface(b, n)).min())


def test_axis_aligned_known_distances():
    a = box([0, 0, 0.5], [1, 1, 1])
    assert box_distance(a, box([2, 0, 0.5], [1, 1, 1])) == pytest.approx(1.0)  # gap 1.0 along x
    assert box_distance(a, box([2, 2, 0.5], [1, 1, 1])) == pytest.approx(math.sqrt(2))  # corner to corner
    assert box_distance(a, box([2, 0, 2.5], [1, 1, 1])) == pytest.approx(math.sqrt(2))  # x gap 1, z gap 1
    assert box_distance(a, box([0, 0, 3.0], [1, 1, 1])) == pytest.approx(1.5)  # above: z [0, 1] vs [2.5, 3.5]
    assert box_distance(a, box([1.0, 0, 0.5], [1, 1, 1])) == 0.0  # touching faces
    assert box_distance(a, box([0.3, 0.2, 0.6], [1, 1, 1])) == 0.0  # overlapping
    assert box_distance(a, box([0, 0, 0.5], [0.2, 0.2, 0.2])) == 0.0  # one inside the other


def test_rotated_45_degree_box_near_a_corner():
    a = box([0, 0, 0.5], [2, 2, 1])  # xy [-1, 1]^2
    b = box([2.5, 2.5, 0.5], [1, 1, 1], yaw=math.pi / 4)  # a diamond with an edge facing a's corner
    # From a's corner (1, 1) to b's edge x + y = 5 - 1/sqrt(2): (3 - 1/sqrt(2)) / sqrt(2) = 3/sqrt(2) - 1/2.
    expected = 3 / math.sqrt(2) - 0.5
    assert box_distance(a, b) == pytest.approx(expected, abs=1e-12)
    assert box_distance(a, b) == pytest.approx(brute_force_distance(a, b, 201), abs=1e-3)
    lifted = box([2.5, 2.5, 2.5], [1, 1, 1], yaw=math.pi / 4)  # z gap of 1 m as well
    assert box_distance(a, lifted) == pytest.approx(math.hypot(expected, 1.0), abs=1e-12)
    assert box_distance(a, lifted) == pytest.approx(brute_force_distance(a, lifted, 201), abs=1e-3)


def test_random_rotated_boxes_match_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(25):
        a = box(rng.uniform(-1, 1, 3), rng.uniform(0.2, 1.5, 3), rng.uniform(-math.pi, math.pi))
        b = box(rng.uniform(-3, 3, 3), rng.uniform(0.2, 1.5, 3), rng.uniform(-math.pi, math.pi))
        exact, brute = box_distance(a, b), brute_force_distance(a, b, 61)
        assert exact == pytest.approx(box_distance(b, a), abs=1e-12)  # symmetric
        assert exact <= brute + 1e-9  # the exact value is a lower bound of any sampled pair
        assert brute - exact <= 0.03  # ... and sampling converges to it (grid spacing <= 0.025)


def test_convex_polygon_distance_crossing_rectangles_is_zero():
    # A plus sign: no vertex of either lies inside the other, but they overlap.
    p = np.array([[-2, -0.5], [2, -0.5], [2, 0.5], [-2, 0.5]], float)
    assert convex_polygon_distance(p, p[:, ::-1]) == 0.0


def test_box_basics():
    b = box([1, 2, 0.45], [0.5, 0.6, 0.9], yaw=math.pi / 2)
    assert b.longest_dimension == pytest.approx(0.9)
    assert b.contains([[1, 2, 0.45], [1.29, 2.0, 0.45], [1.0, 2.29, 0.45]]).tolist() == [True, True, False]
    assert b.corners().shape == (8, 3)
    assert polygon_area(b.footprint()) == pytest.approx(0.3)
    pts, wts = b.surface_samples(3)
    assert pts.shape == (54, 3) and wts.sum() == pytest.approx(2 * (0.5 * 0.6 + 0.5 * 0.9 + 0.6 * 0.9))
    with pytest.raises(ValueError, match=r"box size must be 3 positive numbers, got \[0.5, -1.0, 2.0\]"):
        box([0, 0, 0], [0.5, -1, 2])


def test_polygon_area_and_containment():
    l_shape = [[0, 0], [4, 0], [4, 2], [2, 2], [2, 4], [0, 4]]
    assert polygon_area(l_shape) == pytest.approx(12.0)
    assert point_in_polygon(l_shape, [[1, 1], [3, 3], [1, 3]]).tolist() == [True, False, True]


def test_relative_direction_left_right_back():
    stand, face = [0, 0, 0], [0, 2, 0]  # facing world +y (north); left is west (-x)
    assert relative_direction(stand, face, [-1, 0.5, 0], "easy") == "left"
    assert relative_direction(stand, face, [1, 0.5, 0], "easy") == "right"
    assert relative_direction(stand, face, [1, 0.5, 0], "medium") == "right"
    assert relative_direction(stand, face, [0.2, -1, 0], "medium") == "back"  # about 169 degrees
    assert relative_direction(stand, face, [-1, -0.5, 0], "medium") == "left"  # about 117 < 135 degrees
    assert relative_direction(stand, face, [-1, -0.5, 0], "hard") == "back-left"
    assert relative_direction(stand, face, [1, 1, 0], "hard") == "front-right"
    assert relative_angle(stand, face, [-1, -1, 0]) == pytest.approx(135.0)
    assert relative_direction(stand, face, [-1, -1, 0], "medium") == "back"  # exactly 135: back
    assert turn_action(-90) == "Turn Right" and turn_action(150) == "Turn Back"
    with pytest.raises(ValueError, match="coincides"):
        relative_angle(stand, stand, face)


INTR = CameraIntrinsics(fx=300.0, fy=300.0, cx=160.0, cy=120.0, width=320, height=240)


def test_visibility_frustum_and_occlusion():
    pose = look_at_pose([0, 0, 1], [5, 0, 1])  # looking along +x
    small_behind = box([5, 0, 1], [0.5, 0.5, 0.5])
    wall = box([3, 0, 1], [0.2, 3, 3])  # bigger box between camera and the small one
    side = box([0, 6, 1], [0.5, 0.5, 0.5])  # 90 degrees to the left: out of the frustum
    behind_cam = box([-3, 0, 1], [0.5, 0.5, 0.5])

    frac = visibility([small_behind, side, behind_cam], pose, INTR)
    assert frac[0] > 0.1 and frac[1] == 0.0 and frac[2] == 0.0
    # A box facing the camera shows its front face only: 1 of 6 equal faces of a cube.
    assert frac[0] == pytest.approx(1 / 6)

    occluded = visibility([small_behind, wall], pose, INTR)
    assert occluded[0] == 0.0 and occluded[1] > 0.0
    assert visibility([small_behind], pose, INTR, occluders=[wall])[0] == 0.0


def test_visibility_partial_occlusion():
    pose = look_at_pose([0, 0, 1], [5, 0, 1])
    target = box([5, 0, 1], [0.5, 2.0, 0.5])  # wide box
    blocker = box([3, 0.5, 1], [0.2, 1.0, 2.0])  # covers the half with y > 0 as seen from the camera
    full = visibility([target], pose, INTR)[0]
    part = visibility([target, blocker], pose, INTR)[0]
    assert 0.0 < part < full
