"""`spatial-ttt demo` (`make demo`): the perception pipeline end to end, on the embedded default.

Brings the perception node up in this process (the embedded `demo` model unless told otherwise), streams a
generated camera + pose recording into it from a second node over real ROS topics, asks
/spatial_query questions of several kinds over the real service, and prints the typed answers
and the node's memory_status. The camera stream is the synthetic renderer's (a furnished room
and a walk through it) when that module is present, else simple moving shapes.

Each generated question is printed with the synthetic scene's ground truth and its VSI-Bench score.
The `demo` model's measured accuracy (and how far it is from the answer priors) is in
models/demo/MODEL_CARD.md; with `--preset tiny` (a random model) the answers are not meaningful.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

FPS = 10  # camera rate of the synthetic trajectory (stamps), not wall-clock
STRIDE = 5  # streamed: every 5th trajectory frame (2 Hz keyframes, as the node's gate keeps)


@dataclass(frozen=True)
class Stream:
    description: str
    objects: tuple[str, ...]  # object names present, for the questions
    frames: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]  # (rgb [H, W, 3], position [3], quat xyzw [4], stamp s)
    items: tuple[dict, ...] = ()  # generated questions with their ground truth (spatial.qa items)


def rendered_stream(n_frames: int, seed: int, preset: str = "tiny") -> Stream:
    """A synthetic home and a one-way tour through it (spatial_ttt_ros.data), rendered at the
    preset's frame size as 2 Hz keyframes (every 5th frame of the 10 Hz trajectory), with the
    questions `annotate` generates for it and their ground truth."""
    from spatial_ttt_ros.data.annotate import Episode, annotate_episode
    from spatial_ttt_ros.data.synth import START_NS, generate_scene, stream_frames
    from spatial_ttt_ros.runtime.config import load_config
    from spatial_ttt_ros.spatial.camera import CameraIntrinsics
    from spatial_ttt_ros.spatial.prompts import ROBOT_KINDS

    config = load_config(preset, weights="")
    scene = generate_scene(seed)
    intr = CameraIntrinsics.from_fov(config.frame_width, config.frame_height, 70.0)
    shots = list(stream_frames(scene, seed, n_frames * STRIDE, intr, stride=STRIDE, tour="oneway"))
    episode = Episode("bag_0.mcap", [f.stamp_ns for f in shots], [f.pose for f in shots], [intr] * len(shots))
    # The robot-relative kinds need a pose-aware model (pose_text); the demo's presets are not.
    items = [a for a in annotate_episode(scene, episode, 0, chunk_frames=16, seed=0)
             if a["type"] == "qa" and a["kind"] not in {k.value for k in ROBOT_KINDS}]
    firsts = tuple({it["kind"]: it for it in reversed(items)}.values())[::-1]  # the first item of each kind
    labels = [o.label for o in scene.objects]
    kinds = sorted(set(labels), key=labels.index)
    rooms = ", ".join(f"{r.name.replace('_', ' ')} {r.area:.1f} m^2" for r in scene.rooms)
    counts = ", ".join(f"{k} x{labels.count(k)}" for k in kinds)
    frames = [(f.rgb, f.pose.position, f.pose.orientation, 1000.0 + (f.stamp_ns - START_NS) * 1e-9) for f in shots]
    return Stream(f"synthetic home {seed} ({rooms}): {counts}", tuple(kinds), frames, firsts)


def shapes_stream(n_frames: int, seed: int) -> Stream:
    """Coloured blocks on a wall, seen by a camera sliding past them."""
    rng = np.random.default_rng(seed)
    blocks = [(rng.uniform(0, 4), rng.integers(40, 255, 3)) for _ in range(6)]
    frames = []
    for i in range(n_frames):
        x = 0.05 * i
        img = np.full((64, 96, 3), 200, np.uint8)
        for bx, colour in blocks:
            u = int((bx - x) * 40) + 48
            if -20 < u < 116:
                img[20:50, max(u - 10, 0):max(min(u + 10, 96), 0)] = colour
        frames.append((img, np.array([x, 0.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]), 1000.0 + i / FPS))
    return Stream("moving coloured blocks (no renderer available)", ("chair", "table", "lamp", "sofa"), frames)


def make_stream(n_frames: int, seed: int, preset: str = "tiny") -> Stream:
    try:
        return rendered_stream(n_frames, seed, preset)
    except ImportError:
        return shapes_stream(n_frames, seed)


def questions(stream: Stream) -> Iterator[tuple[str, dict[str, Any], dict | None]]:
    """(kind, request fields, generated item with the ground truth or None) per demo question: the
    scene's generated questions (one per kind) when it has them, then a free-form one."""
    o = list(stream.objects) + [name for name in ("chair", "table", "lamp", "sofa") if name not in stream.objects]
    if stream.items:
        for it in stream.items:
            yield it["kind"], dict(question=it["question"], options=list(it["options"])), it
    else:
        yield "count", dict(objects=[o[0]]), None
        yield "abs_distance", dict(objects=[o[0], o[1]]), None
        yield "room_size", dict(objects=[]), None
        yield "rel_direction", dict(objects=[o[0], o[1], o[2]]), None
        yield "appearance_order", dict(objects=o[:3], options=[", ".join(o[:3]), ", ".join(o[2::-1]),
                                                               ", ".join([o[1], o[0], o[2]])]), None
    yield "free_form", dict(question=f"Where is the {o[0]}?"), None


