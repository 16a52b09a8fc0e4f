"""Provenance of a benchmark result: the command, the commit, the device and the versions.

Every result file (JSON + markdown) carries these, so a number in the README can be traced to the
run that produced it (benchmarks/plot.py shows them beside every table).
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import time
from pathlib import Path

import torch
import transformers

from spatial_ttt_ros.provenance import source_commit

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """Short hash of HEAD of this checkout, "+dirty" when tracked files differ (spatial_ttt_ros.provenance)."""
    return source_commit(ROOT)


def device_name(device: str | torch.device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def stamp(command: str, device: str | torch.device) -> dict:
    """{command, commit, gpu/device, torch, transformers, triton, python, date}."""
    try:
        triton = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton = None
    name = device_name(device)
    return {"command": command, "commit": commit(), "gpu": name, "device": name, "torch": torch.__version__,
            "transformers": transformers.__version__, "triton": triton, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def stamp_line(meta: dict) -> str:
    """One markdown line naming where a result comes from."""
    return (f"{meta['gpu']}, torch {meta['torch']}, transformers {meta.get('transformers', '?')}, "
            f"commit {meta.get('commit', 'not recorded')}, {meta.get('date', '')}: `{meta['command']}`")


def write_result(out: str | Path, stem: str, result: dict, lines: list[str]) -> None:
    """OUT/STEM.json (the result) and OUT/STEM.md (the lines), and the lines on stdout."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
