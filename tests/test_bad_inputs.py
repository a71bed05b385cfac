"""The bad-input battery: every sub-command and the YAML configs, one row per input.

Each row is ``(argv, exit code, words)``: the command must return the code (2: bad input, 3: the environment
failed, see docs/cli.md), print exactly one ``hf-optquant CMD: error: ...`` line that holds every word and a
``fix:``, no traceback, and leave no new file anywhere (neither in the working dir, where every output points,
nor in the fixtures). Add a row for every bad input a user reports: the battery grows with the CLI.

Fixtures are tiny and shared (a randomly initialised tiny-1 model saved with the conftest tokenizer; hand-written
summary.json, eval.json and CSV files): nothing trains, and every row must fail in its checks, before real work.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from hf_optquant.cli import main

TRAIN = {"model": "tiny-1", "block_size": 32, "max_steps": 4, "per_device_train_batch_size": 2,
         "eval_strategy": "steps", "eval_steps": 2, "save_steps": 2, "logging_steps": 1, "use_cpu": True}
STUDY = {"name": "bad", "output_dir": "study", "optimizers": ["adamw", "muon"], "sizes": ["tiny-1", "tiny-2"],
         "tokens_per_param": 0.12, "vocab_size": 300, "block_size": 32, "batch_size": 8, "eval_every": 8,
         "max_eval_tokens": 2048, "diagnose_batches": 1,
         "qat": {"quantizer": "quest", "w_bits": 4, "a_bits": 4, "granularity": "row", "hadamard_block": 64},
         "ptq": [{"method": "rtn", "w_bits": 4, "a_bits": 4, "granularity": "row"}],
         "train_overrides": {"use_cpu": True}}


def _summary(i: int, **over) -> dict:
    return {"mmr": 1.0 + i, "mmr_mean": 2.0 + i / 2, "kurtosis": 3.0 + i * i, "kurtosis_channel_rms": 1.0 + i,
            "r_l": 0.05 + 0.1 * i, "delta_val_loss": 0.01 * (i + 1) ** 2, **over}


@pytest.fixture(scope="module")
def fx(tmp_path_factory, tokenizer):
    """Every input file the battery points at, under one read-only-by-convention root."""
    import torch
    from safetensors.torch import load_file

    from hf_optquant.models import build_model

    root = tmp_path_factory.mktemp("bad_inputs")
    model = root / "model"
    torch.manual_seed(0)
    build_model("tiny-1", vocab_size=len(tokenizer)).save_pretrained(model)
    tokenizer.save_pretrained(model)
    weights = (model / "model.safetensors").read_bytes()
    for name, data in (("trunc", weights[: len(weights) // 2]), ("random", os.urandom(len(weights)))):
        shutil.copytree(model, root / name)
        (root / name / "model.safetensors").write_bytes(data)
    shutil.copytree(model, root / "pickle")  # weights as a pickle only: never unpickled
    torch.save(load_file(model / "model.safetensors"), root / "pickle" / "pytorch_model.bin")
    (root / "pickle" / "model.safetensors").unlink()
    shutil.copytree(model, root / "evalcorrupt")
    (root / "evalcorrupt" / "eval.json").write_text("{not json")
    (root / "nocfg").mkdir()

    diag = root / "diag"
    for i in range(4):
        (diag / f"d{i}").mkdir(parents=True)
        (diag / f"d{i}" / "summary.json").write_text(json.dumps(_summary(i)))
        (diag / f"c{i}").mkdir()  # the target is the same in every run
        (diag / f"c{i}" / "summary.json").write_text(json.dumps(_summary(i, delta_val_loss=0.1)))
    (diag / "corrupt").mkdir()
    (diag / "corrupt" / "summary.json").write_text('{"mmr": 1.0, ')
    (diag / "binary").mkdir()
    (diag / "binary" / "summary.json").write_bytes(b"\x80\x81\xfe\xff" * 20)
    (diag / "list").mkdir()
    (diag / "list" / "summary.json").write_text("[1, 2]")
    (diag / "empty").mkdir()

    csv = root / "csv"
    csv.mkdir()
    grid = [(n, d) for n in (1e6, 2e6, 4e6, 8e6) for d in (2e7, 4e7)]
    (csv / "empty.csv").write_text("")
    (csv / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (csv / "nonnum.csv").write_text("N,D,loss\nabc,def,ghi\n1e6,2e7,3.0\n")
    (csv / "header.csv").write_text("N,D,loss\n")
    (csv / "dup.csv").write_text("N,D,loss\n" + "1e6,2e7,3.0\n" * 8)
    (csv / "const.csv").write_text("N,D,loss\n" + "".join(f"{n},{d},3.0\n" for n, d in grid))
    (csv / "neg.csv").write_text("N,D,loss\n1e6,2e7,-3\n2e6,2e7,2.9\n")
    (csv / "inf.csv").write_text("N,D,loss\n1e6,2e7,inf\n2e6,2e7,2.9\n")
    (csv / "nocol.csv").write_text("N,tokens,loss\n1e6,2e7,3\n")
    (csv / "good.csv").write_text("N,D,loss\n" + "".join(f"{n},{d},{1.7 + 400 / n ** 0.34 + 410 / d ** 0.28}\n"
                                                          for n, d in grid))
    (csv / "data.txt").write_text("N D loss\n")

    (root / "oneline.txt").write_text("one line only\n")
    (root / "tiny.txt").write_text("a b c\n" * 3)
    (root / "small.txt").write_text("".join(f"the cat {i} sat on mat {i % 7} and looked at dog {i % 13}\n" for i in range(600)))
    (root / "blank.txt").write_text("\n\n")
    (root / "afile").write_text("x")
    (root / "data.xyz").write_text("x")

    y = root / "yaml"
    y.mkdir()
    (y / "train.yaml").write_text(yaml.safe_dump(TRAIN))
    (y / "bad.yaml").write_text("model: [tiny-1\n")
    (y / "list.yaml").write_text("- 1\n- 2\n")
    (y / "empty.yaml").write_text("")
    (y / "binary.yaml").write_bytes(b"\x00\x01\x02model: \xff\xfe\n")
    for name, over in TRAIN_YAML.items():
        (y / f"train_{name}.yaml").write_text(yaml.safe_dump({**TRAIN, "output_dir": "run", **over}))
    for name, over in STUDY_YAML.items():
        (y / f"study_{name}.yaml").write_text(yaml.safe_dump({**STUDY, **over}))
    (y / "study_ok.yaml").write_text(yaml.safe_dump(STUDY))
    return root


# Train fields written in a YAML config (the command line's --field value overrides are rows below).
TRAIN_YAML = {
    "bs0": {"per_device_train_batch_size": 0},
    "lr_str": {"learning_rate": "fast"},
    "qat_list": {"qat": [4, 4]},
    "qat_w1": {"qat": {"w_bits": 1}},
    "qat_key": {"qat": {"wbits": 4}},
    "unknown": {"max_stepz": 3},
    "data_key": {"data": {"text_colum": "body"}},
    "optkw_list": {"optimizer_kwargs": [1, 2]},
    "eval_no_cl": {"eval_strategy": False, "save_at_eval_loss": 4.0},
    "model_missing": {"model": "/nonexistent/model"},
}
# Study configs: §4 of issue 12 (refused when loaded, by the stages' own config classes) and more.
STUDY_YAML = {
    "awq": {"ptq": [{"method": "awq"}]},
    "a_bits3": {"ptq": [{"a_bits": 3}]},
    "group48": {"ptq": [{"granularity": "group:48"}]},
    "qat_w1": {"qat": {"w_bits": 1}},
    "hadamard48": {"qat": {"hadamard_block": 48}},
    "hadamard128": {"qat": {"hadamard_block": 128}},
    "diagnose0": {"diagnose_batches": 0},
    "piqa": {"tasks": ["piqa"]},
    "max_stepz": {"train_overrides": {"max_stepz": 3}},
    "lr_fast": {"learning_rates": {"adamw": "fast"}},
    "vocab10": {"vocab_size": 10},
    "max_eval0": {"max_eval_tokens": 0},
    "ptq_key": {"ptq": [{"methd": "rtn"}]},
    "ptq_targets": {"ptq": [{"targets": ["no_such_proj"]}]},
    "ptq_same_tag": {"ptq": [{"method": "rtn"}, {"method": "rtn", "lm_head": True}]},
    "ptq_str": {"ptq": "rtn"},
    "ptq_empty": {"ptq": []},
    "qat_str": {"qat": "quest"},
    "qat_key": {"qat": {"hadamard": 64}},
    "bs_override0": {"train_overrides": {"per_device_train_batch_size": 0}},
    "lr_override": {"train_overrides": {"learning_rate": 1e300}},
    "optkw": {"optimizer_kwargs": {"adamw": {"betaz": 1}}},
    "lr_grid_empty": {"lr_grid": {"adamw": []}},
    "lr_grid_neg": {"lr_grid": {"adamw": [1e-3, -1]}},
    "block512": {"block_size": 512},
    "budget": {"tokens_per_param": 0.001},
    "optimizer": {"optimizers": ["sgd"]},
    "size": {"sizes": ["tiny-99"]},
    "precision": {"precisions": ["qat"]},
    "fit_form": {"fit_form": "linear"},
    "overrides_list": {"train_overrides": [1]},
    "unknown": {"optimizerz": ["adamw"]},
}

M, T, R = "{fx}/model", "{fx}/yaml/train.yaml", "{fx}/diag"
D3 = [f"{R}/d0", f"{R}/d1", f"{R}/d2"]
# (id, argv, exit code, words in the error line)
CASES = [
    # ---- train: command-line overrides
    ("train-bs0", ["train", T, "--per_device_train_batch_size", "0", "--output_dir", "run"], 2,
     ["per_device_train_batch_size"]),
    ("train-bs-4", ["train", T, "--per_device_train_batch_size", "-4", "--output_dir", "run"], 2,
     ["per_device_train_batch_size"]),
    ("train-eval-bs0", ["train", T, "--per_device_eval_batch_size", "0", "--output_dir", "run"], 2,
     ["per_device_eval_batch_size"]),
    ("train-gas0", ["train", T, "--gradient_accumulation_steps", "0", "--output_dir", "run"], 2,
     ["gradient_accumulation_steps"]),
    ("train-lr1e300", ["train", T, "--learning_rate", "1e300", "--output_dir", "run"], 2, ["learning_rate"]),
    ("train-lr-neg", ["train", T, "--learning_rate", "-1", "--output_dir", "run"], 2, ["learning_rate"]),
    ("train-lr-nan", ["train", T, "--learning_rate", "nan", "--output_dir", "run"], 2, ["learning_rate"]),
    ("train-lr-str", ["train", T, "--learning_rate", "fast", "--output_dir", "run"], 2, ["learning_rate"]),
    ("train-optkw-json", ["train", T, "--optimizer_kwargs", "{bad json", "--output_dir", "run"], 2,
     ["optimizer_kwargs", "JSON"]),
    ("train-optkw-key", ["train", T, "--optimizer_kwargs", '{"betaz": 1}', "--output_dir", "run"], 2, ["betaz"]),
    ("train-optkw-lr", ["train", T, "--optimizer_kwargs", '{"lr": 1}', "--output_dir", "run"], 2,
     ["optimizer_kwargs", "learning_rate"]),
    ("train-out-file", ["train", T, "--output_dir", "{fx}/afile"], 2, ["output_dir", "file"]),
    ("train-out-missing", ["train", T], 2, ["output_dir"]),
    ("train-oneline", ["train", T, "--dataset", "{fx}/oneline.txt", "--output_dir", "run"], 2, ["dataset"]),
    ("train-tiny-data", ["train", T, "--dataset", "{fx}/tiny.txt", "--tokenizer", M, "--output_dir", "run"], 2,
     ["dataset", "tokens"]),
    ("train-data-under-a-step", ["train", T, "--dataset", "{fx}/small.txt", "--tokenizer", M,
                                 "--per_device_train_batch_size", "1000", "--output_dir", "run"], 2,
     ["dataset"]),
    ("train-data-ext", ["train", T, "--dataset", "{fx}/data.xyz", "--output_dir", "run"], 2, ["dataset", ".xyz"]),
    ("train-data-missing", ["train", T, "--dataset", "/nonexistent/corpus", "--output_dir", "run"], 2, ["dataset"]),
    ("train-text-column", ["train", T, "--dataset", "{fx}/oneline.txt", "--text_column", "body",
                           "--output_dir", "run"], 2, ["text_column"]),
    ("train-block-positions", ["train", T, "--block_size", "512", "--output_dir", "run"], 2,
     ["block_size", "256"]),
    ("train-block0", ["train", T, "--block_size", "0", "--output_dir", "run"], 2, ["block_size"]),
    ("train-eval-steps0", ["train", T, "--eval_steps", "0", "--output_dir", "run"], 2, ["eval_steps"]),
    ("train-save-steps0", ["train", T, "--save_steps", "0", "--output_dir", "run"], 2, ["save_steps"]),
    ("train-logging-steps0", ["train", T, "--logging_steps", "0", "--output_dir", "run"], 2, ["logging_steps"]),
    ("train-max-steps-frac", ["train", T, "--max_steps", "10.5", "--output_dir", "run"], 2, ["max_steps"]),
    ("train-max-steps-1e3", ["train", T, "--max_steps", "1e3", "--output_dir", "run"], 2, ["max_steps", "1e3"]),
    ("train-max-steps0", ["train", T, "--max_steps", "0", "--output_dir", "run"], 2, ["max_steps"]),
    ("train-epochs0", ["train", T, "--max_steps", "-1", "--num_train_epochs", "0", "--output_dir", "run"], 2,
     ["num_train_epochs"]),
    ("train-save-limit0", ["train", T, "--save_total_limit", "0", "--output_dir", "run"], 2, ["save_total_limit"]),
    ("train-wd-neg", ["train", T, "--weight_decay", "-1", "--output_dir", "run"], 2, ["weight_decay"]),
    ("train-warmup-neg", ["train", T, "--warmup_steps", "-1", "--output_dir", "run"], 2, ["warmup_steps"]),
    ("train-wsd-frac", ["train", T, "--wsd_warmup_fraction", "2", "--output_dir", "run"], 2, ["wsd_warmup_fraction"]),
    ("train-max-eval0", ["train", T, "--max_eval_tokens", "0", "--output_dir", "run"], 2, ["max_eval_tokens"]),
    ("train-vocab10", ["train", T, "--vocab_size", "10", "--output_dir", "run"], 2, ["vocab_size"]),
    ("train-tpp-neg", ["train", T, "--tokens_per_param", "-1", "--output_dir", "run"], 2, ["tokens_per_param"]),
    ("train-seed-str", ["train", T, "--seed", "abc", "--output_dir", "run"], 2, ["seed"]),
    ("train-optimizer", ["train", T, "--optimizer", "sgd", "--output_dir", "run"], 2, ["optimizer", "sgd"]),
    ("train-schedule", ["train", T, "--schedule", "cosine", "--output_dir", "run"], 2, ["schedule"]),
    ("train-model", ["train", T, "--model", "tiny-99", "--output_dir", "run"], 2, ["model", "tiny-99"]),
    ("train-tokenizer", ["train", T, "--tokenizer", "/nonexistent/tok", "--output_dir", "run"], 2, ["tokenizer"]),
    ("train-qat-bits", ["train", T, "--qat.w_bits", "1", "--output_dir", "run"], 2, ["qat.w_bits"]),
    ("train-qat-quantizer", ["train", T, "--qat.quantizer", "awq", "--output_dir", "run"], 2, ["qat.quantizer"]),
    ("train-cl-neg", ["train", T, "--save_at_eval_loss", "-1", "--output_dir", "run"], 2, ["save_at_eval_loss"]),
    ("train-unknown", ["train", T, "--max_stepz", "3", "--output_dir", "run"], 2, ["max_stepz", "max_steps"]),
    ("train-positional", ["train", T, "stray", "--output_dir", "run"], 2, ["stray"]),
    # ---- train: YAML configs
    ("yaml-missing", ["train", "{fx}/yaml/nope.yaml"], 2, ["config", "does not exist"]),
    ("yaml-syntax", ["train", "{fx}/yaml/bad.yaml"], 2, ["config", "YAML"]),
    ("yaml-list", ["train", "{fx}/yaml/list.yaml"], 2, ["config", "mapping"]),
    ("yaml-empty", ["train", "{fx}/yaml/empty.yaml"], 2, ["output_dir"]),
    ("yaml-binary", ["train", "{fx}/yaml/binary.yaml"], 2, ["config"]),
    ("yaml-dir", ["train", "{fx}/yaml"], 2, ["config"]),
    *[(f"yaml-{k}", ["train", f"{{fx}}/yaml/train_{k}.yaml"], 2, [w]) for k, w in (
        ("bs0", "per_device_train_batch_size"), ("lr_str", "learning_rate"), ("qat_list", "qat"),
        ("qat_w1", "qat.w_bits"), ("qat_key", "qat.wbits"), ("unknown", "max_stepz"), ("data_key", "data.text_colum"),
        ("optkw_list", "optimizer_kwargs"), ("eval_no_cl", "eval_strategy"), ("model_missing", "model"))],
    # ---- ptq
    ("ptq-seq0", ["ptq", M, "--out", "q", "--method", "gptq", "--seq-len", "0"], 2, ["seq_len"]),
    ("ptq-seq1", ["ptq", M, "--out", "q", "--method", "gptq", "--seq-len", "1"], 2, ["seq_len"]),
    ("ptq-seq-huge", ["ptq", M, "--out", "q", "--method", "gptq", "--seq-len", "100000"], 2, ["seq_len", "256"]),
    ("ptq-block0", ["ptq", M, "--out", "q", "--method", "gptq", "--block-size", "0"], 2, ["block_size"]),
    ("ptq-block-neg", ["ptq", M, "--out", "q", "--method", "gptq", "--block-size", "-8"], 2, ["block_size"]),
    ("ptq-damp", ["ptq", M, "--out", "q", "--method", "gptq", "--damp", "-1"], 2, ["damp"]),
    ("ptq-ncal0", ["ptq", M, "--out", "q", "--method", "gptq", "--n-calibration", "0"], 2, ["n_calibration"]),
    ("ptq-out-exists", ["ptq", M, "--out", "{fx}/diag"], 2, ["out", "exists", "new --out"]),
    ("ptq-cal-missing", ["ptq", M, "--out", "q", "--method", "gptq", "--calibration", "/nonexistent.txt"], 2,
     ["calibration"]),
    ("ptq-cal-blank", ["ptq", M, "--out", "q", "--method", "gptq", "--calibration", "{fx}/blank.txt"], 2,
     ["calibration"]),
    ("ptq-wbits1", ["ptq", M, "--out", "q", "--w-bits", "1"], 2, ["w_bits"]),
    ("ptq-wbits-str", ["ptq", M, "--out", "q", "--w-bits", "x"], 2, ["--w-bits"]),
    ("ptq-abits6", ["ptq", M, "--out", "q", "--a-bits", "6"], 2, ["a_bits"]),
    ("ptq-group0", ["ptq", M, "--out", "q", "--granularity", "group:0"], 2, ["granularity"]),
    ("ptq-group48", ["ptq", M, "--out", "q", "--granularity", "group:48"], 2, ["granularity", "48"]),
    ("ptq-gran", ["ptq", M, "--out", "q", "--granularity", "column"], 2, ["granularity"]),
    ("ptq-method", ["ptq", M, "--out", "q", "--method", "awq"], 2, ["method"]),
    ("ptq-targets", ["ptq", M, "--out", "q", "--targets", "no_such_proj"], 2, ["targets"]),
    ("ptq-out-file", ["ptq", M, "--out", "{fx}/afile"], 2, ["out"]),
    ("ptq-out-under-file", ["ptq", M, "--out", "{fx}/afile/q"], 2, ["out", "file"]),
    ("ptq-model-missing", ["ptq", "/nonexistent/model", "--out", "q"], 2, ["model"]),
    ("ptq-model-nocfg", ["ptq", "{fx}/nocfg", "--out", "q"], 2, ["model", "config.json"]),
    ("ptq-pickle", ["ptq", "{fx}/pickle", "--out", "q"], 2, ["model", "pickle"]),
    ("ptq-truncated", ["ptq", "{fx}/trunc", "--out", "q"], 3, ["model.safetensors", "damaged"]),
    ("ptq-random-bytes", ["ptq", "{fx}/random", "--out", "q"], 3, ["model.safetensors", "damaged"]),
    ("ptq-no-out", ["ptq", M], 2, ["--out"]),
    # ---- eval
    ("eval-limit-neg", ["eval", M, "--tasks", "x", "--limit", "-1", "--out", "e.json"], 2, ["limit"]),
    ("eval-limit0", ["eval", M, "--limit", "0", "--out", "e.json"], 2, ["limit"]),
    ("eval-max-tokens0", ["eval", M, "--max-tokens", "0", "--out", "e.json"], 2, ["max_tokens"]),
    ("eval-block0", ["eval", M, "--block-size", "0", "--out", "e.json"], 2, ["block_size"]),
    ("eval-block-neg", ["eval", M, "--block-size", "-8", "--out", "e.json"], 2, ["block_size"]),
    ("eval-block-huge", ["eval", M, "--block-size", "100000", "--out", "e.json"], 2, ["block_size", "256"]),
    ("eval-include", ["eval", M, "--tasks", "x", "--include-path", "/nonexistent", "--out", "e.json"], 2,
     ["include_path"]),
    ("eval-out-dir", ["eval", M, "--out", "{fx}/diag"], 2, ["out", "directory"]),
    ("eval-out-under-file", ["eval", M, "--out", "{fx}/afile/e.json"], 2, ["out", "file"]),
    ("eval-baseline-missing", ["eval", M, "--baseline", "/nonexistent/base", "--out", "e.json"], 2, ["baseline"]),
    ("eval-baseline-corrupt", ["eval", M, "--baseline", "{fx}/evalcorrupt", "--out", "e.json"], 3,
     ["eval.json", "damaged"]),
    ("eval-pickle", ["eval", "{fx}/pickle", "--out", "e.json"], 2, ["model", "pickle"]),
    ("eval-truncated", ["eval", "{fx}/trunc", "--out", "e.json"], 3, ["model.safetensors", "damaged"]),
    ("eval-limit-str", ["eval", M, "--limit", "all"], 2, ["--limit"]),
    # ---- diagnose
    ("diag-out-exists", ["diagnose", M, "--out", "{fx}/diag"], 2, ["out", "exists", "new --out"]),
    ("diag-seq0", ["diagnose", M, "--out", "d", "--seq-len", "0"], 2, ["seq_len"]),
    ("diag-seq1", ["diagnose", M, "--out", "d", "--seq-len", "1"], 2, ["seq_len"]),
    ("diag-seq-huge", ["diagnose", M, "--out", "d", "--seq-len", "100000"], 2, ["seq_len", "256"]),
    ("diag-batches0", ["diagnose", M, "--out", "d", "--n-batches", "0"], 2, ["n_batches"]),
    ("diag-bs0", ["diagnose", M, "--out", "d", "--batch-size", "0"], 2, ["batch_size"]),
    ("diag-norm", ["diagnose", M, "--out", "d", "--norm", "max"], 2, ["norm"]),
    ("diag-modules", ["diagnose", M, "--out", "d", "--modules", "no_such"], 2, ["modules"]),
    ("diag-wbits", ["diagnose", M, "--out", "d", "--w-bits", "1"], 2, ["w_bits"]),
    ("diag-group48", ["diagnose", M, "--out", "d", "--granularity", "group:48"], 2, ["granularity"]),
    ("diag-abits6", ["diagnose", M, "--out", "d", "--a-bits", "6"], 2, ["a_bits"]),
    ("diag-abits-str", ["diagnose", M, "--out", "d", "--a-bits", "four"], 2, ["--a-bits"]),
    ("diag-out-file", ["diagnose", M, "--out", "{fx}/afile"], 2, ["out"]),
    ("diag-model-missing", ["diagnose", "/nonexistent/model", "--out", "d"], 2, ["model"]),
    ("diag-truncated", ["diagnose", "{fx}/trunc", "--out", "d"], 3, ["model.safetensors"]),
    ("diag-random-bytes", ["diagnose", "{fx}/random", "--out", "d"], 3, ["model.safetensors"]),
    ("diag-pickle", ["diagnose", "{fx}/pickle", "--out", "d"], 2, ["pickle"]),
    # ---- correlate
    ("corr-duplicates", ["correlate", f"{R}/d1", f"{R}/d1", f"{R}/d1", "--out", "c"], 2, ["runs", "more than once"]),
    ("corr-nboot0", ["correlate", *D3, "--out", "c", "--n-boot", "0"], 2, ["n_boot"]),
    ("corr-nboot-neg", ["correlate", *D3, "--out", "c", "--n-boot", "-5"], 2, ["n_boot"]),
    ("corr-two", ["correlate", f"{R}/d0", f"{R}/d1", "--out", "c"], 2, ["runs", "3"]),
    ("corr-constant-target", ["correlate", f"{R}/c0", f"{R}/c1", f"{R}/c2", "--out", "c"], 2,
     ["delta_val_loss", "same"]),
    ("corr-target", ["correlate", *D3, "--out", "c", "--target", "mean_acc_norm"], 2, ["target"]),
    ("corr-corrupt", ["correlate", *D3[:2], f"{R}/corrupt", "--out", "c"], 3, ["summary.json", "damaged"]),
    ("corr-binary", ["correlate", *D3[:2], f"{R}/binary", "--out", "c"], 3, ["summary.json", "damaged"]),
    ("corr-list", ["correlate", *D3[:2], f"{R}/list", "--out", "c"], 3, ["summary.json"]),
    ("corr-empty-dir", ["correlate", *D3[:2], f"{R}/empty", "--out", "c"], 2, ["runs", "summary.json"]),
    ("corr-out-exists", ["correlate", *D3, "--out", "{fx}/diag"], 2, ["out", "exists", "new --out"]),
    ("corr-out-under-file", ["correlate", *D3, "--out", "{fx}/afile/c"], 2, ["out", "file"]),
    # ---- fit
    ("fit-empty", ["fit", "{fx}/csv/empty.csv", "--out", "f.json"], 2, ["results"]),
    ("fit-binary", ["fit", "{fx}/csv/binary.csv", "--out", "f.json"], 2, ["results"]),
    ("fit-header-only", ["fit", "{fx}/csv/header.csv", "--out", "f.json"], 2, ["results", "no rows"]),
    ("fit-non-numeric", ["fit", "{fx}/csv/nonnum.csv", "--out", "f.json"], 2, ["N", "abc"]),
    ("fit-duplicates", ["fit", "{fx}/csv/dup.csv", "--out", "f.json"], 2, ["points", "repeated"]),
    ("fit-constant-loss", ["fit", "{fx}/csv/const.csv", "--out", "f.json"], 2, ["loss", "same"]),
    ("fit-negative", ["fit", "{fx}/csv/neg.csv", "--out", "f.json"], 2, ["loss", "positive"]),
    ("fit-inf", ["fit", "{fx}/csv/inf.csv", "--out", "f.json"], 2, ["loss", "finite"]),
    ("fit-no-d", ["fit", "{fx}/csv/nocol.csv", "--out", "f.json"], 2, ["D", "--rename"]),
    ("fit-txt", ["fit", "{fx}/csv/data.txt", "--out", "f.json"], 2, ["results"]),
    ("fit-missing", ["fit", "{fx}/csv/none.csv", "--out", "f.json"], 2, ["results"]),
    ("fit-out-ext", ["fit", "{fx}/csv/good.csv", "--out", "f.txt"], 2, ["out", ".json"]),
    ("fit-out-under-file", ["fit", "{fx}/csv/good.csv", "--out", "{fx}/afile/f.json"], 2, ["out", "file"]),
    ("fit-huber0", ["fit", "{fx}/csv/good.csv", "--out", "f.json", "--huber-delta", "0"], 2, ["huber_delta"]),
    ("fit-exclude-neg", ["fit", "{fx}/csv/good.csv", "--out", "f.json", "--exclude-top-loss", "-1"], 2,
     ["exclude_top_loss"]),
    ("fit-bootstrap-neg", ["fit", "{fx}/csv/good.csv", "--out", "f.json", "--bootstrap", "-1"], 2, ["bootstrap"]),
    ("fit-rename", ["fit", "{fx}/csv/good.csv", "--out", "f.json", "--rename", "x"], 2, ["rename"]),
    ("fit-rename-missing", ["fit", "{fx}/csv/good.csv", "--out", "f.json", "--rename", "size=N"], 2, ["rename"]),
    ("fit-form", ["fit", "{fx}/csv/good.csv", "--out", "f.json", "--form", "linear"], 2, ["--form"]),
    # ---- publish (dry runs and refusals: no network)
    ("pub-missing", ["publish", "/nonexistent/run", "--repo-id", "a/b", "--dry-run", "p"], 2, ["PATH"]),
    ("pub-not-artefact", ["publish", f"{R}/d0", "--repo-id", "a/b", "--dry-run", "p"], 2, ["PATH"]),
    ("pub-repo-id", ["publish", M, "--repo-id", "bad name!", "--dry-run", "p"], 2, ["repo_id"]),
    ("pub-endpoint", ["publish", M, "--repo-id", "a/b", "--endpoint", "ftp://x", "--dry-run", "p"], 2,
     ["endpoint"]),
    ("pub-dry-exists", ["publish", M, "--repo-id", "a/b", "--dry-run", "{fx}/diag"], 2,
     ["dry_run", "exists", "new folder for the dry run"]),
    ("pub-dry-under-file", ["publish", M, "--repo-id", "a/b", "--dry-run", "{fx}/afile/p"], 2, ["dry_run", "file"]),
    ("pub-no-repo", ["publish", M], 2, ["--repo-id"]),
    # ---- study
    *[(f"study-{k}", ["study", f"{{fx}}/yaml/study_{k}.yaml", "--print-commands"], 2, words) for k, words in (
        ("awq", ["ptq.method", "awq"]), ("a_bits3", ["ptq.a_bits"]), ("group48", ["granularity", "48"]),
        ("qat_w1", ["qat.w_bits"]), ("hadamard48", ["qat.hadamard_block"]), ("hadamard128", ["qat.hadamard_block"]),
        ("diagnose0", ["diagnose_batches"]), ("piqa", ["tasks", "piqa"]), ("max_stepz", ["max_stepz", "max_steps"]),
        ("lr_fast", ["learning_rates.adamw"]), ("vocab10", ["vocab_size"]), ("max_eval0", ["max_eval_tokens"]),
        ("ptq_key", ["methd"]), ("ptq_str", ["ptq"]), ("ptq_empty", ["ptq"]), ("qat_str", ["qat"]),
        ("qat_key", ["hadamard"]), ("bs_override0", ["per_device_train_batch_size"]),
        ("lr_override", ["learning_rate"]), ("optkw", ["betaz"]), ("lr_grid_empty", ["lr_grid.adamw"]),
        ("lr_grid_neg", ["lr_grid.adamw"]), ("block512", ["block_size"]), ("budget", ["tokens_per_param"]),
        ("optimizer", ["optimizers"]), ("size", ["sizes"]), ("precision", ["precisions"]),
        ("fit_form", ["fit_form"]), ("overrides_list", ["train_overrides"]),
        ("ptq_targets", ["ptq[0].targets", "no_such_proj"]), ("ptq_same_tag", ["ptq", "rtn-w4a4-row"]),
        ("unknown", ["optimizerz", "did you mean 'optimizers'"]))],
    ("study-run-unknown", ["study", "{fx}/yaml/study_ok.yaml", "--run", "nosuch"], 2, ["run", "nosuch"]),
    ("study-set-unknown", ["study", "{fx}/yaml/study_ok.yaml", "--set", "nosuch=1", "--print-commands"], 2,
     ["nosuch"]),
    ("study-set-eval0", ["study", "{fx}/yaml/study_ok.yaml", "--set", "eval_every=0", "--print-commands"], 2,
     ["eval_every"]),
    ("study-publish-id", ["study", "{fx}/yaml/study_ok.yaml", "--publish", "bad name!"], 2, ["repo_id"]),
    ("study-yaml-syntax", ["study", "{fx}/yaml/bad.yaml"], 2, ["config", "YAML"]),
    ("study-yaml-missing", ["study", "{fx}/yaml/nope.yaml"], 2, ["config"]),
    ("study-modes", ["study", "{fx}/yaml/study_ok.yaml", "--collect", "--print-commands"], 2, ["not allowed"]),
    # ---- the dispatcher
    ("cli-unknown-command", ["quantize"], 2, ["quantize"]),
    ("cli-unknown-flag", ["ptq", M, "--out", "q", "--bits", "4"], 2, ["--bits"]),
]


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _error_line(err: str, command: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("hf-optquant")]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"hf-optquant {command}: error: ") or line.startswith("hf-optquant: error: "), line
    assert "(fix: " in line, line
    return line


def _run(argv: list[str], fx: Path, capsys) -> tuple[int, str]:
    argv = [a.replace("{fx}", str(fx)) for a in argv]
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_the_battery_covers_every_command():
    commands = {argv[0] for _, argv, _, _ in CASES}
    assert commands >= {"train", "ptq", "eval", "diagnose", "correlate", "fit", "publish", "study"}
    assert len(CASES) >= 80 + len(STUDY_YAML)
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv, code, words", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input(argv, code, words, fx, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_battery_token_never_used")
    before = _listing(fx)
    rc, err = _run(argv, fx, capsys)
    assert rc == code, err
    line = _error_line(err, argv[0])
    for w in words:
        assert w in line, (w, line)
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())  # nothing written where outputs point
    assert _listing(fx) == before  # nor beside the inputs (eval.json, tokenizer caches, .partial dirs)


# ---- environment failures: exit 3, one line naming the path and the cause; -v adds the traceback
def _disk_full(monkeypatch):
    # The disk fills at the write's fsync (the primitive every atomic write calls at call time): patching
    # atomic_write_bytes itself would leak into modules that first import it by name during the patch.
    import hf_optquant.io as hio

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device", os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(hio.os, "fsync", full)


def _read_only(monkeypatch):
    import hf_optquant.io as hio

    def ro(path, *a, **k):  # atomic_dir makes its temporary with os.mkdir (umask applies)
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(hio.os, "mkdir", ro)


@pytest.mark.parametrize("fault, argv, words", [
    pytest.param(_disk_full, ["fit", "{fx}/csv/good.csv", "--out", "f.json", "--no-loo", "--n-starts", "2"],
                 ["No space left", "free disk space"], id="fit-disk-full"),
    pytest.param(_read_only, ["correlate", *D3, "--out", "c", "--n-boot", "10"],
                 ["Read-only file system", "writable"], id="correlate-read-only"),
])
def test_environment_failure(fault, argv, words, fx, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fault(monkeypatch)
    rc, err = _run(argv, fx, capsys)
    assert rc == 3, err
    line = _error_line(err, argv[0])
    for w in words:
        assert w in line, (w, line)
    assert str(tmp_path) in line  # the path, made absolute
    assert not [p for p in tmp_path.rglob("*") if p.suffix != ".png"]  # no JSON/CSV result, whole or half
    rc, err = _run(["-v", *argv], fx, capsys)
    assert rc == 3 and "Traceback" in err  # -v shows where it came from


def test_network_failure_is_not_a_usage_error(fx, tmp_path, monkeypatch, capsys):
    """An unreachable Hub endpoint: exit 3, naming it (a 5xx is covered in test_hub_publish.py)."""
    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_battery_token_never_used")
    monkeypatch.setenv("NO_PROXY", "*")
    from hub_fixtures import write_run_dir

    run = write_run_dir(fx / "model", tmp_path / "run")
    rc, err = _run(["publish", str(run), "--repo-id", "tester/x", "--endpoint", "http://127.0.0.1:9"], fx, capsys)
    assert rc == 3, err
    line = _error_line(err, "publish")
    assert "127.0.0.1:9" in line and "hf_battery_token_never_used" not in err


def test_a_bug_is_one_line_too(fx, tmp_path, monkeypatch, capsys):
    """Anything else that escapes is a bug of hf_optquant: exit 1, one line that says to rerun with -v."""
    import hf_optquant.scaling.api as api

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(api, "fit_table", lambda *a, **k: {}["boom"])
    rc, err = _run(["fit", "{fx}/csv/good.csv", "--out", "f.json"], fx, capsys)
    assert rc == 1 and "KeyError" in _error_line(err, "fit") and "-v" in err


# ---- inputs that look odd but are accepted (the issue asks to accept them, or to say why not)
def test_accepted_spellings(fx, tmp_path):
    from hf_optquant.trainer.cli import parse_train_config

    # A whole number written as a float in YAML is that number (the --max_steps flag is typed: row
    # train-max-steps-1e3 says why it is refused there).
    cfg = tmp_path / "steps.yaml"
    cfg.write_text("model: tiny-1\noutput_dir: r\nmax_steps: 1e3\n")
    _, targs = parse_train_config(str(cfg))
    assert targs.max_steps == 1000 and isinstance(targs.max_steps, int)
    # YAML 1.1 reads `no` as false: `eval_strategy: no` means no evaluation, as the user wrote.
    cfg = tmp_path / "no_eval.yaml"
    cfg.write_text("model: tiny-1\noutput_dir: r\neval_strategy: no\nmax_steps: 4\n")
    _, targs = parse_train_config(str(cfg))
    assert targs.eval_strategy == "no"
    assert not list(tmp_path.glob("r*"))