def truth_text(item: dict) -> str:
    """The ground truth of a generated item as the demo prints it."""
    if item["options"]:
        return f"{item['answer']} = {item['answer_text']!r}"
    if item["kind"] == "locate":
        return f"x y = {item['answer'][0]:g} {item['answer'][1]:g} m"
    unit = {"count": "", "m": " m", "cm": " cm", "m^2": " m^2"}.get(item["unit"], "")
    return f"{item['answer']:g}{unit}"


def format_answer(kind: str, response: Any) -> str:
    if not response.success:
        return f"failed: {response.message}"
    if response.unit:
        typed = f"{response.value:g} {response.unit}" if math.isfinite(response.value) else f"(no number) {response.unit}"
    elif response.choice:
        typed = f"{response.choice} = {response.choice_text!r}"
    elif kind == "locate":
        p = response.position
        typed = f"x y = {p.x:g} {p.y:g} m ({response.frame_id})" if response.position_set else "(no position)"
    elif kind == "free_form":
        typed = "(free text)"
    else:
        typed = "(no option letter)"
    note = "" if response.message == "ok" else "  [text not readable as the kind's type]"
    return f"{typed:<24} raw {response.answer!r}  ({response.latency_s * 1000:.0f} ms){note}"


def to_messages(rgb: np.ndarray, position: np.ndarray, quat: np.ndarray, stamp_s: float) -> tuple[Any, Any]:
    """(sensor_msgs/Image rgb8, geometry_msgs/PoseStamped) with one stamp."""
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image

    from spatial_ttt_ros.ros.conversions import seconds_to_sec_nanosec

    image = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3, data=rgb.tobytes())
    pose = PoseStamped()
    p, o = pose.pose.position, pose.pose.orientation
    p.x, p.y, p.z = map(float, position)
    o.x, o.y, o.z, o.w = map(float, quat)
    for msg, frame_id in ((image, "camera"), (pose, "map")):
        msg.header.stamp.sec, msg.header.stamp.nanosec = seconds_to_sec_nanosec(stamp_s)
        msg.header.frame_id = frame_id
    return image, pose


