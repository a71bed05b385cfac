"""``hf-optquant`` command line: one sub-command per job, each in its own module.

Each module named in :data:`COMMANDS` defines ``add_arguments(parser)`` and
``run(args) -> int``; they are imported only when their command runs, so ``--help``
stays fast.

Exit codes (docs/cli.md): 0 success; 2 bad input (argparse, :class:`ConfigError`); 3 the environment
failed (:class:`EnvironmentFailure`, any ``OSError``, network/Hub errors, damaged files); 1 a bug of
hf_optquant; 130 interrupted. Every failure is one line on stderr; ``-v`` adds the traceback of
environment failures and bugs.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from .errors import ConfigError
from .failures import describe_failure

__all__ = ["COMMANDS", "main", "build_parser"]

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("hf_optquant.trainer.cli", "train a causal LM with one of the six optimizers (optionally with QAT)"),
    "ptq": ("hf_optquant.ptq.cli", "post-training quantization (RTN or GPTQ) to a compressed-tensors checkpoint"),
    "eval": ("hf_optquant.eval.cli", "validation loss / perplexity and zero-shot accuracy; writes eval.json"),
    "diagnose": ("hf_optquant.metrics.cli_diagnose", "outlier metrics and the ABC error-propagation decomposition"),
    "correlate": ("hf_optquant.metrics.cli_correlate", "correlate MMR, kurtosis and R_L with post-PTQ quality across runs"),
    "fit": ("hf_optquant.scaling.cli", "fit scaling laws per optimizer (Huber loss, LOO intervals, rho)"),
    "publish": ("hf_optquant.hub.cli", "publish a run, checkpoint or study to the Hugging Face Hub"),
    "study": ("hf_optquant.study.cli", "the whole study in one command: train, CL, QAT, PTQ, diagnose, fit, report"),
}


class _OneLineParser(argparse.ArgumentParser):
    """argparse's errors as one line (usage + message would be two), with the fix: the command's --help."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (fix: see `{self.prog} --help`)\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="hf-optquant",
        description="Which optimizer should I train with if the model will be quantized?",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Import only the module whose command runs (or all, for a bare --help listing).
        if wanted == name:
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its one line (or --help); in-process callers get the code
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except ConfigError as exc:
        print(f"hf-optquant {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hf-optquant {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for everything else; -v shows where it came from
        code, line = describe_failure(exc)
        if args.verbose:
            traceback.print_exc()
        print(f"hf-optquant {args.command}: error: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
