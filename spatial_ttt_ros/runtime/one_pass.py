"""The decoder in its block-causal one-pass form over whole, right-padded sequences (REFERENCE_SPEC
§4.1): the training semantics, written once for the verification reference (`reference.py`, one
row) and the training forward (`train/forward.py`, a batch, with gradients).

Every decoder layer runs as the HF module it is (`layer(...)`: input norm, attention, MLP), so
FSDP2 / activation-checkpointing wrappers around decoder layers see their forward. Anchor layers
get a causal boolean mask; TTT layers (`TTTAttention.forward` -> `ttt_one_pass`) read the
`OnePass` context passed along as a keyword: SWA under a sliding-window boolean mask (SDPA: any
device, with backward), the SP conv (`nn.Conv3d` modules, replicate padding) over each row's whole
videos, and the fast weights over the row's blocks of C tokens: apply with the weights from before
the block, then update (full BPTT; `checkpoint_chunks` recomputes each block's step in backward).

Batch layout: row b of the batch is its own sequence. The fast-weight state folds the batch into
the head dim ([B*H, ., .], row-major: index b*H + h), so every row starts from the learned initial
weights and never sees another row; the conv runs per row and video. Right padding (`valid` False)
is inert: causal masks already hide it from real tokens, its keys are masked (a query always sees
itself, so no row of a mask is empty), its learning rates are zero, and the blocks it fills lie
after every real token of its row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb

from ..kernels import FastWeightState, fw_apply, fw_update, init_fast_weight_state
from .config import SpatialTTTConfig
from .ttt_layer import TTTAttention, muon_dtype

MERGE = 2  # spatial merge of the vision tower: a (gh, gw) patch grid is (gh/2, gw/2) tokens


@dataclass
class OnePass:
    """What the TTT layers of one forward need besides their input (built by `decoder_one_pass`)."""

    config: SpatialTTTConfig
    video: torch.Tensor                       # [B, N] bool: visual tokens
    valid: torch.Tensor                       # [B, N] bool: False on right padding
    grids: list[list[tuple[int, int, int]]]   # per row, its videos in order: (groups, gh, gw) patch grids
    cos: torch.Tensor                         # [B, N, hd] rotary tables (both branches)
    sin: torch.Tensor
    swa_mask: torch.Tensor                    # [B, 1, N, N] bool, True = attend
    window: int                               # its window (keys incl. the query)
    backend: str = "torch"                    # fast-weight kernels
    checkpoint_chunks: bool = False
    conv: tuple | None = None                 # the SP conv's indices (conv_index), built by the first TTT layer


def attention_masks(valid: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """valid [B, N] -> (causal, sliding window of `window` keys incl. the query) [B, 1, N, N] bool
    ([1, 1, N, N], broadcast over the rows, when nothing is padded)."""
    if bool(valid.all()):
        valid = valid[:1]
    n = valid.shape[1]
    qi = torch.arange(n, device=valid.device)[:, None]
    ki = torch.arange(n, device=valid.device)[None, :]
    causal = ((ki <= qi)[None] & valid[:, None, :]) | (ki == qi)[None]
    return causal[:, None], (causal & (ki > qi - window)[None])[:, None]


def decoder_one_pass(model: nn.Module, config: SpatialTTTConfig, hidden: torch.Tensor, position_ids: torch.Tensor,
                     video: torch.Tensor, valid: torch.Tensor, grids: list[list[tuple[int, int, int]]],
                     deepstack: list[torch.Tensor] | None, *, window_size: int | None = None, backend: str = "torch",
                     checkpoint_chunks: bool = False) -> torch.Tensor:
    """Input embeddings [B, N, d] (visual features in place) -> final-normed hidden states [B, N, d].

    position_ids [3, B, N] (mRoPE); deepstack: per level the visual features of every visual token
    of the batch, row-major. `window_size` overrides config.window_size for the SWA mask only.
    """
    window = config.window_size if window_size is None else int(window_size)
    if window < 1:
        raise ValueError(f"window_size must be a positive number of keys, got {window_size!r}")
    text = model.model.language_model
    cos, sin = text.rotary_emb(hidden, position_ids)
    causal, swa = attention_masks(valid, window)
    ctx = OnePass(config=config, video=video, valid=valid, grids=grids, cos=cos, sin=sin, swa_mask=swa,
                  window=window, backend=backend, checkpoint_chunks=checkpoint_chunks)
    for idx, layer in enumerate(text.layers):
        hidden = layer(hidden, position_embeddings=(cos, sin), attention_mask=causal, one_pass=ctx)
        if deepstack is not None and idx < len(deepstack):
            hidden = text._deepstack_process(hidden, video, deepstack[idx])
    return text.norm(hidden)


# ---------------------------------------------------------------- one TTT layer


def ttt_one_pass(attn: TTTAttention, x: torch.Tensor, ctx: OnePass) -> torch.Tensor:
    """The TTT layer (SWA + fast weights sharing q/k/v) over x [B, N, d] (after the input norm)."""
    cfg = ctx.config
    B, N, _ = x.shape
    xf = x.reshape(B * N, -1)
    q_hat, k_hat, v = attn.project(xf)                       # [B*N, heads, hd]

    def heads(t: torch.Tensor) -> torch.Tensor:              # -> [B, heads, N, hd]
        return t.view(B, N, -1, t.shape[-1]).transpose(1, 2)

    q_rot, k_rot = apply_rotary_pos_emb(heads(q_hat), heads(k_hat), ctx.cos, ctx.sin)
    k_rot, v_rep = k_rot.repeat_interleave(attn.n_rep, dim=1), heads(v).repeat_interleave(attn.n_rep, dim=1)
    swa = window_attention(q_rot, k_rot, v_rep, ctx.swa_mask, ctx.window, attn.attn_layer.scaling)
    swa = swa.transpose(1, 2).reshape(B * N, -1)

    raw = attn.raw_fast_inputs(q_hat, k_hat, v)              # [3, B*N, C]
    if cfg.use_conv:
        raw = _sp_conv(attn, raw, ctx)
    cos, sin = ctx.cos.reshape(B * N, -1), ctx.sin.reshape(B * N, -1)
    q, k, v_fw = (_fold(t, B) for t in attn.fast_qkv(raw, cos, sin))   # [B*H, N, D]
    lr, mu = (_fold(t, B) for t in attn.lr_and_momentum(xf))            # [B*H, N, 3], [B*H, N, 1]
    lr = lr * ctx.valid.repeat_interleave(attn.n_fw, dim=0)[..., None]  # padding never updates
    fast = init_fast_weight_state(*(w.repeat(B, 1, 1) for w in (attn.w0, attn.w1, attn.w2)),
                                  use_momentum=cfg.use_momentum, prenorm=cfg.prenorm)
    o = fast_weight_scan(fast, q, k, v_fw, lr, mu, cfg, backend=ctx.backend, checkpoint_chunks=ctx.checkpoint_chunks)
    o = o.view(B, attn.n_fw, N, -1).transpose(0, 1).reshape(attn.n_fw, B * N, -1)
    return attn.attn_layer.o_proj(swa + attn.ttt_output(o, xf)).view(B, N, -1)


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, window: int,
                     scaling: float) -> torch.Tensor:
    """SDPA of q/k/v [B, H, N, hd] under the sliding-window mask [B|1, 1, N, N] of `window` keys, in
    query blocks of W/2 rows, each against the W/2 + W - 1 keys it can see, instead of a masked N x N
    score matrix (kept for backward too): 3.6x less time forward + backward for a 1,838-token gate clip
    at W = 256, batch 8, on one CPU thread. Off a CPU one masked call: there the fused kernels never
    hold the score matrix, and the blocks' ~130 launches per layer and step (~800 with backward, at
    2,700 tokens) cost more host time than they save."""
    n = q.shape[2]
    block = max(1, window // 2)
    if n <= window + block or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling)
    outs = []
    for s in range(0, n, block):
        e = min(n, s + block)
        lo = max(0, s - window + 1)
        outs.append(F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, lo:e], v[:, :, lo:e],
                                                   attn_mask=mask[..., s:e, lo:e], scale=scaling))
    return torch.cat(outs, dim=2)


def _fold(t: torch.Tensor, batch: int) -> torch.Tensor:
    """[H, B*N, X] (tokens of the rows one after another) -> [B*H, N, X]."""
    h, _, width = t.shape
    return t.view(h, batch, -1, width).transpose(0, 1).reshape(batch * h, -1, width)


def conv_index(video: torch.Tensor, grids: list[list[tuple[int, int, int]]]) -> tuple:
    """Where the SP conv reads and writes for every video of every row, from video [B, N] (two syncs).

    Returns (write, read, keep, shape): `write` = the visual tokens' positions in the flattened [B*N]
    tokens, row-major; `read` [V * T * h * w] indexes the flattened [B*N] tokens, video v
    padded to the longest T by repeating its last frame group (for a replicate-padded conv that is
    what the padding itself adds: every kept output is unchanged); `keep` selects the outputs
    of the real frame groups, which in order belong to `write`'s tokens; shape = (V, T, h, w)."""
    flat = video.reshape(-1).nonzero().flatten()
    shapes = [(t, gh // MERGE, gw // MERGE) for row in grids for t, gh, gw in row]
    counts = [sum(t * (gh // MERGE) * (gw // MERGE) for t, gh, gw in row) for row in grids]
    rows_visual = video.sum(dim=1).tolist()
    for b, (have, cover) in enumerate(zip(rows_visual, counts)):
        if have != cover:
            raise ValueError(f"row {b} has {have} visual tokens, its grids {grids[b]} cover {cover}")
    if len({(h, w) for _, h, w in shapes}) > 1:
        raise ValueError(f"the SP conv batches videos of one frame size, got merged grids {sorted(set(shapes))}")
    if not shapes:
        return flat, flat, flat, (0, 0, 0, 0)
    T, h, w = max(t for t, _, _ in shapes), shapes[0][1], shapes[0][2]
    hw = h * w
    read, keep, start = [], [], 0
    for v, (t, _, _) in enumerate(shapes):
        frames = torch.arange(T).clamp(max=t - 1)
        read.append((start + frames[:, None] * hw + torch.arange(hw)[None]).flatten())
        keep.append(v * T * hw + torch.arange(t * hw))
        start += t * hw
    dev = video.device
    return flat, flat[torch.cat(read).to(dev)], torch.cat(keep).to(dev), (len(shapes), T, h, w)


def _sp_conv(attn: TTTAttention, raw: torch.Tensor, ctx: OnePass) -> torch.Tensor:
    """The depthwise 3-D convs (replicate padding) over every whole video of every row, visual
    tokens only; raw [3, B*N, C] -> same, text tokens unchanged. All videos and the three convs in
    one grouped conv call (the modules' own weights and padding, F.conv3d as nn.Conv3d calls it)."""
    if not hasattr(attn, "conv_q"):
        raise ValueError(f"config.use_conv is true but TTT layer {attn.layer_idx} was built without conv modules")
    if ctx.conv is None:
        ctx.conv = conv_index(ctx.video, ctx.grids)
    write, read, keep, (V, T, h, w) = ctx.conv
    if V == 0:
        return raw
    convs = (attn.conv_q, attn.conv_k, attn.conv_v)
    c = raw.shape[-1]
    x = raw[:, read].view(3, V, T, h, w, c).permute(1, 0, 5, 2, 3, 4).reshape(V, 3 * c, T, h, w)
    x = F.pad(x, [p for p in reversed(convs[0].padding) for _ in range(2)], mode=convs[0].padding_mode)
    y = F.conv3d(x, torch.cat([m.weight for m in convs]), groups=3 * c)
    y = y.view(V, 3, c, T, h, w).permute(1, 0, 3, 4, 5, 2).reshape(3, V * T * h * w, c)[:, keep]
    return raw.index_copy(1, write, y.to(raw.dtype))


# ---------------------------------------------------------------- the fast weights over the blocks


def fast_weight_scan(fast: FastWeightState, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lr: torch.Tensor,
                     mu: torch.Tensor, config: SpatialTTTConfig, *, backend: str = "torch",
                     checkpoint_chunks: bool = False) -> torch.Tensor:
    """Block-causal fast weights over q/k/v [H', N, D], lr [H', N, 3], mu [H', N, 1] from `fast`:
    block j = tokens [jC, (j+1)C) is answered with the weights S_j, then S_{j+1} = Update(S_j, B_j)
    for every block but the last. Returns the outputs [H', N, D]. With `checkpoint_chunks` (and
    autograd on) each block's apply + update is recomputed in backward, keeping only the states."""
    n, c = q.shape[1], config.chunk_size
    norms = list(fast.norms)
    state = [t for group in (fast.w, fast.w_main, fast.momentum) if group for t in group]
    use_ckpt = checkpoint_chunks and torch.is_grad_enabled()
    outputs = []
    for j in range(0, n, c):
        args = (j < n - c, config, backend, q[:, j:j + c], k[:, j:j + c], v[:, j:j + c], lr[:, j:j + c],
                mu[:, j:j + c], *norms, *state)
        out = checkpoint(chunk_step, *args, use_reentrant=False) if use_ckpt else chunk_step(*args)
        outputs.append(out[0])
        state = list(out[1:])
    return torch.cat(outputs, dim=1)


def chunk_step(update: bool, config: SpatialTTTConfig, backend: str, q: torch.Tensor, k: torch.Tensor,
               v: torch.Tensor, lr: torch.Tensor, mu: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One block: (apply output, *new state) from (*norms, *state) as flat tensors (w, then w_main
    with pre-norm, then momentum buffers with momentum on); `update` False = apply only."""
    norms, state = tensors[:3], list(tensors[3:])
    w = tuple(state[:3])
    w_main = tuple(state[3:6]) if config.prenorm else None
    momentum = tuple(state[-3:]) if config.use_momentum else None
    out = fw_apply(*w, q, backend=backend)
    if not update:
        return (out, *state)
    new = fw_update(FastWeightState(w=w, w_main=w_main, momentum=momentum, norms=norms), k, v, lr, mu,
                    use_momentum=config.use_momentum, use_muon=config.use_muon, prenorm=config.prenorm,
                    ns_dtype=muon_dtype(config), backend=backend)
    return (out, *(t for group in (new.w, new.w_main, new.momentum) if group for t in group))
