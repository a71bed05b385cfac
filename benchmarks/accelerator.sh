#!/usr/bin/env bash
# One-command accelerator benchmark (issue 18): optimizer steps vs AdamW at 125M/350M with MFU and peak memory,
# QAT (QuEST W4A4) vs full precision, GPTQ of a 350M model, ABC diagnosis vs a forward; one table.
#   bash benchmarks/accelerator.sh            # one GPU, bf16, under 8 minutes
#   bash benchmarks/accelerator.sh --cpu      # tiny sizes on the CPU (the CI smoke test)
# Other options: --json OUT.json --optimizers adamw,shampoo --steps N --peak-tflops F (see --help).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
exec "${PYTHON:-python}" "$here/accelerator.py" "$@"
