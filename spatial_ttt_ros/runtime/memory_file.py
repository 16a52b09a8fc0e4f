"""Reading a memory file without trusting it (the writer is state.save_state).

A memory file can come from anywhere a `load_memory` request points at. Everything in it is
checked against the engine that loads it before anything is used: the safetensors header (names,
dtypes and shapes, read before any tensor data, so a claimed huge tensor is refused without being
allocated), the JSON header and state description (every field's type, range and consistency with
the others: counters, stamps, the per-layer token chain, the conv wavefront's held groups, the
anchor caches and their eviction counts), then every tensor's values (finite, index ranges). The
new memory is built aside and returned; the caller swaps it in only on success. Any failure is a
ValueError naming the field (`state.layers[3].k`, `header.frames`, ...).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ..kernels import FastWeightState
from .config import SpatialTTTConfig
from .state import STATE_FORMAT, AnchorLayerState, MemoryState, TTTLayerState, Unit, stored_fields

MAX_FRAMES = 10**9          # 15 years of keyframes at 2 Hz
MAX_TOKENS = 10**12
MAX_STAMP_S = 1e11
MAX_PENDING_FRAMES = 2048
MAX_UNIT_TOKENS = 1 << 20
MAX_TEXT = 1000

_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.uint8: "U8",
           torch.int64: "I64", torch.bool: "BOOL"}


@dataclass(frozen=True)
class ModelShape:
    """What the loading engine's model fixes about a memory, beyond its empty state."""

    hidden: int          # decoder hidden size
    channels: int        # raw fast-input channels (heads x head_dim) of the conv carry
    head_dim: int        # rotary embedding width
    deepstack: int       # visual deepstack features per frame group
    dtype: torch.dtype   # model activations
    sink: int            # chat-prefix tokens (the attention sink)


def _cut(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _fail(where: str, message: str) -> ValueError:
    return ValueError(f"memory file field {where}: {message}")


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an integer, got {_cut(value)}")
    if not lo <= value <= hi:
        raise _fail(where, f"{value} is outside {lo}..{hi}")
    return value


def _stamp(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or abs(value) > MAX_STAMP_S:
        raise _fail(where, f"expected a finite stamp in seconds or null, got {_cut(value)}")
    return float(value)


def _no_constants(name: str) -> None:
    raise ValueError(f"non-finite number {name} in the memory file's JSON")


def _json(text: Any, where: str) -> Any:
    if not isinstance(text, str):
        raise _fail(where, "missing")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise _fail(where, f"not valid JSON ({_cut(str(exc))})") from None


def _obj(node: Any, cls: type, where: str) -> dict[str, Any]:
    names = {f.name for f in stored_fields(cls)}
    if not isinstance(node, dict) or node.get("__type__") != cls.__name__:
        found = node.get("__type__") if isinstance(node, dict) else type(node).__name__
        raise _fail(where, f"expected a {cls.__name__}, found {_cut(found)}")
    if cls is MemoryState and "pending_poses" not in node:  # files from before the pose channel
        node = {**node, "pending_poses": None}
    keys = set(node) - {"__type__"}
    if keys != names:
        raise _fail(where, f"{cls.__name__} fields {sorted(map(str, keys))[:20]}, expected {sorted(names)}")
    return node


def _seq(node: Any, kind: str, where: str, max_len: int) -> list[Any]:
    if not isinstance(node, dict) or set(node) != {"__seq__", "items"} or node["__seq__"] != kind \
            or not isinstance(node["items"], list):
        raise _fail(where, f"expected a {kind}")
    if len(node["items"]) > max_len:
        raise _fail(where, f"{len(node['items'])} items, at most {max_len} expected")
    return node["items"]


def _ints(node: Any, where: str, lo: int, hi: int, max_len: int) -> list[int]:
    items = [_int(v, f"{where}[{i}]", lo, hi) for i, v in enumerate(_seq(node, "list", where, max_len))]
    if any(b <= a for a, b in zip(items, items[1:])):
        raise _fail(where, "must be strictly increasing")
    return items


class _Tensors:
    """The file's tensors, checked by header (name, dtype, shape) before any data is read."""

    def __init__(self, handle: Any, device: torch.device) -> None:
        self.handle, self.device = handle, device
        self.meta: dict[str, tuple[tuple[int, ...], str]] = {}
        for name in handle.keys():  # noqa: SIM118 - a safe_open handle, not a dict
            part = handle.get_slice(name)
            self.meta[name] = (tuple(int(d) for d in part.get_shape()), str(part.get_dtype()))
        self.used: set[str] = set()

    def get(self, node: Any, where: str, shape: tuple[int | None, ...], dtypes: tuple[torch.dtype, ...],
            finite: bool = True) -> torch.Tensor:
        """The tensor `node` refers to; None in `shape` is any size (the caller checks it after)."""
        if not isinstance(node, dict) or set(node) != {"__tensor__"} or not isinstance(node["__tensor__"], str):
            raise _fail(where, "expected a tensor reference")
        name = node["__tensor__"]
        if name not in self.meta or name in self.used:
            raise _fail(where, f"tensor {_cut(name)} is {'missing' if name not in self.meta else 'used twice'}")
        got_shape, got_dtype = self.meta[name]
        if len(got_shape) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got_shape)):
            expected = "x".join("*" if e is None else str(e) for e in shape)
            raise _fail(where, f"shape {list(got_shape)}, expected [{expected}]")
        allowed = [_DTYPES[d] for d in dtypes]
        if got_dtype not in allowed:
            raise _fail(where, f"dtype {got_dtype}, expected {' or '.join(allowed)}")
        self.used.add(name)
        tensor = self.handle.get_tensor(name)
        if finite and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _fail(where, "holds NaN or infinite values")
        return tensor.to(self.device)


