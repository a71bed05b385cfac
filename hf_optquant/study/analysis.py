"""Collect stage of a study: Common Loss, PTQ at CL, evaluation, diagnostics, fits.

Each step stores one JSON record under ``<study>/analysis/`` atomically and is skipped
when that record exists; the report and results table are built from these records only.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from ..io import atomic_write_json, read_json
from ..qat.config import qat_record, read_qat_record
from .checkpoint_selection import cl_checkpoint, common_loss_for_size, selected_fp_run
from .config import RunSpec, StudyConfig
from .runs import run_dir

__all__ = ["analysis_steps", "analysis_dir", "load_records"]


def analysis_dir(cfg: StudyConfig) -> Path:
    return Path(cfg.output_dir) / "analysis"


def _once(path: Path, fn) -> None:
    if not path.exists():
        atomic_write_json(path, fn())


def _study_store(cfg: StudyConfig, tokenizer):
    from ..data.prepare import store_for
    from .runs import prepare_study_data, study_data_dir

    return store_for(cfg.data, tokenizer, eval_tokens=cfg.max_eval_tokens, cache_dir=study_data_dir(cfg)) \
        or prepare_study_data(cfg, tokenizer, progress=False)


def _eval_blocks(cfg: StudyConfig, tokenizer):
    from ..data.blocks import dataset_blocks

    # The validation blocks the runs were evaluated on during training, from the study's token shards.
    return dataset_blocks(tokenizer, _study_store(cfg, tokenizer), split="validation", block_size=cfg.block_size,
                          max_tokens=cfg.max_eval_tokens)


def _calibration_blocks(cfg: StudyConfig, tokenizer):
    from ..data.blocks import dataset_blocks

    # GPTQ calibrates on the study's own training text (its first 32 blocks), not on another corpus.
    return dataset_blocks(tokenizer, _study_store(cfg, tokenizer), split="train", block_size=cfg.block_size,
                          max_tokens=32 * cfg.block_size)


def _ptq(cfg: StudyConfig, spec: RunSpec) -> dict:
    """Quantize the run at its Common-Loss checkpoint with every PTQ setting; evaluate both."""
    from ..eval import evaluate_loss
    from ..eval.harness import zero_shot
    from ..models.loading import load_causal_lm
    from ..ptq import quantize_model

    cl = read_json(analysis_dir(cfg) / f"common_loss_{spec.size}.json")
    ckpt = cl_checkpoint(cfg, spec, cl["value"])
    model, tok = load_causal_lm(ckpt["path"])
    blocks = _eval_blocks(cfg, tok)

    def quality(m):
        r = evaluate_loss(m, tok, blocks=blocks)
        if cfg.tasks:
            r["tasks"] = zero_shot(m, tok, cfg.tasks, include_path=cfg.task_include_path)
        return r

    rec = {"run_id": spec.run_id, "common_loss": cl["value"], "checkpoint": ckpt, "fp": quality(model), "ptq": {}}
    for pcfg in cfg.ptq:
        calib = _calibration_blocks(cfg, tok) if pcfg.method == "gptq" else None
        qmodel, _ = quantize_model(model, pcfg, calibration=calib)
        q = quality(qmodel)
        q["delta_val_loss"] = q["val_loss"] - rec["fp"]["val_loss"]
        q["relative_val_loss"] = q["delta_val_loss"] / rec["fp"]["val_loss"]
        rec["ptq"][pcfg.tag] = {"config": pcfg.to_dict(), **q}
    return rec


def _diagnose(cfg: StudyConfig, spec: RunSpec) -> dict:
    """MMR, kurtosis and the ABC decomposition of the CL checkpoint under the first PTQ setting."""
    from ..metrics import DiagnoseConfig, diagnose_model_dir

    ptq_rec = read_json(analysis_dir(cfg) / spec.run_id / "ptq.json")
    out = analysis_dir(cfg) / spec.run_id / "diagnose"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ptq_rec["checkpoint"]["path"])
    # The study's validation blocks (the runs' own corpus, read from its token shards).
    blocks = _eval_blocks(cfg, tok)[: cfg.diagnose_batches * 4]
    settings = DiagnoseConfig(n_batches=cfg.diagnose_batches, seq_len=cfg.block_size, outliers=cfg.diagnose_outliers)
    summary = diagnose_model_dir(ptq_rec["checkpoint"]["path"], out, cfg.ptq[0], settings, blocks=blocks,
                                 overwrite=True, progress=False,
                                 calibration=_calibration_blocks(cfg, tok) if cfg.ptq[0].method == "gptq" else None)
    return {"available": True, **summary}


def _qat(cfg: StudyConfig, spec: RunSpec) -> dict:
    """QAT quality: the fake-quantized model's eval loss, against its full-precision counterpart."""
    rec = read_json(run_dir(cfg, spec) / "run.json")
    fp = read_json(run_dir(cfg, selected_fp_run(cfg, spec.optimizer, spec.size)) / "run.json")
    loss, fp_loss = rec["final_eval_loss"], fp["final_eval_loss"]
    return {"run_id": spec.run_id, "val_loss": loss, "fp_val_loss": fp_loss, "delta_val_loss": loss - fp_loss,
            "relative_val_loss": (loss - fp_loss) / fp_loss, "qat": qat_record(read_qat_record(rec))}


