"""Streaming evaluation on held-out synthetic scenes, with the memory ablation.

    spatial-ttt train eval --preset demo [--checkpoint F] --synth-seeds A:B [--frames N]
        [--stride 5] [--tour oneway] [--shards GLOB] --out DIR [--arm full --arm blind ...]
        [--workers N]

Each scene is rendered exactly as `synth` would (train/demo_data.synth_episode: the frames, the
annotate items and the evidence labels; or read from episode shards with --shards), streamed frame
by frame through the StreamingEngine (what ships, not the training forward), and every generated
question is asked after the last frame with the node's prompt (spatial.qa.item_prompt) and scored
as VSI-Bench does (spatial.metrics.score_item). Arms, on the same items:

* full: the model as shipped;
* no_ttt_update: fast weights stay at their trained initial values (config.ttt_updates False),
  anchors as usual;
* window_only: TTT updates off and anchors limited to the window as well (anchor_window_only):
  nothing older than the sliding window can reach the answer except through stacked windows;
* blind: every frame replaced by a constant grey image (the language prior of the model);
* budget_B (`--anchor-budget B`, repeatable): the full model with `anchor_kv_budget_tokens: B`, the
  bounded memory of hours-long runs (runtime/anchor_budget.py: sink + most recent frame groups in
  the anchor layers, the TTT layers keep the rest); each item records the frame groups evicted.

The prior of each item is the best constant answer (numerical) or the majority letter (multiple
choice) of its question type, fitted on the other half of the scenes (two folds by seed order).
Reported per arm: per task {score, prior, n, ci95}, overall, overall_prior and bootstrap 95 %
intervals over scenes; the same on the items whose evidence lies outside the sliding window at ask
time (`evidence_outside_window`). Writes DIR/eval.json, eval.md, eval.svg and items.jsonl.

    spatial-ttt train eval --merge DIR1 --merge DIR2 ... --out DIR

joins the arms of earlier runs over the same items (e.g. arms split across GPU-machine calls of a
few minutes) into one report, as if one run had scored them: their items.jsonl rows, with the priors
refitted; each run's own stamp is kept under `runs`. An arm in several runs is kept once and must
have given the same answer to every item (e.g. `full` re-run on another machine as a check). `--checkpoint F` then names where the evaluated
weights are kept (e.g. the committed copy of a file the runs read from a machine's /tmp).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..provenance import source_commit
from ..spatial.metrics import REPORTED_TASKS, aggregate, fit_priors, robot_scores, score_item
from ..spatial.prompts import ROBOT_KINDS
from ..spatial.qa import item_prompt
from .demo_data import parse_seeds

ARMS: dict[str, dict] = {
    "full": {},
    "no_ttt_update": {"ttt_updates": False},
    "window_only": {"ttt_updates": False, "anchor_window_only": True},
    "blind": {},
}
BUDGET_ARM = "budget_"
BLIND_GREY = 128
BOOTSTRAP = 1000
ROBOT_KIND_NAMES = {k.value for k in ROBOT_KINDS}  # locate error, robot_distance MRA, robot_direction accuracy


def arm_overrides(arm: str) -> dict:
    """Config overrides of an arm: one of ARMS, or budget_B (the full model under an anchor budget B)."""
    if arm in ARMS:
        return dict(ARMS[arm])
    if arm.startswith(BUDGET_ARM) and arm[len(BUDGET_ARM):].isdigit():
        return {"anchor_kv_budget_tokens": int(arm[len(BUDGET_ARM):])}
    raise ValueError(f"unknown evaluation arm {arm!r}: expected one of {sorted(ARMS)} or {BUDGET_ARM}<tokens>")


# ---------------------------------------------------------------- streaming the scenes
def _episodes(job: dict):  # noqa: ANN202
    """(seed, frames, stamps, poses or None, items) per scene of the job."""
    if job["shards"]:
        from .shards import read_episode

        for path in job["shards"]:
            ep = read_episode(path)
            seed = int(ep.source.split(":", 1)[1]) if ep.source.startswith("synth:") else -1
            yield seed, ep.frames, ep.stamps, ep.poses, ep.items
        return
    from ..runtime.config import load_config
    from .demo_data import synth_episode

    config = load_config(job["preset"], weights="")
    for seed in job["seeds"]:
        rgb, stamps, poses, info = synth_episode(seed, config, frames=job["frames"], stride=job["stride"],
                                             tour=job["tour"], window=job["window"])
        yield seed, rgb, stamps, poses, info["items"]


def _run_job(job: dict) -> list[dict]:
    """Stream the job's scenes through one engine per arm; one row per (arm, item)."""
    import torch

    from ..runtime.engine import StreamingEngine

    torch.set_num_threads(1)
    engines = {}
    for arm in job["arms"]:
        overrides = arm_overrides(arm)
        if job["checkpoint"]:
            engines[arm] = StreamingEngine.from_preset(job["preset"], checkpoint=job["checkpoint"], device=job["device"],
                                                       overrides=overrides)
        else:
            engines[arm] = StreamingEngine.from_preset(job["preset"], device=job["device"], overrides=overrides)
    rows = []
    for seed, frames, stamps, poses, items in _episodes(job):
        for arm, engine in engines.items():
            engine.reset()
            for i, (f, t) in enumerate(zip(frames, stamps)):
                pose = poses[i] if poses is not None and engine.config.pose_text else None  # the pose channel
                engine.push_frame(np.full_like(f, BLIND_GREY) if arm == "blind" else f, float(t), pose)
            engine.prepare()
            for k, it in enumerate(items):
                if it["kind"] in ROBOT_KIND_NAMES and not engine.config.pose_text:
                    continue  # answers relative to the robot's map pose: only for a pose-channel model
                text = item_prompt(it, append_many_rooms=engine.config.append_many_rooms).text
                answer = engine.ask(text, max_new_tokens=job["max_new_tokens"])
                rows.append({"seed": seed, "arm": arm, "item": k, "kind": it["kind"], "vsi_type": it["vsi_type"],
                             "answer": it["answer"], "prediction": answer.text,
                             "score": score_item(it["vsi_type"], answer.text, it["answer"]),
                             "outside": bool(it.get("evidence_outside_window", False)),
                             "frames": len(frames), "evicted_groups": engine.counters.evicted_groups})
    return rows


