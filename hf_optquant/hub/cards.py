"""Model, dataset and scaling-fit cards from the Jinja templates shipped in ``hf_optquant/resources/hub_cards/``.

Cards are filled through ``huggingface_hub.ModelCard``/``DatasetCard.from_template`` so their
YAML metadata (``model-index`` from ``eval_results``, tags, dataset ``configs``) is written by
the Hub's own code. Every value comes from a published record; a value that is not recorded
says so in words (never the Hub template's "More information needed").
"""
from __future__ import annotations

import math

from ..errors import ConfigError
from ..paper import CITATION, PAPER_ARXIV, PAPER_RHO
from ..resources import resource_text

__all__ = ["card_text", "eval_results_from",
           "full_precision_card", "qat_card", "checkpoint_card", "dataset_card", "scaling_section", "load_snippet"]

NOT_RECORDED = "not recorded"

# lm-eval task -> (Hub dataset id, display name, dataset config) for the model-index.
_TASK_DATASETS = {
    "piqa": ("ybisk/piqa", "PIQA", None),
    "hellaswag": ("Rowan/hellaswag", "HellaSwag", None),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", "ARC-Easy"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "ARC-Challenge"),
}
_LOSS_DATASETS = {"ptb": ("ptb-text-only/ptb_text_only", "Penn Treebank")}
_PARAM_ORDER = ("A", "alpha", "B", "beta", "E")


