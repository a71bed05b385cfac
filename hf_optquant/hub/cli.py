"""``hf-optquant publish PATH --repo-id NAME [--private] [--endpoint URL] [--dry-run OUT_DIR]``.

The token comes from ``hf auth login`` or ``HF_TOKEN`` only (there is deliberately no flag,
so it never lands in shell history or logs).
"""
from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH",
                   help="run dir (run.json), quantized checkpoint dir (quantization_record.json) or study dir "
                        "(results.parquet)")
    p.add_argument("--repo-id", required=True, help="Hub repo, NAMESPACE/NAME (a model repo for runs and "
                                                    "checkpoints, a dataset repo for studies)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--endpoint", default=None, help="Hub endpoint URL (default: HF_ENDPOINT or huggingface.co)")
    p.add_argument("--dry-run", metavar="OUT_DIR", default=None,
                   help="write exactly the files that would be uploaded to this new folder; upload nothing")
    p.add_argument("--message", default=None, help="commit message")


def run(args) -> int:
    from .publish import PublishConfig, publish

    cfg = PublishConfig(path=args.path, repo_id=args.repo_id, private=args.private, endpoint=args.endpoint,
                        dry_run=args.dry_run, commit_message=args.message)
    res = publish(cfg)
    if res.out_dir:
        print(f"dry run: {res.summary}; wrote {len(res.files)} files for {res.repo_type} repo {res.repo_id} "
              f"to {res.out_dir}")
    else:
        print(f"published {res.summary} to {res.repo_type} repo {res.repo_id}: {res.url}")
    return 0
