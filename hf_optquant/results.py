"""The results table's schema: one row per run, keyed by ``run_id``.

``<study>/results.parquet`` (written by the study report) and the Hub results dataset (merged and
uploaded by ``hf_optquant.hub``) both follow :data:`RESULTS_SCHEMA`; :func:`normalize_results` checks a
DataFrame against it and returns it with the documented column order and dtypes, so rows from different
studies concatenate without type drift.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["Column", "RESULTS_SCHEMA", "KEY", "column_names", "normalize_results", "merge_results",
           "schema_markdown", "arrow_schema"]

KEY = "run_id"


@dataclass(frozen=True, kw_only=True)
class Column:
    name: str
    dtype: str  # pandas dtype: "string", "Int64", "Float64", "boolean" (all nullable)
    description: str
    required: bool = False


RESULTS_SCHEMA: tuple[Column, ...] = (
    Column(name="run_id", dtype="string", required=True,
           description="Unique id of the run (key: a later publish replaces the row with the same id)."),
    Column(name="study", dtype="string", description="Name of the study the run belongs to."),
    Column(name="optimizer", dtype="string", required=True,
           description="adamw, muon, psgd, scion, shampoo or soap."),
    Column(name="model_size", dtype="string", description="Size preset (e.g. tiny-2, 125M) or model path."),
    Column(name="n_params", dtype="Int64", description="N: parameters of the model."),
    Column(name="n_params_non_embedding", dtype="Int64", description="Parameters excluding the embedding."),
    Column(name="tokens", dtype="Int64", description="D: training tokens seen."),
    Column(name="precision", dtype="string", required=True,
           description="full (trained in full precision), qat (trained with QAT) or ptq (quantized after training)."),
    Column(name="method", dtype="string",
           description="Quantization method: none, rtn, gptq, quest-qat or rtn-qat."),
    Column(name="w_bits", dtype="Int64", description="Weight bits (null in full precision)."),
    Column(name="a_bits", dtype="Int64", description="Activation bits (null when activations stay in float)."),
    Column(name="granularity", dtype="string", description="Weight-scale granularity: row, group:G or tensor."),
    Column(name="learning_rate", dtype="Float64", description="Peak learning rate of the training run."),
    Column(name="common_loss", dtype="Float64", description="Common-Loss threshold the PTQ checkpoint was taken at."),
    Column(name="final_train_loss", dtype="Float64", description="Last logged training loss."),
    Column(name="val_loss", dtype="Float64", description="Validation loss (nats/token) of the evaluated model."),
    Column(name="val_ppl", dtype="Float64", description="Validation perplexity, exp(val_loss)."),
    Column(name="acc_norm_piqa", dtype="Float64", description="PIQA zero-shot acc_norm (lm-eval)."),
    Column(name="acc_norm_hellaswag", dtype="Float64", description="HellaSwag zero-shot acc_norm (lm-eval)."),
    Column(name="acc_norm_arc_easy", dtype="Float64", description="ARC-Easy zero-shot acc_norm (lm-eval)."),
    Column(name="mean_acc_norm", dtype="Float64", description="Mean zero-shot acc_norm over the evaluated tasks."),
    Column(name="zero_shot", dtype="string", description="All zero-shot results as JSON {task: {metric: value}}."),
    Column(name="parent_run_id", dtype="string", description="Full-precision run a quantized row derives from."),
    Column(name="delta_val_loss", dtype="Float64", description="val_loss minus the parent's (positive: worse)."),
    Column(name="delta_mean_acc_norm", dtype="Float64",
           description="mean_acc_norm minus the parent's (negative: worse)."),
    Column(name="mmr", dtype="Float64",
           description="Max-to-median ratio of the residual stream (per token, lower median), median over layers."),
    Column(name="mmr_mean", dtype="Float64", description="Max-to-mean ratio variant of MMR."),
    Column(name="kurtosis", dtype="Float64", description="Excess kurtosis of the residual stream, median over layers."),
    Column(name="kurtosis_channel_rms", dtype="Float64", description="Kurtosis of the per-channel RMS."),
    Column(name="r_l", dtype="Float64", description="R_L: relative quantization error at the last layer (ABC)."),
    Column(name="wall_time_s", dtype="Float64", description="Training wall time in seconds."),
    Column(name="hf_optquant_version", dtype="string", description="hf_optquant version that produced the row."),
    Column(name="versions", dtype="string", description="Library versions as JSON (torch, transformers, ...)."),
)

_BY_NAME = {c.name: c for c in RESULTS_SCHEMA}


def column_names() -> list[str]:
    return [c.name for c in RESULTS_SCHEMA]


def normalize_results(df, *, source: str = "results"):
    """Return ``df`` with exactly the schema's columns, order and nullable dtypes.

    Missing optional columns become nulls; unknown columns, missing required values,
    duplicate run ids and values that do not convert raise :class:`ConfigError`.
    """
    import pandas as pd

    unknown = [c for c in df.columns if c not in _BY_NAME]
    if unknown:
        raise ConfigError(source, f"unknown column(s) {unknown}",
                          "rename them to the documented columns (hf_optquant/results.py) or drop them")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for col in RESULTS_SCHEMA:
        values = df[col.name].reset_index(drop=True) if col.name in df.columns else pd.Series([None] * len(df))
        try:
            if col.dtype == "string":
                values = values.map(lambda v: v if v is None or isinstance(v, str) or pd.isna(v) else str(v))
            out[col.name] = values.astype(col.dtype)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}.{col.name}", f"values do not convert to {col.dtype} ({exc})",
                              f"store {col.description.rstrip('.').lower()} as {col.dtype}") from None
        if col.required and out[col.name].isna().any():
            raise ConfigError(f"{source}.{col.name}", "has missing values", "fill it for every row")
    dup = out[KEY][out[KEY].duplicated()].unique().tolist()
    if dup:
        raise ConfigError(f"{source}.{KEY}", f"duplicate run ids {dup[:3]}", "give every run a unique run_id")
    return out


def merge_results(existing, new):
    """Rows of ``existing`` whose run_id is not in ``new``, then all of ``new`` (the append rule)."""
    import pandas as pd

    new = normalize_results(new, source="new results")
    if existing is None or len(existing) == 0:
        return new
    existing = normalize_results(existing, source="existing results")
    kept = existing[~existing[KEY].isin(set(new[KEY]))]
    return pd.concat([kept, new], ignore_index=True)


def arrow_schema():
    """The pyarrow schema parquet files are written with (stable across appends)."""
    import pyarrow as pa

    types = {"string": pa.string(), "Int64": pa.int64(), "Float64": pa.float64(), "boolean": pa.bool_()}
    return pa.schema([pa.field(c.name, types[c.dtype], nullable=True) for c in RESULTS_SCHEMA])


def schema_markdown() -> str:
    """The schema as a Markdown table (for the dataset card and docs)."""
    dtypes = {"string": "string", "Int64": "int64", "Float64": "float64", "boolean": "bool"}
    lines = ["| column | type | description |", "|---|---|---|"]
    for c in RESULTS_SCHEMA:
        req = " (required)" if c.required else ""
        lines.append(f"| `{c.name}` | {dtypes[c.dtype]}{req} | {c.description} |")
    return "\n".join(lines)
