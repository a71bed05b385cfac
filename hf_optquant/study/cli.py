"""``hf-optquant study [CONFIG] [--print-commands | --run ID | --collect]``."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import parse_overrides
from .config import load_study_config

__all__ = ["add_arguments", "run", "default_config_path"]


def default_config_path() -> Path:
    """The embedded default, ``trainer_configs/study_tiny.yaml`` as shipped inside the package."""
    from ..resources import resource_path

    return resource_path("trainer_configs", "study_tiny.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default=None,
                        help="study YAML (default: the embedded trainer_configs/study_tiny.yaml)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--print-commands", action="store_true",
                      help="print one self-contained command per training run (e.g. for a SLURM job array)")
    # --run-id: torchrun's parser reads every word and rejects --run as an ambiguous prefix of its --run-path.
    mode.add_argument("--run", "--run-id", dest="run", metavar="RUN_ID",
                      help="train only this run (what --print-commands prints)")
    mode.add_argument("--collect", action="store_true",
                      help="build results and report from finished run dirs (Common Loss, PTQ, eval, diagnose, fit)")
    mode.add_argument("--plan", action="store_true",
                      help="print per run parameters, tokens, steps, FLOPs, GPU-hours, memory and disk; run nothing")
    parser.add_argument("--mfu", type=float, default=0.4, help="--plan: model FLOPs utilisation (default 0.4)")
    parser.add_argument("--gpu-tflops", type=float, default=989.0,
                        help="--plan: peak bf16 TFLOP/s of one GPU (default 989, H100 SXM)")
    parser.add_argument("--world-size", type=int, default=1, help="--plan: devices per run (default 1)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="field=value",
                        help="override study fields, e.g. --set output_dir=studies/x --set eval_every=8 "
                             "(repeatable; every one applies)")
    parser.add_argument("--publish", metavar="REPO_ID", help="publish the results dataset and report afterwards")


def run(args) -> int:
    from .pipeline import collect, run_study, train_one

    cfg_path = args.config or str(default_config_path())
    over = parse_overrides(["--" + s.lstrip("-") for s in args.set])
    cfg = load_study_config(cfg_path, over)
    if not args.plan:  # a plan evaluates nothing: it must work on an offline login node
        from .validate import check_tasks_reachable

        check_tasks_reachable(cfg)
    if args.publish:  # checked before hours of training, not after
        from ..hub import validate_repo_id

        validate_repo_id(args.publish)
    if args.plan:
        from .plan import PlanOptions, format_plan, study_plan

        opts = PlanOptions(mfu=args.mfu, gpu_tflops=args.gpu_tflops, world_size=args.world_size)
        print(format_plan(study_plan(cfg, opts)))
        return 0
    if args.print_commands:
        from .runs import collect_command, fp_runs, qat_runs, train_command

        launch = {"nodes": cfg.nodes, "procs_per_node": cfg.procs_per_node, "accelerate_config": cfg.accelerate_config}

        if cfg.nodes > 1:
            print(f"# each line runs once on every one of its {cfg.nodes} nodes, with MASTER_ADDR (first node), "
                  "MASTER_PORT" + (" and NODE_RANK" if cfg.launcher == "accelerate" else "") +
                  " set by the job script (docs/distributed.md)")
        print("# full-precision runs (one per line; run these first)")
        for spec in fp_runs(cfg):
            print(train_command(cfg_path, spec, cfg.launcher, sets=args.set, **launch))
        if qat_runs(cfg):
            print("# QAT runs (use the full-precision lr sweep's winner: start after the runs above)")
            for spec in qat_runs(cfg):
                print(train_command(cfg_path, spec, cfg.launcher, sets=args.set, **launch))
        print("# then: " + collect_command(cfg_path, args.set))
        return 0
    if args.run:
        out = train_one(cfg, args.run)
        print(f"run dir: {out}")
        return 0
    report = collect(cfg) if args.collect else run_study(cfg)
    print(f"report: {report}")
    if args.publish:
        from ..hub import PublishConfig, publish

        res = publish(PublishConfig(path=str(cfg.output_dir), repo_id=args.publish))
        print(f"published: {res.url or res.repo_id}")
    return 0
