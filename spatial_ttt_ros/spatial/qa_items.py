"""What the QA generators share: the seen part of a scene (`QAContext`) and the item dicts
(`qa_item`, `mc_item`); the item layout is described in qa.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from spatial_ttt_ros.spatial.camera import CameraPose
from spatial_ttt_ros.spatial.observations import check_table, first_seen, seen_ids
from spatial_ttt_ros.spatial.prompts import LETTERS, QuestionKind, format_options, vsi_question_type
from spatial_ttt_ros.spatial.scene import Scene


class QAContext:
    """The seen part of the scene, indexed the ways the generators need."""

    def __init__(self, scene: Scene, table: Mapping[int, Iterable[str]],
                 poses: Sequence[CameraPose] | Mapping[int, CameraPose] | None = None) -> None:
        self.scene = scene
        self.table = check_table(scene, table)
        self.robot: tuple[int, np.ndarray, np.ndarray] | None = None  # (ask frame, xy, unit heading)
        if poses is not None and self.table:
            ask = max(self.table)
            try:
                pose = poses[ask]
            except (IndexError, KeyError):
                raise ValueError(f"poses has no pose for frame {ask}, the last frame of the table") from None
            if not isinstance(pose, CameraPose):
                raise ValueError(f"poses[{ask}] must be a CameraPose, got {type(pose).__name__}")
            heading = pose.forward[:2]
            if np.linalg.norm(heading) > 1e-6:
                self.robot = (ask, pose.position[:2].copy(), heading / np.linalg.norm(heading))
        self.first = first_seen(self.table)
        self.seen = scene.by_category(seen_ids(self.table))  # category -> seen objects
        self.unique = {c: objs[0] for c, objs in self.seen.items() if len(objs) == 1}

    def frame_range(self, ids: Iterable[str]) -> list[int]:
        firsts = [self.first[i] for i in ids]
        return [min(firsts), max(firsts)]

    def category_first(self, category: str) -> int:
        return min(self.first[o.id] for o in self.seen[category])


def qa_item(kind: QuestionKind, question: str, answer: object, objects: Sequence[str], frame_range: list[int],
          *, options: Sequence[str] = (), answer_text: str = "", unit: str = "", difficulty: str = "") -> dict:
    return {
        "kind": kind.value,
        "vsi_type": vsi_question_type(kind, difficulty),
        "difficulty": difficulty,
        "question": question,
        "options": list(options),
        "answer": answer,
        "answer_text": answer_text,
        "unit": unit,
        "objects": list(objects),
        "frame_range": list(frame_range),
    }


def mc_item(kind: QuestionKind, question: str, correct: str, distractors: Sequence[str], rng: np.random.Generator,
        objects: Sequence[str], frame_range: list[int], difficulty: str = "") -> dict:
    """An MC item with the correct text among shuffled distractors; the answer is its letter."""
    texts = [correct, *distractors]
    order = rng.permutation(len(texts))
    texts = [texts[i] for i in order]
    letter = LETTERS[texts.index(correct)]
    return qa_item(kind, question, letter, objects, frame_range, options=format_options(texts),
                 answer_text=correct, difficulty=difficulty)
