#!/usr/bin/env bash
# The CUDA path of FSDP2 (NCCL, bf16), for a machine with GPUs; not run in CI (CPU only). Needs 2 GPUs for
# 2 ranks (NCCL does not put two ranks on one GPU); with one GPU it runs everything at 1 rank.
#   bash benchmarks/fsdp_cuda_check.sh [OUT_DIR]        (about 5 minutes on one node)
# 1. tests/fsdp_worker.py on NCCL: the six optimizers under fully_shard vs one process (fp32, then bf16
#    compute), state bytes per rank, sharded checkpoint resume.
# 2. The Trainer through accelerate's FSDP2 config: a run resumed from checkpoint-10 of 20 ends with the same
#    weights as the uninterrupted run (sharded DCP model + one optimizer shard per rank).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/hfoq_fsdp_cuda}
NGPU=$(python -c "import torch; print(min(2, torch.cuda.device_count()))")
[ "$NGPU" -ge 1 ] || { echo "no CUDA device"; exit 2; }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=1
rm -rf "$OUT"; mkdir -p "$OUT/fp32" "$OUT/bf16"
ALL=adamw,muon,psgd,scion,shampoo,soap
HFOQ_FSDP_BACKEND=nccl torchrun --nproc_per_node "$NGPU" --master_port 29701 tests/fsdp_worker.py "$OUT/fp32" $ALL --resume $ALL
HFOQ_FSDP_BACKEND=nccl HFOQ_FSDP_BF16=1 torchrun --nproc_per_node "$NGPU" --master_port 29702 tests/fsdp_worker.py "$OUT/bf16" $ALL
python - "$OUT" <<'PY'
import json, sys
for tag, tol in (("fp32", 2e-3), ("bf16", 2e-2)):
    r = json.load(open(f"{sys.argv[1]}/{tag}/result.json"))
    for opt, v in r.items():
        d = abs(v["fsdp_final"] - v["ref_final"])
        print(f"{tag} {opt}: |loss diff| {d:.2e} (tol {tol}), max weight diff {v['max_param_diff']:.2e}, "
              f"state bytes/rank {v['state_bytes']} vs one process {v['ref_state_bytes']}, "
              f"resume diff {v.get('resume_max_diff')}")
        assert d < tol and (v.get("resume_max_diff") or 0) <= 1e-6, (tag, opt, v)
PY
train() {  # optimizer, run dir
  accelerate launch --config_file trainer_configs/accelerate_fsdp2.yaml --num_processes "$NGPU" \
    --main_process_port 29703 -m hf_optquant.cli train trainer_configs/tiny.yaml --use_cpu false \
    --optimizer "$1" --max_steps 20 --save_steps 10 --eval_steps 10 --max_eval_tokens 4096 \
    --per_device_train_batch_size 8 --save_total_limit 3 --output_dir "$2"
}
for opt in adamw soap; do
  train $opt "$OUT/train-$opt-full"
  # a second run "killed" after checkpoint-10: drop what came later and train again (resumes from it)
  P="$OUT/train-$opt-part"
  train $opt "$P"
  rm -rf "$P/checkpoint-20" "$P/run.json" "$P/model.safetensors"
  train $opt "$P"
  python - "$OUT/train-$opt-full" "$P" <<'PY'
import sys
from safetensors.torch import load_file
a, b = (load_file(f"{d}/model.safetensors") for d in sys.argv[1:3])
diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
print(f"{sys.argv[1]}: resumed vs uninterrupted max |weight diff| {diff:.2e}")
assert diff <= 1e-6, diff
PY
done
echo "CUDA FSDP2 check passed ($NGPU GPU rank(s))"
