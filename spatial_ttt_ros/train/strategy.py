"""single | ddp | fsdp2 under torchrun: process group, device, wrapping, gradient sync, reductions.

FSDP2 (`fully_shard`) shards each decoder layer, then the root; on CUDA with bf16 the policy is
bf16 parameters / fp32 gradient reduction, on CPU (gloo, tests) fp32. The root is
`forward.TrainForward`, whose forward is the training loss, so that FSDP2's root hooks (unshard
before, reduce-scatter after backward) and DDP's reduction fire around the whole loss.
A decoder layer is its own FSDP2 unit only if the training forward calls it as a module
(`layer(...)`, as runtime/one_pass.py does); otherwise its parameters would be used sharded, so
the loop checks once with a hook and falls back to root-only sharding with a message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

STRATEGIES = ("single", "ddp", "fsdp2")


@dataclass
class Dist:
    strategy: str
    rank: int
    world: int
    local_rank: int
    device: torch.device
    owns_group: bool              # we created the process group (and destroy it at the end)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def init_dist(strategy: str, device: str = "auto") -> Dist:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and start the process group."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if strategy == "single" and world > 1:
        raise ValueError(f"strategy 'single' runs one process, got WORLD_SIZE={world}; use ddp or fsdp2")
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    owns = False
    if strategy != "single" and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:  # one process without torchrun: a local group of one
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", "29533")
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                device_id=dev if use_cuda else None)
        owns = True
    return Dist(strategy, rank, world, local_rank, dev, owns)


def close_dist(d: Dist) -> None:
    if d.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    return list(model.model.language_model.layers)


def layers_called_as_modules(net: nn.Module, samples: list, **kwargs: object) -> bool:
    """One no-grad loss with forward pre-hooks on the decoder layers: are they called as modules?"""
    called: set[int] = set()
    hooks = [layer.register_forward_pre_hook(lambda m, a, i=i: called.add(i))
             for i, layer in enumerate(decoder_layers(net.model))]
    try:
        with torch.no_grad():
            net(samples, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return len(called) == len(hooks)


def wrap(net: nn.Module, d: Dist, *, bf16: bool, shard_layers: bool = True) -> nn.Module:
    """The module the loop calls: `net` itself, DDP(net) or FSDP2-sharded `net`."""
    if d.strategy == "single":
        return net
    if d.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [d.device.index] if d.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
          if bf16 and d.device.type == "cuda" else MixedPrecisionPolicy())
    if shard_layers:
        for layer in decoder_layers(net.model):
            fully_shard(layer, mp_policy=mp)
    fully_shard(net, mp_policy=mp)
    return net


@contextlib.contextmanager
def grad_sync(module: nn.Module, d: Dist, sync: bool) -> Iterator[None]:
    """Gradient accumulation: reduce only on the last micro-batch of a step."""
    if d.strategy == "ddp" and not sync:
        with module.no_sync():
            yield
        return
    if d.strategy == "fsdp2":
        module.set_requires_gradient_sync(sync)
    yield


def autocast(d: Dist, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA for single/DDP (FSDP2 casts through its policy); nothing on CPU."""
    if bf16 and d.device.type == "cuda" and d.strategy != "fsdp2":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def all_sum(values: list[float], d: Dist) -> list[float]:
    """Sum small float64 scalars over ranks (identity in one process)."""
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    if d.distributed and d.world > 1:
        dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, d: Dist) -> bool:
    return all_sum([1.0 if flag else 0.0], d)[0] > 0


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> float:
    """Global grad norm (DTensor-aware under FSDP2), clipping when max_norm > 0."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(grads, max_norm if max_norm > 0 else float("inf"), foreach=True)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)
