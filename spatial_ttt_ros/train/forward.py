"""The training forward: a batch of TrainSamples through the block-causal one-pass decoder, with
gradients (TRAINING.md §2, §3.4).

The layer maths is `runtime/one_pass.py` (shared with the verification reference, which the
streaming engine equals). This module turns samples into its inputs: every sample's video through
the vision tower (one call, one grid per sample; under no_grad while the tower is frozen), the
features scattered into the token embeddings, mRoPE positions from HF's `get_rope_index` per
sample, and right padding to the longest sample. Each sample is its own batch row: fast weights
(batch folded into the fast-weight head dim) and the SP conv restart per sample; padding is masked
in attention, has zero fast-weight learning rates and carries no labels.

Gradients flow through every fast-weight update (full BPTT, as the official code);
`checkpoint_chunks` recomputes each block's apply + update in backward (the memory knob, §2.3).
Fast-weight kernels run their PyTorch path (the Triton ones are forward-only). Dtypes follow the
model (fp32 on CPU; under bf16 autocast on GPUs the matmuls run in bf16, the state stays fp32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.config import SpatialTTTConfig
from ..runtime.one_pass import decoder_one_pass
from ..runtime.tokens import patchify_pairs
from .samples import IGNORE, PATCH, TrainSample, merged_grid

PAD_ID = 0  # any id: padding is masked everywhere and never read by a real token


def forward_logits(model: nn.Module, config: SpatialTTTConfig, samples: Sequence[TrainSample], *,
                   window_size: int | None = None, checkpoint_chunks: bool = True) -> list[torch.Tensor]:
    """Per sample its logits [N_i, vocab] in fp32 (position i predicts token i + 1)."""
    hidden, lengths = _final_hidden(model, config, samples, window_size, checkpoint_chunks)
    return [model.lm_head(hidden[b, :n]).float() for b, n in enumerate(lengths)]


def sample_loss(model: nn.Module, config: SpatialTTTConfig, samples: Sequence[TrainSample], *,
                window_size: int | None = None, checkpoint_chunks: bool = True,
                per_sample_mean: bool = False) -> tuple[torch.Tensor, int]:
    """(sum of the token cross-entropies over every label position of the batch, number of label
    tokens). Position i's logits predict labels[i + 1]; the LM head runs on those positions only.
    per_sample_mean: the first element is instead the sum over samples of each sample's mean token
    cross-entropy (a 3-token answer weighs as much as a 4,000-token description)."""
    hidden, lengths = _final_hidden(model, config, samples, window_size, checkpoint_chunks)
    rows, cols, targets = [], [], []
    for b, sample in enumerate(samples):  # on the host (the labels are there), moved once
        at = (sample.labels[1:] != IGNORE).nonzero().flatten()
        rows.append(torch.full_like(at, b))
        cols.append(at)
        targets.append(sample.labels[1:][at])
    counts = [len(c) for c in cols]
    rows, cols, targets = (torch.cat(t).to(hidden.device) for t in (rows, cols, targets))
    logits = model.lm_head(hidden[rows, cols]).float()
    if not per_sample_mean:
        return F.cross_entropy(logits, targets, reduction="sum"), int(targets.numel())
    weights = torch.cat([torch.full((n,), 1.0 / n) for n in counts if n]).to(logits.device)
    return (F.cross_entropy(logits, targets, reduction="none") * weights).sum(), int(targets.numel())


class TrainForward(nn.Module):
    """`sample_loss` as a module's forward, for wrappers that act on forward calls: DDP (its
    forward prepares the gradient reduction) and FSDP2 (the root's pre-forward gathers the
    parameters outside the decoder layers: embeddings, vision tower, final norm, LM head; decoder
    layers sharded on their own gather in their own forward, which `decoder_one_pass` calls)."""

    def __init__(self, model: nn.Module, config: SpatialTTTConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def forward(self, samples: Sequence[TrainSample], window_size: int | None = None,
                checkpoint_chunks: bool = True, per_sample_mean: bool = False) -> tuple[torch.Tensor, int]:
        return sample_loss(self.model, self.config, samples, window_size=window_size,
                           checkpoint_chunks=checkpoint_chunks, per_sample_mean=per_sample_mean)


def rope_positions(model: nn.Module, sample: TrainSample) -> torch.Tensor:
    """HF's mRoPE positions [3, N] (long, on the host) of one sample, by `get_rope_index` on host
    tensors: it reads every frame group's grid with `.item()`, on a device a sync each. The loop's
    loader workers call this ahead of the step (`TrainSample.position_ids`)."""
    ids = sample.input_ids.cpu()[None]
    pos, _ = model.model.get_rope_index(ids, (ids == model.config.video_token_id).long() * 2,
                                        video_grid_thw=torch.tensor([patch_grid(sample)]))
    return pos[:, 0]


def patch_grid(sample: TrainSample) -> tuple[int, int, int]:
    """(frame groups, patch rows, patch columns) of a sample's video, as patchify_pairs makes it."""
    return sample.groups, sample.frames.shape[1] // PATCH, sample.frames.shape[2] // PATCH


