"""Text and video token layout, exactly as the HF Qwen3-VL chat template + processor produce it.

For a conversation (system, user[video, question]) the template renders

    <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n
    <{t0:.1f} seconds><|vision_start|><|video_pad|>*n<|vision_end|><{t1:.1f} seconds>...
    {question}<|im_end|>\\n<|im_start|>assistant\\n

where each frame group (2 frames, temporal patch 2) gets the mean time of its two frames. Special
tokens split the text into independently tokenised pieces, so tokenising the prefix, each group's
timestamp and the question separately gives the same ids as tokenising the whole prompt: that is
what makes streaming possible. The video is the per-group expansion alone (REFERENCE_SPEC §5.1),
as the transformers 4.57 processor of Qwen3-VL's release made it: it replaced the template's whole
`<|vision_start|><|video_pad|><|vision_end|>`. transformers >= 5.12 replaces only the pad and keeps
the outer pair (two more tokens; vllm issue #46817 compares the two). test_runtime_layout.py runs
the installed HF processor on a bare `<|video_pad|>` (same text in both generations) against this
layout. Frames are resized to the model's frame size, scaled to [-1, 1]
(mean = std = 0.5) and patchified in the processor's row order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")


def build_byte_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer for the tiny model: 256 byte tokens + the Qwen special tokens.

    Built locally (no hub); ids: bytes 0..255, then SPECIAL_TOKENS in order.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"tiny vocab_size must be >= {256 + len(SPECIAL_TOKENS)}, got {vocab_size}")
    byte_vocab = {tok: i for i, tok in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    byte_vocab = {tok: i for i, tok in enumerate(sorted(byte_vocab, key=lambda t: ord(t)))}
    core = Tokenizer(models.BPE(vocab=byte_vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tok


@dataclass(frozen=True)
class ChatLayout:
    """Token ids of the fixed pieces of the chat template for one tokenizer."""

    prefix: tuple[int, ...]        # system turn + "<|im_start|>user\n"
    vision_start: int
    vision_end: int
    video_pad: int
    eos: int
    suffix: tuple[int, ...]        # "<|im_end|>\n<|im_start|>assistant\n"

    @classmethod
    def from_tokenizer(cls, tokenizer, system_prompt: str) -> ChatLayout:  # noqa: ANN001
        ids = tokenizer.convert_tokens_to_ids
        prefix = f"<|im_start|>system\n{system_prompt}<|im_end|>\n<|im_start|>user\n"
        return cls(prefix=tuple(tokenizer.encode(prefix, add_special_tokens=False)),
                   vision_start=ids("<|vision_start|>"), vision_end=ids("<|vision_end|>"),
                   video_pad=ids("<|video_pad|>"), eos=ids("<|im_end|>"),
                   suffix=tuple(tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)))


def timestamp_text(t_s: float) -> str:
    return f"<{t_s:.1f} seconds>"


# ---------------------------------------------------------------- the pose channel (config.pose_text)
# With pose_text on, a frame group's timestamp line also carries the camera pose in the map frame:
# "<12.5 seconds x=1.2 y=-0.4 yaw=90>". The pose is that of the group's SECOND (newer) frame, so the
# last group before a question carries the pose of the newest frame (a lone last frame is paired
# with itself): "now" for robot-relative questions. x, y in metres with one decimal (0.1 m, well
# under the 0.5 m locate target), yaw = heading of the camera's viewing direction (optical +z)
# projected onto the floor, whole degrees in [-179, 180], counter-clockwise from map +x. The form
# is short and fixed: the byte tokenizer spends one token per character (about 20 more per group),
# and Qwen's BPE splits every digit into its own token (its pre-tokenizer), so the digits line up
# as in the timestamps; "=" and "-" are single tokens, and no value-dependent merges occur.
LONGEST_POSE = (-9999.9, -9999.9, -179.0)  # the widest pose text (token budgets)


def pose_xy_yaw(pose: object) -> tuple[float, float, float]:
    """(x, y, yaw_deg) of a camera pose: a 4x4 camera-optical-to-map matrix or 7 numbers x y z qx qy qz qw.
    ValueError naming the problem (shape, non-finite, zero quaternion, a camera looking straight
    up or down has no heading)."""
    p = np.asarray(pose, dtype=np.float64)
    if p.shape not in ((4, 4), (7,)) or not np.all(np.isfinite(p)):
        raise ValueError(f"pose must be a finite 4x4 matrix or 7-vector (x y z qx qy qz qw), got shape {p.shape}")
    if p.shape == (4, 4):
        x, y, fx, fy = p[0, 3], p[1, 3], p[0, 2], p[1, 2]
    else:
        q = p[3:]
        n = float(np.linalg.norm(q))
        if n < 1e-9:
            raise ValueError(f"pose quaternion must be non-zero, got {q.tolist()}")
        qx, qy, qz, qw = q / n
        x, y = p[0], p[1]
        fx, fy = 2 * (qx * qz + qy * qw), 2 * (qy * qz - qx * qw)  # third column of the rotation
    if math.hypot(fx, fy) < 1e-6:
        raise ValueError("camera pose looks straight up or down: its heading on the floor is undefined")
    yaw = math.degrees(math.atan2(fy, fx))
    return float(x), float(y), float(yaw)


def _fixed(v: float) -> str:
    text = f"{v:.1f}"
    return "0.0" if text == "-0.0" else text


def pose_text(pose2d: tuple[float, float, float]) -> str:
    """"x=1.2 y=-0.4 yaw=90" for (x, y, yaw_deg) from pose_xy_yaw."""
    x, y, yaw = pose2d
    deg = int(round(yaw))
    deg = deg - 360 if deg > 180 else deg + 360 if deg <= -180 else deg
    return f"x={_fixed(x)} y={_fixed(y)} yaw={deg}"


def group_text(stamp_a: float, stamp_b: float, first_stamp: float,
               pose2d: tuple[float, float, float] | None = None) -> str:
    """The text before a frame group's <|vision_start|>: its mean time relative to the first frame,
    and, with the pose channel, the pose of its second frame (`pose2d`, pose_xy_yaw). Without a
    pose it is exactly the released layout's timestamp."""
    t = timestamp_text(((stamp_a - first_stamp) + (stamp_b - first_stamp)) / 2)
    return t if pose2d is None else f"{t[:-1]} {pose_text(pose2d)}>"


