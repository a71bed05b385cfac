"""Run under torchrun (2 CPU processes, gloo): each rank iterates the Trainer's train dataloader over
``TokenBlocks`` for one epoch and dumps the block indices it was given."""
import json
import os
import sys

import torch

from hf_optquant.data import TokenStore, store_blocks
from hf_optquant.models import build_model
from hf_optquant.trainer import OptQuantTrainer, OptQuantTrainingArguments

store_dir, out_dir = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)


class Indexed(torch.utils.data.Dataset):
    def __init__(self, blocks):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {**self.blocks[i], "idx": i}


train = Indexed(store_blocks(TokenStore(store_dir), "train", 16))
args = OptQuantTrainingArguments(output_dir=out_dir, per_device_train_batch_size=4, report_to="none",
                                 use_cpu=True, seed=0, ddp_backend="gloo", max_steps=1,
                                 remove_unused_columns=False)
tr = OptQuantTrainer(model=build_model("tiny-1", vocab_size=300), args=args, train_dataset=train)
seen = [i for batch in tr.get_train_dataloader() for i in batch["idx"].tolist()]
with open(f"{out_dir}/rank{os.environ['RANK']}.json", "w") as fh:
    json.dump({"seen": seen, "n": len(train), "world": args.world_size}, fh)
