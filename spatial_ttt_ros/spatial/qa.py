"""Spatial QA items in the eight VSI-Bench kinds, answered from annotated geometry.

Input: a Scene and a visibility table (observations.py). Only objects visible in at least one
frame take part, and a category is "unique" when exactly one of its instances was seen (the
questions that say "the chair" ask only about unique categories, as VSI-Bench does).

Answers and their units follow the VSI-Bench questions (prompts.question_text):

* count: number of seen instances of a category;
* abs_distance: closest-point box distance in metres (geometry.box_distance), 2 decimals;
* object_size: longest box dimension in centimetres, whole number (the question asks cm);
* room_size: summed floor area of the rooms holding a seen object's centre, m^2, 1 decimal;
* rel_distance: which candidate category (nearest seen instance) is closest to the target;
* rel_direction easy/medium/hard: geometry.relative_direction from box centres;
* route_plan: the turns (Turn Left/Right/Back) at the start and at each waypoint;
* appearance_order: categories sorted by the first frame any of their instances was seen.

Robot-relative kinds (given `poses`, the camera optical frame's pose per frame in the map frame;
"now" = the last frame of the table, where the question is asked; position = the camera's x y,
heading = its viewing direction projected onto the floor, as runtime/tokens.py pose_xy_yaw):

* locate: box centre "x y" of the category's instance nearest to the robot now (floor distance to
  its footprint), metres in the map frame, 2 decimals; skipped when two instances are within
  `min_gap_m` of each other in that distance;
* robot_distance: floor distance (metres, 2 decimals) from the robot now to the nearest instance's
  footprint (0 inside it), skipped under 0.3 m;
* robot_direction: front / left / behind / right = the quarter of the heading the nearest
  instance's centre lies in (front |a| < 45, left 45..135, right -135..-45, behind |a| >= 135,
  a = signed turn, positive = left), skipped within `margin_deg` of a boundary or under 0.3 m.
Their frame_range is [first frame any instance was seen, the ask frame]: the clip must end there.

Ambiguous cases are skipped rather than asked: directions within `margin_deg` of a boundary,
nearest candidates closer together than `min_gap_m`, distances under 0.1 m, equal first frames.

Each item is a dict: kind, vsi_type, difficulty ("" unless rel_direction), question (the template
sentence), options (lettered, [] for numbers), answer (number, or the correct letter),
answer_text (the correct option's text, "" for numbers), unit ("count" | "m" | "cm" | "m^2" | ""),
objects (ids the answer depends on), frame_range [first, last]: from the first frame any of those
objects is visible to the first frame by which all of them have been seen (the question becomes
answerable after `last`; room_size spans the whole table).

Everything is deterministic given the seed: candidates are enumerated in sorted order and drawn
with a numpy Generator.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from spatial_ttt_ros.spatial.camera import CameraPose
from spatial_ttt_ros.spatial.geometry import box_distance, direction_from_angle, relative_angle, turn_action
from spatial_ttt_ros.spatial.prompts import (
    REL_DIRECTION_OPTIONS,
    ROBOT_KINDS,
    VSI_KINDS,
    Prompt,
    QuestionKind,
    build_prompt,
    parse_kind,
    question_text,
)
from spatial_ttt_ros.spatial.qa_items import QAContext, mc_item, qa_item
from spatial_ttt_ros.spatial.qa_robot import (
    locate_items,
    robot_direction_items,
    robot_distance_items,
)
from spatial_ttt_ros.spatial.scene import Scene, SceneObject

QA_KINDS = VSI_KINDS + ROBOT_KINDS  # the robot kinds are generated only when poses are given
ROUTE_TURNS = ("Turn Left", "Turn Right", "Turn Back")


def _count(ctx: QAContext, rng: np.random.Generator, n: int, **_: object) -> list[dict]:
    out, cats = [], sorted(ctx.seen)
    for cat in [cats[i] for i in rng.permutation(len(cats))[:n]]:
        objs = ctx.seen[cat]
        ids = [o.id for o in objs]
        out.append(qa_item(QuestionKind.COUNT, question_text(QuestionKind.COUNT, [objs[0].label]), len(objs), ids,
                         ctx.frame_range(ids), unit="count"))
    return out


def _abs_distance(ctx: QAContext, rng: np.random.Generator, n: int, **_: object) -> list[dict]:
    pairs = list(itertools.combinations(sorted(ctx.unique), 2))
    out = []
    for i in rng.permutation(len(pairs)):
        if len(out) == n:
            break
        a, b = (ctx.unique[c] for c in pairs[i])
        d = box_distance(a.box, b.box)
        if d < 0.1:  # touching objects give a 0 ground truth, which MRA cannot score
            continue
        q = question_text(QuestionKind.ABS_DISTANCE, [a.label, b.label])
        out.append(qa_item(QuestionKind.ABS_DISTANCE, q, round(d, 2), [a.id, b.id], ctx.frame_range([a.id, b.id]),
                         unit="m"))
    return out


def _object_size(ctx: QAContext, rng: np.random.Generator, n: int, **_: object) -> list[dict]:
    out, cats = [], sorted(ctx.unique)
    for cat in [cats[i] for i in rng.permutation(len(cats))[:n]]:
        o = ctx.unique[cat]
        q = question_text(QuestionKind.OBJECT_SIZE, [o.label])
        out.append(qa_item(QuestionKind.OBJECT_SIZE, q, int(round(o.box.longest_dimension * 100)), [o.id],
                         ctx.frame_range([o.id]), unit="cm"))
    return out


def _room_size(ctx: QAContext, rng: np.random.Generator, n: int, **_: object) -> list[dict]:
    seen_objs = [o for objs in ctx.seen.values() for o in objs]
    rooms = [r for r in ctx.scene.rooms if seen_objs and r.contains(np.stack([o.box.center for o in seen_objs])).any()]
    if not rooms or n < 1:
        return []
    area = round(sum(r.area for r in rooms), 1)
    frames = sorted(ctx.table)
    return [qa_item(QuestionKind.ROOM_SIZE, question_text(QuestionKind.ROOM_SIZE, []), area, [],
                  [frames[0], frames[-1]], unit="m^2")]


def _rel_distance(ctx: QAContext, rng: np.random.Generator, n: int, min_gap_m: float, **_: object) -> list[dict]:
    out, asked = [], set()
    targets = sorted(ctx.unique)
    for _attempt in range(40 * n):
        if len(out) == n or not targets:
            break
        t = ctx.unique[targets[rng.integers(len(targets))]]
        others = [c for c in sorted(ctx.seen) if c != t.category]
        if len(others) < 2:
            continue
        k = min(4, len(others))
        choices = [others[i] for i in sorted(rng.choice(len(others), size=k, replace=False))]
        key = (t.category, tuple(choices))
        if key in asked:
            continue
        asked.add(key)
        # Per VSI-Bench, a category with several instances is measured at its closest one.
        dists = {c: min(box_distance(t.box, o.box) for o in ctx.seen[c]) for c in choices}
        ranked = sorted(choices, key=lambda c: dists[c])
        if dists[ranked[1]] - dists[ranked[0]] < min_gap_m:
            continue
        labels = {c: ctx.seen[c][0].label for c in choices}
        q = question_text(QuestionKind.REL_DISTANCE, [t.label] + [labels[c] for c in choices])
        ids = [t.id] + [o.id for c in choices for o in ctx.seen[c]]
        out.append(mc_item(QuestionKind.REL_DISTANCE, q, labels[ranked[0]], [labels[c] for c in ranked[1:]], rng,
                       ids, ctx.frame_range(ids)))
    return out


def _angle_is_clear(angle: float, difficulty: str, margin: float) -> bool:
    a = abs(angle)
    if difficulty == "easy":
        bounds = (0.0, 180.0)
    elif difficulty == "medium":
        bounds = (0.0, 135.0, 180.0) if a < 135 else (135.0,)
    else:
        bounds = (0.0, 90.0, 180.0)
    return min(abs(a - b) for b in bounds) >= margin


def _xy_dist(a: SceneObject, b: SceneObject) -> float:
    return float(np.linalg.norm(a.box.center[:2] - b.box.center[:2]))


def _rel_direction(ctx: QAContext, rng: np.random.Generator, n: int, margin_deg: float, **_: object) -> list[dict]:
    cats = sorted(ctx.unique)
    out, asked = [], set()
    if len(cats) < 3:
        return out
    for attempt in range(60 * n):
        if len(out) == n:
            break
        difficulty = ("easy", "medium", "hard")[(len(out) + attempt) % 3]
        p, o, q = (ctx.unique[cats[i]] for i in rng.choice(len(cats), size=3, replace=False))
        if (p.id, o.id, q.id, difficulty) in asked or _xy_dist(p, o) < 0.3 or _xy_dist(p, q) < 0.3:
            continue
        asked.add((p.id, o.id, q.id, difficulty))
        angle = relative_angle(p.box.center, o.box.center, q.box.center)
        if not _angle_is_clear(angle, difficulty, margin_deg):
            continue
        answer = direction_from_angle(angle, difficulty)
        distractors = [d for d in REL_DIRECTION_OPTIONS[difficulty] if d != answer]
        text = question_text(QuestionKind.REL_DIRECTION, [p.label, o.label, q.label], difficulty)
        ids = [p.id, o.id, q.id]
        out.append(mc_item(QuestionKind.REL_DIRECTION, text, answer, distractors, rng, ids, ctx.frame_range(ids),
                       difficulty))
    return out


def _route_plan(ctx: QAContext, rng: np.random.Generator, n: int, margin_deg: float, **_: object) -> list[dict]:
    cats = sorted(ctx.unique)
    out, asked = [], set()
    for _attempt in range(60 * n):
        if len(out) == n or len(cats) < 3:
            break
        size = 3 + int(rng.integers(0, min(2, len(cats) - 3) + 1))  # start, facing, [waypoint], destination
        path = [ctx.unique[cats[i]] for i in rng.choice(len(cats), size=size, replace=False)]
        key = tuple(o.id for o in path)
        if key in asked:
            continue
        asked.add(key)
        start, facing, stops = path[0], path[1], path[2:]
        pos, heading, turns, ok = start.box.center, facing.box.center - start.box.center, [], True
        for stop in stops:
            leg = stop.box.center - pos
            if np.linalg.norm(leg[:2]) < 0.5 or np.linalg.norm(heading[:2]) < 0.3:
                ok = False
                break
            angle = relative_angle(pos, pos + heading, stop.box.center)
            # There is no "go straight" action, so every turn must be a clear left, right or back.
            if abs(angle) < 45 or abs(abs(angle) - 135) < margin_deg:
                ok = False
                break
            turns.append(turn_action(angle))
            pos, heading = stop.box.center, leg
        if not ok:
            continue
        correct = ", ".join(turns)
        others = [", ".join(c) for c in itertools.product(ROUTE_TURNS, repeat=len(turns)) if list(c) != turns]
        distractors = [others[i] for i in sorted(rng.choice(len(others), size=min(3, len(others)), replace=False))]
        q = question_text(QuestionKind.ROUTE_PLAN, [o.label for o in path])
        ids = [o.id for o in path]
        out.append(mc_item(QuestionKind.ROUTE_PLAN, q, correct, distractors, rng, ids, ctx.frame_range(ids)))
    return out


def _appearance_order(ctx: QAContext, rng: np.random.Generator, n: int, **_: object) -> list[dict]:
    cats = sorted(ctx.seen)
    out, asked = [], set()
    if len(cats) < 3:
        return out
    for _attempt in range(40 * n):
        if len(out) == n:
            break
        k = min(4, len(cats))
        chosen = [cats[i] for i in rng.choice(len(cats), size=k, replace=False)]  # question order: random
        firsts = {c: ctx.category_first(c) for c in chosen}
        if len(set(firsts.values())) < k or frozenset(chosen) in asked:
            continue
        asked.add(frozenset(chosen))
        labels = {c: ctx.seen[c][0].label for c in chosen}
        correct_order = sorted(chosen, key=lambda c: firsts[c])
        perms = [p for p in itertools.permutations(correct_order) if list(p) != correct_order]
        picks = rng.choice(len(perms), size=min(3, len(perms)), replace=False)
        distractors = [", ".join(labels[c] for c in perms[i]) for i in sorted(picks)]
        q = question_text(QuestionKind.APPEARANCE_ORDER, [labels[c] for c in chosen])
        ids = [min(ctx.seen[c], key=lambda o: (ctx.first[o.id], o.id)).id for c in correct_order]
        out.append(mc_item(QuestionKind.APPEARANCE_ORDER, q, ", ".join(labels[c] for c in correct_order), distractors,
                       rng, ids, ctx.frame_range(ids)))
    return out


_GENERATORS = {
    QuestionKind.COUNT: _count,
    QuestionKind.ABS_DISTANCE: _abs_distance,
    QuestionKind.OBJECT_SIZE: _object_size,
    QuestionKind.ROOM_SIZE: _room_size,
    QuestionKind.REL_DISTANCE: _rel_distance,
    QuestionKind.REL_DIRECTION: _rel_direction,
    QuestionKind.ROUTE_PLAN: _route_plan,
    QuestionKind.APPEARANCE_ORDER: _appearance_order,
    QuestionKind.LOCATE: locate_items,
    QuestionKind.ROBOT_DISTANCE: robot_distance_items,
    QuestionKind.ROBOT_DIRECTION: robot_direction_items,
}


def generate_qa(
    scene: Scene,
    table: Mapping[int, Iterable[str]],
    *,
    seed: int | np.random.Generator = 0,
    kinds: Iterable[QuestionKind | str] = QA_KINDS,
    max_per_kind: int = 3,
    margin_deg: float = 15.0,
    min_gap_m: float = 0.15,
    poses: Sequence[CameraPose] | Mapping[int, CameraPose] | None = None,
) -> list[dict]:
    """QA items for the requested kinds (at most max_per_kind each), in the order of `kinds`.

    poses: the camera pose per frame of the table (a sequence indexed by frame, or a mapping);
    without them the robot-relative kinds give no items (module doc).

    seed: an int or a numpy Generator (each kind draws from its own child stream, so asking for
    fewer kinds does not change the items of the others when an int seed is given).
    """
    if max_per_kind < 0:
        raise ValueError(f"max_per_kind must be >= 0, got {max_per_kind}")
    if not 0 <= margin_deg < 45:
        raise ValueError(f"margin_deg must be in [0, 45), got {margin_deg}")
    ctx = QAContext(scene, table, poses)
    if not ctx.table:
        return []
    root = seed if isinstance(seed, np.random.Generator) else None
    items = []
    for kind in kinds:
        k = parse_kind(kind)
        if k is QuestionKind.FREE_FORM:
            raise ValueError("free_form questions cannot be generated from geometry")
        rng = root if root is not None else np.random.default_rng([int(seed), QA_KINDS.index(k)])
        items += _GENERATORS[k](ctx, rng, max_per_kind, margin_deg=margin_deg, min_gap_m=min_gap_m)
    return items


def item_prompt(item: Mapping, **kwargs: object) -> Prompt:
    """The model prompt for a generated item (kwargs go to prompts.build_prompt)."""
    return build_prompt(item["kind"], question=item["question"], options=item["options"],
                        difficulty=item.get("difficulty", ""), **kwargs)