def load_memory_file(path: Any, template: MemoryState, config: SpatialTTTConfig, model: ModelShape,
                     device: torch.device) -> MemoryState:
    """A memory from `path`, checked whole against the loading engine (`template`: its empty state)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"memory file not found: {_cut(str(path), 300)}")
    try:
        handle_cm = safe_open(str(path), framework="pt", device="cpu")
        handle = handle_cm.__enter__()
    except Exception as exc:  # noqa: BLE001 - whatever the parser says: not a memory file
        raise ValueError(f"not a valid memory file {_cut(str(path), 300)}: {_cut(str(exc))}") from None
    try:
        metadata = handle.metadata() or {}
        if metadata.get("format") != STATE_FORMAT:
            raise _fail("format", f"{_cut(metadata.get('format'))}, expected {STATE_FORMAT!r}")
        header = _json(metadata.get("header"), "header")
        meta = _json(metadata.get("state"), "state")
        _check_config(header, config)
        tensors = _Tensors(handle, device)
        state = _Reader(tensors, template, config, model).state(meta)
        unused = sorted(set(tensors.meta) - tensors.used)
        if unused:
            raise _fail("tensors", f"{len(unused)} not part of the memory, e.g. {_cut(unused[0])}")
        if _int(header["frames"], "header.frames", 0, MAX_FRAMES) != state.frames:
            raise _fail("header.frames", f"{header['frames']} but the state holds {state.frames} frames")
        if _stamp(header["last_stamp_s"], "header.last_stamp_s") != state.last_stamp_s:
            raise _fail("header.last_stamp_s", f"{_cut(header['last_stamp_s'])} but the state's is {state.last_stamp_s}")
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - a reader error on a damaged file
        raise ValueError(f"not a valid memory file {_cut(str(path), 300)}: {type(exc).__name__}: {_cut(str(exc))}") from None
    finally:
        handle_cm.__exit__(None, None, None)
    return state


def _check_config(header: Any, config: SpatialTTTConfig) -> None:
    if not isinstance(header, dict) or set(header) != {"config", "model_id", "frames", "last_stamp_s"}:
        raise _fail("header", "expected the keys config, model_id, frames, last_stamp_s")
    mine, theirs = config.state_signature(), header["config"]
    if not isinstance(theirs, dict):
        raise _fail("header.config", "expected a mapping")
    theirs = {"pose_text": False, **theirs}  # files from before the pose channel: it was off
    diff = sorted(str(k) for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        raise ValueError(f"memory file was made with another config (differs in {_cut(diff)})")
    if not isinstance(header["model_id"], str) or len(header["model_id"]) > MAX_TEXT:
        raise _fail("header.model_id", "expected a short string")


class _Reader:
    def __init__(self, tensors: _Tensors, template: MemoryState, config: SpatialTTTConfig, model: ModelShape) -> None:
        self.t, self.template, self.cfg, self.m = tensors, template, config, model
        self.hw = (config.frame_height // 32, config.frame_width // 32)

    def state(self, meta: Any) -> MemoryState:
        node = _obj(meta, MemoryState, "state")
        frames = _int(node["frames"], "state.frames", 0, MAX_FRAMES)
        groups = _int(node["groups"], "state.groups", 0, MAX_FRAMES)
        tokens = _int(node["tokens"], "state.tokens", 0, MAX_TOKENS)
        next_position = _int(node["next_position"], "state.next_position", 0, tokens)
        segment = _int(node["segment"], "state.segment", 0, MAX_FRAMES)
        first, last = _stamp(node["first_stamp_s"], "state.first_stamp_s"), _stamp(node["last_stamp_s"], "state.last_stamp_s")
        if (frames == 0) != (first is None) or (frames == 0) != (last is None):
            raise _fail("state.last_stamp_s", f"stamps {first}, {last} do not fit {frames} frames")
        if first is not None and last < first:
            raise _fail("state.last_stamp_s", f"{last} is before the first stamp {first}")
        raw_frames = _seq(node["pending_frames"], "list", "state.pending_frames", MAX_PENDING_FRAMES)
        pending = [self.t.get(f, f"state.pending_frames[{i}]", (self.cfg.frame_height, self.cfg.frame_width, 3),
                              (torch.uint8,)) for i, f in enumerate(raw_frames)]
        stamps = [_stamp(s, f"state.pending_stamps[{i}]") for i, s in
                  enumerate(_seq(node["pending_stamps"], "list", "state.pending_stamps", MAX_PENDING_FRAMES))]
        if len(stamps) != len(pending) or any(s is None for s in stamps):
            raise _fail("state.pending_stamps", f"{len(stamps)} stamps for {len(pending)} pending frames")
        poses = self._pending_poses(node["pending_poses"], len(pending))
        if stamps and (stamps[0] < first or stamps[-1] != last or any(b < a for a, b in zip(stamps, stamps[1:]))):
            raise _fail("state.pending_stamps", f"must be non-decreasing from {first} and end at {last}")
        if not groups + len(pending) <= frames <= 2 * groups + len(pending):
            raise _fail("state.frames", f"{frames} frames do not fit {groups} frame groups + {len(pending)} pending")
        if groups and tokens < self.m.sink + groups:
            raise _fail("state.tokens", f"{tokens} tokens cannot hold {groups} frame groups")
        evicted_groups = _int(node["evicted_groups"], "state.evicted_groups", 0, groups)
        evicted_tokens = _int(node["evicted_tokens"], "state.evicted_tokens", 0, tokens)
        starts = _ints(node["group_starts"], "state.group_starts", self.m.sink, max(self.m.sink, tokens - 1), groups)
        if evicted_groups + len(starts) != groups:
            raise _fail("state.group_starts", f"{len(starts)} groups listed + {evicted_groups} evicted != {groups}")
        if starts and starts[0] != self.m.sink + evicted_tokens:
            raise _fail("state.group_starts", f"first kept group at {starts[0]}, expected {self.m.sink + evicted_tokens}")
        state = MemoryState(layers=[], frames=frames, groups=groups, tokens=tokens, next_position=next_position,
                            segment=segment, first_stamp_s=first, last_stamp_s=last, pending_frames=pending,
                            pending_stamps=stamps, pending_poses=poses, group_starts=starts, evicted_groups=evicted_groups,
                            evicted_tokens=evicted_tokens)
        layers = _seq(node["layers"], "list", "state.layers", len(self.template.layers))
        if len(layers) != len(self.template.layers):
            raise _fail("state.layers", f"{len(layers)} layers, the model has {len(self.template.layers)}")
        above = tokens  # tokens the layer below has passed up (state.tokens: fed at the bottom)
        for i, (node_i, mine) in enumerate(zip(layers, self.template.layers)):
            where = f"state.layers[{i}]"
            if isinstance(mine, AnchorLayerState):
                layer = self.anchor(node_i, mine, where, state)
                if layer.tokens_seen != above:
                    raise _fail(f"{where}.tokens_seen", f"{layer.tokens_seen}, the layer below passed up {above}")
            else:
                layer = self.ttt(node_i, mine, where, i, state)
                held = len(layer.held) if layer.held is not None else 0
                if layer.tokens_seen + held != above:
                    raise _fail(f"{where}.tokens_seen", f"{layer.tokens_seen} + {held} held != {above} passed up")
            above = layer.tokens_seen
            state.layers.append(layer)
        return state

    def _pending_poses(self, node: Any, n: int) -> list[tuple[float, float, float] | None]:
        """Per pending frame (x, y, yaw_deg) or null; a file from before the pose channel has none."""
        where = "state.pending_poses"
        if node is None:
            raw: list[Any] = [None] * n
        else:
            raw = _seq(node, "list", where, MAX_PENDING_FRAMES)
        if len(raw) != n:
            raise _fail(where, f"{len(raw)} poses for {n} pending frames")
        out: list[tuple[float, float, float] | None] = []
        for i, p in enumerate(raw):
            if p is None:
                if self.cfg.pose_text:
                    raise _fail(f"{where}[{i}]", "a pose (config.pose_text is on)")
                out.append(None)
                continue
            vals = _seq(p, "tuple", f"{where}[{i}]", 3)
            nums = [_stamp(v, f"{where}[{i}]") for v in vals]
            if len(nums) != 3 or any(v is None for v in nums):
                raise _fail(f"{where}[{i}]", "expected (x, y, yaw_deg)")
            out.append((nums[0], nums[1], nums[2]))
        return out

    def anchor(self, node: Any, mine: AnchorLayerState, where: str, state: MemoryState) -> AnchorLayerState:
        node = _obj(node, AnchorLayerState, where)
        length = _int(node["length"], f"{where}.length", 0, MAX_TOKENS)
        seen = _int(node["tokens_seen"], f"{where}.tokens_seen", 0, state.tokens)
        evicted = _int(node["evicted"], f"{where}.evicted", 0, state.tokens)
        if evicted != state.evicted_tokens or length != seen - evicted or (evicted and length < self.m.sink):
            raise _fail(f"{where}.length", f"{length} tokens held, {seen} seen, {evicted} evicted "
                                           f"({state.evicted_tokens} in the state) do not fit together")
        shape = (mine.k.shape[0], length, mine.k.shape[2])
        k = self.t.get(node["k"], f"{where}.k", shape, (mine.k.dtype,))
        v = self.t.get(node["v"], f"{where}.v", shape, (mine.v.dtype,))
        return AnchorLayerState(k=k, v=v, length=length, tokens_seen=seen, evicted=evicted)

    def ttt(self, node: Any, mine: TTTLayerState, where: str, index: int, state: MemoryState) -> TTTLayerState:
        node = _obj(node, TTTLayerState, where)
        cfg = self.cfg
        seen = _int(node["tokens_seen"], f"{where}.tokens_seen", 0, state.tokens)
        updates = _int(node["updates"], f"{where}.updates", 0, seen // cfg.chunk_size)
        lp, lw = seen - updates * cfg.chunk_size, min(seen, cfg.window_size)
        if lp >= cfg.chunk_size:
            raise _fail(f"{where}.updates", f"{updates} chunk updates after {seen} tokens (chunk {cfg.chunk_size})")
        pk = mine.pending_k
        h, d = pk.shape[0], pk.shape[2]
        pending = {name: self.t.get(node[name], f"{where}.{name}", (h, lp, width), (dtype,))
                   for name, width, dtype in (("pending_k", d, pk.dtype), ("pending_v", d, pk.dtype),
                                              ("pending_lr", 3, torch.float32), ("pending_mu", 1, torch.float32))}
        wk = mine.window_k
        window = {name: self.t.get(node[name], f"{where}.{name}", (wk.shape[0], lw, wk.shape[2]), (wk.dtype,))
                  for name in ("window_k", "window_v")}
        fast = self.fast(node["fast"], mine.fast, f"{where}.fast")
        conv_prev = None
        if node["conv_prev"] is not None:
            if not cfg.use_conv:
                raise _fail(f"{where}.conv_prev", "set, but the config has no SP conv")
            conv_prev = self.t.get(node["conv_prev"], f"{where}.conv_prev", (3, self.hw[0] * self.hw[1], self.m.channels),
                                   (self.m.dtype, torch.float32))
        conv_segment = _int(node["conv_prev_segment"], f"{where}.conv_prev_segment", -1, state.segment)
        held = None
        if node["held"] is not None:
            if not cfg.use_conv:
                raise _fail(f"{where}.held", "set, but the config has no SP conv")
            held = self.unit(node["held"], f"{where}.held", index, seen, state)
        return TTTLayerState(fast=fast, **pending, **window, tokens_seen=seen, updates=updates, conv_prev=conv_prev,
                             conv_prev_segment=conv_segment, held=held)

    def fast(self, node: Any, mine: FastWeightState, where: str) -> FastWeightState:
        node = _obj(node, FastWeightState, where)
        out = {}
        for f in stored_fields(FastWeightState):
            group = getattr(mine, f.name)
            if group is None:
                if node[f.name] is not None:
                    raise _fail(f"{where}.{f.name}", "set, but this config has none")
                out[f.name] = None
                continue
            items = _seq(node[f.name], "tuple", f"{where}.{f.name}", len(group))
            if len(items) != len(group):
                raise _fail(f"{where}.{f.name}", f"{len(items)} tensors, expected {len(group)}")
            out[f.name] = tuple(self.t.get(n, f"{where}.{f.name}[{j}]", tuple(t.shape), (t.dtype,))
                                for j, (n, t) in enumerate(zip(items, group)))
        return FastWeightState(**out)

    def unit(self, node: Any, where: str, index: int, start: int, state: MemoryState) -> Unit:
        """A frame group a conv layer holds for its look-ahead: starts where the layer stopped."""
        node = _obj(node, Unit, where)
        m, dt = self.m, (self.m.dtype,)
        hidden = self.t.get(node["hidden"], f"{where}.hidden", (None, m.hidden), dt)
        n = hidden.shape[0]
        if not 1 <= n <= MAX_UNIT_TOKENS:
            raise _fail(f"{where}.hidden", f"{n} tokens")
        if _int(node["start"], f"{where}.start", 0, state.tokens) != start:
            raise _fail(f"{where}.start", f"{node['start']}, the layer stopped at token {start}")
        hw = _seq(node["hw"], "tuple", f"{where}.hw", 2)
        if [_int(x, f"{where}.hw", 0, 1 << 16) for x in hw] != list(self.hw):
            raise _fail(f"{where}.hw", f"{_cut(hw)}, the frame size gives {list(self.hw)}")
        segment = _int(node["segment"], f"{where}.segment", 0, state.segment)
        starts = _ints(node["group_starts"], f"{where}.group_starts", 0, n - 1, MAX_UNIT_TOKENS)
        if not starts or starts[0] != 0:
            raise _fail(f"{where}.group_starts", "a held unit is frame groups from its first token")
        n_video = len(starts) * self.hw[0] * self.hw[1]
        positions = self.t.get(node["position_ids"], f"{where}.position_ids", (3, n), (torch.int64,))
        if n and not bool(((positions >= 0) & (positions < state.next_position)).all()):
            raise _fail(f"{where}.position_ids", f"outside 0..{state.next_position - 1}")
        video = self.t.get(node["video"], f"{where}.video", (n,), (torch.bool,))
        video_index = self.t.get(node["video_index"], f"{where}.video_index", (n_video,), (torch.int64,))
        if int(video.sum()) != n_video or (n_video and not (bool(((video_index >= 0) & (video_index < n)).all())
                                                             and bool(video[video_index].all())
                                                             and bool((video_index[1:] > video_index[:-1]).all()))):
            raise _fail(f"{where}.video_index", "does not list the unit's visual tokens")
        count = m.deepstack if index < m.deepstack else 0
        items = _seq(node["deepstack"], "list", f"{where}.deepstack", count)
        if len(items) != count:
            raise _fail(f"{where}.deepstack", f"{len(items)} features, expected {count} at layer {index}")
        deepstack = [self.t.get(x, f"{where}.deepstack[{j}]", (n_video, m.hidden), dt) for j, x in enumerate(items)]
        rope = None
        if node["rope"] is not None:
            pair = _seq(node["rope"], "tuple", f"{where}.rope", 2)
            if len(pair) != 2:
                raise _fail(f"{where}.rope", "expected (cos, sin)")
            rope = tuple(self.t.get(x, f"{where}.rope[{j}]", (n, m.head_dim), dt) for j, x in enumerate(pair))
        return Unit(hidden=hidden, position_ids=positions, start=start, video=video, hw=self.hw, segment=segment,
                    deepstack=deepstack, group_starts=starts, video_index=video_index, rope=rope)
