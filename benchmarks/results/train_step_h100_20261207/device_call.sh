# micro device call (scratch driver): the CUDA training-forward test and the step-time A/B at batch 32
export SPATIAL_TTT_COMMIT=fa583c3 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name --format=csv,noheader; python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)"
(PHASES=data SEEDS=0:32 WORKERS=16 DATA_TIME_LIMIT=15 bash tools/demo_gpu.sh > $OUT/data.log 2>&1) &
timeout 60 python -m pytest -q -p no:cacheprovider test/gpu/test_train_forward_cuda.py > $OUT/gputest.log 2>&1; tail -2 $OUT/gputest.log
wait; echo "t=$SECONDS"; ls runs/demo_shards | wc -l
rm -rf /tmp/old && mkdir -p /tmp/old/runs && cp -r spatial_ttt_ros kernels tools config models /tmp/old/
cp runs/ab_old/one_pass.py /tmp/old/spatial_ttt_ros/runtime/ && cp runs/ab_old/forward.py runs/ab_old/loop.py runs/ab_old/samples.py /tmp/old/spatial_ttt_ros/train/
ln -s $PWD/runs/demo_shards /tmp/old/runs/demo_shards
sed -e "s/batch_size: [0-9]*/batch_size: 32/" -e "s/log_every: [0-9]*/log_every: 1/" config/train/demo_gpu.yaml > /tmp/ab32.yaml
(cd /tmp/old && PYTHONPATH=/tmp/old:/tmp/site OMP_NUM_THREADS=4 timeout 90 python3 -m spatial_ttt_ros.cli train run /tmp/ab32.yaml --out /tmp/ab_old32 --max-steps 6 --no-bar > $OUT/ab_old.log 2>&1)
cp /tmp/ab_old32/metrics.jsonl $OUT/ab_old32_metrics.jsonl; echo "t=$SECONDS"
PYTHONPATH=$PWD:/tmp/site OMP_NUM_THREADS=4 timeout 90 python3 -m spatial_ttt_ros.cli train run /tmp/ab32.yaml --out /tmp/ab_new32 --max-steps 6 --no-bar > $OUT/ab_new.log 2>&1
cp /tmp/ab_new32/metrics.jsonl $OUT/ab_new32_metrics.jsonl; echo "t=$SECONDS"
python3 -c "
import json
for n in ('old', 'new'):
    rows = [json.loads(l) for l in open('$OUT/ab_%s32_metrics.jsonl' % n)]
    print(n, [round(r['step_s'], 3) for r in rows])"
