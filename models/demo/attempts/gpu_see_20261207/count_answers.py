"""Answers per arm and kind of this attempt's evaluation, and how often the full and blind arms agree:
`python models/demo/attempts/gpu_see_20261207/count_answers.py` (from the repo root)."""
import collections
import json
import pathlib

rows = [json.loads(line) for line in (pathlib.Path(__file__).parent / "eval" / "items.jsonl").open()]
answers = collections.defaultdict(collections.Counter)
by_item = collections.defaultdict(dict)
for r in rows:
    answers[(r["arm"], r["kind"])][r["prediction"]] += 1
    by_item[(r["seed"], r["item"])][r["arm"]] = r["prediction"]
for (arm, kind), counts in sorted(answers.items()):
    print(f"{arm:6} {kind:17} {len(counts):4} distinct, most common {counts.most_common(3)}")
same = sum(v["full"] == v["blind"] for v in by_item.values())
print(f"full == blind on {same} of {len(by_item)} items ({same / len(by_item):.0%})")
