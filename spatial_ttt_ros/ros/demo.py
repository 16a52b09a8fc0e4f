"""`spatial-ttt demo` (`make demo`): the perception pipeline end to end, on the embedded default.

Brings the perception node up in this process (tiny preset unless told otherwise), streams a
generated camera + pose recording into it from a second node over real ROS topics, asks
/spatial_query questions of several kinds over the real service, and prints the typed answers
and the node's memory_status. The camera stream is the synthetic renderer's (a furnished room
and a walk through it) when that module is present, else simple moving shapes.

With the tiny random model the answers are not meaningful: the demo shows what a planner gets
back (value + unit, option letter, raw text, which memory answered), not accuracy.
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

FPS = 10  # camera rate of the generated stream (stamps), not wall-clock


@dataclass(frozen=True)
class Stream:
    description: str
    objects: tuple[str, ...]  # object names present, for the questions
    truth: dict[str, str]  # question key -> what the scene really holds
    frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (rgb [H, W, 3], position [3], quat xyzw [4])


def rendered_stream(n_frames: int, seed: int) -> Stream:
    """A synthetic furnished room and a walk through it (spatial_ttt_ros.data)."""
    from spatial_ttt_ros.data.render import Renderer
    from spatial_ttt_ros.data.synth import generate_scene
    from spatial_ttt_ros.data.trajectory import generate_trajectory
    from spatial_ttt_ros.spatial.camera import CameraIntrinsics

    scene = generate_scene(seed, n_rooms=1)
    poses = generate_trajectory(scene, seed, n_frames)
    renderer = Renderer(scene, CameraIntrinsics.from_fov(96, 64, 70.0), seed=seed)
    labels = [o.label for o in scene.objects]
    kinds = sorted(set(labels), key=labels.index)
    room = scene.rooms[0]
    area = room.area
    truth = {"count": str(labels.count(kinds[0])), "room_size": f"{area:.1f} m^2"}
    counts = ", ".join(f"{k} x{labels.count(k)}" for k in kinds)
    frames = [(renderer.render(p).rgb, p.position, p.orientation) for p in poses]
    return Stream(f"synthetic {room.name.replace('_', ' ')} ({area:.1f} m^2): {counts}",
                  tuple(kinds), truth, frames)


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
        frames.append((img, np.array([x, 0.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0])))
    return Stream("moving coloured blocks (no renderer available)", ("chair", "table", "lamp", "sofa"), {}, frames)


def make_stream(n_frames: int, seed: int) -> Stream:
    try:
        return rendered_stream(n_frames, seed)
    except ImportError:
        return shapes_stream(n_frames, seed)


def questions(objects: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    o = list(objects) + [name for name in ("chair", "table", "lamp", "sofa") if name not in objects]
    yield "count", dict(objects=[o[0]])
    yield "abs_distance", dict(objects=[o[0], o[1]])
    yield "room_size", dict(objects=[])
    yield "rel_direction", dict(objects=[o[0], o[1], o[2]])
    yield "appearance_order", dict(objects=o[:3], options=[", ".join(o[:3]), ", ".join(o[2::-1]),
                                                           ", ".join([o[1], o[0], o[2]])])
    yield "free_form", dict(question=f"Where is the {o[0]}?")


def format_answer(kind: str, response: Any) -> str:
    if not response.success:
        return f"failed: {response.message}"
    if response.unit:
        typed = f"{response.value:g} {response.unit}" if math.isfinite(response.value) else f"(no number) {response.unit}"
    elif response.choice:
        typed = f"{response.choice} = {response.choice_text!r}"
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
    for i, frame in enumerate(stream.frames):
        image, pose = to_messages(*frame, stamp_s=1000.0 + i / FPS)
        before = node.status_view().ingest.synced
        for _ in range(3):  # best-effort sensor QoS: send again if the pair was lost
            pose_pub.publish(pose)
            image_pub.publish(image)
            if wait_for(lambda n=before: node.status_view().ingest.synced > n, 5.0):
                break

    def idle() -> bool:
        worker = node.status_view().worker
        return worker is not None and worker.queue_depth == 0 and worker.busy_s == 0

    return wait_for(idle, 60)


def ask_all(client: Any, stream: Stream) -> bool:
    """Ask one question of each demo kind over /spatial_query and print the typed answers."""
    from spatial_ttt_ros.ros.hosting import wait_for
    from spatial_ttt_ros.srv import SpatialQuery

    if not client.wait_for_service(timeout_sec=20):
        print("error: /spatial_query is not offered", file=sys.stderr)
        return False
    print("\n/spatial_query:")
    all_ok, response = True, None
    for n, (kind, fields) in enumerate(questions(stream.objects), 1):
        future = client.call_async(SpatialQuery.Request(kind=kind, max_new_tokens=8, **fields))
        if not wait_for(future.done, 60):
            print(f"  {n}. {kind}: no response", file=sys.stderr)
            return False
        response = future.result()
        all_ok &= response.success
        asked = ", ".join(fields.get("objects", [])) or fields.get("question", "")
        truth = f"  truth: {stream.truth[kind]}" if kind in stream.truth else ""
        print(f"  {n}. {kind:<16} [{asked}]{truth}\n     -> {format_answer(kind, response)}")
    stamp = response.memory_stamp.sec + response.memory_stamp.nanosec * 1e-9
    print(f"     (each answered from {response.frames_in_memory} frames in memory, newest stamp {stamp:.1f} s)")
    return all_ok


def print_status(s: Any) -> None:
    parts = ", ".join(f"{p} {b / 1024:.0f} KiB" for p, b in zip(s.memory_parts, s.memory_bytes) if b)
    print(f"\nmemory_status: received {s.frames_received}, synced {s.frames_synced}, keyframes {s.keyframes}, "
          f"dropped {s.frames_dropped}, rejected {s.frames_rejected}, in memory {s.frames_in_memory},\n"
          f"  tokens {s.tokens}, chunk updates {s.chunk_updates}, memory {s.memory_bytes_total / 1024:.0f} KiB ({parts}),\n"
          f"  ingest {s.ingest_fps:.1f} frames/s, device {s.device}, model {s.model_id}, last error {s.last_error or '-'}")


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
    parser.add_argument("--frames", type=int, default=60, help=f"camera frames to stream ({FPS} Hz of stamps)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--preset", default="tiny", help="model preset (default: the embedded tiny model)")
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
    stream = make_stream(args.frames, args.seed)
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
            print(f"ingest: {len(stream.frames)} frames + poses over ROS ({len(stream.frames) / FPS:.1f} s of stamps)"
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