def _fp_step(cfg: StudyConfig, kind: str, opt: str, size: str) -> None:
    # The run is resolved when the step runs: with an lr sweep, the winner is known only then.
    spec = selected_fp_run(cfg, opt, size)
    fn = _ptq if kind == "ptq" else _diagnose
    _once(analysis_dir(cfg) / spec.run_id / f"{kind}.json", partial(fn, cfg, spec))


def analysis_steps(cfg: StudyConfig) -> list[tuple[str, callable]]:
    from .fits import correlate_step, fit_step

    a = analysis_dir(cfg)
    steps = []
    for size in cfg.sizes:
        steps.append((f"common loss {size}", partial(_once, a / f"common_loss_{size}.json",
                                                     partial(common_loss_for_size, cfg, size))))
    for size in cfg.sizes:
        for opt in cfg.optimizers:
            for kind in ("ptq", "diagnose"):
                steps.append((f"{kind} {opt}-{size}", partial(_fp_step, cfg, kind, opt, size)))
    if "qat" in cfg.precisions:
        for size in cfg.sizes:
            for opt in cfg.optimizers:
                spec = RunSpec(optimizer=opt, size=size, precision="qat", lr=None)
                steps.append((f"qat {spec.run_id}", partial(_once, a / spec.run_id / "qat.json",
                                                            partial(_qat, cfg, spec))))
    steps.append(("scaling fits", partial(fit_step, cfg)))
    steps.append(("correlations", partial(correlate_step, cfg)))
    return steps


def load_records(cfg: StudyConfig) -> dict:
    """Everything the report needs, read back from the stored records."""
    a = analysis_dir(cfg)
    out = {"cl": {}, "fp": {}, "ptq": {}, "diag": {}, "qat": {}, "runs": {}}
    for size in cfg.sizes:
        out["cl"][size] = read_json(a / f"common_loss_{size}.json")
        for opt in cfg.optimizers:
            spec = selected_fp_run(cfg, opt, size)
            out["runs"][(opt, size, "full")] = read_json(run_dir(cfg, spec) / "run.json")
            out["ptq"][(opt, size)] = read_json(a / spec.run_id / "ptq.json")
            out["diag"][(opt, size)] = read_json(a / spec.run_id / "diagnose.json")
            if "qat" in cfg.precisions:
                q = RunSpec(optimizer=opt, size=size, precision="qat", lr=None)
                out["qat"][(opt, size)] = read_json(a / q.run_id / "qat.json")
                out["runs"][(opt, size, "qat")] = read_json(run_dir(cfg, q) / "run.json")
    for name in ("fit", "correlations"):
        f = a / f"{name}.json"
        out[name] = read_json(f) if f.exists() else None
    return out
