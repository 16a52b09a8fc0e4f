"""The ``spatial-ttt`` command line.

Each subcommand lives beside the code it drives and is imported only when used, so
``spatial-ttt synth`` works on a machine without ROS and ``spatial-ttt node`` without torch
being imported twice.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function taking argv and returning an exit code, help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("spatial_ttt_ros.ros.demo", "cli_demo", "run the perception node on the embedded default and ask questions"),
    "node": ("spatial_ttt_ros.ros.perception_main", "cli_node", "bring up the perception node from a params YAML"),
    "record": ("spatial_ttt_ros.ros.recorder_node", "cli_record", "bring up the recorder node from a params YAML"),
    "synth": ("spatial_ttt_ros.data.synth", "cli_synth", "render synthetic scenes into training bags"),
    "annotate": ("spatial_ttt_ros.data.annotate", "cli_annotate", "dense descriptions + spatial QA for a bag"),
    "bag": ("spatial_ttt_ros.data.bags", "cli_bag", "bag tools (recover, info)"),
    "train": ("spatial_ttt_ros.train.cli", "cli_train", "training from bags: bake, run a recipe, export a checkpoint"),
}


def _usage() -> str:
    lines = ["usage: spatial-ttt COMMAND [args]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"spatial-ttt: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
