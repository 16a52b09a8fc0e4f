"""load_memory with crafted files through the node: success=false naming the field, the live memory
and ingest untouched, and the next query answered (issue 14: such files used to load and the next
query killed the node, or stopped ingest)."""

from __future__ import annotations

import json

import pytest
import rclpy
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from spatial_ttt_ros.ros.hosting import hosted_perception_node
from spatial_ttt_ros.srv import MemoryFile, SpatialQuery

pytestmark = pytest.mark.ros


def _craft(src: str, dst: str, header_change: dict, state_change: dict) -> str:
    tensors = load_file(src)
    with safe_open(src, framework="pt") as handle:
        metadata = dict(handle.metadata())
    header, state = json.loads(metadata["header"]), json.loads(metadata["state"])
    header.update(header_change)
    state.update(state_change)
    metadata.update(header=json.dumps(header), state=json.dumps(state))
    save_file(tensors, dst, metadata=metadata)
    return dst


def test_crafted_memory_files_are_refused_and_the_node_goes_on(helpers, tmp_path):
    context = rclpy.context.Context()
    rclpy.init(context=context)
    client = rclpy.create_node("memory_file_client", context=context)
    try:
        params = {"keyframe_max_rate_hz": 0.0, "max_new_tokens": 4, "memory_dir": str(tmp_path)}
        with hosted_perception_node(params) as node:
            rig = helpers.Rig(client, node)
            for i in range(6):
                rig.publish(100.0 + i, position=(0.5 * i, 0.0, 0.0))
            frames = rig.wait_idle().worker.frames_in_memory
            saved = helpers.call(client, MemoryFile, "/save_memory", MemoryFile.Request(path="good.safetensors"))
            good = str(tmp_path / "good.safetensors")
            assert saved.success, saved.message
            cases = {"frames_negative": ({"frames": -5}, {}, "header.frames"),
                     "stamp_nan": ({"last_stamp_s": "NaN"}, {}, "header.last_stamp_s"),
                     "frames_many": ({}, {"frames": "many"}, "state.frames"),
                     "frames_2_40": ({"frames": 2**40}, {"frames": 2**40}, "state.frames"),
                     "pending_malformed": ({}, {"pending_stamps": {"__seq__": "list", "items": ["x"]}},
                                           "state.pending_stamps")}
            for name, (header, state, field) in cases.items():
                _craft(good, str(tmp_path / f"{name}.safetensors"), header, state)
                response = helpers.call(client, MemoryFile, "/load_memory", MemoryFile.Request(path=f"{name}.safetensors"))
                assert not response.success and field in response.message, (name, response.message)
                assert response.frames_in_memory == frames
            answer = helpers.call(client, SpatialQuery, "/spatial_query", SpatialQuery.Request(kind="count", objects=["chair"]))
            assert answer.success and answer.frames_in_memory == frames, answer.message
            rig.publish(200.0, position=(50.0, 0.0, 0.0))  # ingest goes on
            assert rig.wait_idle().worker.frames_in_memory == frames + 1
    finally:
        client.destroy_node()
        rclpy.shutdown(context=context)