def _final_hidden(model: nn.Module, config: SpatialTTTConfig, samples: Sequence[TrainSample],
                  window_size: int | None, checkpoint_chunks: bool) -> tuple[torch.Tensor, list[int]]:
    video_pad = model.config.video_token_id  # the tokenizer's <|video_pad|> (tiny: runtime.model sets it so)
    _check_samples(config, samples, video_pad)
    text = model.model.language_model
    visual = model.model.visual
    device = text.embed_tokens.weight.device
    lengths = [len(s) for s in samples]
    n = max(lengths)
    # Ids, masks and mRoPE positions are made on the host, where the samples are, and moved once
    # (HF's get_rope_index on the device: ~190 syncs per 96-frame clip, benchmarks/train_dispatch.py).
    ids = torch.full((len(samples), n), PAD_ID, dtype=torch.long)
    valid = torch.zeros(len(samples), n, dtype=torch.bool)
    for b, s in enumerate(samples):
        ids[b, :len(s)] = s.input_ids
        valid[b, :len(s)] = True
    video = (ids == video_pad) & valid
    grids = [patch_grid(s) for s in samples]

    # mRoPE positions per sample (HF's own algorithm, made ahead by the loader or here); padding
    # continues counting.
    position_ids = torch.empty(3, len(samples), n, dtype=torch.long)
    for b, s in enumerate(samples):
        m = len(s)
        pos = rope_positions(model, s) if s.position_ids is None else s.position_ids.cpu()
        if tuple(pos.shape) != (3, m):
            raise ValueError(f"samples[{b}].position_ids must be [3, {m}], got {tuple(pos.shape)}")
        position_ids[:, b, :m] = pos
        position_ids[:, b, m:] = pos.max() + 1 + torch.arange(n - m)
    ids, valid, video, position_ids = (t.to(device) for t in (ids, valid, video, position_ids))

    # Vision: one call over every sample's frame pairs, one grid (groups, gh, gw) per sample.
    rows = []
    for s, grid in zip(samples, grids):
        pixels, made = patchify_pairs(s.frames.to(device))  # on the model's device: the host copies bytes
        if made != grid:
            raise ValueError(f"frames of shape {tuple(s.frames.shape)} make the grid {made}, expected {grid}")
        rows.append(pixels)
    trainable = any(p.requires_grad for p in visual.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
        out = visual(torch.cat(rows).to(visual.dtype), grid_thw=torch.tensor(grids, device=device),
                     return_dict=True)
    embeds = text.embed_tokens(ids)
    embeds = embeds.masked_scatter(video[..., None], out.pooler_output.to(embeds.dtype))
    deepstack = [d.to(embeds.dtype) for d in out.deepstack_features]
    hidden = decoder_one_pass(model, config, embeds, position_ids, video, valid, [[g] for g in grids], deepstack,
                              window_size=window_size, backend="torch", checkpoint_chunks=checkpoint_chunks)
    return hidden, lengths


def _check_samples(config: SpatialTTTConfig, samples: Sequence[TrainSample], video_pad: int) -> None:
    if not samples:
        raise ValueError("samples must be a non-empty list of TrainSample, got an empty one")
    h, w = merged_grid(config)
    for i, s in enumerate(samples):
        if not isinstance(s, TrainSample):
            raise ValueError(f"samples[{i}] must be a TrainSample, got {type(s).__name__}")
        f = tuple(s.frames.shape)
        if len(f) != 4 or f[0] < 2 or f[0] % 2 or f[1:] != (config.frame_height, config.frame_width, 3) \
                or s.frames.dtype != torch.uint8:
            raise ValueError(f"samples[{i}].frames must be uint8 [F, {config.frame_height}, {config.frame_width}, 3] "
                             f"with F even and >= 2, got {s.frames.dtype} {f}")
        if s.input_ids.ndim != 1 or s.labels.shape != s.input_ids.shape:
            raise ValueError(f"samples[{i}]: input_ids and labels must be [N] alike, got "
                             f"{tuple(s.input_ids.shape)} and {tuple(s.labels.shape)}")
        pads = int((s.input_ids == video_pad).sum())
        if f[0] // 2 * h * w != pads:
            raise ValueError(f"samples[{i}] has {f[0]} frames ({f[0] // 2 * h * w} visual tokens) but {pads} "
                             f"<|video_pad|> ids")
