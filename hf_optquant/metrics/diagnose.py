"""``diagnose``: outlier metrics and the ABC decomposition of a causal LM under a PTQ setting.

Feeds the clean model and its quantized copy (``hf_optquant.ptq.quantize_model``: RTN or GPTQ, any bits)
batch by batch through :class:`~hf_optquant.metrics.engine.ABCEngine`, decoder block by decoder block, then
the final norm and the LM head. R_L is R of the last decoder block's output (the residual stream the paper
calls the last layer).

The outlier metrics (MMR, kurtosis) are, by default, those of the authors' framework: measured on the clean
model's residual stream, i.e. at each decoder block's input and at the last block's output (the final norm's
input), per token max|x| over torch's lower median of |x|, averaged over tokens; one row per point, and the
model-level value is the median over them (:func:`~hf_optquant.metrics.outlier_stats.aggregate_layers`).
``outliers="linear"`` measures every linear layer's input instead (``both``: the two, the linear ones
reported with a ``_linear`` suffix).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..quant.scheme import matches_target
from .decomposition import NORMS
from .engine import ABCEngine, Stage, outlier_sites
from .outlier_stats import OUTLIER_METRICS, OUTLIER_SITES, aggregate_layers, weight_stats
from .settings import MODULE_SETS, DiagnoseConfig

__all__ = ["MODULE_SETS", "module_selector", "model_stages", "diagnose_models", "diagnose_model_dir"]



def module_selector(modules: str, stage_names: set[str]):
    """``select(name, module, is_stage)`` for a module set or comma-separated name patterns (name suffixes,
    dotted suffixes, ``re:REGEX``: :func:`hf_optquant.quant.scheme.matches_target`)."""
    if modules in ("block", "default"):
        return lambda name, m, is_stage: is_stage
    if modules == "linear":
        return lambda name, m, is_stage: isinstance(m, torch.nn.Linear)

    def direct_child(name):
        return any(name.startswith(s + ".") and "." not in name[len(s) + 1:] for s in stage_names)

    if modules == "sublayer":
        return lambda name, m, is_stage: is_stage or direct_child(name)
    if modules == "all":
        return lambda name, m, is_stage: is_stage or direct_child(name) or isinstance(m, torch.nn.Linear)
    wanted = [w.strip() for w in modules.split(",") if w.strip()]
    return lambda name, m, is_stage: any(matches_target(w, name) for w in wanted)


def _get(model, path):
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def model_stages(model, qmodel) -> tuple[list[tuple[str, torch.nn.Module, torch.nn.Module]], int]:
    """``([(name, clean, quant)], number of decoder blocks)``: decoder blocks, final norm, LM head."""
    from ..models.anatomy import FINAL_NORM_PATHS, decoder_blocks

    path, blocks = decoder_blocks(model)
    _, qblocks = decoder_blocks(qmodel)
    short = path.split(".")[-1]
    stages = [(f"{short}.{i}", b, qb) for i, (b, qb) in enumerate(zip(blocks, qblocks))]
    for p in FINAL_NORM_PATHS:
        norm, qnorm = _get(model, p), _get(qmodel, p)
        if norm is not None:
            stages.append(("norm", norm, qnorm))
            break
    stages.append(("lm_head", model.get_output_embeddings(), qmodel.get_output_embeddings()))
    return stages, len(blocks)


def _block_inputs(model, block, ids) -> tuple[torch.Tensor, dict]:
    from ..models.capture import capture_block_inputs

    (args, kwargs), = capture_block_inputs(model, block, ids, batch_size=ids.shape[0])
    if len(args) > 1:
        raise ConfigError("model", "its decoder blocks take extra positional inputs this diagnosis cannot forward",
                          "use a Llama/OLMo/Qwen/Mistral-style causal LM")
    if args and isinstance(args[0], torch.Tensor):
        return args[0], dict(kwargs)
    kwargs = dict(kwargs)
    return kwargs.pop("hidden_states"), kwargs


def _check_stages_reproduce(model, ids, logits) -> None:
    """The stage-by-stage forward must give the model's own logits; an architecture with a step this diagnosis
    does not know (a final norm elsewhere, logit soft-capping or scaling) would otherwise give wrong R and
    losses without a word."""
    ref = model(input_ids=ids).logits
    err = float((ref - logits).abs().max())
    if not err <= 1e-4 * max(1.0, float(ref.abs().max())):
        raise ConfigError("model", f"the diagnosis's block-by-block forward does not reproduce this model's "
                          f"logits (max difference {err:.3g}): it has a step between the decoder blocks and the "
                          "logits that hf_optquant does not know", "use a Llama/OLMo/Qwen/Mistral/GPT-2/NeoX-style "
                          "causal LM, or add its final-norm path to hf_optquant.models.anatomy.FINAL_NORM_PATHS")


def _loss(logits, ids) -> tuple[float, int]:
    lg = logits[:, :-1].reshape(-1, logits.shape[-1])
    tgt = ids[:, 1:].reshape(-1)
    return float(F.cross_entropy(lg, tgt, reduction="sum")), int(tgt.numel())


def _check_outliers(outliers):
    if outliers not in (True, False, None) and outliers not in OUTLIER_SITES:
        raise ConfigError("outliers", f"unknown site {outliers!r} for the outlier metrics",
                          f"use one of {', '.join(OUTLIER_SITES)} (residual is the paper's)")


@torch.no_grad()
def diagnose_models(model, qmodel, blocks: torch.Tensor, *, batch_size: int = 4, modules: str = "block",
                    norm: str = "tensor", progress: bool = True, outliers="residual") -> dict:
    """Per-module ABC rows, per-stage R, outlier metrics per residual-stream point (and/or per linear input,
    see ``outliers``) and the summary, for token ``blocks``."""
    _check_outliers(outliers)
    if norm not in NORMS:
        raise ConfigError("norm", f"unknown norm reduction {norm!r}", f"use one of {', '.join(NORMS)}")
    if blocks is None or blocks.numel() == 0 or blocks.shape[0] == 0:
        raise ConfigError("n_batches", "there are no evaluation batches to diagnose",
                          "use --n-batches >= 1 with a dataset that has a validation split")
    if modules not in MODULE_SETS and not any(w.strip() for w in str(modules).split(",")):
        raise ConfigError("modules", f"{modules!r} names no module", f"use one of {', '.join(MODULE_SETS)} "
                          "or comma-separated name suffixes such as q_proj,mlp")
    model.eval()
    qmodel.eval()
    stages, n_blocks = model_stages(model, qmodel)
    select = module_selector(modules, {s[0] for s in stages})
    if modules not in MODULE_SETS and not any(select(f"{n}.{sub}" if sub else n, m, not sub)
                                              for n, c, _ in stages for sub, m in c.named_modules()):
        raise ConfigError("modules", f"no module of the model matches {modules!r}",
                          "use name suffixes the model has (e.g. q_proj, mlp, self_attn) or block/linear/all")
    engine = ABCEngine(norm=norm, select=select, outliers=outliers)
    device = next(model.parameters()).device
    loss = {"fp": 0.0, "q": 0.0, "n": 0}
    for i in tqdm(range(0, blocks.shape[0], batch_size), desc="diagnose", disable=not progress):
        ids = blocks[i:i + batch_size].to(device)
        h, kw = _block_inputs(model, stages[0][1], ids)
        hq, _ = _block_inputs(qmodel, stages[0][2], ids)
        for j, (name, clean, quant) in enumerate(stages):
            # The residual stream: every block's input, and the last block's output (the final norm's input,
            # or the head's when the model has no final norm).
            stage = Stage(name, clean, quant, kwargs=kw if j < n_blocks else {}, residual=j <= n_blocks)
            h, hq = engine.run_stage(stage, h, hq)
        if i == 0:  # one sequence is enough to catch a missing step
            _check_stages_reproduce(model, ids[:1], h[:1])
        for key, logits in (("fp", h), ("q", hq)):
            total, n = _loss(logits, ids)
            loss[key] += total
        loss["n"] += n
    rows = engine.table()
    sites = outlier_sites(outliers)
    outlier_rows = engine.outlier_table("residual") if "residual" in sites else []
    if "linear" in sites:
        weights = {n: weight_stats(m.weight) for n, m in _named_linears(model, stages)}
        outlier_rows += [{**r, **weights.get(r["module"], {})} for r in engine.outlier_table("linear")]
    stage_rows = engine.stage_table()
    last_block = stage_rows[n_blocks - 1]
    fp, q = loss["fp"] / loss["n"], loss["q"] / loss["n"]
    summary = {**_outlier_summary(outlier_rows, sites),
               "r_l": last_block["R"], "r_l_module": last_block["stage"], "r_logits": stage_rows[-1]["R"],
               "r_per_layer": [{k: r.get(k) for k in ("module", "R", "A", "B", "C", "G", "G1", "G2")} for r in rows],
               "stages": stage_rows, "val_loss_fp": fp, "val_loss_q": q, "delta_val_loss": q - fp,
               "n_tokens": loss["n"], "n_sequences": int(blocks.shape[0]), "modules": modules, "norm": norm}
    return {"summary": summary, "layers": rows, "outliers": outlier_rows}


def _outlier_summary(outlier_rows: list[dict], sites: tuple[str, ...]) -> dict:
    """Model-level outlier metrics: the median over layers of each site's per-layer values. The plain keys
    (``mmr``, ``kurtosis``, ...) are the first site's (the residual stream unless only ``linear`` was asked);
    with both sites, the linear ones also appear with a ``_linear`` suffix. Per-layer values of the residual
    stream are kept in ``outliers_per_layer``."""
    if not sites:
        return {"outlier_site": None, **dict.fromkeys(OUTLIER_METRICS, float("nan"))}
    out = {"outlier_site": sites[0], "outlier_aggregate": "median over layers"}
    for i, site in enumerate(sites):
        site_rows = [r for r in outlier_rows if r["site"] == site]
        suffix = "" if i == 0 else f"_{site}"
        for key in OUTLIER_METRICS:
            out[key + suffix] = aggregate_layers(r[key] for r in site_rows)
        if site == "residual":
            out["outliers_per_layer"] = [{k: r[k] for k in ("module", *OUTLIER_METRICS)} for r in site_rows]
    return out


def _named_linears(model, stages):
    for name, clean, _ in stages:
        for sub, m in clean.named_modules():
            if isinstance(m, torch.nn.Linear):
                yield (f"{name}.{sub}" if sub else name), m


def _eval_blocks(tok, dataset: str, split: str, n_batches: int, batch_size: int, seq_len: int) -> torch.Tensor:
    from ..data.blocks import dataset_blocks

    if tok is None:
        raise ConfigError("model", "the model dir has no tokenizer to encode evaluation text",
                          "save the tokenizer with the model (tokenizer.save_pretrained(dir))")
    need = n_batches * batch_size
    return dataset_blocks(tok, dataset, split=split, block_size=seq_len, max_tokens=need * seq_len, n_blocks=need)


def diagnose_model_dir(model_dir, out_dir, ptq=None, settings: DiagnoseConfig | None = None, *,
                       blocks: torch.Tensor | None = None, calibration: torch.Tensor | None = None,
                       overwrite: bool = False, progress: bool = True) -> dict:
    """Diagnose a saved model under the PTQ setting ``ptq`` (a :class:`~hf_optquant.ptq.PTQConfig`, or its
    flat keys as a dict; default ``PTQConfig()``: RTN W4A4, row scales) with ``settings``
    (:class:`~hf_optquant.metrics.DiagnoseConfig`: batches, modules, norm, outlier site, dataset); writes
    ``out_dir`` (summary.json, layers.parquet/.csv, outliers.csv, abc.png, mmr.png) atomically; returns the
    summary. ``blocks`` replaces the evaluation batches read from ``settings.dataset``; GPTQ calibrates on
    ``calibration`` blocks, else on 32 windows of the dataset's training split."""
    from ..data.blocks import calibration_blocks
    from ..io import OUT_EXISTS_FIX, atomic_dir, refuse_existing_output
    from ..models.anatomy import conv1d_to_linear
    from ..models.loading import load_causal_lm
    from ..ptq import PTQConfig, quantize_model
    from .plots import plot_abc, plot_mmr

    # Everything that can be checked before loading weights is checked first.
    cfg = PTQConfig.from_dict(ptq) if ptq is not None else PTQConfig()
    s = settings if settings is not None else DiagnoseConfig()
    refuse_existing_output(out_dir, overwrite=overwrite, fix=OUT_EXISTS_FIX)
    if not Path(str(model_dir)).exists() and str(model_dir).count("/") != 1:
        raise ConfigError("model", f"{model_dir} does not exist", "give a model dir or a Hub repo id")
    if blocks is None:
        from ..models.limits import check_sequence_length

        check_sequence_length(str(model_dir), s.seq_len, "seq_len")
    if s.modules not in MODULE_SETS:
        _check_modules_on_meta(str(model_dir), s.modules)
    model, tok = load_causal_lm(str(model_dir))
    model = model.float()
    conv1d_to_linear(model)  # GPT-2: the float and quantized models then pair up layer by layer as nn.Linear
    if blocks is None:
        blocks = _eval_blocks(tok, s.dataset, s.split, s.n_batches, s.batch_size, s.seq_len)
    calib = None
    if cfg.method == "gptq":
        calib = calibration if calibration is not None else calibration_blocks(tok, s.dataset, 32, s.seq_len)
    qmodel, _ = quantize_model(model, cfg, calibration=calib)
    res = diagnose_models(model, qmodel, blocks, batch_size=s.batch_size, modules=s.modules, norm=s.norm,
                          progress=progress, outliers=s.outliers)
    summary = {**res["summary"], "model": str(model_dir), "ptq": cfg.to_dict()}
    import pandas as pd

    from ..io import atomic_write_json

    with atomic_dir(out_dir, overwrite=overwrite, fix=OUT_EXISTS_FIX) as tmp:
        layers = pd.DataFrame(res["layers"])
        layers.to_parquet(tmp / "layers.parquet", index=False)
        layers.to_csv(tmp / "layers.csv", index=False)
        pd.DataFrame(res["outliers"]).to_csv(tmp / "outliers.csv", index=False)
        plot_abc(res["layers"], summary["stages"], tmp / "abc.png")
        if res["outliers"]:
            plot_mmr(res["outliers"], tmp / "mmr.png")
        summary = _finite(summary)
        atomic_write_json(tmp / "summary.json", summary)
    return summary


def _check_modules_on_meta(model_dir: str, modules: str) -> None:
    """Match ``modules`` against the architecture built on the meta device (no weights read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    except (OSError, ValueError, KeyError):
        return  # load_causal_lm reports an unloadable model with its own message
    select = module_selector(modules, set())
    if not any(select(n, m, False) for n, m in skeleton.named_modules() if n):
        raise ConfigError("modules", f"no module of the model matches {modules!r}",
                          "use name suffixes the model has (e.g. q_proj, mlp, self_attn) or block/linear/all")


def _finite(obj):
    """NaN/inf -> None, so the JSON is valid for every reader."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
