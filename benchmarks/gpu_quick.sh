#!/usr/bin/env bash
# Issue 21's device run: everything the GPU must measure, in under 8 minutes on a fresh H100 or
# H200 (its own warm-ups included), one table printed last.
#
#   bash benchmarks/gpu_quick.sh OUT [--e2e-old]     # on the device
#   bash benchmarks/gpu_quick.sh OUT --cpu --tiny    # the dry run here (tests/test_gpu_quick.py)
#
# From a session whose task has a device (status: can_start_another true), with the wheels the
# device lacks (PyAV and PySceneDetect; nothing can be downloaded there) in .whl/:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       -d .whl av==18.1.0 scenedetect==0.7.2 platformdirs
# then one call of the device tool (one start, about 8 minutes of the task's 15):
#   run(command="bash benchmarks/gpu_quick.sh $OUT/quick", carry=[".whl"], timeout_s=560)
# The table comes back in the reply's output tail; $OUT/quick/table.md, the full log and a
# tarball of every stage's JSON come back as files. Copy the table into benchmarks/RESULTS.md
# with the card, versions and date it prints, and give the machine back.
#
# Stages, most valuable first, each its own process under its own time limit (a slow stage
# cannot eat the budget; each writes its JSON after every measurement, so a stage stopped at
# its limit keeps what it measured): env, conv, vae (new then old), e2e (new; the old path
# with --e2e-old, about 135 s more than fits), norm (eager, then compiled), dit (per kernel),
# tests (pytest -m gpu tests/gpu), whatever time is left.
set -uo pipefail
out=${1:?usage: gpu_quick.sh OUT [--cpu --tiny] [--e2e-old]}
shift
mkdir -p "$out/work"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
SECONDS=0
deadline=${GPU_QUICK_SECONDS:-455}  # the whole run, installs and warm-ups included
log="$out/gpu_quick.log"

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu_quick_site .whl/*.whl >>"$log" 2>&1 &&
        export PYTHONPATH=/tmp/gpu_quick_site${PYTHONPATH:+:$PYTHONPATH}
fi

finish() {  # the table (also on a kill), the JSON in one tarball: few files come back
    python3 benchmarks/gpu_quick.py table --out "$out/work" | tee "$out/table.md"
    tar czf "$out/gpu_quick_json.tgz" -C "$out" work 2>/dev/null && rm -rf "$out/work"
}
trap finish EXIT

stage() {  # stage NAME SECONDS [ARGS]: run it under min(SECONDS, time left)
    local name=$1 limit=$2 left=$((deadline - SECONDS)) began=$SECONDS
    shift 2
    ((left < limit)) && limit=$left
    if ((limit < 10)); then
        echo "== $name: skipped, the run's time is spent" | tee -a "$log"
        return
    fi
    echo "== $name (at most ${limit}s)" | tee -a "$log"
    timeout -k 5 "$limit" python3 benchmarks/gpu_quick.py "$name" --out "$out/work" "$@" \
        >>"$log" 2>&1
    echo "== $name: exit $? in $((SECONDS - began))s, ${SECONDS}s into the run" | tee -a "$log"
}

stage env 30 "$@"
stage conv 50 "$@"
stage vae 140 "$@"
stage e2e 140 "$@"
stage norm 60 "$@"
stage dit 60 "$@"
stage tests 40 "$@"
