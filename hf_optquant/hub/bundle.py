"""The exact set of files a publish uploads, built locally (no network here).

A :class:`Bundle` is what ``--dry-run`` writes to a folder and what a real publish sends in
one commit: so the two never differ.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ..errors import ConfigError
from ..io import read_json
from ..results import arrow_schema, merge_results, normalize_results
from .cards import checkpoint_card, dataset_card, full_precision_card, qat_card, scaling_section
from .sources import Source, find_parent_run, model_files, read_record, scrub_record

__all__ = ["Bundle", "build_model_bundle", "build_study_bundle", "study_name", "results_to_parquet",
           "RESULTS_PATH", "study_prefix"]

RESULTS_PATH = "data/results.parquet"


@dataclass
class Bundle:
    repo_id: str
    repo_type: str
    files: dict[str, bytes | Path] = field(default_factory=dict)  # path_in_repo -> content or local file
    summary: str = ""

    def read(self, path_in_repo: str) -> bytes:
        v = self.files[path_in_repo]
        return v.read_bytes() if isinstance(v, Path) else v

    def write_to(self, out: Path) -> None:
        for name in sorted(self.files):
            dest = out / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(self.read(name))


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def build_model_bundle(source: Source, repo_id: str, *, license: str = "apache-2.0") -> Bundle:
    """A run or quantized checkpoint: its model files, scrubbed records and a model card."""
    files = model_files(source.path)
    config = read_record(source.path / "config.json") or {}
    quant = read_record(source.path / "quantization_record.json")
    eval_json = read_record(source.path / "eval.json")
    if source.kind == "checkpoint":
        _, run = find_parent_run(source.path, quant)
    else:
        run = read_record(source.path / "run.json")
    # The card shows what is published: the same scrubbed records.
    quant, eval_json, run = (scrub_record(r) if r is not None else None for r in (quant, eval_json, run))
    bundle = Bundle(repo_id=repo_id, repo_type="model")
    for name, path in files.items():
        # Records are re-serialised without secrets; model files go as they are.
        bundle.files[name] = _json_bytes(scrub_record(read_json(path))) if name.endswith(".json") else path
    if run is not None and source.kind == "checkpoint":
        bundle.files["parent_run.json"] = _json_bytes(scrub_record({k: v for k, v in run.items()
                                                                    if k != "log_history"}))
    has_tok = any(n.startswith("tokenizer") for n in files)
    common = dict(repo_id=repo_id, config=config, eval_json=eval_json, has_tokenizer=has_tok, license=license,
                  extra_versions={"huggingface_hub (publish)": metadata.version("huggingface_hub")})
    if source.kind == "checkpoint":
        card = checkpoint_card(run=run, quant=quant or {}, **common)
    elif run and _trained_with_qat(run):
        card = qat_card(run=run, **common)
    else:
        card = full_precision_card(run=run, **common)
    bundle.files["README.md"] = str(card).encode()
    bundle.summary = f"{source.kind} {source.path.name}: {len(bundle.files)} files"
    return bundle


def _trained_with_qat(run: dict) -> bool:
    from ..qat.config import read_qat_record

    return read_qat_record(run) is not None


def study_name(study_dir: Path, df) -> str:
    names = df["study"].dropna().unique().tolist() if "study" in df.columns else []
    if len(names) == 1:
        name = str(names[0])
    elif (study_dir / "study_config.json").is_file():
        name = str(read_json(study_dir / "study_config.json").get("name") or study_dir.name)
    else:
        name = study_dir.name
    if not re.fullmatch(r"[\w.-]+", name):
        raise ConfigError("study", f"study name {name!r} is not usable as a folder name",
                          "use letters, digits, '-', '_' or '.'")
    return name


def study_prefix(name: str) -> str:
    return f"studies/{name}"


def results_to_parquet(df) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, schema=arrow_schema(), preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def build_study_bundle(source: Source, repo_id: str, *, existing=None, existing_fits: dict | None = None,
                       existing_plots: dict | None = None, license: str = "apache-2.0") -> Bundle:
    """A study: results merged into ``existing`` rows by run_id, fits, report and the dataset card.

    ``existing`` is the results DataFrame already in the repo (None for a new repo);
    ``existing_fits`` the fit JSONs of other studies already there (``{path_in_repo: dict}``),
    so the card keeps describing them, and ``existing_plots`` their plots there (``{fit path: [png path]}``).
    """
    import pandas as pd

    try:
        df = pd.read_parquet(source.path / "results.parquet")
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise ConfigError("results.parquet", f"cannot be read ({str(exc).splitlines()[0][:120]})",
                          "regenerate it with `hf-optquant study --collect`") from None
    if "study" not in df.columns or df["study"].isna().all():
        df = df.assign(study=study_name(source.path, df))
    new = normalize_results(df, source="results.parquet")
    name = study_name(source.path, new)
    merged = merge_results(existing, new)
    prefix = study_prefix(name)
    bundle = Bundle(repo_id=repo_id, repo_type="dataset")
    bundle.files[RESULTS_PATH] = results_to_parquet(merged)
    # Other studies' fits (and their plots) already in the repo stay on the card; this study's are replaced.
    fits = {k: v for k, v in (existing_fits or {}).items() if not k.startswith(prefix + "/")}
    plots = {k: list(v) for k, v in (existing_plots or {}).items() if k in fits}
    fits_dir = source.path / "fits"
    if fits_dir.is_dir():
        for f in sorted(fits_dir.iterdir()):
            if f.suffix == ".json":
                fits[f"{prefix}/fits/{f.name}"] = read_record(f)
                bundle.files[f"{prefix}/fits/{f.name}"] = _json_bytes(read_record(f))
            elif f.suffix == ".png":
                bundle.files[f"{prefix}/fits/{f.name}"] = f
                plots.setdefault(f"{prefix}/fits/{f.stem}.json", []).append(f"{prefix}/fits/{f.name}")
    report = None
    if (source.path / "report.md").is_file():
        report = f"{prefix}/report.md"
        bundle.files[report] = source.path / "report.md"
        # The report's figures sit beside it (loss curves, degradation bars): without them its images break.
        for png in sorted(source.path.glob("*.png")):
            bundle.files[f"{prefix}/{png.name}"] = png
    section = scaling_section(fits, plots)
    card = dataset_card(repo_id=repo_id, df=merged, data_path=RESULTS_PATH, scaling=section,
                        report_file=report, license=license)
    bundle.files["README.md"] = str(card).encode()
    kept = 0 if existing is None else len(merged) - len(new)
    bundle.summary = (f"study {name}: {len(new)} rows (+{kept} kept from the repo = {len(merged)}), "
                      f"{len(bundle.files)} files")
    return bundle
