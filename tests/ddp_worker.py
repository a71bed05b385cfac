"""Run under torchrun (2 CPU processes, gloo): train with each optimizer and dump a parameter digest per rank."""
import json
import os
import sys

import torch
import torch.distributed as dist

from hf_optquant.data import build_lm_datasets, ptb_splits, train_bpe_tokenizer
from hf_optquant.models import build_model
from hf_optquant.trainer import OptQuantTrainer, OptQuantTrainingArguments

out_dir = sys.argv[1]
opts = sys.argv[2].split(",")
torch.set_num_threads(1)
s = ptb_splits()
small = {"train": s["train"][:3000], "validation": s["validation"][:300]}
tok = train_bpe_tokenizer(small["train"], vocab_size=300)
train, val, _ = build_lm_datasets(tok, small, 32)
rank = int(os.environ["RANK"])
result = {}
for opt in opts:
    model = build_model("tiny-1", vocab_size=len(tok), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = OptQuantTrainingArguments(output_dir=f"{out_dir}/{opt}", optimizer=opt, max_steps=8,
                                     per_device_train_batch_size=4, logging_steps=1, save_strategy="no",
                                     report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
                                     ddp_backend="gloo")
    tr = OptQuantTrainer(model=model, args=args, train_dataset=train, processing_class=tok, block_size=32)
    tr.train()
    losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
    flat = torch.cat([p.detach().flatten() for _, p in sorted(model.named_parameters())])
    changed = all(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters())
    result[opt] = {"params": flat.tolist(), "losses": losses, "changed": changed,
                   "world_size": dist.get_world_size() if dist.is_initialized() else 1}
with open(f"{out_dir}/rank{rank}.json", "w") as fh:
    json.dump(result, fh)
