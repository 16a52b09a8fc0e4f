"""GPU memory of the engine on the Qwen3-VL-2B architecture (random weights): what the peak is made of.

    python -m benchmarks.profile_memory [--frames 64] [--history 960] [--batch-groups 32] \
        [--fw-precision bf16] [--out DIR]

Pushes `--history` frames, then measures `--frames` more and the questions of the benchmark (a cold
ask, prepare(), a prepared ask): the persistent part (weights, each part of the memory state, the
anchor buffers' capacity) and, for each part of a pass (vision tower, the decoder's raw projections,
TTT layers, anchor layers, layer finish; and "between parts" for the rest), the memory allocated when
it starts and the most it allocates on top while it runs. The part whose start + transient reaches
the run's peak is where the peak is made. Peak figures are torch.cuda.max_memory_allocated, as
bench_engine reports them. After ingest, and when a question's first part starts, a census of the
live tensors that are neither weights nor memory state (gc walk: size, shape, holder) names what
else the allocator's count holds. Writes DIR/memory_profile.json and .md when --out is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

GIB = 2**30


@dataclass
class PartMemory:
    """Per part: calls, the most allocated at a call's start, the largest transient on top of it,
    and the largest start + transient (the highest the part took the allocation)."""
    calls: int = 0
    start: int = 0
    transient: int = 0
    high: int = 0


@dataclass
class PeakTracker:
    """Bookkeeping of allocation peaks by part through three allocator calls (on CUDA:
    torch.cuda.memory_allocated, max_memory_allocated, reset_peak_memory_stats); `overall` is the
    highest allocation seen, in or between parts. `at_first` (optional) is called once, when the
    first part starts, and its result kept as `first` (profile_memory: a census of what the run has
    allocated before its first part)."""
    allocated: Callable[[], int]
    peak: Callable[[], int]
    reset: Callable[[], None]
    at_first: Callable[[], object] | None = None
    parts: dict[str, PartMemory] = field(default_factory=dict)
    overall: int = 0
    first: object = None
    started: bool = False

    def wrap(self, name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.finish()
            if not self.started:
                self.started = True
                if self.at_first is not None:
                    self.first = self.at_first()
            start = self.allocated()
            self.reset()
            try:
                return fn(*args, **kwargs)
            finally:
                high = self.peak()
                part = self.parts.setdefault(name, PartMemory())
                part.calls += 1
                part.start = max(part.start, start)
                part.transient = max(part.transient, high - start)
                part.high = max(part.high, high)
                self.overall = max(self.overall, high)
                self.reset()
        return wrapper

    def finish(self) -> None:
        """Fold in what was allocated since the last part (before the next one, or at the end)."""
        between = self.parts.setdefault("between parts", PartMemory())
        between.high = max(between.high, self.peak())
        self.overall = max(self.overall, self.peak())


def tracked(engine: object, tracker: PeakTracker, run: Callable[[], object]) -> None:
    """Run `run()` with the vision tower and the decoder's parts wrapped by `tracker`."""
    from benchmarks.profile_engine import with_parts_wrapped

    def measured() -> None:
        tracker.reset()
        run()
        tracker.finish()

    with_parts_wrapped(engine, tracker.wrap, measured)


def _attributes_holding(obj: object) -> list[str]:
    """`Type.attribute` of every object whose attribute is `obj` (through __dict__ or inline)."""
    import gc

    names = []
    for ref in gc.get_referrers(obj):
        if isinstance(ref, dict):  # an object's __dict__
            owners = [o for o in gc.get_referrers(ref) if getattr(o, "__dict__", None) is ref]
            names += [f"{type(o).__name__}.{k}" for o in owners for k, v in ref.items() if v is obj]
        elif hasattr(ref, "__dict__") and not isinstance(ref, type):  # inline attributes (Python 3.11+)
            names += [f"{type(ref).__name__}.{k}" for k, v in vars(ref).items() if v is obj]
    return names


def _holder(tensor: object) -> str:
    """Who holds `tensor`: `Type.attribute` for an object attribute that is it, or `Type.attribute[]`
    for one that is a list or tuple holding it; else the types of the containers that do."""
    import gc

    names = _attributes_holding(tensor)
    containers = []
    for ref in gc.get_referrers(tensor):
        if isinstance(ref, (list, tuple)) and ref:
            names += [f"{n}[]" for n in _attributes_holding(ref)]
            containers.append(type(ref).__name__)
        elif not isinstance(ref, dict) and not hasattr(ref, "__dict__"):
            containers.append(type(ref).__name__)
    return ", ".join(dict.fromkeys(names)) or ", ".join(dict.fromkeys(containers)) or "?"


