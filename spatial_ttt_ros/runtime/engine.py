"""The streaming engine: push camera frames one at a time, ask questions from the memory.

    engine = StreamingEngine.from_preset("tiny")
    engine.push_frame(rgb_uint8, stamp_s=12.3)
    answer = engine.ask("How many chairs are in this room?")

Frames are paired (temporal patch 2), resized to the model's frame size and laid out exactly as
the HF Qwen3-VL processor lays out the same video (tokens.py). Cost per frame is constant except
for the anchor layers' KV cache, which `anchor_kv_budget_tokens` bounds (anchor_budget.py). `ask` forks the memory, finishes the conv wavefront on the fork,
prefills the question and decodes greedily; the live memory is untouched. Not thread-safe: one
worker owns an engine.

Decode-time fast-weight updates follow the block-causal rule: answer tokens join the pending
chunk and an update happens only when it reaches C tokens. The reference implementation instead
updates on the first decode step with the last C prompt tokens, re-using tokens the last prefill
update already consumed (REFERENCE_SPEC §6.4, §10.3); for answers of <= 16 tokens the reference
therefore produces tokens 2..16 from once-more-updated weights, this engine does not.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import anchor_budget
from .config import SpatialTTTConfig, load_config
from .decode_graph import StaticDecode, resolve_decode_mode
from .memory_file import ModelShape, load_memory_file
from .model import build_model, load_checkpoint, resolve_device
from .state import AnchorLayerState, MemoryState, TTTLayerState, Unit, save_state
from .streaming import Decoder
from .tokens import (
    LONGEST_POSE,
    ChatLayout,
    check_frame,
    group_text,
    patchify_pairs,
    pose_xy_yaw,
    resize_frame,
)
from .ttt_layer import TTTAttention

MAX_QUESTION_CHARS = 8000


@dataclass(frozen=True)
class Answer:
    text: str
    token_ids: list[int]
    frames_seen: int               # frames in memory when asked
    last_stamp_s: float | None     # stamp of the newest frame in memory
    prefill_s: float
    decode_s: float
    total_s: float
    logits: torch.Tensor | None = None  # [len(token_ids), vocab] fp32 when ask(..., return_logits=True)
    decode_path: str = "eager"     # how tokens 2.. were decoded: "eager", "static" or "graph" (decode_graph.py)
    question_path: str = "eager"   # how the question and first token ran: the same three


@dataclass
class EngineCounters:
    frames: int
    tokens: int
    updates: int
    bytes_by_part: dict[str, int]
    last_stamp_s: float | None
    anchor_budget_tokens: int = 0      # config anchor_kv_budget_tokens (0 = unbounded)
    anchor_tokens: int = 0             # tokens held by the fullest anchor layer (budget in use)
    evicted_tokens: int = 0            # tokens evicted from the anchor layers by the budget
    evicted_groups: int = 0            # whole frame groups evicted
    anchor_capacity_bytes: int = 0     # bytes allocated for the anchor caches (used + headroom)


@dataclass(frozen=True)
class Snapshot:
    """A host copy of the memory and its file header (engine.snapshot()); `write` is atomic and
    touches no engine state, so it can run on another thread while ingest goes on."""

    state: MemoryState
    header: dict

    def write(self, path: str | os.PathLike) -> None:
        save_state(self.state, path, self.header)


class StreamingEngine:
    def __init__(self, config: SpatialTTTConfig, model: torch.nn.Module, tokenizer: object, *,
                 model_id: str | None = None) -> None:
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.model_id = model_id or config.name
        self.layout = ChatLayout.from_tokenizer(tokenizer, config.system_prompt)
        hw = (config.frame_height // 32) * (config.frame_width // 32)
        widest = group_text(0.0, 2e6, 0.0, LONGEST_POSE if config.pose_text else None)
        anchor_budget.check_budget(config.anchor_kv_budget_tokens, len(self.layout.prefix),
                                   hw + 2 + len(tokenizer.encode(widest, add_special_tokens=False)))
        self.decoder = Decoder(model, config)
        self.state = self.decoder.new_state()
        # A fork of `state` with the conv wavefront and pending frames finished (see prepare());
        # dropped by anything that changes `state`.
        self._prepared: MemoryState | None = None
        mode = resolve_decode_mode(config.decode_graph, self.device)
        if not config.ttt_updates or config.anchor_window_only or config.decode_update_rule != "block":
            mode = "off"  # the static decode step implements the product's rules only
        self._static = None if mode == "off" else StaticDecode(self.decoder, mode)

    @classmethod
    def from_preset(cls, preset: str = "tiny", *, checkpoint: str | None = None, base_model: str | None = None,
                    device: str = "auto", overrides: dict | None = None) -> StreamingEngine:
        changes = dict(overrides or {})
        if base_model:
            changes["base_model"] = base_model
        config = load_config(preset, **changes)
        dev = resolve_device(device)
        model, tokenizer = build_model(config, dev)
        model_id = config.name
        if checkpoint:
            load_checkpoint(model, checkpoint)
            model_id = f"{config.name}:{os.path.basename(os.path.normpath(checkpoint))}"
        elif config.weights:  # the preset's own trained weights (models/<name>/model.safetensors)
            load_checkpoint(model, config.weights)
            model_id = f"{config.name}:{os.path.basename(config.weights)}"
        return cls(config, model, tokenizer, model_id=model_id)

    # ------------------------------------------------------------ ingest
    def push_frame(self, image: np.ndarray, stamp_s: float, pose: np.ndarray | None = None) -> None:
        """Add one HxWx3 uint8 RGB frame taken at `stamp_s` (seconds, non-decreasing).

        `pose` (optional camera pose of the optical frame in the map frame, 4x4 or 7 = xyz +
        quaternion xyzw) is validated; with config.pose_text it is required and its (x, y, yaw)
        enters the frame group's timestamp line (tokens.group_text); otherwise the model is
        vision-only. Bad input raises ValueError and leaves the memory unchanged.
        """
        check_frame(image)
        if not isinstance(stamp_s, int | float) or not math.isfinite(stamp_s):
            raise ValueError(f"stamp_s must be a finite number of seconds, got {stamp_s!r}")
        last = self.state.last_stamp_s
        if last is not None and stamp_s < last:
            raise ValueError(f"stamp_s went backwards: {stamp_s} < previous {last}")
        pose2d = None
        if pose is not None:
            pose = np.asarray(pose, dtype=np.float64)
            if pose.shape not in ((4, 4), (7,)) or not np.all(np.isfinite(pose)):
                raise ValueError(f"pose must be a finite 4x4 matrix or 7-vector, got shape {pose.shape}")
            if self.config.pose_text:
                pose2d = pose_xy_yaw(pose)
        elif self.config.pose_text:
            raise ValueError("config.pose_text is on: every frame needs its camera pose (4x4 or x y z qx qy qz qw), "
                             "got none")
        frame = torch.from_numpy(resize_frame(image, self.config.frame_height, self.config.frame_width))
        self._prepared = None
        state = self.state
        if state.first_stamp_s is None:
            state.first_stamp_s = float(stamp_s)
        state.frames += 1
        state.last_stamp_s = float(stamp_s)
        state.pending_frames.append(frame)
        state.pending_stamps.append(float(stamp_s))
        state.pending_poses.append(pose2d)
        if len(state.pending_frames) >= 2 * self.config.ingest_batch_groups:
            self.decoder.run(state, self._take_pending(state))
            self._enforce_budget()

    def flush(self) -> None:
        """End the current video segment: pair a lone frame with itself (as the processor pads odd
        frame counts), finish the conv wavefront with replicate padding, and start a new segment.
        Frames pushed later continue the memory; their conv does not look across the boundary."""
        self._prepared = None
        state = self.state
        self.decoder.run(state, self._take_pending(state), drain=True)
        state.segment += 1
        self._enforce_budget()

    def _enforce_budget(self) -> None:
        """Evict old frame groups from the live memory's anchor caches beyond the budget."""
        anchor_budget.enforce(self.state, len(self.layout.prefix), self.config.anchor_kv_budget_tokens)

    def reset(self) -> None:
        self._prepared = None
        self.state = self.decoder.new_state()

    @torch.no_grad()
    def prepare(self) -> bool:
        """Do now the part of the next ask() that does not depend on the question. Meant for idle
        time (the perception node's worker calls it when its queue is empty); an ask() before the
        memory changes then runs only its question. Two steps:

        * the frame pairs waiting for their batch (ingest_batch_groups > 1) enter the memory itself,
          as the next batch would have fed them (identical results): work done once, where a fork
          would redo it after the next frames;
        * on a kept fork, what only a question needs: a lone last frame paired with itself and the
          frame groups the conv layers hold back (up to one per conv layer) finished as the end of
          the video. The fork shares the memory's tensors except those its few tokens change (its
          windows and pending blocks; its fast weights too when those tokens close a chunk).

        False when there is nothing to do (no frames, or already prepared)."""
        if self.state.frames == 0 or self._prepared is not None:
            return False
        units = self._take_pending(self.state, pairs_only=True)
        if units:
            self.decoder.run(self.state, units)
            self._enforce_budget()
        fork = self.state.fork()
        self._run_fork(fork, self._take_pending(fork), drain=True)
        self._prepared = fork
        return True

    @property
    def prepared(self) -> bool:
        """True while a prepare()d fork matches the memory."""
        return self._prepared is not None

    # ------------------------------------------------------------ questions
    @torch.no_grad()
    def ask(self, question: str, max_new_tokens: int | None = None, *, return_logits: bool = False) -> Answer:
        """Answer `question` (the user text after the video) from a fork of the memory."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"question must be non-empty text, got {question!r}")
        if len(question) > MAX_QUESTION_CHARS:
            raise ValueError(f"question is {len(question)} characters, the limit is {MAX_QUESTION_CHARS}")
        max_new = self.config.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        if not 1 <= max_new <= 4096:
            raise ValueError(f"max_new_tokens must be in 1..4096, got {max_new_tokens!r}")
        if self.state.frames == 0:
            raise ValueError("no frames in memory yet: push frames before asking")
        t0 = time.perf_counter()
        fork = self.state.fork() if self._prepared is None else self._prepared.fork()
        units = self._take_pending(fork)
        ids = self.tokenizer.encode(question, add_special_tokens=False) + list(self.layout.suffix)
        static, question_path, path = self._static, "eager", "eager"
        if static is not None and static.question_bucket(len(ids)) is not None \
                and static.fits_at(fork.tokens, len(ids) + max_new - 1):
            # The question and the answer over static buffers (CUDA graph replays on GPUs), after
            # the video is finished as prepare() does (fits_at: no update falls among them then).
            if self._prepared is None:
                self._run_fork(fork, units, drain=True)
            before = _anchor_buffers(fork)
            first_logits, first = static.begin_question(fork, ids, max_new - 1)
            self._adopt(fork, before)
            logits, token, question_path = [first_logits.clone()], int(first), static.mode
        if question_path == "eager":
            units.append(self._text_unit(fork, ids))
            if self.config.decode_update_rule == "official":
                for st in fork.layers:
                    if isinstance(st, TTTLayerState):
                        st.prompt_end = fork.tokens
            top = self._run_fork(fork, units, drain=True)
            logits = [self.decoder.logits(top[-1])]
            token = int(logits[-1].argmax())
        t1 = time.perf_counter()
        tokens = [token]
        if question_path != "eager" and token != self.layout.eos and max_new > 1:
            path = static.mode  # the question pass loaded the buffers for these steps
        elif token != self.layout.eos and max_new > 1 and static is not None and static.fits(fork, max_new - 1):
            # Static buffers (one CUDA graph replay per token on GPUs): decode_graph.py.
            path = static.mode
            before = _anchor_buffers(fork)
            static.begin(fork, token, max_new - 1)
            self._adopt(fork, before)
        if path != "eager":
            while token != self.layout.eos and len(tokens) < max_new:
                step_logits, next_token = static.step()
                if return_logits:
                    logits.append(step_logits.clone())
                token = int(next_token)
                tokens.append(token)
        while token != self.layout.eos and len(tokens) < max_new:
            top = self._run_fork(fork, [self._text_unit(fork, [token])])
            logits.append(self.decoder.logits(top[-1]))
            token = int(logits[-1].argmax())
            tokens.append(token)
        t2 = time.perf_counter()
        text = self.tokenizer.decode([t for t in tokens if t != self.layout.eos], skip_special_tokens=True)
        return Answer(text=text.strip(), token_ids=tokens, frames_seen=self.state.frames,
                      last_stamp_s=self.state.last_stamp_s, prefill_s=t1 - t0, decode_s=t2 - t1, total_s=t2 - t0,
                      logits=torch.stack(logits) if return_logits else None, decode_path=path,
                      question_path=question_path)

    def _run_fork(self, fork: MemoryState, units: list[Unit], drain: bool = False) -> list[Unit]:
        """decoder.run on a fork of the memory, handing grown anchor caches back (`_adopt`)."""
        before = _anchor_buffers(fork)
        top = self.decoder.run(fork, units, drain=drain)
        self._adopt(fork, before)
        return top

    def _adopt(self, fork: MemoryState, before: list[tuple[int, torch.Tensor]]) -> None:
        """An anchor cache the fork had to grow (a new, larger buffer) is handed to the memory and
        the prepared fork when they still share the old one: they read only the part copied over,
        and the next fork then finds the room instead of copying the whole cache again (and the
        decode graph keeps its buffers)."""
        for i, old in before:
            grown = fork.layers[i]
            if grown.k is old:
                continue
            for other in (self.state, self._prepared):
                if other is not None and other.layers[i].k is old:
                    other.layers[i].k, other.layers[i].v = grown.k, grown.v

    # ------------------------------------------------------------ persistence
    def snapshot(self) -> Snapshot:
        """The memory as a host copy plus its file header, sharing nothing with the live memory:
        take it on the engine's thread (a copy, fast), write it anywhere (`Snapshot.write`)."""
        header = {"config": self.config.state_signature(), "model_id": self.model_id,
                  "frames": self.state.frames, "last_stamp_s": self.state.last_stamp_s}
        return Snapshot(state=self.state.snapshot(), header=header)

    def save(self, path: str | os.PathLike) -> None:
        self.snapshot().write(path)

    def load(self, path: str | os.PathLike) -> None:
        """Replace the memory with a saved one. The file is checked whole against this engine
        (memory_file.py) and the new memory built aside; ValueError naming the field, memory
        untouched, if anything does not fit."""
        state = load_memory_file(path, self.decoder.new_state(), self.config, self._model_shape(), self.device)
        anchor_budget.enforce(state, len(self.layout.prefix), self.config.anchor_kv_budget_tokens)
        self._prepared = None
        self.state = state

    def _model_shape(self) -> ModelShape:
        text = self.model.config.text_config
        ttt = [layer.self_attn for layer in self.decoder.layers if isinstance(layer.self_attn, TTTAttention)]
        return ModelShape(hidden=text.hidden_size, channels=ttt[0].num_heads * ttt[0].head_dim if ttt else 0,
                          head_dim=text.head_dim, deepstack=len(self.model.model.visual.deepstack_visual_indexes),
                          dtype=self.decoder.param.dtype, sink=len(self.layout.prefix))

    # ------------------------------------------------------------ status
    @property
    def frames_in_memory(self) -> int:
        return self.state.frames

    @property
    def counters(self) -> EngineCounters:
        state = self.state
        return EngineCounters(frames=state.frames, tokens=state.tokens, updates=state.updates(),
                              bytes_by_part=state.nbytes_by_part(), last_stamp_s=state.last_stamp_s,
                              anchor_budget_tokens=self.config.anchor_kv_budget_tokens,
                              anchor_tokens=anchor_budget.anchor_tokens(state), evicted_tokens=state.evicted_tokens,
                              evicted_groups=state.evicted_groups, anchor_capacity_bytes=state.anchor_capacity_bytes())

    def close(self) -> None:
        """Drop the model and memory; frees GPU memory."""
        self.model = self.decoder = None  # type: ignore[assignment]
        self.state = self._prepared = self._static = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------ building units
    def _embed(self, ids: list[int]) -> torch.Tensor:
        return self.model.model.language_model.embed_tokens(torch.tensor(ids, device=self.device))

    def _text_unit(self, state: MemoryState, ids: list[int]) -> Unit:
        n = len(ids)
        pos = torch.arange(state.next_position, state.next_position + n, device=self.device).expand(3, n)
        unit = Unit(hidden=self._embed(ids), position_ids=pos, start=state.tokens,
                    video=torch.zeros(n, dtype=torch.bool, device=self.device),
                    video_index=torch.zeros(0, dtype=torch.long, device=self.device))
        state.next_position += n
        state.tokens += n
        return unit

    def _take_pending(self, state: MemoryState, pairs_only: bool = False) -> list[Unit]:
        """Units for the frames waiting in `state` (a lone last frame is paired with itself, as the
        processor pads an odd frame count), which are then no longer pending. `pairs_only`: the
        whole pairs only; a lone last frame stays pending for its partner."""
        frames, stamps, poses = state.pending_frames, state.pending_stamps, state.pending_poses
        if len(poses) != len(frames):  # a memory loaded from before the pose channel
            poses = [None] * len(frames)
        keep = len(frames) % 2 if pairs_only else 0
        take = len(frames) - keep
        if not take:
            return []
        frames, stamps, poses = frames[:take], stamps[:take], poses[:take]
        state.pending_frames, state.pending_stamps = state.pending_frames[take:], state.pending_stamps[take:]
        state.pending_poses = state.pending_poses[take:] if len(state.pending_poses) > take else []
        if len(frames) % 2:
            frames, stamps, poses = frames + frames[-1:], stamps + stamps[-1:], poses + poses[-1:]
        return self._frame_units(state, frames, stamps, poses)

    def _frame_units(self, state: MemoryState, frames: list[torch.Tensor], stamps: list[float],
                     poses: list[tuple[float, float, float] | None]) -> list[Unit]:
        """The chat prefix (before the first group) and one unit holding len(frames) / 2 frame groups."""
        units = [] if state.tokens else [self._text_unit(state, list(self.layout.prefix))]
        rows, (groups, gh, gw) = patchify_pairs(torch.stack(frames).to(self.device))
        visual = self.model.model.visual
        out = visual(rows.to(visual.dtype), grid_thw=torch.tensor([[groups, gh, gw]], device=self.device),
                     return_dict=True)
        h, w = gh // 2, gw // 2
        ids: list[int] = []
        starts: list[int] = []
        video_ranges = []
        for g in range(groups):
            pose = poses[2 * g + 1] if self.config.pose_text else None
            if self.config.pose_text and pose is None:
                raise ValueError("config.pose_text is on but a pending frame has no pose")
            text = group_text(stamps[2 * g], stamps[2 * g + 1], state.first_stamp_s, pose)
            starts.append(len(ids))
            ids += self.tokenizer.encode(text, add_special_tokens=False) + [self.layout.vision_start]
            video_ranges.append((len(ids), len(ids) + h * w))
            ids += [self.layout.video_pad] * (h * w) + [self.layout.vision_end]
        hidden = self._embed(ids).clone()
        # rope positions: text ids count up; a visual block is (s, s + i, s + j) for block (i, j) and
        # the token after it continues at s + max(h, w). Built on the host, moved in one copy each.
        video = torch.zeros(len(ids), dtype=torch.bool)
        pos = torch.empty(3, len(ids), dtype=torch.long)
        ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        p = state.next_position
        cursor = 0
        for a, b in video_ranges:
            pos[:, cursor:a] = torch.arange(p, p + a - cursor)
            s = p + a - cursor
            pos[0, a:b], pos[1, a:b], pos[2, a:b] = s, s + ii.flatten(), s + jj.flatten()
            video[a:b] = True
            pos[:, b] = s + max(h, w)
            p, cursor = s + max(h, w) + 1, b + 1
        state.next_position = p
        video_index = torch.cat([torch.arange(a, b) for a, b in video_ranges]).to(self.device)
        video, pos = video.to(self.device), pos.to(self.device)
        hidden = hidden.index_copy(0, video_index, out.pooler_output.to(hidden.dtype))
        unit = Unit(hidden=hidden, position_ids=pos, start=state.tokens, video=video, hw=(h, w),
                    segment=state.segment, deepstack=[d.to(hidden.dtype) for d in out.deepstack_features],
                    group_starts=starts, video_index=video_index)
        state.group_starts.extend(state.tokens + s for s in starts)
        state.tokens += len(ids)
        state.groups += groups
        return units + [unit]


def _anchor_buffers(state: MemoryState) -> list[tuple[int, torch.Tensor]]:
    return [(i, s.k) for i, s in enumerate(state.layers) if isinstance(s, AnchorLayerState)]
