"""The spatial memory as an explicit object: everything the stream has left behind.

Per TTT layer: fast weights (+ pre-norm accumulator, momentum, initial row norms), the pending
tokens of the next chunk update, the sliding-window KV of the last W positions, and the SP-conv
carry (the previous frame group's raw q/k/v and the frame group waiting for its look-ahead).
Per anchor layer: its full KV cache. Plus stream bookkeeping (frames, stamps, positions).
It can be cloned (ask() forks it), measured per part, digested, and saved/loaded atomically
(safetensors + a JSON header; memory_file.py reads them back, trusting nothing). Tensors only; no module holds hidden state between calls.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..kernels import FastWeightState
from ..kernels.fast_weight import DERIVED

STATE_FORMAT = "spatial_ttt_memory/2"  # /2: the anchor-KV budget fields
STATE_FORMAT_FAMILY = "spatial_ttt_memory/"  # every version's prefix: files of ours (a save may replace them)


@dataclass
class Unit:
    """A run of consecutive tokens travelling up the decoder: the chat prefix, one or more frame
    groups (each: timestamp text, vision start, visual tokens, vision end), or question/answer text."""

    hidden: torch.Tensor            # [n, d] residual stream entering the current layer
    position_ids: torch.Tensor      # [3, n] (t, h, w) rope positions
    start: int                      # global index of the first token
    video: torch.Tensor             # [n] bool: visual tokens
    hw: tuple[int, int] = (0, 0)    # merged grid (h, w) of every frame group's visual tokens
    segment: int = -1               # video segment of the frame groups (conv neighbours stay inside)
    deepstack: list[torch.Tensor] = field(default_factory=list)  # per early layer [n_video, d]
    group_starts: list[int] = field(default_factory=list)  # offset of each frame group's first token
    # [n_video] long: positions of `video`. Index ops instead of boolean masks keep the GPU queue
    # free of host synchronisation (a boolean mask index waits for the device).
    video_index: torch.Tensor | None = None
    # (cos, sin) [n, head_dim] of the text rotary embedding, computed at the first layer that needs
    # it and shared by all layers (they use one rotary module).
    rope: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def has_video(self) -> bool:
        return len(self.group_starts) > 0

    def __len__(self) -> int:
        return self.hidden.shape[0]


@dataclass
class TTTLayerState:
    fast: FastWeightState
    pending_k: torch.Tensor         # [H, Lp, D] keys after conv/SiLU/L2/RoPE (fp32, bf16 in bf16 mode)
    pending_v: torch.Tensor         # [H, Lp, D]
    pending_lr: torch.Tensor        # [H, Lp, 3] fp32
    pending_mu: torch.Tensor        # [H, Lp, 1] fp32
    window_k: torch.Tensor          # [Hkv, Lw, hd] RoPE'd keys of the last Lw <= W tokens
    window_v: torch.Tensor          # [Hkv, Lw, hd]
    tokens_seen: int = 0            # tokens this layer has processed (global index of the next one)
    updates: int = 0
    conv_prev: torch.Tensor | None = None   # [3, h*w, C] raw q', k', v' of the previous frame group
    conv_prev_segment: int = -1
    held: Unit | None = None        # frame group waiting for the next one (conv look-ahead)
    # decode_update_rule "official" only (REFERENCE_SPEC §6.4): the last C tokens' k, v, rates and
    # momentum coefficients (whether consumed by an update or not), and, on an ask's fork, the
    # global index where the prompt ends (the first decode token's index).
    tail_k: torch.Tensor | None = None
    tail_v: torch.Tensor | None = None
    tail_lr: torch.Tensor | None = None
    tail_mu: torch.Tensor | None = None
    prompt_end: int | None = None


GROWTH_STEP_TOKENS = 16384  # anchor buffers double up to this capacity, then grow by a quarter
# Capacities are multiples of this many tokens (a bounded memory's limit may be passed by less):
# the decode step's attention runs GEMMs with the capacity as a leading dimension, and an odd one
# (78,125 after 1.25x steps) loses cuBLAS's aligned kernels.
CAPACITY_ALIGN = 256


def grown_capacity(capacity: int) -> int:
    """The next capacity of an anchor buffer: doubling while small (few copies), then +25%, so
    that the unused headroom of a long stream's caches is at most a fifth of them instead of half
    (computed for the 2B model at 1024 frames, ~88k tokens and 2.42 GiB of anchor KV in use: 3.58 GiB
    of buffers when doubling, 2.67 GiB this way)."""
    if capacity < GROWTH_STEP_TOKENS:
        return max(2 * capacity, CAPACITY_ALIGN)
    return capacity + capacity // 4


@dataclass
class AnchorLayerState:
    k: torch.Tensor                 # [Hkv, capacity, hd] RoPE'd keys of every token; valid [:, :length]
    v: torch.Tensor                 # [Hkv, capacity, hd]
    length: int = 0
    tokens_seen: int = 0
    # Tokens dropped by the anchor-KV budget (anchor_budget.py): the cache holds the sink tokens
    # [0, sink) and the recent ones [sink + evicted, tokens_seen), at the rope positions they had.
    evicted: int = 0

    def reserve(self, end: int, limit: int = 0) -> None:
        """Room for tokens up to `end`: a new buffer (`grown_capacity`, amortised) when the current
        one is too small. Forks sharing the old buffer keep it; the used part is copied over. The rest is
        zeroed, not left uninitialised: the graph decode attends over the whole buffer with a mask,
        and a masked NaN still poisons the weighted sum (0 * NaN). `limit` > 0 (a bounded memory)
        caps the growth there, so the buffer settles at the budget plus headroom (rounded up to
        CAPACITY_ALIGN)."""
        if end <= self.k.shape[1]:
            return
        cap = grown_capacity(self.k.shape[1])
        cap = max(end, min(cap, limit) if limit > 0 else cap)
        cap = -(-cap // CAPACITY_ALIGN) * CAPACITY_ALIGN
        grown_k = self.k.new_zeros(self.k.shape[0], cap, self.k.shape[2])
        grown_v = self.v.new_zeros(self.v.shape[0], cap, self.v.shape[2])
        grown_k[:, :self.length], grown_v[:, :self.length] = self.k[:, :self.length], self.v[:, :self.length]
        self.k, self.v = grown_k, grown_v

    def trimmed(self) -> AnchorLayerState:
        return AnchorLayerState(k=self.k[:, :self.length], v=self.v[:, :self.length], length=self.length,
                                tokens_seen=self.tokens_seen, evicted=self.evicted)


@dataclass
class MemoryState:
    layers: list[TTTLayerState | AnchorLayerState]
    frames: int = 0                 # frames pushed (both frames of every pair)
    groups: int = 0                 # frame groups (pairs) fed into the decoder
    tokens: int = 0                 # tokens fed into the decoder
    next_position: int = 0          # next rope position id
    segment: int = 0                # current video segment (flush() starts a new one)
    first_stamp_s: float | None = None
    last_stamp_s: float | None = None
    pending_frames: list[torch.Tensor] = field(default_factory=list)  # [H, W, 3] uint8 not yet fed
    pending_stamps: list[float] = field(default_factory=list)
    # per pending frame its (x, y, yaw_deg) for the pose channel (config.pose_text), else None
    pending_poses: list[tuple[float, float, float] | None] = field(default_factory=list)
    group_starts: list[int] = field(default_factory=list)  # first token of each frame group not evicted everywhere
    evicted_groups: int = 0         # frame groups the anchor-KV budget dropped from every anchor layer
    evicted_tokens: int = 0         # their tokens

    # ------------------------------------------------------------ copying and measuring
    def clone(self) -> MemoryState:
        """A deep copy (anchor caches trimmed to their used length)."""
        return _map_tensors(self.trimmed(), lambda t: t.clone())

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the state holds, derived ones included (for memory accounting)."""
        found: list[torch.Tensor] = []
        _map_tensors(self, lambda t: found.append(t) or t)
        return found

    def fork(self) -> MemoryState:
        """A structural copy sharing tensors. Cheap; valid because the decoder never writes into a
        tensor region another state can read (fast weights and pending are replaced, anchor caches
        are only written past their length)."""
        return _map_tensors(self, lambda t: t)

    def trimmed(self) -> MemoryState:
        state = _map_tensors(self, lambda t: t)
        state.layers = [s.trimmed() if isinstance(s, AnchorLayerState) else s for s in state.layers]
        return state

    def updates(self) -> int:
        return sum(s.updates for s in self.layers if isinstance(s, TTTLayerState))

    def snapshot(self) -> MemoryState:
        """A host copy (trimmed) that shares nothing with this state: writing it to disk can run on
        another thread while this one keeps ingesting (anchor caches are compacted in place)."""
        return _map_tensors(self.trimmed(), lambda t: t.detach().to("cpu", copy=True))

    def storages(self) -> dict[int, int]:
        """{address: bytes} of the distinct storages behind the state's tensors (a slice stands for
        the whole tensor it keeps alive); two states share what they both list."""
        found: dict[int, int] = {}
        for t in self.tensors():
            storage = t.untyped_storage()
            found[storage.data_ptr()] = max(found.get(storage.data_ptr(), 0), storage.nbytes())
        return found

    def storage_bytes(self) -> int:
        """Bytes the state keeps allocated (`storages`). Equals the parts of `nbytes_by_part` (the
        anchor caches at their capacity) when no part pins more than itself."""
        return sum(self.storages().values())

    def anchor_capacity_bytes(self) -> int:
        """Bytes allocated for the anchor caches (used + headroom of the growing buffers)."""
        return sum(_nbytes(s.k, s.v) for s in self.layers if isinstance(s, AnchorLayerState))

    def nbytes_by_part(self) -> dict[str, int]:
        parts = dict.fromkeys(("fast_weights", "momentum", "row_norms", "pending", "window_kv", "conv_carry",
                               "anchor_kv", "frame_buffer"), 0)
        for s in self.layers:
            if isinstance(s, AnchorLayerState):
                parts["anchor_kv"] += _nbytes(s.k[:, :s.length], s.v[:, :s.length])
                continue
            parts["fast_weights"] += _nbytes(*s.fast.w, *(s.fast.w_main or ()), *(s.fast.w_low or ()))
            parts["momentum"] += _nbytes(*(s.fast.momentum or ()))
            parts["row_norms"] += _nbytes(*s.fast.norms)
            parts["pending"] += _nbytes(s.pending_k, s.pending_v, s.pending_lr, s.pending_mu,
                                        s.tail_k, s.tail_v, s.tail_lr, s.tail_mu)
            parts["window_kv"] += _nbytes(s.window_k, s.window_v)
            parts["conv_carry"] += _nbytes(s.conv_prev) + (_unit_nbytes(s.held) if s.held else 0)
        parts["frame_buffer"] = _nbytes(*self.pending_frames)
        return parts

    def digest(self) -> str:
        """SHA-256 over every tensor and counter: equal digests = identical memory."""
        flat, meta = flatten_state(self.trimmed())
        h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
        for name in sorted(flat):
            t = flat[name].contiguous().cpu()
            h.update(name.encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()


def _nbytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _unit_nbytes(unit: Unit) -> int:
    return _nbytes(unit.hidden, unit.position_ids, unit.video, unit.video_index, *unit.deepstack, *(unit.rope or ()))


def _map_tensors(obj: Any, fn: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, list):
        return [_map_tensors(o, fn) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_map_tensors(o, fn) for o in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return type(obj)(**{f.name: _map_tensors(getattr(obj, f.name), fn) for f in fields(obj)})
    return obj


# ---------------------------------------------------------------- serialisation
def stored_fields(obj: Any) -> list:
    """The dataclass fields a saved (and digested) state holds: not the derived ones (FastWeightState.w_low,
    the bf16 copies of its weights, recomputed when needed)."""
    return [f for f in fields(obj) if not f.metadata.get(DERIVED)]


def flatten_state(state: MemoryState) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors by dotted name, and the JSON-able rest (counters, shapes of optional parts)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj: Any, prefix: str) -> Any:
        if isinstance(obj, torch.Tensor):
            tensors[prefix] = obj
            return {"__tensor__": prefix}
        if obj is None or isinstance(obj, bool | int | float | str):
            return obj
        if isinstance(obj, list | tuple):
            return {"__seq__": type(obj).__name__, "items": [walk(o, f"{prefix}.{i}") for i, o in enumerate(obj)]}
        if hasattr(obj, "__dataclass_fields__"):
            return {"__type__": type(obj).__name__, **{f.name: walk(getattr(obj, f.name), f"{prefix}.{f.name}")
                                                       for f in stored_fields(obj)}}
        raise TypeError(f"cannot serialise {type(obj).__name__} at {prefix}")

    meta = walk(state, "state")
    return tensors, meta


def save_state(state: MemoryState, path: str | os.PathLike, header: dict[str, Any]) -> Path:
    """Atomic write: temp file in the same directory, fsync, rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, meta = flatten_state(state.trimmed())
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {"format": STATE_FORMAT, "header": json.dumps(header), "state": json.dumps(meta)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