def census(engine: object, device: object, top: int = 12) -> dict:
    """Live tensors on `device` that are neither the model's weights and buffers nor the memory
    state's tensors, after a gc.collect(): their total bytes (by storage, a view counted once) and the
    largest `top` with shape, dtype and holder — what the allocator's count has beyond the two."""
    import gc

    import torch

    gc.collect()
    known = {t.untyped_storage().data_ptr()
             for t in [*engine.model.parameters(), *engine.model.buffers(), *engine.state.tensors()]}
    others: dict[int, torch.Tensor] = {}
    with warnings.catch_warnings():  # isinstance() on deprecated torch objects warns
        warnings.simplefilter("ignore", FutureWarning)
        live = [obj for obj in gc.get_objects() if isinstance(obj, torch.Tensor)]
    want = torch.device(device)
    for obj in live:  # "cuda" names any CUDA device (torch.device("cuda") != "cuda:0"), "cuda:1" one
        if not obj.is_meta and obj.device.type == want.type and (want.index is None or obj.device.index in (None, want.index)):
            ptr = obj.untyped_storage().data_ptr()
            if ptr not in known:
                others.setdefault(ptr, obj)
    largest = sorted(others.values(), key=lambda t: -t.untyped_storage().nbytes())[:top]
    return {"bytes": sum(t.untyped_storage().nbytes() for t in others.values()), "tensors": len(others),
            "largest": [{"bytes": t.untyped_storage().nbytes(), "shape": list(t.shape), "dtype": str(t.dtype),
                         "holder": _holder(t)} for t in largest]}


def census_lines(when: str, found: dict) -> list[str]:
    """Markdown of a census(): the total and the largest tensors with their holders."""
    return [f"{when}, live tensors beyond weights and memory state: {found['bytes'] / GIB:.3f} GiB in "
            f"{found['tensors']}; the largest:", "", "| GiB | shape | dtype | held by |", "|---:|---|---|---|",
            *(f"| {x['bytes'] / GIB:.3f} | {x['shape']} | {x['dtype']} | {x['holder']} |" for x in found["largest"])]


def table(label: str, tracker: PeakTracker) -> list[str]:
    rows = sorted(tracker.parts.items(), key=lambda kv: -kv[1].high)
    lines = [f"{label}: peak {tracker.overall / GIB:.2f} GiB", "",
             "| part | calls | allocated at start, GiB | transient on top, GiB | highest, GiB |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {p.calls or ''} | {p.start / GIB:.2f} | {p.transient / GIB:.2f} | {p.high / GIB:.2f} |"
              if p.calls else f"| {name} | | | | {p.high / GIB:.2f} |" for name, p in rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    import torch

    from benchmarks.bench_engine import QUESTION
    from benchmarks.profile_engine import _push, engine_2b
    from benchmarks.stamp import stamp, stamp_line

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--history", type=int, default=960)
    parser.add_argument("--fw-precision", default="bf16")
    parser.add_argument("--batch-groups", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("profile_memory needs a CUDA GPU", file=sys.stderr)
        return 2
    engine, frames = engine_2b(args.fw_precision, args.batch_groups)
    weights = sum(t.numel() * t.element_size() for t in [*engine.model.parameters(), *engine.model.buffers()])
    _push(engine, frames, args.history)
    torch.cuda.synchronize()

    def tracker(at_first: Callable[[], object] | None = None) -> PeakTracker:
        return PeakTracker(torch.cuda.memory_allocated, torch.cuda.max_memory_allocated,
                           torch.cuda.reset_peak_memory_stats, at_first)

    def first_census() -> dict:  # what a question holds before its first layer runs
        return {"allocated": torch.cuda.memory_allocated(), **census(engine, "cuda")}

    runs = {"ingest": tracker(), "cold ask": tracker(first_census), "prepare": tracker(),
            "prepared ask": tracker(first_census)}
    tracked(engine, runs["ingest"], lambda: _push(engine, frames, args.frames))
    allocated = torch.cuda.memory_allocated()
    others = census(engine, "cuda")
    parts = engine.state.nbytes_by_part()
    # what the state's tensors keep allocated beyond its parts: slices pinning the tensors they were
    # cut from (0 since the memory keeps compact copies; ~2.5 GiB before, at 1024 frames)
    pinned = engine.state.storage_bytes() - (sum(parts.values()) - parts["anchor_kv"] + engine.state.anchor_capacity_bytes())
    persistent = {"weights": weights, **parts,
                  "anchor capacity": engine.state.anchor_capacity_bytes(), "pinned beyond the parts": pinned,
                  "other live tensors": others["bytes"],
                  "allocated after ingest": allocated, "allocated after gc.collect()": torch.cuda.memory_allocated()}
    tracked(engine, runs["cold ask"], lambda: engine.ask(QUESTION, max_new_tokens=3))
    tracked(engine, runs["prepare"], engine.prepare)
    tracked(engine, runs["prepared ask"], lambda: engine.ask(QUESTION, max_new_tokens=3))
    result = {**stamp(" ".join(["python -m benchmarks.profile_memory", *(argv if argv is not None else sys.argv[1:])]),
                      "cuda"),
              "frames": args.history + args.frames, "persistent_bytes": persistent, "other_tensors": others,
              "runs": {k: {"peak_bytes": t.overall, "parts": {n: vars(p) for n, p in t.parts.items()},
                           "first_census": t.first} for k, t in runs.items()}}
    lines = [stamp_line(result), "", f"After {args.history} + {args.frames} frames, {args.batch_groups} pairs per pass, "
             f"{args.fw_precision} fast weights. Persistent:", "", "| part | GiB |", "|---|---:|"]
    lines += [f"| {k} | {v / GIB:.3f} |" for k, v in persistent.items()]
    lines += ["", *census_lines("After ingest", others)]
    for label, t in runs.items():
        lines += ["", *table(label, t)]
        if t.first:
            lines += ["", *census_lines(f"When its first part starts ({t.first['allocated'] / GIB:.2f} GiB allocated)",
                                        t.first)]
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "memory_profile.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "memory_profile.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
