"""CPU: per-frame cost of camera input at 1280x720: decoding each encoding family to RGB and lens
rectification (map build once per calibration, remap per frame), for 1 OpenCV thread and OpenCV's
default.

    python -m benchmarks.bench_camera [--repeats 30] [--out benchmarks/results]

Writes camera_cpu.json and camera_cpu.md (stamped with command, commit, CPU and versions).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from spatial_ttt_ros.data import image_encodings
from spatial_ttt_ros.data.rectify import Calibration, rectify_image, rectify_maps
from spatial_ttt_ros.provenance import source_commit

W, H = 1280, 720
K = (910.0, 0.0, 641.0, 0.0, 905.0, 362.0, 0.0, 0.0, 1.0)
LENSES = {
    "plumb_bob": ("pinhole", (-0.28, 0.09, 0.0005, -0.0004, -0.012)),
    "rational_polynomial": ("pinhole", (-0.3, 0.1, 0.0, 0.0, 0.0, 0.02, 0.01, 0.0)),
    "equidistant": ("fisheye", (0.05, -0.02, 0.01, -0.003)),
}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ms(fn: object, repeats: int) -> dict[str, float]:
    fn()  # warm-up (allocations, OpenCV dispatch)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return {"min_ms": float(np.min(times)), "median_ms": float(np.median(times)),
            "p90_ms": float(np.percentile(times, 90))}


def _frames(rgb: np.ndarray) -> dict[str, tuple[bytes, int]]:
    """(data, step) of one 1280x720 frame per encoding family."""
    bayer = np.zeros((H, W), np.uint8)
    for (dy, dx), c in zip(((0, 0), (0, 1), (1, 0), (1, 1)), (0, 1, 1, 2)):
        bayer[dy::2, dx::2] = rgb[dy::2, dx::2, c]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    u, v = i420[H:].reshape(2, H // 2, W // 2)
    nv21 = np.concatenate([i420[:H], np.stack([v, u], axis=-1).reshape(H // 2, W)])
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)
    return {
        "rgb8": (rgb.tobytes(), 3 * W),
        "bgr8": (rgb[..., ::-1].tobytes(), 3 * W),
        "mono16": ((rgb[..., 1].astype(np.uint16) * 257).tobytes(), 2 * W),
        "bayer_rggb8": (bayer.tobytes(), W),
        "bayer_rggb16": ((bayer.astype(np.uint16) * 257).tobytes(), 2 * W),
        "yuv422_yuy2": (cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2).tobytes(), 2 * W),
        "yuv422": (cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY).tobytes(), 2 * W),
        "nv21": (nv21.tobytes(), W),
        "nv24": (yuv[..., 0].tobytes() + yuv[..., 1:].tobytes(), W),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([(xx * 255 // W), (yy * 255 // H), ((xx + yy) % 256)], axis=-1).astype(np.uint8)
    rgb = np.clip(rgb.astype(int) + rng.integers(-8, 9, rgb.shape), 0, 255).astype(np.uint8)
    load_before = os.getloadavg()[0]
    default_threads = cv2.getNumThreads()
    rows = []
    for threads in sorted({1, default_threads}):
        cv2.setNumThreads(threads)
        for encoding, (data, step) in _frames(rgb).items():
            cost = _ms(lambda d=data, e=encoding, s=step: image_encodings.image_to_rgb(d, e, H, W, s), args.repeats)
            rows.append({"what": "decode", "case": encoding, "opencv_threads": threads, **cost})
        for model_name, (model, d) in LENSES.items():
            cal = Calibration(W, H, model, K, d)
            maps = rectify_maps(cal)
            build = _ms(lambda c=cal: rectify_maps(c), max(3, args.repeats // 5))
            remap = _ms(lambda c=cal, m=maps: rectify_image(rgb, c, m), args.repeats)
            rows.append({"what": "rectify maps (once per calibration)", "case": model_name, "opencv_threads": threads,
                         **build})
            rows.append({"what": "rectify per frame (remap, cached maps)", "case": model_name,
                         "opencv_threads": threads, **remap})
    cv2.setNumThreads(default_threads)
    command = " ".join(["python -m benchmarks.bench_camera", *(argv if argv is not None else sys.argv[1:])])
    result = {"command": command, "commit": source_commit(), "date": datetime.datetime.now(datetime.UTC).isoformat(
        timespec="seconds"), "device": "cpu", "cpu": _cpu(), "cpu_cores": os.cpu_count(),
        "load_avg_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "python": platform.python_version(), "opencv": cv2.__version__, "numpy": np.__version__,
        "frame": f"{W}x{H}", "repeats": args.repeats, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "camera_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Camera input cost per {W}x{H} frame on {result['cpu']} ({result['cpu_cores']} cores), OpenCV "
             f"{cv2.__version__}, numpy {np.__version__}, commit {result['commit']}, {result['date']}, "
             f"`{command}`", "",
             f"The machine is shared (1-min load average {load_before:.1f} before, "
             f"{result['load_avg_1min']['after']:.1f} after, on {result['cpu_cores']} cores): `min` is the least "
             "disturbed estimate, median and p90 include waiting for a core.", "",
             "| step | case | OpenCV threads | min ms | median ms | p90 ms |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['what']} | {r['case']} | {r['opencv_threads']} | {r['min_ms']:.2f} | {r['median_ms']:.2f} | "
              f"{r['p90_ms']:.2f} |" for r in rows]
    (out / "camera_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
