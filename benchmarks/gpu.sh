#!/usr/bin/env bash
# Batched fits on an accelerator (benchmarks/gpu.py): environment check, fit(..., by=) at
# K = 10,000 and 100,000 in float32 and float64, device memory peak, ms per fit, share
# converged; appends a dated block to benchmarks/RESULTS.md (or --results PATH).
# Usage: benchmarks/gpu.sh [--reduced] [gpu.py options]   (PYTHON=... picks the interpreter)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec "${PYTHON:-python}" benchmarks/gpu.py "$@"