# ---------------------------------------------------------------- scoring
def add_priors(rows: list[dict]) -> None:
    """rows[i]["prior_score"]: the item scored with the prior fitted on the other fold of scenes."""
    seeds = sorted({r["seed"] for r in rows})
    fold = {s: i % 2 for i, s in enumerate(seeds)}
    first_arm = rows[0]["arm"] if rows else None
    for f in (0, 1):
        fit_on = [r for r in rows if fold[r["seed"]] != f and r["arm"] == first_arm]
        priors = fit_priors(fit_on) if fit_on else {}
        for r in rows:
            if fold[r["seed"]] == f:
                guess = priors.get(r["vsi_type"], "")
                r["prior_score"] = score_item(r["vsi_type"], guess, r["answer"]) if guess else 0.0


def _task_matrix(rows: list[dict], key: str, strict: bool) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Per scene x raw type sums of `key` and counts."""
    seeds = sorted({r["seed"] for r in rows})
    types = sorted({r["vsi_type"] for r in rows})
    si, ti = {s: i for i, s in enumerate(seeds)}, {t: i for i, t in enumerate(types)}
    sums, counts = np.zeros((len(seeds), len(types))), np.zeros((len(seeds), len(types)))
    for r in rows:
        sums[si[r["seed"]], ti[r["vsi_type"]]] += r[key]
        counts[si[r["seed"]], ti[r["vsi_type"]]] += 1
    return seeds, sums, counts, types


def _tasks_from_means(means: np.ndarray, types: list[str], strict: bool) -> dict[str, np.ndarray]:
    """means [B, T] (nan where no item) -> task -> [B] as metrics.aggregate computes them."""
    out = {}
    for task, (_, raw) in REPORTED_TASKS.items():
        cols = [types.index(t) for t in raw if t in types]
        if task == "rel_direction" and strict:
            out[task] = np.nansum(means[:, cols], axis=1) / len(raw) if cols else np.zeros(means.shape[0])
        elif cols:
            with warnings.catch_warnings():  # a resample without any item of a type: nan, skipped
                warnings.simplefilter("ignore", RuntimeWarning)
                out[task] = np.nanmean(means[:, cols], axis=1)
    return out


def summarize(rows: list[dict], *, strict: bool = True, seed: int = 0) -> dict:
    """{overall, overall_prior, overall_ci95, n, scenes, tasks: {task: {score, prior, n, ci95}}}."""
    if not rows:
        return {"overall": None, "overall_prior": None, "overall_ci95": None, "n": 0, "scenes": 0, "tasks": {}}
    agg = aggregate([{"question_type": r["vsi_type"], "score": r["score"]} for r in rows], missing_subtype_zero=strict)
    prior = aggregate([{"question_type": r["vsi_type"], "score": r["prior_score"]} for r in rows],
                      missing_subtype_zero=strict)
    seeds, sums, counts, types = _task_matrix(rows, "score", strict)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(seeds), np.full(len(seeds), 1 / len(seeds)), size=BOOTSTRAP).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (w @ sums) / (w @ counts)
    boot = _tasks_from_means(means, types, strict)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        overall_boot = np.nanmean(np.stack(list(boot.values()), axis=1), axis=1)

    def ci(x: np.ndarray) -> list[float]:
        x = x[np.isfinite(x)]
        return [float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))] if x.size else [float("nan")] * 2

    n_by_task = {task: sum(agg["counts"].get(t, 0) for t in raw) for task, (_, raw) in REPORTED_TASKS.items()}
    tasks = {task: {"score": agg["tasks"][task], "prior": prior["tasks"].get(task), "n": n_by_task[task],
                    "ci95": ci(boot[task]) if task in boot else None}
             for task in REPORTED_TASKS if task in agg["tasks"]}
    return {"overall": agg["overall"], "overall_prior": prior["overall"], "overall_ci95": ci(overall_boot),
            "n": len(rows), "scenes": len(seeds), "tasks": tasks}


def report(rows: list[dict], meta: dict) -> dict:
    add_priors(rows)
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    out = {**meta, "arms": {}}
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm and r["kind"] not in ROBOT_KIND_NAMES]  # the VSI kinds
        out["arms"][arm] = {"all": summarize(mine), "outside_window": summarize([r for r in mine if r["outside"]],
                                                                                 strict=False),
                            "robot": robot_scores([r for r in rows if r["arm"] == arm and r["kind"] in ROBOT_KIND_NAMES])}
    return out


# ---------------------------------------------------------------- writing
def _fmt(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.3f}"


def _ci(c: list[float] | None) -> str:
    return "" if not c or c[0] != c[0] else f" [{c[0]:.2f}, {c[1]:.2f}]"


def markdown(result: dict) -> str:
    lines = [f"# Streaming evaluation: preset `{result['preset']}`", "",
             f"`{result['command']}`  ", f"commit {result['commit']}, {result['device']}, torch {result['torch']}, "
             f"transformers {result['transformers']}, {result['date']}  ",
             f"scenes: {result['scenes']} ({result['source']}), window = {result['window_frames']} frames, "
             f"bootstrap 95 % intervals over scenes ({BOOTSTRAP} resamples); prior = best constant / majority "
             "letter fitted on the other half of the scenes.", ""]
    for subset, title in (("all", "All items"), ("outside_window", "Items whose evidence is outside the window")):
        arms = result["arms"]
        lines += [f"## {title}", "", "| task | " + " | ".join(arms) + " | prior | n |",
                  "|---|" + "---:|" * (len(arms) + 2)]
        first = next(iter(arms.values()))[subset]
        for task in REPORTED_TASKS:
            if task not in first["tasks"]:
                continue
            cells = [(_fmt(a[subset]["tasks"].get(task, {}).get("score")) + _ci(a[subset]["tasks"].get(task, {}).get("ci95")))
                     for a in arms.values()]
            lines.append(f"| {REPORTED_TASKS[task][0]} | " + " | ".join(cells) +
                         f" | {_fmt(first['tasks'][task]['prior'])} | {first['tasks'][task]['n']} |")
        lines.append("| **overall** | " + " | ".join(f"**{_fmt(a[subset]['overall'])}**{_ci(a[subset]['overall_ci95'])}"
                                                   for a in arms.values())
                     + f" | {_fmt(first['overall_prior'])} | {first['n']} |")
        lines.append("")
    robot = {name: a["robot"] for name, a in arms.items() if a.get("robot")}
    if robot:
        lines += ["### Robot-relative kinds (pose channel)", "",
                  "| arm | locate median m | locate p90 m | within 0.5 m | unreadable | robot_distance MRA "
                  "| robot_direction acc |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in robot.items():
            loc, dist, dirn = r.get("locate", {}), r.get("robot_distance", {}), r.get("robot_direction", {})
            lines.append(f"| {name} | {_fmt(loc.get('median_m'))} | {_fmt(loc.get('p90_m'))} | "
                         f"{_fmt(loc.get('within_target'))} | {loc.get('unreadable', '-')}/{loc.get('n', 0)} | "
                         f"{_fmt(dist.get('mra'))} | {_fmt(dirn.get('accuracy'))} |")
        lines.append("")
    return "\n".join(lines)


def svg(result: dict, subset: str = "all") -> str:
    """Grouped bars: per task, one bar per arm, a black tick at the prior (no plotting dependency)."""
    arms = list(result["arms"])
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f", "#9467bd"]
    first = result["arms"][arms[0]][subset]
    tasks = [t for t in REPORTED_TASKS if t in first["tasks"]] + ["overall"]
    gw, bw, h, top, left = 20 + 14 * len(arms), 14, 220, 30, 40
    width = left + gw * len(tasks) + 160
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 90}" font-family="sans-serif" '
             'font-size="10">', f'<text x="{left}" y="16" font-size="12">{result["preset"]}: {subset.replace("_", " ")}, '
             f'{result["scenes"]} scenes (ticks = prior)</text>']
    for k in range(0, 11, 2):
        y = top + h - h * k / 10
        parts.append(f'<line x1="{left}" x2="{left + gw * len(tasks)}" y1="{y}" y2="{y}" stroke="#ddd"/>'
                     f'<text x="{left - 24}" y="{y + 3}">{k / 10:.1f}</text>')
    for i, task in enumerate(tasks):
        x0 = left + i * gw + 10
        for j, arm in enumerate(arms):
            s = result["arms"][arm][subset]
            v = s["overall"] if task == "overall" else s["tasks"].get(task, {}).get("score")
            if v is not None and v == v:
                parts.append(f'<rect x="{x0 + j * bw}" y="{top + h - h * v:.1f}" width="{bw - 2}" height="{h * v:.1f}" '
                             f'fill="{colours[j % len(colours)]}"/>')
        p = first["overall_prior"] if task == "overall" else first["tasks"][task]["prior"]
        if p is not None and p == p:
            parts.append(f'<line x1="{x0 - 2}" x2="{x0 + bw * len(arms)}" y1="{top + h - h * p:.1f}" '
                         f'y2="{top + h - h * p:.1f}" stroke="black" stroke-width="2"/>')
        label = "overall" if task == "overall" else REPORTED_TASKS[task][0]
        parts.append(f'<text x="{x0}" y="{top + h + 14}">{label}</text>')
    for j, arm in enumerate(arms):
        y = top + 14 * j
        parts.append(f'<rect x="{left + gw * len(tasks) + 10}" y="{y}" width="10" height="10" '
                     f'fill="{colours[j % len(colours)]}"/><text x="{left + gw * len(tasks) + 24}" y="{y + 9}">{arm}</text>')
    parts.append(f'<text x="{left}" y="{h + 80}" font-size="8" fill="#555">{result["command"][:160]}</text></svg>')
    return "\n".join(parts)


# ---------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--checkpoint", default="", help="model.safetensors (default: the preset's own weights)")
    parser.add_argument("--synth-seeds", default="", help="A:B renders synthetic scenes A..B-1")
    parser.add_argument("--shards", default="", help="glob of episode shards to evaluate instead")
    parser.add_argument("--frames", type=int, default=480, help="trajectory length in 10 Hz frames (as synth)")
    parser.add_argument("--stride", type=int, default=5, help="keep every N-th frame (5 = 2 Hz keyframes)")
    parser.add_argument("--tour", choices=("return", "oneway"), default="oneway")
    parser.add_argument("--arm", action="append", choices=list(ARMS), help="repeat for several (default: full)")
    parser.add_argument("--anchor-budget", type=int, action="append", default=[], metavar="TOKENS",
                        help="also run the full model with anchor_kv_budget_tokens TOKENS (arm budget_TOKENS); "
                             "repeat for several")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--merge", type=Path, action="append", default=[], metavar="DIR",
                        help="join the arms of earlier runs (DIR/eval.json + items.jsonl) over the same items")
    parser.add_argument("--out", type=Path, required=True)


def merge_runs(dirs: list[Path]) -> tuple[list[dict], list[dict]]:
    """(rows, metas) of earlier eval runs: the same preset, checkpoint, source and window, the same
    items (seed, item, kind, answer) in every arm; an arm in several runs must have answered every
    item the same (kept once: a check that the runs agree). ValueError naming what differs."""
    rows: list[dict] = []
    metas: list[dict] = []
    items: set | None = None
    for d in dirs:
        if not (d / "eval.json").is_file() or not (d / "items.jsonl").is_file():
            raise ValueError(f"--merge {d}: no eval.json + items.jsonl there")
        meta = {k: v for k, v in json.loads((d / "eval.json").read_text()).items() if k != "arms"}
        mine = [json.loads(line) for line in (d / "items.jsonl").read_text().splitlines() if line]
        for key in ("preset", "checkpoint", "source", "window_frames"):
            if metas and meta.get(key) != metas[0].get(key):
                raise ValueError(f"--merge {d}: {key} {meta.get(key)!r} differs from {metas[0].get(key)!r} of {dirs[0]}")
        taken = {r["arm"] for r in rows}
        for arm in dict.fromkeys(r["arm"] for r in mine):
            keys = {(r["seed"], r["item"], r["kind"], json.dumps(r["answer"])) for r in mine if r["arm"] == arm}
            if items is not None and keys != items:
                raise ValueError(f"--merge {d}: arm {arm!r} scored other items than {dirs[0]}")
            items = keys
            if arm in taken:  # in an earlier run too: kept once, if it answered every item the same
                answers = {(r["seed"], r["item"]): r["prediction"] for r in rows if r["arm"] == arm}
                differ = sum(answers[(r["seed"], r["item"])] != r["prediction"] for r in mine if r["arm"] == arm)
                if differ:
                    raise ValueError(f"--merge {d}: arm {arm!r} answered {differ} of {len(answers)} items "
                                     "otherwise in an earlier run")
        rows += [r for r in mine if r["arm"] not in taken]
        metas.append(meta)
    return rows, metas


def _merged(args: argparse.Namespace, command: str) -> int:
    try:
        rows, metas = merge_runs(args.merge)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def joined(key: str) -> str:
        return "; ".join(dict.fromkeys(str(m[key]) for m in metas))

    meta = {**metas[0], "command": command, **{k: joined(k) for k in ("commit", "device", "torch", "transformers", "date")},
            "seconds": round(sum(m["seconds"] for m in metas), 1), "runs": metas}
    if args.checkpoint:  # where the evaluated weights live now (the runs' own paths stay under `runs`)
        meta["checkpoint"] = args.checkpoint
    _write(args.out, report(rows, meta), rows)
    return 0


def _write(out: Path, result: dict, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "eval.md").write_text(markdown(result))
    (out / "eval.svg").write_text(svg(result))
    (out / "eval_outside_window.svg").write_text(svg(result, "outside_window"))
    with open(out / "items.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(markdown(result))


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    # from the `spatial-ttt train eval` CLI argv is None and sys.argv[1:] starts with "train eval"
    command = "spatial-ttt " + " ".join(sys.argv[1:]) if argv is None else "spatial-ttt train eval " + " ".join(argv)
    if args.merge:
        return _merged(args, command)
    from ..runtime.config import load_config
    from ..runtime.engine import StreamingEngine
    from .demo_data import window_frames
    from .shards import find_shards

    try:
        if bool(args.synth_seeds) == bool(args.shards):
            raise ValueError("give exactly one of --synth-seeds A:B and --shards GLOB")
        seeds = list(parse_seeds(args.synth_seeds)) if args.synth_seeds else []
        shards = [str(p) for p in find_shards(args.shards)] if args.shards else []
        if args.shards and not shards:
            raise ValueError(f"no episode shards match {args.shards!r}")
        config = load_config(args.preset, weights="")
        probe = StreamingEngine.from_preset(args.preset, device="cpu", overrides={"weights": ""})
        window = window_frames(config, probe.tokenizer)
        for budget in args.anchor_budget:  # refused here by value, not later inside a worker
            StreamingEngine.from_preset(args.preset, device="cpu",
                                        overrides={"weights": "", "anchor_kv_budget_tokens": budget})
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    arms = list(dict.fromkeys((args.arm or ["full"]) + [f"{BUDGET_ARM}{b}" for b in args.anchor_budget]))
    units = seeds or shards
    n_jobs = max(1, min(len(units), 4 * args.workers))
    base = {"preset": args.preset, "checkpoint": args.checkpoint, "arms": arms, "frames": args.frames,
            "stride": args.stride, "tour": args.tour, "window": window, "device": args.device,
            "max_new_tokens": args.max_new_tokens}
    jobs = [{**base, "seeds": seeds[i::n_jobs], "shards": shards[i::n_jobs]} for i in range(n_jobs)]
    t0 = time.perf_counter()
    rows: list[dict] = []
    if args.workers <= 1:
        for job in jobs:
            rows += _run_job(job)
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for part in pool.map(_run_job, jobs):
                rows += part
    if not rows:
        print("error: the scenes produced no questions", file=sys.stderr)
        return 1
    import torch
    import transformers

    meta = {"command": command, "commit": source_commit(), "preset": args.preset,
            "checkpoint": args.checkpoint or (load_config(args.preset).weights or "(random init)"),
            "device": f"{args.device} ({platform.processor() or platform.machine()}, {args.workers} workers)",
            "torch": torch.__version__, "transformers": transformers.__version__,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "source": f"synth seeds {args.synth_seeds}, {args.frames} frames / stride {args.stride}, {args.tour} tours"
            if seeds else f"shards {args.shards}", "scenes": len({r['seed'] for r in rows}),
            "window_frames": window, "seconds": round(time.perf_counter() - t0, 1)}
    _write(args.out, report(rows, meta), rows)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """`spatial-ttt train eval` (train/cli.py)."""
    parser = subparsers.add_parser("eval", help="streaming evaluation + memory ablation on held-out synthetic scenes",
                                   description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spatial-ttt train eval", description=__doc__.splitlines()[0])
    add_arguments(parser)
    argv = sys.argv[1:] if argv is None else argv
    return run(parser.parse_args(argv), argv)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
