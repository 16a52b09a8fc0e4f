#!/usr/bin/env bash
# The demo model's GPU run (TRAINING.md §3.8) in phases that fit 10-minute commands on a
# 16-core GPU machine with PyTorch but without this package installed; run from the repo root:
#
#   PHASES="data train" SEEDS=0:1600 TIME_LIMIT=420 bash tools/demo_gpu.sh
#   PHASES="train export eval" TIME_LIMIT=300 bash tools/demo_gpu.sh
#
# data:   bulk shards of training scenes SEEDS (train/demo_data.py; same samples as synth -> bag ->
#         annotate -> bake), runs/demo_shards; DATA_TIME_LIMIT=S starts no scene after S seconds (on
#         2026-12-07 rendering took ~31 s per scene per worker on the device and ate a whole call;
#         in a later session the same day 8 scenes took 11 s with 8 workers, 2.5 s per scene per worker,
#         cause of the difference not found)
# train:  spatial-ttt train run config/train/demo.yaml --out runs/demo (resumes; stops and
#         checkpoints before TIME_LIMIT seconds)
# export: models/demo/model.safetensors (fp16)
# eval:   spatial-ttt train eval of models/demo/model.safetensors on EVAL_SEEDS (disjoint from SEEDS),
#         the four arms, on all cores
# pack:    the newest checkpoint + logs of runs/demo as PACK_DIR/demo_run.tgz.partNN (15 MiB pieces,
#          what a device call can bring back)
# restore: runs/demo from .demo_carry/demo_run.tgz.part* when runs/demo has no checkpoint (a fresh
#          machine resumes the run from what the last call brought back)
# plan:    times a few steps of RECIPE (a throw-away run in /tmp) and writes runs/demo_plan.yaml: RECIPE
#          with its last stage's steps set so that the whole run fits TRAIN_BUDGET seconds of training
#          at the measured step time (the LR schedule then ends where the GPU time does), with the
#          batch size of BATCHES (default "64 32 16") that gave the most samples per second of those
#          whose probe fits in memory
# bgdata:  renders BG_SEEDS in the background (own session: it outlives the command, so a warm machine
#          keeps rendering between device calls) with BG_WORKERS processes while the next phases run
#          (shards are written atomically, so a later train phase globs only whole episodes)
# RUN (default runs/demo) is the run directory of train/export/pack/restore.
# OpenCV (the renderer), rosbags and mcap come from wheels in .whl/ when the machine lacks them.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if ! python3 -c "import cv2, rosbags, mcap" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
PY="python3 -m spatial_ttt_ros.cli"
SEEDS=${SEEDS:-0:1600}
EVAL_SEEDS=${EVAL_SEEDS:-1000000:1000200}
FRAMES=${FRAMES:-480}
export RUN=${RUN:-runs/demo}
WORKERS=${WORKERS:-$(nproc)}
for phase in ${PHASES:-data train export eval}; do
    echo "== $phase $(date -u +%H:%M:%S)"
    case $phase in
        data) python3 -m spatial_ttt_ros.train.demo_data --seeds "$SEEDS" --out runs/demo_shards --preset demo \
                  --frames "$FRAMES" --stride 5 --tour oneway --workers "$WORKERS" \
                  ${DATA_TIME_LIMIT:+--time-limit "$DATA_TIME_LIMIT"} ;;
        train) OMP_NUM_THREADS=4 $PY train run "${RECIPE:-config/train/demo.yaml}" --out "$RUN" \
                   --time-limit "${TIME_LIMIT:-420}" --no-bar ;;
        export) $PY train export "$RUN" --out models/demo --dtype float16 ;;
        eval) $PY train eval --preset demo --checkpoint models/demo/model.safetensors --synth-seeds "$EVAL_SEEDS" --frames "$FRAMES" --stride 5 --tour oneway \
                  --arm full --arm no_ttt_update --arm window_only --arm blind --workers "$WORKERS" \
                  --out "${EVAL_OUT:-models/demo/eval}" ;;
        pack) python3 - <<'PY'
