"""data/rectify.py: a checkerboard rendered through a known lens distortion comes out with straight
lines (measured), CameraInfo is read the way image_geometry reads it, and maps are built once per
calibration."""

from __future__ import annotations

from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest

from spatial_ttt_ros.data.rectify import (
    Calibration,
    Rectifier,
    RectifyCache,
    calibration_from_camera_info,
    rectify_image,
)

pytestmark = pytest.mark.unit

W, H = 640, 480
K = np.array([[420.0, 0.0, 322.0], [0.0, 415.0, 238.0], [0.0, 0.0, 1.0]])
COLS, ROWS, SQUARE = 13, 9, 40  # squares; the board spans 520 x 360 of the 640 x 480 ideal image
LENSES = {  # a strong wide-angle barrel of each model CameraInfo names
    "plumb_bob": ("pinhole", (-0.32, 0.12, 0.001, -0.001, -0.02)),
    "rational_polynomial": ("pinhole", (-0.30, 0.10, 0.0, 0.0, 0.0, 0.02, 0.01, 0.0)),
    "equidistant": ("fisheye", (0.05, -0.02, 0.01, -0.003)),
}


def ideal_board(supersample: int = 4) -> np.ndarray:
    """The checkerboard a pinhole camera with intrinsics K sees (anti-aliased, grey surround)."""
    def cells(n: int, count: int, offset: float) -> np.ndarray:
        x = (np.arange(n * supersample) + 0.5) / supersample - 0.5
        c = np.floor((x - offset) / SQUARE)
        return np.where((c >= 0) & (c < count), c, -1)
    cx = cells(W, COLS, W / 2 - COLS * SQUARE / 2)[None, :]
    cy = cells(H, ROWS, H / 2 - ROWS * SQUARE / 2)[:, None]
    big = np.where((cx < 0) | (cy < 0), 128.0, np.where((cx + cy) % 2 == 0, 30.0, 225.0)).astype(np.float32)
    return cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA).round().astype(np.uint8)


