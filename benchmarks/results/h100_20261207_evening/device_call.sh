#!/usr/bin/env bash
set -uo pipefail
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
nvidia-smi -L; date -u
timeout 100 python3 -m pytest -q -p no:cacheprovider test/gpu/test_engine_cuda.py test/gpu/test_decode_graph_cuda.py 2>&1 | tail -8 | tee $OUT/gpu_tests_engine.log
echo "t=$SECONDS"
timeout 150 python3 -m benchmarks.bench_engine compare --fw-precision bf16 --batch-groups 32 --frames 1024 --out $OUT/b1024 > $OUT/b1024.log 2>&1; echo "compare rc $?"; tail -14 $OUT/b1024.log
echo "t=$SECONDS"
timeout 80 python3 -m benchmarks.bench_question --frames 300 1000 --out $OUT/q > $OUT/q.log 2>&1; echo "question rc $?"; tail -8 $OUT/q.log
echo "t=$SECONDS"
timeout 90 python3 -m benchmarks.profile_engine --history 936 --frames 64 --batch-groups 32 --fw-precision bf16 --ask --decode-graph static > $OUT/profile_1000.txt 2>&1; echo "profile rc $?"; grep -E "frames/s|ms/frame|ask|wall" $OUT/profile_1000.txt
echo "t=$SECONDS"
timeout $((585 - SECONDS)) python3 -m benchmarks.bench_engine compare --fw-precision bf16 --batch-groups 32 --frames 4096 --out $OUT/b4096 > $OUT/b4096.log 2>&1; echo "compare4096 rc $?"; tail -14 $OUT/b4096.log
echo "t=$SECONDS"
