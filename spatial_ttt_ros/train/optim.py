"""Which parameters train, at which LR, with which decay; AdamW over four groups.

As the official `create_lact_optimizer` (TRAINING.md §1.4) there are decay / no-decay x TTT / rest
groups, with one deliberate difference: the SP conv (`conv_q/k/v`) trains at the TTT LR with the
other TTT parameters (the official list omits it, so it trains at the base LR 1e-6; §3.3).
No weight decay for vectors: norms, biases, the q/k scales and offsets. The vision tower and its
merger are frozen by default (official `set_model`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..runtime.model import ttt_parameter_names
from .recipe import OptimSettings, lr_factor

VISION_PREFIX = "model.visual."


def set_trainable(model: nn.Module, *, freeze_vision: bool) -> list[str]:
    """requires_grad on every parameter except (optionally) the vision tower; returns frozen names."""
    frozen = []
    for name, p in model.named_parameters():
        train = not (freeze_vision and name.startswith(VISION_PREFIX))
        p.requires_grad_(train)
        if not train:
            frozen.append(name)
    return frozen


def param_groups(model: nn.Module, optim: OptimSettings) -> list[dict]:
    """Four groups (only the non-empty ones): {base, ttt} x {decay, no_decay}. Each group carries
    `peak_lr` (the schedule scales it) and a `name`."""
    ttt = set(ttt_parameter_names(model))
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2  # matrices and the fast-weight inits; norms, biases, scales are vectors
        buckets.setdefault(("ttt" if name in ttt else "base", decay), []).append(p)
    groups = []
    for (kind, decay), params in sorted(buckets.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        peak = optim.ttt_lr if kind == "ttt" else optim.lr
        groups.append({"params": params, "name": f"{kind}_{'decay' if decay else 'no_decay'}",
                       "peak_lr": peak, "lr": peak, "weight_decay": optim.weight_decay if decay else 0.0})
    if not groups:
        raise ValueError("no trainable parameters (everything is frozen)")
    return groups


def build_optimizer(model: nn.Module, optim: OptimSettings) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, optim), betas=optim.betas, eps=optim.eps, foreach=True)


def set_lr(optimizer: torch.optim.Optimizer, step: int, total_steps: int, optim: OptimSettings) -> float:
    """Apply the schedule for optimiser step `step`; returns the factor."""
    factor = lr_factor(step, total_steps, optim.warmup, optim.min_lr_ratio)
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * factor
    return factor