def distorted(ideal: np.ndarray, model: str, d: tuple[float, ...]) -> np.ndarray:
    """What the distorted camera records: each pixel samples the ideal image where its ray lands
    (the ray found by undistortPoints: the inverse of what rectification computes)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    pixels = np.stack([xx.ravel(), yy.ravel()], axis=-1).reshape(-1, 1, 2)
    if model == "fisheye":
        rays = cv2.fisheye.undistortPoints(pixels, K, np.array(d).reshape(4, 1), P=K)
    else:
        rays = cv2.undistortPoints(pixels, K, np.array(d), P=K,
                                   criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-9))
    where = rays.reshape(H, W, 2).astype(np.float32)
    return cv2.remap(ideal, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=128)


def line_residual_px(image: np.ndarray) -> float:
    """RMS distance of the board's inner corners from the best straight line through each row and
    column of corners [px]."""
    found, corners = cv2.findChessboardCorners(image, (COLS - 1, ROWS - 1))
    assert found, "checkerboard not found"
    corners = cv2.cornerSubPix(image, corners, (5, 5), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 50, 1e-3))
    grid = corners.reshape(ROWS - 1, COLS - 1, 2)
    distances = []
    for line in [*grid, *grid.transpose(1, 0, 2)]:
        centred = line - line.mean(axis=0)
        normal = np.linalg.svd(centred)[2][1]
        distances.append(centred @ normal)
    return float(np.sqrt(np.mean(np.concatenate(distances) ** 2)))


def camera_info(model_name: str, coefficients: tuple[float, ...], **changes: object) -> NS:
    p = np.zeros((3, 4))
    p[:, :3] = K
    msg = NS(width=W, height=H, distortion_model=model_name, d=coefficients, k=K.ravel(), r=np.eye(3).ravel(), p=p.ravel(),
             binning_x=0, binning_y=0, roi=NS(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False))
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


@pytest.fixture(scope="module")
def board() -> np.ndarray:
    return ideal_board()


@pytest.mark.parametrize("model_name", list(LENSES))
def test_rectification_straightens_a_distorted_checkerboard(board, model_name):
    model, d = LENSES[model_name]
    raw = distorted(board, model, d)
    cal = calibration_from_camera_info(camera_info(model_name, d), "auto")
    assert cal is not None and cal.model == model
    fixed = rectify_image(np.dstack([raw] * 3), cal)[..., 0]  # frames are RGB
    before, after = line_residual_px(raw), line_residual_px(fixed)
    # Measured (these lenses, 640x480): 1.7-2.1 px RMS bent before, 0.03-0.04 px after.
    assert before > 1.0 and after < 0.1, (before, after)
    inner = (slice(60, H - 60), slice(80, W - 80))
    assert np.abs(fixed.astype(int) - board)[inner].mean() < 2.5  # and it is the ideal picture again


def test_the_wrong_model_does_not_straighten(board):
    model, d = LENSES["equidistant"]
    raw = distorted(board, model, d)
    # Read as plumb_bob coefficients the same numbers barely change the image: lines stay bent.
    cal = calibration_from_camera_info(camera_info("equidistant", d), "pinhole")
    assert cal.model == "pinhole"
    assert line_residual_px(rectify_image(raw, cal)) > 0.5


def test_camera_info_is_read_like_image_geometry():
    d = LENSES["plumb_bob"][1]
    cal = calibration_from_camera_info(camera_info("plumb_bob", d, r=np.zeros(9)), "auto")
    assert cal.r == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # unset R: identity
    p = np.zeros((3, 4))
    p[:, :3] = [[300.0, 0.0, 320.0], [0.0, 300.0, 240.0], [0.0, 0.0, 1.0]]
    cal = calibration_from_camera_info(camera_info("plumb_bob", d, p=p.ravel()), "auto")
    assert cal.intrinsics() == (300.0, 300.0, 320.0, 240.0)  # the rectified image has P's intrinsics
    assert calibration_from_camera_info(camera_info("plumb_bob", d, p=np.zeros(12)), "auto").intrinsics() == (
        420.0, 415.0, 322.0, 238.0)  # unset P: K
    assert calibration_from_camera_info(camera_info("plumb_bob", (0.0,) * 5), "auto").is_identity
    assert calibration_from_camera_info(camera_info("", (), k=np.zeros(9)), "auto") is None  # uncalibrated
    assert calibration_from_camera_info(camera_info("plumb_bob", d), "none") is None
    assert calibration_from_camera_info(camera_info("", LENSES["equidistant"][1]), "fisheye").model == "fisheye"


@pytest.mark.parametrize("mode, changes, message", [
    ("auto", dict(distortion_model="kannala_brandt"), "distortion_model 'kannala_brandt' is not one of"),
    ("pinhole", dict(k=np.zeros(9)), "no focal length"),
    ("auto", dict(k=np.array([np.nan] * 9)), "9 finite numbers"),
    ("fisheye", dict(d=(0.1, 0.2, 0.3)), "needs 4 coefficients"),
    ("pinhole", dict(d=(0.1, 0.2, 0.3)), "pinhole distortion needs"),
    ("auto", dict(binning_x=2), "binning 2x0 is not supported"),
    ("auto", dict(roi=NS(x_offset=10, y_offset=0, width=320, height=240)), "ROI 320x240"),
    ("auto", dict(width=0), "outside 1..16384"),
    ("sideways", dict(), "rectify must be one of"),
])
def test_bad_camera_info_names_the_problem(mode, changes, message):
    with pytest.raises(ValueError, match=message):
        calibration_from_camera_info(camera_info("plumb_bob", LENSES["plumb_bob"][1], **changes), mode)


def test_maps_are_built_once_per_calibration_and_the_cache_is_bounded():
    cache = RectifyCache(size=2)
    image = np.zeros((H, W, 3), np.uint8)
    cals = [Calibration(W, H, "pinhole", tuple(K.ravel()), (k1, 0.0, 0.0, 0.0, 0.0)) for k1 in (-0.1, -0.2, -0.3)]
    for _ in range(3):
        cache.rectify(cals[0], image)
    assert cache.computed == 1
    cache.rectify(cals[1], image)
    cache.rectify(cals[2], image)  # evicts cals[0]
    assert cache.computed == 3
    cache.rectify(cals[0], image)
    assert cache.computed == 4
    with pytest.raises(ValueError, match="image 320x240 does not match the calibration's 640x480"):
        cache.rectify(cals[0], np.zeros((240, 320, 3), np.uint8))


def test_rectifier_state_says_what_happens_to_frames():
    r = Rectifier("auto")
    assert "waiting for camera_info" in r.state()
    with pytest.raises(ValueError, match="no CameraInfo received yet"):
        r.for_image(H, W)
    r.on_camera_info(camera_info("plumb_bob", LENSES["plumb_bob"][1]))
    assert r.state().startswith("pinhole 640x480, D=[-0.32")
    assert r.for_image(H, W) is not None
    r.on_camera_info(camera_info("plumb_bob", (), k=np.zeros(9)))
    assert "no distortion to remove" in r.state() and r.for_image(H, W) is None
    assert Rectifier("none").state() == "off" and Rectifier("none").for_image(H, W) is None
    with pytest.raises(ValueError, match="rectify must be one of"):
        Rectifier("fish")


def test_a_recorded_frame_bakes_exactly_as_the_node_ingests_it(board):
    """Training's path (a bag's CDR bytes -> rosbags message -> msgs.image_from_msg -> rectify) and the
    node's (ImageDecoder -> Rectifier on the worker) give the same pixels: a bag recorded raw
    (recorder) is rectified at bake time exactly as the live node rectifies."""
    from spatial_ttt_ros.data import msgs
    from spatial_ttt_ros.ros.conversions import ImageDecoder

    model, d = LENSES["plumb_bob"]
    rgb = np.dstack([distorted(board, model, d)] * 3)
    t = msgs.typestore().types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=5, nanosec=0), frame_id="cam")
    yuyv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2)
    image = t[msgs.IMAGE](header=header, height=H, width=W, encoding="yuyv", is_bigendian=0, step=2 * W,
                          data=yuyv.reshape(-1))
    p = np.zeros((3, 4))
    p[:, :3] = K
    info = t[msgs.CAMERA_INFO](
        header=header, height=H, width=W, distortion_model="plumb_bob", d=np.array(d), k=K.ravel(),
        r=np.eye(3).ravel(), p=p.ravel(), binning_x=0, binning_y=0,
        roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    image = msgs.decode(msgs.typestore().serialize_cdr(image, msgs.IMAGE), msgs.IMAGE)  # as read from a bag
    info = msgs.decode(msgs.typestore().serialize_cdr(info, msgs.CAMERA_INFO), msgs.CAMERA_INFO)

    baked = RectifyCache().rectify(calibration_from_camera_info(info, "auto"), msgs.image_from_msg(image))
    rectifier = Rectifier("auto")
    rectifier.on_camera_info(info)
    live = ImageDecoder(use_cv_bridge=False)(image)
    np.testing.assert_array_equal(rectifier.for_image(*live.shape[:2])(live), baked)
    assert line_residual_px(baked[..., 0]) < 0.1