def stream_into(node: Any, camera: Any, stream: Stream) -> bool:
    """Publish the stream on /image + /pose, each pair once the node has taken the previous one."""
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image

    from spatial_ttt_ros.ros.hosting import wait_for

    image_pub = camera.create_publisher(Image, "/image", 10)
    pose_pub = camera.create_publisher(PoseStamped, "/pose", 10)
    def matched() -> bool:  # both ends, or best-effort delivery loses the first frames
        subs = node.input_publishers()
        return all(pub.get_subscription_count() and subs.get(pub.topic_name) for pub in (image_pub, pose_pub))

    if not wait_for(matched, 20):
        print("error: the node did not subscribe to /image and /pose", file=sys.stderr)
        return False
    for rgb, position, quat, stamp_s in stream.frames:
        image, pose = to_messages(rgb, position, quat, stamp_s=stamp_s)
        before = node.status_view().ingest.synced
        for _ in range(3):  # best-effort sensor QoS: send again if the pair was lost
            pose_pub.publish(pose)
            image_pub.publish(image)
            if wait_for(lambda n=before: node.status_view().ingest.synced > n, 5.0):
                break
        # A camera at 2 Hz gives the worker 0.5 s per keyframe; this stream comes faster, so wait
        # until the worker has taken it in (a full queue would drop keyframes the answers need).
        wait_for(lambda: (w := node.status_view().worker) is not None and w.queue_depth == 0, 10.0)

    def idle() -> bool:
        worker = node.status_view().worker
        return worker is not None and worker.queue_depth == 0 and worker.busy_s == 0

    return wait_for(idle, 60)


def ask_all(client: Any, stream: Stream) -> bool:
    """Ask one question of each demo kind over /spatial_query and print the typed answers."""
    from spatial_ttt_ros.ros.hosting import wait_for
    from spatial_ttt_ros.spatial.metrics import score_item
    from spatial_ttt_ros.srv import SpatialQuery

    if not client.wait_for_service(timeout_sec=20):
        print("error: /spatial_query is not offered", file=sys.stderr)
        return False
    print("\n/spatial_query (each answer beside the synthetic scene's ground truth and its VSI-Bench score):")
    all_ok, response, scores = True, None, []
    for n, (kind, fields, item) in enumerate(questions(stream), 1):
        future = client.call_async(SpatialQuery.Request(kind=kind, max_new_tokens=8, **fields))
        if not wait_for(future.done, 60):
            print(f"  {n}. {kind}: no response", file=sys.stderr)
            return False
        response = future.result()
        all_ok &= response.success
        if item is not None:
            score = score_item(item["vsi_type"], response.answer, item["answer"]) if response.success else 0.0
            scores.append(score)
            asked = item["question"] + "".join(f" {o}" for o in item["options"])
            truth = f"\n     truth {truth_text(item)}  (score {score:.2f})"
        else:
            asked = ", ".join(fields.get("objects", [])) or fields.get("question", "")
            truth = ""
        print(f"  {n}. {kind:<16} {asked}\n     -> {format_answer(kind, response)}{truth}")
    if scores:
        print(f"     mean score over the {len(scores)} generated questions: {sum(scores) / len(scores):.2f}")
    stamp = response.memory_stamp.sec + response.memory_stamp.nanosec * 1e-9
    print(f"     (each answered from {response.frames_in_memory} frames in memory, newest stamp {stamp:.1f} s)")
    return all_ok


def print_status(s: Any) -> None:
    parts = ", ".join(f"{p} {b / 1024:.0f} KiB" for p, b in zip(s.memory_parts, s.memory_bytes) if b)
    print(f"\nmemory_status: received {s.frames_received}, synced {s.frames_synced}, keyframes {s.keyframes}, "
          f"dropped {s.frames_dropped}, rejected {s.frames_rejected}, in memory {s.frames_in_memory},\n"
          f"  tokens {s.tokens}, chunk updates {s.chunk_updates}, memory {s.memory_bytes_total / 1024:.0f} KiB ({parts}),\n"
          f"  ingest {s.ingest_fps:.1f} frames/s in the last status period, device {s.device}, model {s.model_id},\n"
          f"  last error {s.last_error or '-'}")


