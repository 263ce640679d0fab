#!/usr/bin/env bash
# The GPU session in two back-to-back `device` calls on one warm machine (DEVELOPING.md, "GPU runs").
# One call carries at most 64 MiB and the SmolLM2 GGUF is 98 MB, so the model travels in two parts.
#
#   call 1 (carry $CARRY/part1 $CARRY/wheels):  bash scripts/gpu_session.sh one
#       keeps part 1 and the gguf wheel in /tmp, prints the machine's versions, and starts the MNIST
#       gpu preset (or the experiments named by GPU_BG, e.g. setinclusion) in the background (setsid: it
#       outlives the call, on the GPU beside the main run; a finished result is only loaded again)
#   call 2 (carry $CARRY/part2), at once:          bash scripts/gpu_session.sh two SHA DEADLINE WORKERS
#       assembles and checks the GGUF, runs the main experiment's gpu preset over WORKERS processes
#       that start no seed they cannot finish by DEADLINE seconds, waits for MNIST, packs $OUT.
#
# $OUT receives results.tgz (unpack at the repo root), summary.json (main), bg_summary.json (MNIST),
# workers.log, bg.log. GPU_PRESET / GPU_DEVICE / GPU_SET (extra --set flags) let the CPU test run it at smoke
# scale (tests/test_gpu_script.py); GPU_CARRY (default .gpucarry), GPU_STASH, PYTHON likewise.
set -uo pipefail
cd "$(dirname "$0")/.."
STASH=${GPU_STASH:-/tmp/iml_gpu}
CARRY=${GPU_CARRY:-.gpucarry}
PY=${PYTHON:-python3}
PRESET=${GPU_PRESET:-gpu}
DEV=${GPU_DEVICE:+--device $GPU_DEVICE}
read -r -a EXTRA <<< "${GPU_SET:-}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
case "${1:-}" in
  one)
    mkdir -p "$STASH/smol" "$STASH/bg"
    if compgen -G "$CARRY/part1/*" > /dev/null; then cp $CARRY/part1/* "$STASH/smol/"; fi
    if compgen -G "$CARRY/wheels/*.whl" > /dev/null; then
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$STASH/site" \
        $CARRY/wheels/*.whl || echo "gguf wheel install failed" >&2
    fi
    "$PY" -c 'import torch, transformers, sys; print("python", sys.version.split()[0], "torch", torch.__version__,
"transformers", transformers.__version__, "cuda", torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
    # MNIST in the background, in its own process session so that it outlives this call
    setsid nohup env PYTHONPATH=lib IML_GIT_REVISION="${IML_GIT_REVISION:-}" \
      "$PY" scripts/gpu_run.py --out "$STASH/bg" --preset "$PRESET" $DEV --only "${GPU_BG:-mnist}" "${EXTRA[@]}" \
      > "$STASH/bg.log" 2>&1 < /dev/null &
    sleep "${GPU_ONE_WAIT:-15}"; cat "$STASH/bg.log";;
  two)
    sha=${2:?two needs the git revision}; deadline=${3:?two needs the deadline in seconds}; workers=${4:?and the workers}
    out=${OUT:?OUT must be set}
    if compgen -G "$CARRY/part2/*" > /dev/null; then
      cp $CARRY/part2/* "$STASH/smol/"
      export IML_SMOLLM2_GGUF=$(bash scripts/gpu_prepare_smollm2.sh assemble "$STASH/smol") || exit 3
    fi
    export PYTHONPATH="$STASH/site:lib" IML_GIT_REVISION="$sha"
    "$PY" scripts/gpu_run.py --out "$out" --preset "$PRESET" $DEV --only main --workers "$workers" \
      --deadline "$deadline" --grace "${GPU_GRACE:-40}" "${EXTRA[@]}"
    echo "main exit $?"
    for _ in $(seq 1 "${GPU_BG_WAIT:-30}"); do [ -f "$STASH/bg/results.tgz" ] && break; sleep 1; done
    mkdir -p "$out/results"; cat "$STASH/bg.log" > "$out/bg.log"
    [ -f "$STASH/bg/summary.json" ] && cp "$STASH/bg/summary.json" "$out/bg_summary.json"
    [ -d "$STASH/bg/results" ] && cp -r "$STASH/bg/results/." "$out/results/"
    cat "$out"/main_worker*.log > "$out/workers.log" 2>/dev/null; rm -f "$out"/main_worker*.log "$out/main_config.json"
    tar czf "$out/results.tgz" -C "$out" results && rm -rf "$out/results"
    ls -la "$out"; tail -n 5 "$out/workers.log";;
  *) echo "usage: $0 one | two SHA DEADLINE WORKERS" >&2; exit 2;;
esac
