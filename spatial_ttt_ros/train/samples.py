"""One training sample in exactly the streaming engine's token layout.

    <chat prefix> (<t seconds[ x=.. y=.. yaw=..]><|vision_start|><|video_pad|>*n<|vision_end|>)*groups
    <question><|im_end|>\\n<|im_start|>assistant\\n <answer><|im_end|>

Frames are resized with the engine's own `resize_frame`; an odd frame count repeats the last
frame (as the engine and the HF processor pad); a group's time is the mean of its two frames'
stamps relative to the first frame; with config.pose_text the line also carries the pose of the
group's second frame (runtime/tokens.py group_text, the engine's own function). Labels are the answer tokens and the closing `<|im_end|>`
(not the token after it, unlike the official collator: TRAINING.md §1.3, §1.8); every other
position is -100. `labels[i]` is the target *at* position i; the loss shifts (predicts i from i-1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..runtime.config import SpatialTTTConfig
from ..runtime.tokens import ChatLayout, group_poses, group_text, resize_frame

IGNORE = -100
PATCH, MERGE = 16, 2


@dataclass
class TrainSample:
    input_ids: torch.Tensor         # [N] long: the whole sequence, answer and closing <|im_end|> included
    labels: torch.Tensor            # [N] long: IGNORE except the answer tokens and the closing <|im_end|>
    frames: torch.Tensor            # [F, H, W, 3] uint8 at the model's frame size, F even
    stamps: list[float]             # [F] seconds (the padded last frame repeats its stamp)
    meta: dict = field(default_factory=dict)  # episode, item, kind, stage, evidence_outside_window, ...
    position_ids: torch.Tensor | None = None  # [3, N] long mRoPE positions (train.forward.rope_positions),
                                              # made ahead by the loader's workers; None: the forward makes them

    @property
    def groups(self) -> int:
        return self.frames.shape[0] // 2

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def merged_grid(config: SpatialTTTConfig) -> tuple[int, int]:
    """(h, w) of one frame group's visual tokens after the 2x2 merge."""
    return config.frame_height // (PATCH * MERGE), config.frame_width // (PATCH * MERGE)


def video_ids(tokenizer, layout: ChatLayout, stamps: Sequence[float], tokens_per_group: int,  # noqa: ANN001
              poses: Sequence | None = None) -> list[int]:
    """Ids of the frame groups for `stamps` (even length): timestamp text, vision start, pads, end.
    `poses`: per frame (x, y, yaw_deg) for the pose channel (tokens.group_poses), or None."""
    if len(stamps) % 2:
        raise ValueError(f"stamps must pair up (even length), got {len(stamps)}")
    poses = [None] * len(stamps) if poses is None else list(poses)
    t0 = stamps[0] if stamps else 0.0
    ids: list[int] = []
    for g in range(len(stamps) // 2):
        text = group_text(stamps[2 * g], stamps[2 * g + 1], t0, poses[2 * g + 1])
        ids += tokenizer.encode(text, add_special_tokens=False) + [layout.vision_start]
        ids += [layout.video_pad] * tokens_per_group + [layout.vision_end]
    return ids


def layout_sample(config: SpatialTTTConfig, tokenizer, layout: ChatLayout, frames: Sequence[np.ndarray],  # noqa: ANN001
                  stamps: Sequence[float], question: str, answer: str, meta: dict | None = None,
                  poses: Sequence | None = None) -> TrainSample:
    """A sample from RGB uint8 frames (any size), their stamps, the prompt text and the answer text.
    `poses` (per frame: 4x4 or x y z qx qy qz qw, the camera in the map frame) are required with
    config.pose_text and ignored without it."""
    if len(frames) == 0:
        raise ValueError("a sample needs at least one frame, got 0")
    if len(frames) != len(stamps):
        raise ValueError(f"frames and stamps differ in length: {len(frames)} vs {len(stamps)}")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be non-empty text, got {question!r}")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"answer must be non-empty text, got {answer!r}")
    stamps = [float(s) for s in stamps]
    if any(b < a for a, b in zip(stamps, stamps[1:])):
        raise ValueError(f"stamps must be non-decreasing, got {stamps[:8]}...")
    pose2d = group_poses(config.pose_text, None if poses is None else list(poses), len(frames))
    imgs = [resize_frame(f, config.frame_height, config.frame_width) for f in frames]
    if len(imgs) % 2:
        imgs.append(imgs[-1])
        stamps.append(stamps[-1])
        pose2d.append(pose2d[-1])
    h, w = merged_grid(config)
    prompt = list(layout.prefix) + video_ids(tokenizer, layout, stamps, h * w, pose2d)
    prompt += tokenizer.encode(question, add_special_tokens=False) + list(layout.suffix)
    target = tokenizer.encode(answer.strip(), add_special_tokens=False) + [layout.eos]
    ids = torch.tensor(prompt + target, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    labels[len(prompt):] = ids[len(prompt):]
    return TrainSample(input_ids=ids, labels=labels, frames=torch.from_numpy(np.stack(imgs)), stamps=stamps,
                       meta=dict(meta or {}))
