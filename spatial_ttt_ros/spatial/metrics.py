"""VSI-Bench scoring: MRA, multiple-choice accuracy and the eight reported task scores.

Follows the official harness (REFERENCE_SPEC §9.1; thinking-in-space
`lmms_eval/tasks/vsibench/utils.py`, `vsibench_process_results` / `vsibench_aggregate_results`):

* prediction text -> `answers.vsi_extract` (first space-separated piece, trailing periods stripped);
* multiple choice: case-insensitive exact match with the ground-truth letter, 1 or 0;
* numerical: both converted with `float`; a prediction that is not a number scores 0; otherwise
  MRA over the ten thresholds 0.50, 0.55, ..., 0.95 with `|pred - gt| / gt <= 1 - theta`;
* aggregation: mean per raw question type; "rel_direction" = (easy + medium + hard) / 3 where a
  missing subtype counts 0; overall = unweighted mean of the task scores.

As in the official code, the overall mean runs over the tasks that have items plus rel_direction
(always present); with all eight tasks present it is exactly the mean of the eight. Scores are
fractions in [0, 1]; the summary script multiplies by 100.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np

from spatial_ttt_ros.spatial.answers import parse_answer, vsi_extract
from spatial_ttt_ros.spatial.prompts import (
    DIFFICULTIES,
    QuestionKind,
    is_multiple_choice,
    kind_from_vsi_type,
    parse_kind,
    vsi_question_type,
)

MCA_QUESTION_TYPES = (
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "object_rel_distance",
    "route_planning",
    "obj_appearance_order",
)
NA_QUESTION_TYPES = (
    "object_abs_distance",
    "object_counting",
    "object_size_estimation",
    "room_size_estimation",
)
# The eight reported tasks: our key -> (label in the summary table, raw types it averages).
REPORTED_TASKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "appearance_order": ("Appr Order", ("obj_appearance_order",)),
    "abs_distance": ("Abs Dist", ("object_abs_distance",)),
    "count": ("Counting", ("object_counting",)),
    "rel_distance": ("Rel Dist", ("object_rel_distance",)),
    "object_size": ("Obj Size", ("object_size_estimation",)),
    "room_size": ("Room Size", ("room_size_estimation",)),
    "route_plan": ("Route", ("route_planning",)),
    "rel_direction": ("Rel Dir", tuple(f"object_rel_direction_{d}" for d in DIFFICULTIES)),
}

MRA_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # 0.50, 0.55, ..., 0.95
# Robot-relative kinds (not VSI-Bench; prompts.ROBOT_KINDS): our own question types. They are kept
# out of REPORTED_TASKS and the overall mean; `robot_scores` reports them.
ROBOT_QUESTION_TYPES = ("robot_locate", "robot_distance", "robot_direction")
LOCATE_TARGET_M = 0.5  # a locate answer within this many metres scores 1 in score_item


def mean_relative_accuracy(pred: float, gt: float) -> float:
    """VSI-Bench MRA: the fraction of thresholds theta in 0.50..0.95 with |pred-gt|/gt <= 1-theta.

    gt must be positive (every VSI-Bench numerical ground truth is; the official code would divide
    by zero at 0 and accept anything for a negative gt).
    """
    pred, gt = float(pred), float(gt)
    if not math.isfinite(gt) or gt <= 0:
        raise ValueError(f"ground truth must be a positive finite number, got {gt!r}")
    if not math.isfinite(pred):
        return 0.0
    rel = abs(pred - gt) / gt
    return float(np.mean(rel <= 1 - MRA_THRESHOLDS))


def mc_accuracy(pred: str, gt: str) -> float:
    """1.0 if the extracted prediction equals the ground-truth letter (case-insensitive), else 0.0."""
    return 1.0 if pred.lower() == gt.lower() else 0.0


def _to_float(s: object) -> float | None:
    try:
        return float(s)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _resolve_type(kind: QuestionKind | str, difficulty: str = "") -> str:
    """A raw VSI question type from either a raw type or a kind (+ difficulty)."""
    if isinstance(kind, str) and (kind in MCA_QUESTION_TYPES or kind in NA_QUESTION_TYPES
                                  or kind in ROBOT_QUESTION_TYPES):
        return kind
    k = parse_kind(kind)
    if k is QuestionKind.REL_DIRECTION and not difficulty:
        raise ValueError("rel_direction needs its difficulty (easy, medium or hard) to be scored")
    return vsi_question_type(k, difficulty)


def score_item(kind: QuestionKind | str, prediction_text: str, ground_truth: str | float,
               difficulty: str = "") -> float:
    """Score one prediction the way the official harness does.

    kind: a QuestionKind (rel_direction with its difficulty) or a raw VSI-Bench question type.
    ground_truth: the option letter for MC kinds, a number (or numeric string) otherwise.
    """
    qtype = _resolve_type(kind, difficulty)
    k, _ = kind_from_vsi_type(qtype)
    if k is QuestionKind.LOCATE:
        err = locate_error(prediction_text, ground_truth)
        return 1.0 if err <= LOCATE_TARGET_M else 0.0
    pred = vsi_extract(prediction_text)
    if is_multiple_choice(k):
        if not isinstance(ground_truth, str) or not ground_truth.strip():
            raise ValueError(f"{qtype} ground truth must be an option letter, got {ground_truth!r}")
        return mc_accuracy(pred, ground_truth.strip())
    gt = _to_float(ground_truth)
    if gt is None:
        raise ValueError(f"{qtype} ground truth must be a number, got {ground_truth!r}")
    value = _to_float(pred)
    if value is None:
        return 0.0
    return mean_relative_accuracy(value, gt)


def aggregate(results: Iterable[Mapping[str, object]], *, missing_subtype_zero: bool = True) -> dict:
    """Mean scores per raw type, the eight reported tasks and the overall mean.

    results: mappings with "question_type" (a raw VSI type, or a kind with "difficulty" for
    rel_direction) and "score" (a number in [0, 1]).
    missing_subtype_zero: as the official harness, a rel_direction difficulty without items counts
    0 and rel_direction is always a task; False averages the difficulties present and leaves out
    rel_direction when none is (for subsets, e.g. the items whose evidence left the window).
    Returns {"per_type": {raw type: mean}, "counts": {raw type: n}, "tasks": {task: score},
    "labels": {task: summary label}, "overall": float}.
    """
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for i, r in enumerate(results):
        if "question_type" not in r or "score" not in r:
            raise ValueError(f"results[{i}] needs 'question_type' and 'score', got keys {sorted(r)}")
        qtype = _resolve_type(str(r["question_type"]), str(r.get("difficulty", "") or ""))
        score = _to_float(r["score"])
        if score is None or not 0.0 <= score <= 1.0:
            raise ValueError(f"results[{i}].score must be a number in [0, 1], got {r['score']!r}")
        sums[qtype] += score
        counts[qtype] += 1
    per_type = {t: sums[t] / counts[t] for t in sorted(counts)}

    tasks: dict[str, float] = {}
    for task, (_, raw_types) in REPORTED_TASKS.items():
        if task == "rel_direction" and missing_subtype_zero:
            tasks[task] = sum(per_type.get(t, 0.0) for t in raw_types) / len(raw_types)
        elif task == "rel_direction":
            present = [per_type[t] for t in raw_types if t in per_type]
            if present:
                tasks[task] = sum(present) / len(present)
        elif raw_types[0] in per_type:
            tasks[task] = per_type[raw_types[0]]
    overall = sum(tasks.values()) / len(tasks) if tasks else float("nan")
    return {
        "per_type": per_type,
        "counts": dict(sorted(counts.items())),
        "tasks": tasks,
        "labels": {t: REPORTED_TASKS[t][0] for t in tasks},
        "overall": overall,
    }


# ---------------------------------------------------------------- robot-relative kinds
def locate_error(prediction_text: str, ground_truth: object) -> float:
    """Metres between the position read from the prediction (answers.parse_answer, "x y") and the
    true (x, y); inf when the prediction is not a readable position (it counts as a miss)."""
    try:
        gx, gy = (float(v) for v in ground_truth)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"locate ground truth must be (x, y) in metres, got {ground_truth!r}") from None
    if not (math.isfinite(gx) and math.isfinite(gy)):
        raise ValueError(f"locate ground truth must be finite, got {ground_truth!r}")
    parsed = parse_answer(QuestionKind.LOCATE, prediction_text)
    if not parsed.ok or parsed.position is None:
        return math.inf
    return math.hypot(parsed.position[0] - gx, parsed.position[1] - gy)


def robot_scores(rows: Iterable[Mapping[str, object]]) -> dict:
    """The robot-relative kinds' metrics from rows with "kind" (or "vsi_type"), "prediction" (the
    model's text) and "answer" (the item's: (x, y), metres, or the option letter):

    {"locate": {"n", "unreadable", "median_m", "p90_m", "within_target"}, "robot_distance":
    {"n", "mra"}, "robot_direction": {"n", "accuracy"}} for the kinds present. An unreadable locate
    answer counts as an infinite error (so median / p90 are inf when more than half / a tenth are)."""
    errors: list[float] = []
    mra: list[float] = []
    acc: list[float] = []
    for r in rows:
        kind = r.get("kind") or kind_from_vsi_type(str(r.get("vsi_type")))[0]
        k = parse_kind(kind)  # type: ignore[arg-type]
        text = str(r["prediction"])
        if k is QuestionKind.LOCATE:
            errors.append(locate_error(text, r["answer"]))
        elif k is QuestionKind.ROBOT_DISTANCE:
            mra.append(score_item("robot_distance", text, r["answer"]))  # type: ignore[arg-type]
        elif k is QuestionKind.ROBOT_DIRECTION:
            acc.append(score_item("robot_direction", text, r["answer"]))  # type: ignore[arg-type]
    out: dict[str, dict] = {}
    if errors:
        e = np.asarray(errors)
        out["locate"] = {"n": len(e), "unreadable": int(np.sum(~np.isfinite(e))),
                         "median_m": float(np.quantile(e, 0.5, method="inverted_cdf")),
                         "p90_m": float(np.quantile(e, 0.9, method="inverted_cdf")),
                         "within_target": float(np.mean(e <= LOCATE_TARGET_M))}
    if mra:
        out["robot_distance"] = {"n": len(mra), "mra": float(np.mean(mra))}
    if acc:
        out["robot_direction"] = {"n": len(acc), "accuracy": float(np.mean(acc))}
    return out


# ---------------------------------------------------------------- answer priors
def best_constant(values: Iterable[float]) -> float:
    """The constant answer with the highest mean MRA over `values` (positive ground truths); the
    candidates are the values themselves (MRA of a constant peaks at one of them or ties one)."""
    gts = np.asarray([float(v) for v in values], dtype=np.float64)
    if gts.size == 0 or not np.all(np.isfinite(gts)) or np.any(gts <= 0):
        raise ValueError(f"best_constant needs positive finite ground truths, got {gts[:5].tolist()}")
    cands = np.unique(gts)
    rel = np.abs(cands[:, None] - gts[None, :]) / gts[None, :]                 # [C, N]
    mra = (rel[:, :, None] <= 1 - MRA_THRESHOLDS[None, None, :]).mean(axis=(1, 2))
    return float(cands[int(np.argmax(mra))])


def majority_letter(letters: Iterable[str]) -> str:
    """The most frequent option letter (ties: the alphabetically first)."""
    counts: dict[str, int] = defaultdict(int)
    for letter in letters:
        counts[str(letter).strip().upper()] += 1
    if not counts:
        raise ValueError("majority_letter needs at least one letter")
    return min(counts, key=lambda c: (-counts[c], c))


def fit_priors(items: Iterable[Mapping[str, object]]) -> dict[str, str]:
    """Per raw VSI type, the prior's answer text: the best constant (numerical types) or the
    majority letter (multiple choice), fitted on `items` (mappings with "vsi_type", "answer")."""
    by_type: dict[str, list] = defaultdict(list)
    for it in items:
        by_type[_resolve_type(str(it["vsi_type"]))].append(it["answer"])
    out = {}
    for qtype, answers in sorted(by_type.items()):
        if qtype in MCA_QUESTION_TYPES or qtype == "robot_direction":
            out[qtype] = majority_letter(answers)
        elif qtype == "robot_locate":
            xy = np.median(np.asarray(answers, dtype=np.float64).reshape(-1, 2), axis=0)
            out[qtype] = f"{xy[0]:.1f} {xy[1]:.1f}"
        else:
            out[qtype] = f"{best_constant(answers):g}"
    return out