def group_poses(config_pose_text: bool, poses: list | None, n: int) -> list[tuple[float, float, float] | None]:
    """Per frame its (x, y, yaw) when the pose channel is on, else None for each of the n frames.
    ValueError when it is on and a frame has no pose."""
    if not config_pose_text:
        return [None] * n
    if poses is None or len(poses) != n:
        got = "none" if poses is None else f"{len(poses)}"
        raise ValueError(f"config.pose_text is on: every frame needs its camera pose, got {got} for {n} frames")
    out = []
    for i, p in enumerate(poses):
        if p is None:
            raise ValueError(f"config.pose_text is on: frame {i} has no camera pose")
        out.append(p if isinstance(p, tuple) and len(p) == 3 else pose_xy_yaw(p))
    return out


def check_frame(image: object) -> np.ndarray:
    """Validate an HxWx3 uint8 RGB frame; ValueError naming the problem."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"frame dtype must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3 RGB, got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"frame is too small: {image.shape[1]}x{image.shape[0]} pixels")
    return image


def resize_frame(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Hard resize to the model's frame size (bicubic, as the training preprocessing)."""
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    try:
        import cv2
    except ImportError:  # GPU images without OpenCV: the same bicubic resize in torch
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        x = torch.nn.functional.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
        return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


def patchify_pair(frames: np.ndarray, patch: int = 16, merge: int = 2) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Two resized frames [2, H, W, 3] uint8 -> vision rows [gh*gw, 3*2*patch*patch] fp32, grid (1, gh, gw)."""
    if np.shape(frames)[0] != 2:
        raise ValueError(f"expected 2 frames with sides divisible by {patch * merge}, got {np.shape(frames)}")
    return patchify_pairs(torch.from_numpy(np.ascontiguousarray(frames)), patch, merge)


def patchify_pairs(frames: torch.Tensor, patch: int = 16, merge: int = 2) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Frame pairs [2k, H, W, 3] uint8, on any device -> vision rows [k*gh*gw, 3*2*patch*patch] fp32
    on that device, grid (k, gh, gw). On a GPU the conversion runs there and the host only copies
    bytes (converting 32 pairs of 352x480 frames on the host took 1.5 s on a loaded 2-core CPU).

    Row order = the HF Qwen3-VL video processor's: time group, merged-block row, merged-block
    column, in-block row, in-block column; each row is channel x time x patch x patch.
    """
    if frames.ndim != 4 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames [2k, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    n, height, width, _ = frames.shape
    if n == 0 or n % 2 or height % (patch * merge) or width % (patch * merge):
        raise ValueError(f"expected pairs of frames with sides divisible by {patch * merge}, got {tuple(frames.shape)}")
    k, gh, gw = n // 2, height // patch, width // patch
    x = frames.float().div_(255.0).sub_(0.5).div_(0.5)
    x = x.permute(0, 3, 1, 2)  # [2k, C, H, W]
    x = x.reshape(k, 2, 3, gh // merge, merge, patch, gw // merge, merge, patch)
    # -> [group, block row, block col, in-block row, in-block col, C, T, patch, patch]
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(k * gh * gw, 3 * 2 * patch * patch), (k, gh, gw)