def card_text(v, digits: int = 4) -> str:
    """A recorded value as card text: ints with thousands separators, floats at ``digits`` significant digits,
    a missing value as "not recorded"."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NOT_RECORDED
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _pct(v) -> str:
    return NOT_RECORDED if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:+.2f}%"


def _duration(seconds) -> str:
    if seconds is None:
        return NOT_RECORDED
    s = float(seconds)
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.2f} h")


def eval_results_from(eval_json: dict | None):
    """``EvalResult`` entries (the card's ``model-index``) for every number in ``eval.json``."""
    from huggingface_hub import EvalResult

    if not eval_json:
        return []
    out = []
    ds = str(eval_json.get("dataset") or "ptb")
    ds_type, ds_name = _LOSS_DATASETS.get(ds, (ds, ds))
    split = eval_json.get("split", "validation")
    for key, metric_name in (("val_loss", "validation loss"), ("val_ppl", "validation perplexity")):
        if isinstance(eval_json.get(key), (int, float)):
            out.append(EvalResult(task_type="text-generation", task_name="Language modeling", dataset_type=ds_type,
                                  dataset_name=ds_name, dataset_split=split, metric_type=key.split("_")[1],
                                  metric_name=metric_name, metric_value=float(eval_json[key])))
    for task, metrics in sorted((eval_json.get("tasks") or {}).items()):
        ds_type, ds_name, ds_config = _TASK_DATASETS.get(task, (task, task, None))
        for metric, value in sorted(metrics.items()):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or metric.endswith("stderr"):
                continue
            out.append(EvalResult(task_type="text-generation", task_name=f"{task} (zero-shot)", dataset_type=ds_type,
                                  dataset_name=ds_name, dataset_config=ds_config, metric_type=metric,
                                  metric_name=f"{metric} (zero-shot)", metric_value=float(value)))
    return out


def load_snippet(repo_id: str, *, with_tokenizer: bool) -> str:
    lines = ["from transformers import AutoModelForCausalLM, AutoTokenizer" if with_tokenizer else
             "from transformers import AutoModelForCausalLM", "",
             f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")']
    if with_tokenizer:
        lines += [f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
                  'inputs = tokenizer("The company said", return_tensors="pt")',
                  "outputs = model.generate(**inputs, max_new_tokens=20, do_sample=False)",
                  "print(tokenizer.decode(outputs[0], skip_special_tokens=True))"]
    return "\n".join(lines)


def _key_value_rows(d: dict | None) -> list[tuple[str, str]]:
    return [(str(k), card_text(v) if not isinstance(v, (dict, list)) else str(v)) for k, v in sorted((d or {}).items())]


def _eval_rows(eval_json: dict | None) -> list[dict]:
    if not eval_json:
        return []
    rows = []
    for key, name in (("val_loss", "validation loss"), ("val_ppl", "validation perplexity")):
        if eval_json.get(key) is not None:
            rows.append({"name": str(eval_json.get("dataset") or "ptb"), "metric": name,
                         "value": card_text(eval_json[key])})
    for task, metrics in sorted((eval_json.get("tasks") or {}).items()):
        for metric, value in sorted(metrics.items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not metric.endswith("stderr"):
                rows.append({"name": _TASK_DATASETS.get(task, (task, task))[1], "metric": f"{metric} (zero-shot)",
                             "value": card_text(value)})
    if eval_json.get("mean_acc_norm") is not None:
        rows.append({"name": "mean over tasks", "metric": "acc_norm", "value": card_text(eval_json["mean_acc_norm"])})
    return rows


def _degradation_rows(deg: dict | None) -> list[dict]:
    rows = []
    for key, name in (("val_loss", "validation loss"), ("val_ppl", "validation perplexity"),
                      ("mean_acc_norm", "mean zero-shot acc_norm")):
        d = (deg or {}).get(key)
        if isinstance(d, dict) and "before" in d:
            rows.append({"metric": name, "before": card_text(d["before"]), "after": card_text(d["after"]),
                         "absolute": card_text(d.get("absolute")), "relative": _pct(d.get("relative"))})
    return rows


def _render(template: str, card_cls, card_data, **ctx):
    return card_cls.from_template(card_data, template_str=resource_text("hub_cards", template), **ctx)


def _training_rows(run: dict) -> dict | None:
    if not run:
        return None
    cfg = run.get("config") or {}
    cl = run.get("common_loss") or {}
    n_params, tokens = run.get("n_params"), run.get("tokens_seen")
    hparams = dict(run.get("optimizer_hparams") or run.get("optimizer_kwargs") or {})
    return {
        "optimizer": card_text(run.get("optimizer")),
        "learning_rate": card_text(run.get("learning_rate", cfg.get("learning_rate"))),
        "dataset": card_text(run.get("dataset", cfg.get("dataset"))), "tokens": card_text(tokens),
        "tokens_per_param": card_text(tokens / n_params, 3) if tokens and n_params else NOT_RECORDED,
        "steps": card_text(run.get("global_step")), "final_train_loss": card_text(run.get("final_train_loss")),
        "final_eval_loss": card_text(run.get("final_eval_loss")), "wall_time": _duration(run.get("wall_time_s")),
        "common_loss": (f"validation loss {card_text(cl.get('eval_loss'))} "
                        f"(threshold {card_text(cl.get('threshold'))}) at step {card_text(cl.get('step'))}"
                        if cl else "none (final weights)"),
        "hparams": _key_value_rows(hparams) or [("(preset defaults)", "see hf_optquant.optim presets")],
    }


def _architecture(config: dict, run: dict) -> dict:
    """The architecture table: the model's ``config.json`` and the parameter counts of its ``run.json``."""
    return {"model_type": card_text(config.get("model_type")), "layers": card_text(config.get("num_hidden_layers")),
            "hidden": card_text(config.get("hidden_size")), "heads": card_text(config.get("num_attention_heads")),
            "vocab": card_text(config.get("vocab_size")), "size": card_text(run.get("model_size")),
            "n_params": card_text(run.get("n_params")),
            "n_params_non_embedding": card_text(run.get("n_params_non_embedding"))}


def _model_card(*, repo_id: str, config: dict, run: dict | None, eval_json: dict | None, has_tokenizer: bool,
                license: str, base_model: str | None, versions: dict, tags: list[str], title: str, summary: str,
                precision: str, qat: dict | None = None, quant: dict | None = None, degradation_missing: str):
    """What every model card shares: metadata, architecture, training, evaluation, degradation, versions."""
    from huggingface_hub import ModelCard, ModelCardData

    run = run or {}
    optimizer = run.get("optimizer")
    tags = ["hf-optquant", "optimizers-under-quantization", f"arxiv:{PAPER_ARXIV}",
            *([str(optimizer)] if optimizer else []), *tags]
    card_data = ModelCardData(language="en", license=license, library_name="transformers",
                              pipeline_tag="text-generation", tags=tags, base_model=base_model,
                              model_name=repo_id.split("/")[-1], eval_results=eval_results_from(eval_json) or None)
    deg = (eval_json or {}).get("degradation")
    ctx = dict(
        title=title, summary=summary, precision=precision, needs_compressed_tensors=quant is not None,
        load_snippet=load_snippet(repo_id, with_tokenizer=has_tokenizer),
        arch=_architecture(config, run),
        training=_training_rows(run),
        training_missing="No training record (`run.json`) was found for this model, so its optimizer and "
                         "budget are not stated here.",
        qat=_key_value_rows(qat) if qat else None,
        ptq=_key_value_rows({k: v for k, v in quant.items() if k != "quantized_modules"}) if quant else None,
        eval_rows=_eval_rows(eval_json),
        eval_missing="This model was published without an `eval.json`; run `hf-optquant eval` on it and "
                     "publish again to add its results.",
        degradation_rows=_degradation_rows(deg),
        parent=(deg or {}).get("baseline") or NOT_RECORDED,  # records come scrubbed of local paths
        degradation_missing=degradation_missing,
        versions=sorted((str(k), str(v)) for k, v in versions.items()) or [("hf_optquant", NOT_RECORDED)],
        citation=CITATION,
    )
    return _render("model_card.md", ModelCard, card_data, **ctx)


_NO_PARENT_RECORDED = ("No comparison with the full-precision parent was recorded (run `hf-optquant eval "
                       "--baseline PARENT` and publish again).")


def full_precision_card(*, repo_id: str, config: dict, run: dict | None, eval_json: dict | None,
                        has_tokenizer: bool, license: str = "apache-2.0", base_model: str | None = None,
                        extra_versions: dict | None = None):
    """The card of a run trained in full precision (``run`` is its ``run.json``)."""
    run = run or {}
    optimizer = run.get("optimizer")
    return _model_card(
        repo_id=repo_id, config=config, run=run, eval_json=eval_json, has_tokenizer=has_tokenizer, license=license,
        base_model=base_model, versions={**(run.get("versions") or {}), **(extra_versions or {})},
        tags=["full-precision"], title=f"{optimizer}-trained full-precision model", precision="full precision",
        summary=f"A {run.get('model_size') or 'causal'} language model trained in full precision with {optimizer}.",
        degradation_missing="This is the full-precision model, so there is no parent to compare with.")


def qat_card(*, repo_id: str, config: dict, run: dict, eval_json: dict | None, has_tokenizer: bool,
             license: str = "apache-2.0", base_model: str | None = None, extra_versions: dict | None = None):
    """The card of a run trained with quantization-aware training (``run["qat"]`` is its QAT block)."""
    from ..qat.config import read_qat_record

    cfg, optimizer = read_qat_record(run), run.get("optimizer")
    qat, w, a = cfg.to_dict(), cfg.scheme.w_bits, cfg.scheme.a_bits
    return _model_card(
        repo_id=repo_id, config=config, run=run, eval_json=eval_json, has_tokenizer=has_tokenizer, license=license,
        base_model=base_model, versions={**(run.get("versions") or {}), **(extra_versions or {})},
        tags=["qat", cfg.quantizer, f"w{w}a{a if a else 16}"],
        title=f"{optimizer}-trained QAT model", qat=qat,
        precision=(f"trained with QAT ({cfg.quantizer} W{w}A{a if a else 16}); "
                   "weights stored unquantized"),
        summary=(f"A {run.get('model_size') or 'causal'} language model trained from scratch with {optimizer} "
                 "under quantization-aware training."),
        degradation_missing=_NO_PARENT_RECORDED)


def checkpoint_card(*, repo_id: str, config: dict, run: dict | None, quant: dict, eval_json: dict | None,
                    has_tokenizer: bool, license: str = "apache-2.0", base_model: str | None = None,
                    extra_versions: dict | None = None):
    """The card of a quantized compressed-tensors checkpoint: ``quant`` is its ``quantization_record.json``,
    ``run`` the training record of the run it was quantized from (None if not found)."""
    run = run or {}
    optimizer = run.get("optimizer")
    a, w, method = quant.get("a_bits"), quant.get("w_bits"), quant.get("method")
    versions = dict(run.get("versions") or {})
    for k in ("hf_optquant_version", "compressed_tensors_version"):
        if quant.get(k):
            versions[k.removesuffix("_version").replace("_", "-")] = quant[k]
    return _model_card(
        repo_id=repo_id, config=config, run=run, eval_json=eval_json, has_tokenizer=has_tokenizer, license=license,
        base_model=base_model, versions={**versions, **(extra_versions or {})}, quant=quant,
        tags=["quantized", "compressed-tensors", str(method or "ptq"), f"w{w}a{a if a else 16}"],
        title=f"{optimizer or 'model'}-trained {method or 'quantized'} W{w}A{a if a else 16} checkpoint",
        precision=(f"{(method or 'ptq').upper()} W{w}A{a if a else 16}, {quant.get('granularity', 'row')} weight "
                   "scales (compressed-tensors)"),
        summary=(f"A {run.get('model_size') or 'causal'} language model trained with "
                 f"{optimizer or 'an unrecorded optimizer'} and quantized after training with "
                 f"{method or 'an unrecorded method'} (W{w}A{a if a else 16})."),
        degradation_missing=_NO_PARENT_RECORDED)


def _interval(ci) -> str:
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        return f" [{card_text(float(ci[0]))}, {card_text(float(ci[1]))}]"
    return ""


def _fit_block(file: str, fit: dict, plots: list[str]) -> dict:
    """One fit file's tables for the scaling template: parameters with intervals, then rho per precision."""
    if not isinstance(fit, dict) or not all(isinstance(v, dict) and isinstance(v.get("params"), dict)
                                            for v in fit.values()):
        raise ConfigError(file, "is not {optimizer: {form, params, ci, loo_rmse, n_points}}",
                          "write it with `hf-optquant fit`")
    names = sorted({k for v in fit.values() for k in v["params"] if k != "rho"},
                   key=lambda k: (_PARAM_ORDER.index(k) if k in _PARAM_ORDER else len(_PARAM_ORDER), k))
    precisions = sorted({p for v in fit.values() for p in (v["params"].get("rho") or {})})
    rows, rho_rows = [], []
    for opt, v in sorted(fit.items()):
        ci = v.get("ci") or {}
        rows.append({"optimizer": opt, "loo_rmse": card_text(v.get("loo_rmse")),
                     "n_points": card_text(v.get("n_points")),
                     "cells": [card_text(v["params"].get(p)) + _interval(ci.get(p)) if p in v["params"] else "–"
                               for p in names]})
        rho = v["params"].get("rho") or {}
        rho_ci = ci.get("rho") if isinstance(ci.get("rho"), dict) else {}
        if precisions:
            rho_rows.append({"optimizer": opt, "paper": card_text(PAPER_RHO.get(opt.lower(), None))
                             if opt.lower() in PAPER_RHO else "not in the paper",
                             "cells": [card_text(rho.get(p)) + _interval(rho_ci.get(p)) if p in rho else "–"
                                       for p in precisions]})
    forms = sorted({str(v.get("form", "unnamed")) for v in fit.values()})
    return {"file": file, "form": ", ".join(forms), "params": names, "rows": rows, "precisions": precisions,
            "rho_rows": rho_rows, "plots": plots}


def scaling_section(fits: dict[str, dict], plots: dict[str, list[str]] | None = None) -> str:
    """The scaling-fit part of the results card: parameters with intervals, rho beside the paper's.

    ``fits`` maps a fit file (its path in the repo) to its JSON: ``{optimizer: {form, params: {A, B, E, alpha,
    beta, rho: {precision: v}}, ci, loo_rmse, n_points}}``.
    """
    import jinja2

    blocks = [_fit_block(file, fit, (plots or {}).get(file, [])) for file, fit in sorted(fits.items())]
    env = jinja2.Environment(keep_trailing_newline=True)
    return env.from_string(resource_text("hub_cards", "scaling_fit.md")).render(fits=blocks).strip()


def dataset_card(*, repo_id: str, df, data_path: str, scaling: str, report_file: str | None,
                 license: str = "apache-2.0"):
    """The results dataset's card: what the rows are, how they were made, the schema, the fits."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from ..results import schema_markdown

    optimizers = sorted(df["optimizer"].dropna().unique().tolist())
    studies = sorted(df["study"].dropna().unique().tolist())
    n = len(df)
    size = "n<1K" if n < 1000 else ("1K<n<10K" if n < 10_000 else "10K<n<100K")
    card_data = DatasetCardData(
        license=license, pretty_name="hf_optquant study results", size_categories=[size],
        tags=["hf-optquant", "optimizers-under-quantization", "quantization", "scaling-laws", f"arxiv:{PAPER_ARXIV}",
              *optimizers],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": data_path}]}],
    )
    return _render("dataset_card.md", DatasetCard, card_data, title=f"{repo_id.split('/')[-1]}: optimizer x "
                   "quantization results", repo_id=repo_id, n_rows=n, n_studies=max(len(studies), 1),
                   studies=", ".join(studies) or "unnamed", optimizers=", ".join(optimizers),
                   report_file=report_file, schema_table=schema_markdown(), scaling_section=scaling,
                   citation=CITATION)
