#!/usr/bin/env bash
# Every GPU measurement of issue 7, in parts that each fit a 10-minute command limit.
#
#   bash benchmarks/gpu_session.sh OUTDIR all        # everything, about 25 minutes on an H100
#   bash benchmarks/gpu_session.sh OUTDIR tests      # one part: tests | e2e | lowvram | compile | parts
#
# Each part writes its table to OUTDIR/<part>.txt (and JSON where the script has it), after a
# header with the GPU, driver, torch and date, so the figures can go into benchmarks/RESULTS.md.
set -euo pipefail
out=${1:?usage: gpu_session.sh OUTDIR PART}
part=${2:-all}
mkdir -p "$out"
cd "$(dirname "$0")/.."

header() {
    date -u +"# %Y-%m-%d %H:%M UTC"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/# /'
    python3 -c 'import torch; print("# torch", torch.__version__, "cuda", torch.version.cuda)'
}

run() {  # run PART COMMAND...: the command's output, with the header, into OUTDIR/PART.txt
    local name=$1
    shift
    { header; echo "# $*"; "$@"; } 2>&1 | tee "$out/$name.txt"
}

case $part in
tests | all) run tests python3 -m pytest -q -m gpu tests/gpu ;;&
e2e | all) run e2e python3 benchmarks/refine_gpu.py --steps 4 5 --paths fast faithful \
    --json "$out/e2e.json" ;;&
lowvram | all) run lowvram python3 benchmarks/refine_gpu.py --steps 4 \
    --paths low-vram fast-sequential --json "$out/lowvram.json" ;;&
compile | all) run compile python3 benchmarks/refine_gpu.py --steps 4 --paths fast --compile \
    --json "$out/compile.json" ;;&
parts | all)
    run offload python3 benchmarks/offload.py
    run vae python3 benchmarks/vae.py --gpu --layout both
    run dit_block python3 benchmarks/dit_block.py --compile
    ;;
tests | e2e | lowvram | compile) ;;
*)
    echo "unknown part: $part (tests | e2e | lowvram | compile | parts | all)" >&2
    exit 2
    ;;
esac