def isolate_ros(env: Any = os.environ) -> str:
    """Keep the demo's ROS traffic to this machine and a domain of its own (two demos, or a demo
    and the tests, must not talk to each other or to a robot on domain 0). A ROS_DOMAIN_ID or
    discovery range the caller exported is kept. Call before rclpy.init; returns a description."""
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if not env.get("ROS_DOMAIN_ID", "").strip():
        env["ROS_DOMAIN_ID"] = str(os.getpid() % 100 + 1)  # 1..100: valid, never the default 0
    return f"ROS domain {env['ROS_DOMAIN_ID']}, discovery {env['ROS_AUTOMATIC_DISCOVERY_RANGE'].lower()}"


def cli_demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="spatial-ttt demo", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60,
                        help=f"camera frames to stream ({FPS // STRIDE} Hz keyframes of a one-way tour)")
    parser.add_argument("--seed", type=int, default=2_000_003,
                        help="synthetic scene; the default lies outside the demo model's training and evaluation seeds")
    parser.add_argument("--preset", default="demo", help="model preset (default: the embedded demo model)")
    parser.add_argument("--checkpoint", default="", help="Spatial-TTT checkpoint for a real preset")
    parser.add_argument("--base-model", default="", help="local Qwen3-VL directory for a real preset")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    where = isolate_ros()

    import rclpy
    from rclpy.context import Context

    from spatial_ttt_ros.msg import MemoryStatus
    from spatial_ttt_ros.ros.hosting import NodeHost, hosted_perception_node, wait_for
    from spatial_ttt_ros.srv import SpatialQuery

    t_start = time.monotonic()
    print(f"spatial-ttt demo: the perception node on model preset {args.preset!r} ({where})")
    if args.preset == "tiny":
        print("NOTE: tiny random model: answers are not meaningful. This shows the pipeline and the typed\n"
              "      fields a planner gets back, not spatial accuracy.")
    elif args.preset == "demo":
        print("NOTE: the demo model (3.6 M parameters, trained on synthetic homes only); its measured accuracy\n"
              "      next to the answer priors: models/demo/MODEL_CARD.md")
    stream = make_stream(args.frames, args.seed, args.preset)
    print(f"scene: {stream.description}")
    params = {"model_preset": args.preset, "checkpoint": args.checkpoint, "base_model": args.base_model,
              "device": args.device, "status_rate_hz": 5.0}
    with hosted_perception_node(params) as node:
        print(f"node : /{node.get_name()} {node.state} on {node.device}, model {node.model_id}")
        context = Context()
        rclpy.init(context=context)
        camera = rclpy.create_node("demo_camera", context=context)
        statuses: list[MemoryStatus] = []
        camera.create_subscription(MemoryStatus, "/memory_status", statuses.append, 10)
        client = camera.create_client(SpatialQuery, "/spatial_query")
        host = NodeHost(context, num_threads=2)
        host.add(camera)
        host.start()
        try:
            if not stream_into(node, camera, stream):
                return 1
            view = node.status_view()
            print(f"ingest: {len(stream.frames)} frames + poses over ROS ({stream.frames[-1][3] - stream.frames[0][3]:.1f} s of stamps)"
                  f" -> {view.ingest.keyframes} keyframes (gate: 2 Hz, 0.1 m / 10 deg), "
                  f"{view.worker.frames_in_memory} in memory, {view.dropped} dropped, {view.rejected} rejected")
            answered = ask_all(client, stream)
            count = len(statuses)
            wait_for(lambda: len(statuses) > count, 5)
            if statuses:
                print_status(statuses[-1])
            print(f"\ndone in {time.monotonic() - t_start:.1f} s")
            return 0 if answered and statuses else 1
        finally:
            host.stop()
            camera.destroy_node()
            rclpy.try_shutdown(context=context)
