"""Soak: N keyframes at a simulated 2 Hz through the real perception node, queries every few
minutes of stream time; process RSS, bytes per memory part, ingest rate and query latency over time.

    python -m benchmarks.soak [--frames 57600] [--budget 2048] [--query-every-s 300] [--out benchmarks/results]
    python -m benchmarks.soak --report-only    # md + plot again from soak.json

The node (`PerceptionNode`, real rclpy, real engine on the `tiny` preset bounded by its
`anchor_kv_budget_tokens` parameter) runs in this process in its own ROS context (localhost, its own domain);
a client node publishes sensor_msgs/Image + geometry_msgs/PoseStamped pairs stamped 0.5 s apart (a
camera moving 0.2 m per frame) as fast as the node takes them, and calls /spatial_query. Stream
time is the stamps' time; wall time is how long it took here. Writes soak.json (rewritten at every
sample, so a run stopped early keeps what it measured), soak.md and soak.svg.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.svg_lines import line_panels

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(100, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def run(args: argparse.Namespace) -> dict:
    import rclpy
    import torch
    from geometry_msgs.msg import PoseStamped
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from benchmarks.stamp import stamp
    from spatial_ttt_ros.ros.conversions import seconds_to_sec_nanosec
    from spatial_ttt_ros.ros.hosting import hosted_perception_node, wait_for
    from spatial_ttt_ros.srv import SpatialQuery

    torch.set_num_threads(1)
    params = {"model_preset": "tiny", "device": "cpu", "anchor_kv_budget_tokens": args.budget,
              "keyframe_max_rate_hz": 0.0, "ingest_queue_size": 64, "query_timeout_s": 120.0}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {
        **stamp(" ".join(["python -m benchmarks.soak", *args.argv]), "cpu"),
        "cpu": platform.processor() or platform.machine(), "preset": "tiny",
        "anchor_kv_budget_tokens": args.budget, "frames_target": args.frames, "stream_hz": 2.0,
        "node_params": params, "samples": [], "queries": [],
        "republished": 0, "complete": False,
    }
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8).tobytes() for _ in range(32)]

    def save() -> None:
        (out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")

    with hosted_perception_node(params) as node:
        context = Context()
        rclpy.init(context=context)
        client = rclpy.create_node("soak_client", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(client)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            image_pub = client.create_publisher(Image, "/image", 10)
            pose_pub = client.create_publisher(PoseStamped, "/pose", 10)
            query = client.create_client(SpatialQuery, "/spatial_query")
            subs = lambda: node.input_publishers()  # noqa: E731
            if not wait_for(lambda: image_pub.get_subscription_count() > 0 and pose_pub.get_subscription_count() > 0
                            and subs().get("/image", 0) > 0 and subs().get("/pose", 0) > 0, 60.0):
                raise RuntimeError("the node did not subscribe")
            if not query.wait_for_service(timeout_sec=60.0):
                raise RuntimeError("no /spatial_query service")
            start = time.monotonic()
            last_t, last_ingested = start, 0
            query_every = max(1, int(args.query_every_s * 2))
            for i in range(args.frames):
                stamp = 1000.0 + 0.5 * i
                sec, nanosec = seconds_to_sec_nanosec(stamp)
                image = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=images[i % len(images)])
                pose = PoseStamped()
                pose.pose.position.x, pose.pose.orientation.w = 0.2 * i, 1.0
                for msg, frame in ((image, "camera"), (pose, "map")):
                    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
                    msg.header.frame_id = frame
                before = node.status_view().ingest.synced
                for _ in range(5):  # best-effort delivery: a lost pair is sent again (counted)
                    pose_pub.publish(pose)
                    image_pub.publish(image)
                    if wait_for(lambda n=before: node.status_view().ingest.synced > n, 5.0, poll_s=0.001):
                        break
                    result["republished"] += 1
                else:
                    raise RuntimeError(f"frame {i} never synced: {node.status_view()}")
                wait_for(lambda: node.status_view().worker.queue_depth < 32, 60.0, poll_s=0.002)
                if (i + 1) % query_every == 0:
                    wait_for(lambda: node.status_view().worker.queue_depth == 0, 120.0, poll_s=0.002)
                    t0 = time.monotonic()
                    future = query.call_async(SpatialQuery.Request(kind="count", objects=["chair"]))
                    wait_for(future.done, 180.0, poll_s=0.002)
                    response = future.result()
                    result["queries"].append({
                        "frame": i + 1, "stream_s": 0.5 * (i + 1), "wall_s": time.monotonic() - start,
                        "success": bool(response and response.success), "latency_s": response.latency_s if response else None,
                        "roundtrip_s": time.monotonic() - t0, "frames_in_memory": response.frames_in_memory if response else 0,
                        "message": (response.message if response else "no response")[:200]})
                if (i + 1) % args.sample_every == 0 or i + 1 == args.frames:
                    view = node.status_view()
                    w = view.worker
                    c = w.counters
                    now = time.monotonic()
                    result["samples"].append({
                        "frame": i + 1, "stream_s": 0.5 * (i + 1), "wall_s": now - start, "rss_bytes": rss_bytes(),
                        "frames_in_memory": w.frames_in_memory, "frames_ingested": w.frames_ingested,
                        "frames_dropped": w.frames_dropped, "frames_rejected": view.rejected,
                        "ingest_fps": (w.frames_ingested - last_ingested) / max(now - last_t, 1e-9),
                        "bytes_by_part": c.bytes_by_part, "memory_bytes": sum(c.bytes_by_part.values()),
                        "anchor_tokens": c.anchor_tokens, "anchor_capacity_bytes": c.anchor_capacity_bytes,
                        "evicted_groups": c.evicted_groups, "evicted_tokens": c.evicted_tokens})
                    last_t, last_ingested = now, w.frames_ingested
                    result["frames_done"] = i + 1
                    save()
            result["complete"] = True
            save()
        finally:
            executor.shutdown()
            client.destroy_node()
            rclpy.try_shutdown(context=context)
    return result


# ---------------------------------------------------------------- report
def svg(result: dict) -> str:
    """Four panels over stream time: RSS, memory bytes (all parts), ingest rate, query latency."""
    s, q = result["samples"], [x for x in result["queries"] if x["latency_s"] is not None]
    hours = [x["stream_s"] / 3600 for x in s]
    panels = [("process RSS [MiB]", [("rss", hours, [x["rss_bytes"] / 2**20 for x in s])]),
              ("memory bytes, all parts [MiB]", [("memory", hours, [x["memory_bytes"] / 2**20 for x in s])]),
              ("ingest [frames/s wall]", [("ingest", hours, [x["ingest_fps"] for x in s])]),
              ("query latency [s]", [("latency", [x["stream_s"] / 3600 for x in q], [x["latency_s"] for x in q])])]
    return line_panels(f'{len(s) and s[-1]["frame"]} keyframes at 2 Hz through the perception node '
                       f'(tiny, anchor budget {result["anchor_kv_budget_tokens"]} tokens); x: stream time [h]',
                       panels, x_unit=" h")


def report(result: dict, out: Path) -> str:
    s, q = result["samples"], result["queries"]
    done = s[-1]["frame"] if s else 0
    half = [x for x in s if x["frame"] > done / 2] or s
    first_half = [x for x in s if x["frame"] <= done / 2 and x["evicted_groups"] > 0] or s

    def rng(rows: list[dict], key: str, scale: float = 1.0) -> str:
        vals = [r[key] / scale for r in rows]
        return f"{min(vals):.1f} .. {max(vals):.1f}" if vals else "-"

    ok = [x for x in q if x["success"]]
    lines = [f"# Soak: {done:,} keyframes at a simulated 2 Hz ({done / 2 / 3600:.2f} h of stream) "
             f"through the perception node", "",
             f"`{result['command']}` — commit {result['commit']}, {result['date']}, CPU ({result['cpu']}), torch "
             f"{result['torch']}, transformers {result['transformers']}; preset tiny, anchor_kv_budget_tokens "
             f"{result['anchor_kv_budget_tokens']}; target {result['frames_target']:,} frames "
             f"({'complete' if result['complete'] else 'stopped early: ' + str(done) + ' frames'}).", "",
             "| | first half (after the first eviction) | second half |", "|---|---|---|",
             f"| process RSS [MiB] | {rng(first_half, 'rss_bytes', 2**20)} | {rng(half, 'rss_bytes', 2**20)} |",
             f"| memory bytes, all parts [KiB] | {rng(first_half, 'memory_bytes', 1024)} | {rng(half, 'memory_bytes', 1024)} |",
             f"| anchor buffer allocated [KiB] | {rng(first_half, 'anchor_capacity_bytes', 1024)} | "
             f"{rng(half, 'anchor_capacity_bytes', 1024)} |",
             f"| ingest [frames/s wall] | {rng(first_half, 'ingest_fps')} | {rng(half, 'ingest_fps')} |", "",
             f"Queries: {len(ok)} of {len(q)} answered; latency "
             f"{min((x['latency_s'] for x in ok), default=0):.3f} .. {max((x['latency_s'] for x in ok), default=0):.3f} s. "
             f"Frames dropped {s[-1]['frames_dropped'] if s else 0}, rejected {s[-1]['frames_rejected'] if s else 0}, "
             f"pairs published again after a loss {result['republished']}; "
             f"{s[-1]['evicted_groups'] if s else 0:,} frame groups evicted.", "",
             "Bytes per memory part at the end: " + ", ".join(f"{k} {v:,}" for k, v in (s[-1]["bytes_by_part"].items() if s else [])),
             "", "![soak](soak.svg)"]
    text = "\n".join(lines) + "\n"
    (out / "soak.md").write_text(text)
    (out / "soak.svg").write_text(svg(result))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=57_600)
    parser.add_argument("--budget", type=int, default=2048)
    parser.add_argument("--query-every-s", type=float, default=300.0, help="stream seconds between queries")
    parser.add_argument("--sample-every", type=int, default=200, help="frames between samples")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    result = json.loads((out / "soak.json").read_text()) if args.report_only else run(args)
    print(report(result, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
