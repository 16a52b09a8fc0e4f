"""Per-scene count answers of a gate evaluation (items.jsonl): truth, the full model's and the
blind run's answers, one row per question.

    python models/demo/attempts/overfit_gate_20261207/count_table.py models/demo/attempts/overfit_gate_20261207/step100/items.jsonl
"""

import json
import sys
from collections import defaultdict

rows: dict[tuple[int, int], dict] = defaultdict(dict)
for line in open(sys.argv[1]):
    it = json.loads(line)
    if it["kind"] == "count":
        rows[(it["seed"], it["item"])].update(truth=it["answer"], **{it["arm"]: it["prediction"]})
print("| scene | item | truth | full | blind |\n|---:|---:|---:|---:|---:|")
for (seed, item), r in sorted(rows.items()):
    print(f"| {seed} | {item} | {r['truth']} | {r.get('full', '')} | {r.get('blind', '')} |")
scenes = defaultdict(set)
for (seed, _), r in rows.items():
    scenes[seed].add(r.get("full"))
one = sum(len(v) == 1 for v in scenes.values())
print(f"\nscenes whose questions all got the same full-model answer: {one} of {len(scenes)}")