import json, pathlib
import os
run = pathlib.Path(os.environ["RUN"])
step_dir = json.loads((run / "latest.json").read_text())["dir"]
pathlib.Path("runs/demo_pack.list").write_text("\n".join(
    ["latest.json", "run.json", "metrics.jsonl", step_dir]) + "\n")
PY
              mkdir -p "${PACK_DIR:?}"
              tar -C "$RUN" -czf - -T runs/demo_pack.list | split -b 15M -d - "$PACK_DIR/demo_run.tgz.part" ;;
        restore) if [ ! -f "$RUN/latest.json" ] && ls .demo_carry/demo_run.tgz.part* >/dev/null 2>&1; then
                     mkdir -p "$RUN" && cat .demo_carry/demo_run.tgz.part* | tar -C "$RUN" -xzf -
                     echo "restored $(cat "$RUN/latest.json")"
                 fi ;;
        plan) mkdir -p runs
              probes=()
              for batch in ${BATCHES:-64 32 16}; do  # each batch size is probed; one that fails (memory) is skipped
                  rm -rf "/tmp/demo_probe_$batch" && mkdir -p "/tmp/demo_probe_$batch"
                  sed -e "s/batch_size: [0-9]*/batch_size: $batch/" -e "s/log_every: [0-9]*/log_every: 1/" "${RECIPE:?}" \
                      > "/tmp/demo_probe_$batch.yaml"  # every step logged: the median below reads them
                  if OMP_NUM_THREADS=4 $PY train run "/tmp/demo_probe_$batch.yaml" --out "/tmp/demo_probe_$batch" \
                         --max-steps "${PROBE_STEPS:-6}" --no-bar; then probes+=("$batch")
                  else echo "plan: batch $batch failed (see above)" >&2; fi
              done
              python3 - "$RECIPE" "${TRAIN_BUDGET:?}" "${probes[@]}" <<'PY'
import json, statistics, sys, yaml
recipe, budget, batches = sys.argv[1], float(sys.argv[2]), [int(b) for b in sys.argv[3:]]
if not batches:
    sys.exit("plan: no batch size of BATCHES ran")
step_s = {}
for b in batches:
    rows = [json.loads(line) for line in open(f"/tmp/demo_probe_{b}/metrics.jsonl")]
    step_s[b] = statistics.median(r["step_s"] for r in rows if r["step"] >= 3)  # steps 1-2 warm up
    print(f"plan: batch {b}: {step_s[b]:.3f} s/step, {b / step_s[b]:.1f} samples/s")
# the most samples per second: a step of the small demo model is bound by the host's dispatches,
# which hardly grow with the batch (benchmarks/results/train_dispatch_20261207), so on a GPU a larger
# batch costs little more per step (H100: 0.80 s at 32, 1.14 s at 64; train_step_h100_20261207)
batch = max(batches, key=lambda b: b / step_s[b])
doc = yaml.safe_load(open(recipe))
doc["train"]["batch_size"] = batch
stages = doc["data"]["stages"]
before = sum(s["steps"] for s in stages[:-1])
stages[-1]["steps"] = max(1, int(budget / step_s[batch]) - before)
probed = ", ".join(f"{b}: {step_s[b]:.3f}" for b in batches)
head = (f"# {recipe} with batch {batch} (most samples/s of the probed s/step: {probed}) and its last stage\n"
        f"# sized by tools/demo_gpu.sh plan to {budget:.0f} s of training\n")
open("runs/demo_plan.yaml", "w").write(head + yaml.safe_dump(doc, sort_keys=False))
print(f"plan: batch {batch}, {step_s[batch]:.3f} s/step -> {sum(s['steps'] for s in stages)} steps in {budget:.0f} s")
PY
              ;;
        bgdata) setsid nohup python3 -m spatial_ttt_ros.train.demo_data --seeds "${BG_SEEDS:?}" --out runs/demo_shards --preset demo \
                    --frames "$FRAMES" --stride 5 --tour oneway --workers "${BG_WORKERS:-3}" > runs/bgdata.log 2>&1 &
                echo "background rendering of $BG_SEEDS (pid $!)" ;;
        *) echo "unknown phase $phase" >&2; exit 2 ;;
    esac
done
