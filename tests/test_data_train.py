"""The train job over token stores: a budget the corpus cannot supply is refused in one line (or repeated
and recorded with allow_epochs), and a resumed run continues at exactly the same data position."""
from __future__ import annotations

import json

import pytest
from test_data_store import _docs, _jsonl
from transformers import TrainerCallback

from hf_optquant.data.blocks import TokenBlocks
from hf_optquant.errors import ConfigError
from hf_optquant.trainer import OptQuantTrainingArguments
from hf_optquant.trainer.job import TrainJobArguments, _datasets, run_training


def _args(out, **kw):
    base = dict(output_dir=str(out), max_steps=6, per_device_train_batch_size=4, logging_steps=1, use_cpu=True,
                report_to="none", seed=0, disable_tqdm=True, save_strategy="steps", save_steps=3, eval_strategy="no",
                dataloader_num_workers=0)
    return OptQuantTrainingArguments(**{**base, **kw})


def test_budget_larger_than_corpus_is_refused_or_repeated(tmp_path, tokenizer_dir, tokenizer):
    corpus = str(_jsonl(tmp_path / "c.jsonl", _docs(200)))
    job = TrainJobArguments(model="tiny-1", tokenizer=str(tokenizer_dir), dataset=corpus, block_size=32,
                            tokens_per_param=50, max_eval_tokens=256)
    with pytest.raises(ConfigError, match=r"tokens_per_param: .* fewer than the budget.*allow_epochs") as err:
        run_training(job, _args(tmp_path / "run"))
    assert "\n" not in str(err.value) and not (tmp_path / "run" / "run.json").exists()
    job = TrainJobArguments(model="tiny-1", tokenizer=str(tokenizer_dir), dataset=corpus, block_size=32,
                            max_eval_tokens=256, data={"allow_epochs": True})
    targs = _args(tmp_path / "run2", max_steps=500)
    train, val, info = _datasets(job, job.data_config(), tokenizer, targs, 4, tmp_path / "run2")
    assert info["exhausted"] and info["epochs"] == pytest.approx(500 * 4 * 32 / (len(train) * 32))
    assert info["epochs"] > 1 and len(val) == 256 // 32


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True


def test_resume_continues_at_the_same_data_position(tmp_path, tokenizer_dir, monkeypatch):
    """Straight 6 steps vs 3 steps, killed, resumed to 6: the same blocks in the same order."""
    seen: list[int] = []
    real = TokenBlocks.__getitem__

    def logged(self, i):
        if self.tokens.files[0].startswith("train"):
            seen.append(int(i))
        return real(self, i)

    monkeypatch.setattr(TokenBlocks, "__getitem__", logged)
    corpus = str(_jsonl(tmp_path / "c.jsonl", _docs(1500)))
    job = TrainJobArguments(model="tiny-1", tokenizer=str(tokenizer_dir), dataset=corpus, block_size=32,
                            max_eval_tokens=256, data={"cache_dir": str(tmp_path / "tokens")})
    run_training(job, _args(tmp_path / "straight"))
    straight = seen[:24]
    seen.clear()
    run_training(job, _args(tmp_path / "resumed"), callbacks=[_StopAt(3)])
    first = seen[:12]
    assert (tmp_path / "resumed" / "checkpoint-3").is_dir() and not (tmp_path / "resumed" / "checkpoint-6").exists()
    (tmp_path / "resumed" / "run.json").unlink()  # the killed run: its final record would not exist
    seen.clear()
    run_training(job, _args(tmp_path / "resumed"))
    assert first + seen[:12] == straight
    # 6 steps x 4 blocks: the budget's 24 blocks, each once (one epoch is the budget).
    assert sorted(straight) == list(range(24))
    rec = json.loads((tmp_path / "straight" / "run.json").read_text())
    assert rec["data"]["budget_tokens"] == 6 * 4 * 32 and rec["data"]["dtype"] == "uint16"


def test_ddp_ranks_read_disjoint_blocks(tmp_path, tokenizer):
    """Under torchrun with 2 processes the Trainer's sampler gives each rank its own half of the blocks."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hf_optquant.data.config import DataConfig
    from hf_optquant.data.prepare import prepare_tokens

    store = prepare_tokens(DataConfig(dataset=str(_jsonl(tmp_path / "c.jsonl", _docs(300)))), tokenizer,
                           train_tokens=16 * 40, eval_tokens=64, cache_dir=tmp_path / "tok", progress=False)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           str(Path(__file__).with_name("ddp_data_worker.py")), str(store.path), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["n"] == 40
    assert len(r0["seen"]) == len(r1["seen"]) == 20
    assert not set(r0["seen"]) & set(r1["seen"]) and sorted(r0["seen"] + r1["seen"]) == list(range(40))
