#!/usr/bin/env bash
set -uo pipefail
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
nvidia-smi -L
timeout ${T1:-110} python3 -m benchmarks.profile_memory --out $OUT/mem > $OUT/mem.log 2>&1; echo "profile rc $?"; head -25 $OUT/mem/memory_profile.md 2>/dev/null; grep "peak" $OUT/mem/memory_profile.md
timeout ${T2:-100} python3 -m pytest -q -p no:cacheprovider test/gpu/test_engine_cuda.py test/gpu/test_decode_graph_cuda.py 2>&1 | tail -6 | tee $OUT/gpu_tests.log
timeout ${T3:-200} python3 -m benchmarks.bench_engine compare --fw-precision bf16 --batch-groups 32 --frames 1024 --out $OUT/b1024 > $OUT/b1024.log 2>&1; echo "compare rc $?"; tail -22 $OUT/b1024.log
