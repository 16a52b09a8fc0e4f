"""QA items of the robot-relative kinds (locate, robot_distance, robot_direction), answered from
the camera pose at the ask frame; the rules are in qa.py's module doc."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from spatial_ttt_ros.spatial.geometry import relative_angle
from spatial_ttt_ros.spatial.prompts import ROBOT_DIRECTION_OPTIONS, QuestionKind, question_text
from spatial_ttt_ros.spatial.qa_items import QAContext, mc_item, qa_item
from spatial_ttt_ros.spatial.scene import SceneObject


def _robot_targets(ctx: QAContext, rng: np.random.Generator, n: int,
                   min_gap_m: float) -> Iterator[tuple[SceneObject, float, list[SceneObject]]]:
    """Up to n seen categories in random order with (nearest instance, its floor distance, all
    instances nearest first); categories whose two nearest instances tie within min_gap_m skipped."""
    if ctx.robot is None:
        return
    xy = ctx.robot[1]
    cats = sorted(ctx.seen)
    for cat in [cats[i] for i in rng.permutation(len(cats))]:
        objs = ctx.seen[cat]
        dist = {o.id: float(o.box.distance_to_points([[xy[0], xy[1], o.box.center[2]]])[0]) for o in objs}
        ranked = sorted(objs, key=lambda o: (dist[o.id], o.id))
        if len(ranked) > 1 and dist[ranked[1].id] - dist[ranked[0].id] < min_gap_m:
            continue
        yield ranked[0], dist[ranked[0].id], ranked


def _robot_range(ctx: QAContext, ranked: Sequence[SceneObject]) -> list[int]:
    return [min(ctx.first[o.id] for o in ranked), ctx.robot[0]]


def locate_items(ctx: QAContext, rng: np.random.Generator, n: int, min_gap_m: float, **_: object) -> list[dict]:
    out = []
    for o, _d, ranked in _robot_targets(ctx, rng, n, min_gap_m):
        if len(out) == n:
            break
        answer = [round(float(o.box.center[0]), 2), round(float(o.box.center[1]), 2)]
        out.append(qa_item(QuestionKind.LOCATE, question_text(QuestionKind.LOCATE, [o.label]), answer,
                         [r.id for r in ranked], _robot_range(ctx, ranked), unit="m"))
    return out


def robot_distance_items(ctx: QAContext, rng: np.random.Generator, n: int, min_gap_m: float, **_: object) -> list[dict]:
    out = []
    for o, d, ranked in _robot_targets(ctx, rng, n, min_gap_m):
        if len(out) == n:
            break
        if d < 0.3:
            continue
        out.append(qa_item(QuestionKind.ROBOT_DISTANCE, question_text(QuestionKind.ROBOT_DISTANCE, [o.label]),
                         round(d, 2), [r.id for r in ranked], _robot_range(ctx, ranked), unit="m"))
    return out


def robot_direction_word(angle_deg: float) -> str:
    """front |a| < 45, left 45 <= a < 135, right -135 < a <= -45, behind |a| >= 135 (a positive = left)."""
    a = abs(angle_deg)
    if a < 45:
        return "front"
    if a >= 135:
        return "behind"
    return "left" if angle_deg > 0 else "right"


def robot_direction_items(ctx: QAContext, rng: np.random.Generator, n: int, min_gap_m: float, margin_deg: float,
                     **_: object) -> list[dict]:
    out = []
    for o, _d, ranked in _robot_targets(ctx, rng, n, min_gap_m):
        if len(out) == n:
            break
        _, xy, heading = ctx.robot
        if np.linalg.norm(o.box.center[:2] - xy) < 0.3:
            continue
        angle = relative_angle(xy, xy + heading, o.box.center[:2])
        if min(abs(abs(angle) - b) for b in (45.0, 135.0)) < margin_deg:
            continue
        word = robot_direction_word(angle)
        out.append(mc_item(QuestionKind.ROBOT_DIRECTION, question_text(QuestionKind.ROBOT_DIRECTION, [o.label]), word,
                       [w for w in ROBOT_DIRECTION_OPTIONS if w != word], rng, [r.id for r in ranked],
                       _robot_range(ctx, ranked)))
    return out
