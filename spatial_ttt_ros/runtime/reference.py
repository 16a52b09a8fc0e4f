"""One-pass block-causal forward over a whole sequence: the training semantics, for verification.

Deliberately independent of the streaming machinery: the prompt is built as one sequence, rope
positions come from HF's own `get_rope_index`, the vision tower sees each video whole, anchor
layers run the real `Qwen3VLTextAttention.forward` with a causal mask, SWA uses HF's
`eager_attention_forward` with a sliding-window mask, the SP conv runs the `nn.Conv3d` modules
(replicate padding) over each whole video, and fast weights follow the block rule of
REFERENCE_SPEC §4.1 over the full sequence. `streaming == one pass` is the engine's invariant.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb, eager_attention_forward

from ..kernels import fw_apply, fw_update, init_fast_weight_state
from .engine import StreamingEngine
from .tokens import patchify_pair, resize_frame, timestamp_text
from .ttt_layer import TTTAttention


def build_sequence(engine: StreamingEngine, segments: list[list[tuple[np.ndarray, float]]],
                   text_ids: list[int]) -> tuple:
    """ids [N], inputs_embeds [N, d], video mask [N], per-video (T, h, w), deepstack, position_ids [3, N]."""
    cfg, tok, layout, model = engine.config, engine.tokenizer, engine.layout, engine.model
    ids: list[int] = list(layout.prefix)
    visual_rows, grids = [], []
    t0 = segments[0][0][1]
    for frames in segments:
        imgs = [resize_frame(f, cfg.frame_height, cfg.frame_width) for f, _ in frames]
        stamps = [s for _, s in frames]
        if len(imgs) % 2:
            imgs.append(imgs[-1])
            stamps.append(stamps[-1])
        rows = []
        for g in range(len(imgs) // 2):
            pix, (_, gh, gw) = patchify_pair(np.stack(imgs[2 * g:2 * g + 2]))
            rows.append(pix)
            t_rel = ((stamps[2 * g] - t0) + (stamps[2 * g + 1] - t0)) / 2
            ids += tok.encode(timestamp_text(t_rel), add_special_tokens=False) + [layout.vision_start]
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
    text = model.model.language_model
    input_ids, hidden, video, grids, deepstack, pos = build_sequence(engine, segments, text_ids)
    n = hidden.shape[0]
    cos, sin = text.rotary_emb(hidden[None], pos[:, None, :])
    qi = torch.arange(n, device=hidden.device)[:, None]
    ki = torch.arange(n, device=hidden.device)[None, :]
    causal = torch.where(ki <= qi, 0.0, float("-inf")).to(hidden.dtype)[None, None]
    window = torch.where((ki <= qi) & (ki > qi - cfg.window_size), 0.0, float("-inf")).to(hidden.dtype)[None, None]
    for idx, layer in enumerate(text.layers):
        x = layer.input_layernorm(hidden)[None]
        attn = layer.self_attn
        if isinstance(attn, TTTAttention):
            out = _ttt_one_pass(attn, x[0], cos[0], sin[0], video, grids, window, cfg)
        else:
            out, _ = attn(x, position_embeddings=(cos, sin), attention_mask=causal)
            out = out[0]
        hidden = hidden + out
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        if deepstack is not None and idx < len(deepstack):
            hidden = text._deepstack_process(hidden[None], video[None], deepstack[idx])[0]
    return model.lm_head(text.norm(hidden)).float()


def _ttt_one_pass(attn: TTTAttention, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, video: torch.Tensor,
                  grids: list[tuple[int, int, int]], window_mask: torch.Tensor, cfg: object) -> torch.Tensor:
    n = x.shape[0]
    q_hat, k_hat, v = attn.project(x)
    q_rot, k_rot = apply_rotary_pos_emb(q_hat.transpose(0, 1)[None], k_hat.transpose(0, 1)[None], cos[None], sin[None])
    swa, _ = eager_attention_forward(attn.attn_layer, q_rot, k_rot, v.transpose(0, 1)[None], window_mask,
                                     scaling=attn.attn_layer.scaling)
    swa = swa[0].reshape(n, -1)

    raw = attn.raw_fast_inputs(q_hat, k_hat, v)
    if cfg.use_conv:
        raw = raw.clone()
        positions = video.nonzero().flatten()
        start = 0
        for t, gh, gw in grids:
            h, w = gh // 2, gw // 2
            idx = positions[start:start + t * h * w]
            start += t * h * w
            for i, conv in enumerate((attn.conv_q, attn.conv_k, attn.conv_v)):
                vol = raw[i, idx].reshape(t, h, w, -1).permute(3, 0, 1, 2)[None]
                raw[i, idx] = conv(vol)[0].permute(1, 2, 3, 0).reshape(t * h * w, -1)
    q, k, v_fw = attn.fast_qkv(raw, cos, sin)
    lr, mu = attn.lr_and_momentum(x)
    fast = init_fast_weight_state(attn.w0, attn.w1, attn.w2, use_momentum=cfg.use_momentum, prenorm=cfg.prenorm)
    c = cfg.chunk_size
    outputs = []
    for j in range(0, n, c):
        outputs.append(fw_apply(*fast.w, q[:, j:j + c], backend=cfg.kernel_backend))
        if j < n - c:
            fast = fw_update(fast, k[:, j:j + c], v_fw[:, j:j + c], lr[:, j:j + c], mu[:, j:j + c],
                             use_momentum=cfg.use_momentum, use_muon=cfg.use_muon, prenorm=cfg.prenorm,
                             backend=cfg.kernel_backend)
    return attn.attn_layer.o_proj(swa + attn.ttt_output(torch.cat(outputs, dim=1), x))
