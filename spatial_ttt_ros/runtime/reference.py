"""One-pass block-causal forward over a whole sequence: the training semantics, for verification.

Deliberately independent of the streaming machinery: the prompt is built as one sequence, rope
positions come from HF's own `get_rope_index`, the vision tower sees each video whole, and the
decoder runs `one_pass.decoder_one_pass` (the training forward's layer maths, one row): anchor
layers run the real `Qwen3VLTextAttention.forward` with a causal mask, SWA a sliding-window mask,
the SP conv runs the `nn.Conv3d` modules (replicate padding) over each whole video, and fast
weights follow the block rule of REFERENCE_SPEC §4.1 over the full sequence. `streaming == one
pass` is the engine's invariant.
"""

from __future__ import annotations

import numpy as np
import torch

from .engine import StreamingEngine
from .one_pass import decoder_one_pass
from .tokens import group_poses, group_text, patchify_pair, resize_frame

REFERENCE_BACKEND = "torch"  # the kernels of the one-pass reference (see one_pass_logits)


def build_sequence(engine: StreamingEngine, segments: list[list[tuple[np.ndarray, float]]],
                   text_ids: list[int]) -> tuple:
    """ids [N], inputs_embeds [N, d], video mask [N], per-video (T, h, w), deepstack, position_ids [3, N].

    A segment is a list of (frame, stamp) or, with config.pose_text, (frame, stamp, pose)."""
    cfg, tok, layout, model = engine.config, engine.tokenizer, engine.layout, engine.model
    ids: list[int] = list(layout.prefix)
    visual_rows, grids = [], []
    t0 = segments[0][0][1]
    for frames in segments:
        imgs = [resize_frame(f[0], cfg.frame_height, cfg.frame_width) for f in frames]
        stamps = [f[1] for f in frames]
        poses = group_poses(cfg.pose_text, [f[2] if len(f) > 2 else None for f in frames], len(frames))
        if len(imgs) % 2:
            imgs.append(imgs[-1])
            stamps.append(stamps[-1])
            poses.append(poses[-1])
        rows = []
        for g in range(len(imgs) // 2):
            pix, (_, gh, gw) = patchify_pair(np.stack(imgs[2 * g:2 * g + 2]))
            rows.append(pix)
            text = group_text(stamps[2 * g], stamps[2 * g + 1], t0, poses[2 * g + 1])
            ids += tok.encode(text, add_special_tokens=False) + [layout.vision_start]
            ids += [layout.video_pad] * (gh * gw // 4) + [layout.vision_end]
        visual_rows.append(torch.cat(rows))
        grids.append((len(rows), gh, gw))
    ids += text_ids
    dev = engine.device
    input_ids = torch.tensor(ids, device=dev)
    video = input_ids == layout.video_pad
    embeds = model.model.language_model.embed_tokens(input_ids).clone()
    feats, deepstack = [], None
    for rows, grid in zip(visual_rows, grids):
        out = model.model.visual(rows.to(dev, model.model.visual.dtype), grid_thw=torch.tensor([grid], device=dev),
                                 return_dict=True)
        feats.append(out.pooler_output)
        deepstack = ([torch.cat(p) for p in zip(deepstack, out.deepstack_features)] if deepstack
                     else list(out.deepstack_features))
    embeds[video] = torch.cat(feats).to(embeds.dtype)
    token_type = video.long()[None] * 2
    position_ids, _ = model.model.get_rope_index(input_ids[None], token_type,
                                                 video_grid_thw=torch.tensor(grids, device=dev))
    return input_ids, embeds, video, grids, deepstack, position_ids[:, 0]


@torch.no_grad()
def one_pass_logits(engine: StreamingEngine, segments: list[list[tuple[np.ndarray, float]]],
                    text_ids: list[int]) -> torch.Tensor:
    """Logits [N, vocab] (fp32) of one forward over prefix + video segments + `text_ids`."""
    cfg, model = engine.config, engine.model
    input_ids, hidden, video, grids, deepstack, pos = build_sequence(engine, segments, text_ids)
    valid = torch.ones_like(video)
    # Always the PyTorch kernels, whatever config.kernel_backend says: on CUDA the engine runs Triton,
    # and streaming == one pass then checks the Triton path against the reference maths.
    hidden = decoder_one_pass(model, cfg, hidden[None], pos[:, None], video[None], valid[None], [grids], deepstack,
                              backend=REFERENCE_BACKEND)
    return model.lm_head(hidden[0]).float()
