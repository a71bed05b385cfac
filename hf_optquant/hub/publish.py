"""Publish a run, checkpoint or study to the Hub in one atomic commit (or to a folder: dry run).

Authentication is the ``huggingface_hub`` one: ``HF_TOKEN`` or the token saved by
``hf auth login``. The token is read here only to fail early with a clear message; it is
never printed, logged or written, and every file is checked for it before upload.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_dir
from .bundle import RESULTS_PATH, Bundle, build_model_bundle, build_study_bundle
from .errors import hub_error
from .sources import detect_source

__all__ = ["PublishConfig", "PublishResult", "publish", "validate_repo_id"]

logger = logging.getLogger(__name__)


def validate_repo_id(repo_id: str) -> str:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id as _validate

    try:
        _validate(repo_id)
    except HFValidationError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError("repo_id", f"{repo_id!r} is not a valid Hub repo id ({first[:140]})",
                          "use NAMESPACE/NAME with letters, digits, '-', '_' or '.' (max 96 characters)") from None
    return repo_id


@dataclass(kw_only=True)
class PublishConfig:
    path: str = field(metadata={"help": "A run dir (run.json), checkpoint dir (quantization_record.json) "
                                        "or study dir (results.parquet)."})
    repo_id: str = field(metadata={"help": "Hub repo id, NAMESPACE/NAME."})
    private: bool = field(default=False, metadata={"help": "Create the repo private (an existing repo keeps "
                                                           "its visibility)."})
    endpoint: str | None = field(default=None, metadata={"help": "Hub endpoint URL (default: HF_ENDPOINT or "
                                                                 "https://huggingface.co)."})
    dry_run: str | None = field(default=None, metadata={"help": "Write the files that would be uploaded to "
                                                                "this new folder instead of uploading."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit summary (default: generated)."})
    license: str = field(default="apache-2.0", metadata={"help": "License in the card metadata."})

    def __post_init__(self):
        validate_repo_id(self.repo_id)
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError("endpoint", f"{self.endpoint!r} is not an http(s) URL", "e.g. https://huggingface.co")
        if self.endpoint:
            self.endpoint = self.endpoint.rstrip("/")
        if self.dry_run is not None:
            from ..io import refuse_existing_output

            refuse_existing_output(self.dry_run, field="dry_run", fix="give a new folder for the dry run")


@dataclass
class PublishResult:
    repo_id: str
    repo_type: str
    files: list[str]
    url: str | None = None  # commit URL (None for a dry run)
    out_dir: str | None = None  # dry-run folder
    summary: str = ""


def _token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise ConfigError("token", "no Hugging Face token found",
                          "run `hf auth login` or set HF_TOKEN (tokens are never taken from the command line)")
    return token


def _check_no_secret(bundle: Bundle, token: str | None) -> None:
    if not token:
        return
    needle = token.encode()
    for name in bundle.files:
        if needle in bundle.read(name):
            raise ConfigError("PATH", f"{name} contains your Hub token", "remove the token from that file; "
                              "nothing was uploaded")


def _existing_study_files(api, repo_id: str, endpoint: str | None):
    """(results DataFrame | None, {path: fit dict}, {fit path: [plot path]}, head sha | None) already in
    the results repo."""
    import json

    import pandas as pd
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = api.dataset_info(repo_id)
    except RepositoryNotFoundError:
        return None, {}, {}, None
    names = {s.rfilename for s in info.siblings or []}
    existing, fits, plots = None, {}, {}
    if RESULTS_PATH in names:
        path = api.hf_hub_download(repo_id, RESULTS_PATH, repo_type="dataset", revision=info.sha)
        existing = pd.read_parquet(path)
    for name in sorted(names):
        if name.startswith("studies/") and "/fits/" in name and name.endswith(".json"):
            path = api.hf_hub_download(repo_id, name, repo_type="dataset", revision=info.sha)
            fits[name] = json.loads(Path(path).read_text())
            if name.removesuffix(".json") + ".png" in names:  # its plot, already in the repo
                plots[name] = [name.removesuffix(".json") + ".png"]
    return existing, fits, plots, info.sha


def _build(cfg: PublishConfig, api=None) -> tuple[Bundle, str | None]:
    source = detect_source(cfg.path)
    if source.kind != "study":
        return build_model_bundle(source, cfg.repo_id, license=cfg.license), None
    existing, fits, plots, parent = (None, {}, {}, None) if api is None else \
        _existing_study_files(api, cfg.repo_id, cfg.endpoint)
    return build_study_bundle(source, cfg.repo_id, existing=existing, existing_fits=fits, existing_plots=plots,
                              license=cfg.license), parent


def publish(cfg: PublishConfig) -> PublishResult:
    """Upload ``cfg.path`` to ``cfg.repo_id`` in one commit, or write it to ``cfg.dry_run``.

    A dry run never contacts the Hub: for a study it shows the upload to a new repo (rows
    already in an existing repo are merged only by a real publish).
    """
    if cfg.dry_run is not None:
        from huggingface_hub import get_token

        bundle, _ = _build(cfg)
        _check_no_secret(bundle, get_token())
        with atomic_dir(cfg.dry_run, field="dry_run", fix="give a new folder for the dry run") as tmp:
            bundle.write_to(tmp)
        return PublishResult(repo_id=cfg.repo_id, repo_type=bundle.repo_type, files=sorted(bundle.files),
                             out_dir=cfg.dry_run, summary=bundle.summary)

    from huggingface_hub import CommitOperationAdd, HfApi

    token = _token()
    api = HfApi(endpoint=cfg.endpoint, token=token)
    endpoint = api.endpoint
    source = detect_source(cfg.path)
    try:
        api.create_repo(cfg.repo_id, repo_type=source.repo_type, private=cfg.private, exist_ok=True)
        bundle, parent = _build(cfg, api)
        _check_no_secret(bundle, token)
        ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(v) if isinstance(v, Path) else v)
               for name, v in sorted(bundle.files.items())]
        message = cfg.commit_message or f"hf-optquant publish: {bundle.summary}"
        # One commit carries every file: the Hub applies it whole or not at all. parent_commit
        # makes a concurrent append fail instead of silently dropping its rows.
        info = api.create_commit(cfg.repo_id, ops, commit_message=message, repo_type=bundle.repo_type,
                                 parent_commit=parent)
    except ConfigError:
        raise
    except Exception as exc:
        mapped = hub_error(exc, endpoint=endpoint, repo_id=cfg.repo_id, token=token)
        if mapped is None:
            raise
        raise mapped from None
    logger.info("published %s to %s", bundle.summary, cfg.repo_id)
    return PublishResult(repo_id=cfg.repo_id, repo_type=bundle.repo_type, files=sorted(bundle.files),
                         url=str(info.commit_url), summary=bundle.summary)
