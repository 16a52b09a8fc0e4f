"""The perception node under load, over real ROS topics and services (tiny preset, CPU).

    python -m benchmarks.ros_soak fairness [--seconds 20] [--offer-hz 10] [--policy fair|jobs-first]
    python -m benchmarks.ros_soak rss [--requests 3000] [--cycles 50]

fairness: a camera publishes image + pose pairs at --offer-hz (every pair a keyframe) for
--seconds unloaded, then as long again while a client keeps 50 /spatial_query requests in flight
(each answered or refused "busy" is sent again). Ingest rate = frames the engine took per second.
`--policy jobs-first` runs the worker's old rule (every waiting job before any waiting frame) to
show what the fair worker changed.

rss: the node's process RSS (node and client share it) while a client sends fuzzed /spatial_query
requests, eight in flight (half well-formed questions of random kinds about random object names,
which the engine answers; half malformed: bad kinds, odd objects and options, long strings,
extreme max_new_tokens and timeout_s), then over lifecycle cycles (deactivate, cleanup, configure,
activate: a new engine each time). Sampled every 1/10 of each run.

Writes benchmarks/results/ros_<what>.json and .md, stamped with command, commit, machine, versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def stamp(argv: list[str]) -> dict[str, Any]:
    import rclpy  # noqa: F401
    import torch
    import transformers

    from spatial_ttt_ros.provenance import source_commit

    return {"command": " ".join(["python -m benchmarks.ros_soak", *argv]), "commit": source_commit(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)", "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "rmw": os.environ.get("RMW_IMPLEMENTATION", "")}


class Camera:
    """Publishes synced image + pose pairs from its own context at a fixed rate of wall time."""

    def __init__(self, context: Any) -> None:
        import rclpy
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import Image

        self.node = rclpy.create_node("soak_camera", context=context)
        self.image_pub = self.node.create_publisher(Image, "/image", 10)
        self.pose_pub = self.node.create_publisher(PoseStamped, "/pose", 10)
        self.sent = 0
        rng = np.random.default_rng(0)
        self.pixels = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8).tobytes() for _ in range(8)]

    def publish(self, stamp_s: float) -> None:
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import Image

        from spatial_ttt_ros.ros.conversions import seconds_to_sec_nanosec

        image = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=self.pixels[self.sent % 8])
        pose = PoseStamped()
        pose.pose.position.x = 0.5 * self.sent
        pose.pose.orientation.w = 1.0
        for msg in (image, pose):
            msg.header.stamp.sec, msg.header.stamp.nanosec = seconds_to_sec_nanosec(stamp_s)
        self.pose_pub.publish(pose)
        self.image_pub.publish(image)
        self.sent += 1

    def run(self, seconds: float, hz: float, first_stamp: float) -> None:
        start = time.monotonic()
        for i in range(int(seconds * hz)):
            time.sleep(max(0.0, start + i / hz - time.monotonic()))
            self.publish(first_stamp + i / hz)


def flood(client: Any, node_host: Any, stop: threading.Event, in_flight: int, counts: dict) -> None:
    """Keep `in_flight` /spatial_query requests outstanding until `stop`."""
    from spatial_ttt_ros.srv import SpatialQuery

    request = SpatialQuery.Request(kind="count", objects=["chair"], max_new_tokens=8, timeout_s=60.0)
    futures = [client.call_async(request) for _ in range(in_flight)]
    while not stop.is_set():
        for i, future in enumerate(futures):
            if future.done():
                response = future.result()
                counts["answered" if response.success else "refused"] += 1
                futures[i] = client.call_async(request)
        time.sleep(0.005)


def fairness(args: argparse.Namespace) -> dict[str, Any]:
    import rclpy
    from rclpy.context import Context
    from rclpy.qos import QoSProfile

    from spatial_ttt_ros.ros import worker as worker_module
    from spatial_ttt_ros.ros.hosting import NodeHost, hosted_perception_node, wait_for
    from spatial_ttt_ros.srv import SpatialQuery

    if args.policy == "jobs-first":
        worker_module.EngineWorker._job_turn = lambda self: bool(self._jobs)
    params = {"keyframe_max_rate_hz": 0.0, "keyframe_min_translation_m": 0.0, "keyframe_min_rotation_deg": 0.0,
              "max_concurrent_queries": 4, "max_new_tokens": 8}
    phases = {}
    with hosted_perception_node(params) as node:
        context = Context()
        rclpy.init(context=context)
        camera = Camera(context)
        client = camera.node.create_client(SpatialQuery, "/spatial_query", qos_profile=QoSProfile(depth=128))
        host = NodeHost(context, num_threads=3)
        host.add(camera.node)
        host.start()
        try:
            wait_for(lambda: all(node.input_publishers().get(t) for t in ("/image", "/pose")), 60)
            client.wait_for_service(timeout_sec=60)
            camera.run(2.0, args.offer_hz, 1.0)  # warm up: the memory has frames to answer from
            wait_for(lambda: node.status_view().worker.queue_depth == 0, 60)
            next_stamp = 1.0 + 2.0 + 1.0
            for phase in ("unloaded", "50-query flood"):
                stop, counts = threading.Event(), {"answered": 0, "refused": 0}
                flooder = None
                if phase != "unloaded":
                    flooder = threading.Thread(target=flood, args=(client, host, stop, 50, counts), daemon=True)
                    flooder.start()
                    time.sleep(1.0)
                before = node.status_view()
                t0 = time.monotonic()
                camera.run(args.seconds, args.offer_hz, next_stamp)
                elapsed = time.monotonic() - t0
                after = node.status_view()
                stop.set()
                if flooder is not None:
                    flooder.join(timeout=120)
                wait_for(lambda: node.status_view().worker.queue_depth == 0 and node._bound.in_flight == 0, 120)
                next_stamp += args.seconds + 1.0
                phases[phase] = {
                    "seconds": round(elapsed, 2), "frames_offered": int(args.seconds * args.offer_hz),
                    "frames_ingested": after.worker.frames_ingested - before.worker.frames_ingested,
                    "frames_dropped": after.dropped - before.dropped,
                    "ingest_fps": round((after.worker.frames_ingested - before.worker.frames_ingested) / elapsed, 3),
                    "queries_answered": counts["answered"], "queries_refused_busy": counts["refused"]}
        finally:
            host.stop()
            camera.node.destroy_node()
            rclpy.try_shutdown(context=context)
    ratio = phases["50-query flood"]["ingest_fps"] / max(phases["unloaded"]["ingest_fps"], 1e-9)
    return {"policy": args.policy, "offer_hz": args.offer_hz, "phases": phases, "flood_over_unloaded": round(ratio, 3)}


FUZZ_KINDS = ["count", "abs_distance", "object_size", "room_size", "rel_distance", "rel_direction", "route_plan",
              "appearance_order", "free_form", "", "COUNT", "how_far", "x" * 5000]


NAMES = ["chair", "table", "sofa", "lamp", "tv", "bed", "door", "sink", "stool", "desk", "plant", "shelf",
         "fridge", "oven", "toilet", "window", "clock", "vase", "rug", "mirror"]


def valid_request(rng: random.Random) -> Any:
    """A well-formed question of a random kind about random object names (distinct prompts)."""
    from spatial_ttt_ros.srv import SpatialQuery

    names = rng.sample(NAMES, 4)
    kind = rng.choice(["count", "abs_distance", "object_size", "room_size", "rel_distance", "rel_direction",
                       "route_plan", "appearance_order", "free_form"])
    fields: dict[str, Any] = {
        "count": dict(objects=names[:1]), "abs_distance": dict(objects=names[:2]),
        "object_size": dict(objects=names[:1]), "room_size": dict(objects=[]),
        "rel_distance": dict(objects=names, options=names[1:]), "rel_direction": dict(objects=names[:3]),
        "route_plan": dict(objects=names[:3], options=["Turn Left", "Turn Right", "Turn Back"]),
        "appearance_order": dict(objects=names[:3], options=[", ".join(names[:3]), ", ".join(names[2::-1])]),
        "free_form": dict(question=f"Where is the {names[0]} relative to the {names[1]}?" + " really" *
                          rng.randint(0, 40)),
    }[kind]
    return SpatialQuery.Request(kind=kind, max_new_tokens=rng.randint(1, 12), timeout_s=60.0, **fields)


def fuzz_request(rng: random.Random) -> Any:
    """Half well-formed questions (they reach the engine), half malformed or extreme requests."""
    from spatial_ttt_ros.srv import SpatialQuery

    if rng.random() < 0.5:
        return valid_request(rng)

    def text() -> str:
        return rng.choice(["chair", "table", "", " ", "sofa" * rng.randint(1, 300), "é\u2028\u0000x",
                           "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 60)))])

    return SpatialQuery.Request(
        kind=rng.choice(FUZZ_KINDS), objects=[text() for _ in range(rng.choice([0, 1, 2, 3, 4, 40]))],
        question=rng.choice(["", "Where is the chair?", "q" * rng.randint(1, 20000)]),
        options=[text() for _ in range(rng.choice([0, 0, 2, 3, 30]))],
        max_new_tokens=rng.choice([0, 1, 4, 8, 300, 2**31 - 1]),
        timeout_s=rng.choice([0.0, 5.0, 60.0, -1.0, 1e10, float("nan"), float("inf")]))


def rss(args: argparse.Namespace) -> dict[str, Any]:
    import rclpy
    from rclpy.context import Context
    from rclpy.qos import QoSProfile

    from spatial_ttt_ros.ros.hosting import NodeHost, hosted_perception_node, wait_for
    from spatial_ttt_ros.srv import SpatialQuery

    params = {"keyframe_max_rate_hz": 0.0, "keyframe_min_translation_m": 0.0, "keyframe_min_rotation_deg": 0.0,
              "max_concurrent_queries": 4}
    rng = random.Random(0)
    fuzz_samples, cycle_samples, outcomes = [], [], {"success": 0, "refused": 0}
    with hosted_perception_node(params) as node:
        context = Context()
        rclpy.init(context=context)
        camera = Camera(context)
        client = camera.node.create_client(SpatialQuery, "/spatial_query", qos_profile=QoSProfile(depth=64))
        host = NodeHost(context, num_threads=2)
        host.add(camera.node)
        host.start()
        try:
            wait_for(lambda: all(node.input_publishers().get(t) for t in ("/image", "/pose")), 60)
            camera.run(2.0, 5.0, 1.0)
            wait_for(lambda: node.status_view().worker.frames_in_memory >= 5, 60)
            client.wait_for_service(timeout_sec=60)
            fuzz_samples.append({"requests": 0, "rss_mb": round(rss_mb(), 1)})
            step = max(args.requests // 10, 1)
            pending: list[Any] = []
            for i in range(1, args.requests + 1):
                pending.append(client.call_async(fuzz_request(rng)))
                if len(pending) >= 8:
                    wait_for(lambda: any(f.done() for f in pending), 120)
                    for future in [f for f in pending if f.done()]:
                        pending.remove(future)
                        outcomes["success" if future.result().success else "refused"] += 1
                if i % step == 0:
                    fuzz_samples.append({"requests": i, "rss_mb": round(rss_mb(), 1)})
            wait_for(lambda: all(f.done() for f in pending), 120)
        finally:
            host.stop()
            camera.node.destroy_node()
            rclpy.try_shutdown(context=context)
        cycle_samples.append({"cycles": 0, "rss_mb": round(rss_mb(), 1)})
        step = max(args.cycles // 10, 1)
        from rclpy.lifecycle import TransitionCallbackReturn

        ok = TransitionCallbackReturn.SUCCESS
        for i in range(1, args.cycles + 1):
            results = [node.trigger_deactivate(), node.trigger_cleanup(), node.trigger_configure(),
                       node.trigger_activate()]
            assert all(r == ok for r in results) and node.state == "active", (i, results, node.last_error)
            if i % step == 0:
                cycle_samples.append({"cycles": i, "rss_mb": round(rss_mb(), 1)})
    return {"fuzz": fuzz_samples, "fuzz_outcomes": outcomes, "lifecycle": cycle_samples,
            "fuzz_second_half_growth_mb": round(fuzz_samples[-1]["rss_mb"] - fuzz_samples[len(fuzz_samples) // 2]
                                                ["rss_mb"], 1),
            "lifecycle_second_half_growth_mb": round(cycle_samples[-1]["rss_mb"]
                                                     - cycle_samples[len(cycle_samples) // 2]["rss_mb"], 1)}


def markdown(what: str, result: dict[str, Any]) -> str:
    head = [f"# ROS soak: {what}", "", f"`{result['command']}` at {result['commit']}; {result['machine']}; "
            f"Python {result['python']}, torch {result['torch']}, transformers {result['transformers']}, "
            f"{result['rmw']}; tiny preset on CPU.", ""]
    if what == "fairness":
        rows = ["| policy | phase | s | offered | ingested | dropped | ingest fps | answered | busy |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for run in result["runs"]:
            for phase, p in run["phases"].items():
                rows.append(f"| {run['policy']} | {phase} | {p['seconds']} | {p['frames_offered']} | "
                            f"{p['frames_ingested']} | {p['frames_dropped']} | {p['ingest_fps']} | "
                            f"{p['queries_answered']} | {p['queries_refused_busy']} |")
        rows += [""] + [f"- {run['policy']}: ingest under the flood = {run['flood_over_unloaded']:.0%} of unloaded"
                        for run in result["runs"]]
        return "\n".join(head + rows) + "\n"
    rows = ["| fuzzed requests | RSS MB |", "|---:|---:|"]
    rows += [f"| {s['requests']} | {s['rss_mb']} |" for s in result["fuzz"]]
    rows += ["", f"outcomes: {result['fuzz_outcomes']}; growth over the second half: "
             f"{result['fuzz_second_half_growth_mb']} MB", "", "| lifecycle cycles | RSS MB |", "|---:|---:|"]
    rows += [f"| {s['cycles']} | {s['rss_mb']} |" for s in result["lifecycle"]]
    rows += ["", f"growth over the second half: {result['lifecycle_second_half_growth_mb']} MB"]
    return "\n".join(head + rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["fairness", "rss"])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--offer-hz", type=float, default=10.0)
    parser.add_argument("--policy", default="fair,jobs-first", help="comma-separated: fair, jobs-first")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    result = stamp(argv)
    if args.what == "fairness":
        runs = []
        for policy in args.policy.split(","):
            # each policy in its own process: jobs-first patches the worker class
            if len(args.policy.split(",")) > 1:
                out = subprocess.run([sys.executable, "-m", "benchmarks.ros_soak", "fairness", "--policy", policy,
                                      "--seconds", str(args.seconds), "--offer-hz", str(args.offer_hz),
                                      "--out", str(Path(args.out) / f".{policy}")], check=True)
                assert out.returncode == 0
                runs += json.loads((Path(args.out) / f".{policy}" / "ros_fairness.json").read_text())["runs"]
            else:
                args.policy = policy
                runs.append(fairness(args))
        result["runs"] = runs
    else:
        result.update(rss(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ros_{args.what}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"ros_{args.what}.md").write_text(markdown(args.what, result))
    print(markdown(args.what, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
