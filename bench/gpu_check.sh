#!/usr/bin/env bash
# Everything that needs a GPU, as one run (under 8 minutes on an H200):
#   1. the CUDA-marked tests: CUDA inside both confined runners, the GPU-memory cap, half precision;
#   2. each exercise's solution and blank notebook graded with --profile full --device cuda in the
#      default (confined, warm) runner;
#   3. the full-profile benchmark: submissions per minute, GPU memory per concurrent submission.
#
#   bash bench/gpu_check.sh            # after `make install` on the GPU runner
#   PYTHON=/path/to/python bash bench/gpu_check.sh   # another environment with the project installed
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { make install; PY=.venv/bin/python; }
export PYTHONUNBUFFERED=1
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA GPU here')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
cli() { "$PY" -c "from autograder.cli import app; app()" "$@"; }

echo "== 1. CUDA tests"
cli models prepare --profile tiny
"$PY" -m pytest -q -p no:cacheprovider -m cuda tests

echo "== 2. solutions and blank notebooks, full profile, on the GPU, confined"
cli models prepare --profile full
for ex in t5_decoding tokenizer prompting sft_lora; do
  # a blank notebook scores little: `run` says so with its exit status, which is expected here
  cli run "$ex" "solutions/$ex/$ex.ipynb" "assignments/$ex/$ex.ipynb" --profile full --device cuda \
      --out-dir "out/gpu-check/$ex" || true
done

echo "== 3. benchmark, full profile"
"$PY" bench/bench_runners.py --profile full --device cuda --exercises t5_decoding tokenizer --per-exercise 16 \
    --slow-sample 4
