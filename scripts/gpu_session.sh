#!/usr/bin/env bash
# The GPU session in two back-to-back `device` calls on one warm machine (DEVELOPING.md, "GPU runs").
# One call carries at most 64 MiB and the SmolLM2 GGUF is 98 MB, so the model travels in two parts.
#
#   call 1 (carry $CARRY/part1 $CARRY/wheels):  bash scripts/gpu_session.sh one
#       keeps part 1 and the gguf wheel in /tmp, prints the machine's versions, and starts the MNIST
#       gpu preset (or the experiments named by GPU_BG, e.g. setinclusion) in the background (setsid: it
#       outlives the call, on the GPU beside the main run; a finished result is only loaded again)
#   call 2 (carry $CARRY/part2), at once:          bash scripts/gpu_session.sh two SHA DEADLINE WORKERS
#       assembles and checks the GGUF, starts the main experiment's gpu preset in the background over
#       WORKERS processes that start no seed they cannot finish by DEADLINE seconds (killed GRACE s later),
#       waits up to GPU_WAIT s (560) for it, packs $OUT
#   call 3 (if call 2 says the run is still going), at once: bash scripts/gpu_session.sh three  (= wait)
#       waits again (GPU_WAIT) and packs $OUT with the finished run. DEADLINE may thus exceed one call's
#       600 s limit: the device time of the session (15 min) is the only bound.
#   A session without the main run: `one` with GPU_BG=setinclusion (and, say, GPU_SET="--set
#       setinclusion:loss_on=answer" for one loss setting), then `wait` until it exits 0.
#   optional, after two/three:                       bash scripts/gpu_session.sh probe-lr "5.0e-5 3.0e-4" SHA
#       one gpu-probe run (1000 people, 1 seed, about a minute) per learning rate, in parallel;
#       $OUT gets probe_results.tgz and probe.log
#
# $OUT receives results.tgz (unpack at the repo root), summary.json (main), bg_summary.json (MNIST),
# workers.log, main.log, bg.log. GPU_PRESET / GPU_DEVICE / GPU_SET (extra --set flags) let the CPU test run it at smoke
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

# Wait (at most GPU_WAIT s) for the background runs that were started (main: call two; GPU_BG: call one),
# then pack what exists into $OUT: results.tgz with every result folder of both (finished jobs only: each
# folder is written when its job ends), their summaries and logs (<= 8 plain files). Exit status 4 while
# something still runs: call `wait` (= `three`) again at once.
running() {
  { [ -d "$STASH/main" ] && [ ! -f "$STASH/main.done" ]; } || { [ -f "$STASH/bg.log" ] && [ ! -f "$STASH/bg.done" ]; }
}
wait_and_collect() {
  local out=${OUT:?OUT must be set} t0=$SECONDS
  while running && [ $((SECONDS - t0)) -lt "${GPU_WAIT:-560}" ]; do sleep 2; done
  [ -f "$STASH/main.done" ] && echo "main finished (exit $(cat "$STASH/main.done"))"
  [ -f "$STASH/bg.done" ] && echo "background job finished (exit $(cat "$STASH/bg.done"))"
  running && echo "still running after ${GPU_WAIT:-560} s: call 'wait' at once to wait again"
  rm -rf "$STASH/pack"; mkdir -p "$STASH/pack/results"
  for d in "$STASH/main/results" "$STASH/bg/results"; do [ -d "$d" ] && cp -r "$d/." "$STASH/pack/results/"; done
  tar czf "$out/results.tgz" -C "$STASH/pack" results
  [ -f "$STASH/main/summary.json" ] && cp "$STASH/main/summary.json" "$out/summary.json"
  [ -f "$STASH/bg/summary.json" ] && cp "$STASH/bg/summary.json" "$out/bg_summary.json"
  cat "$STASH/main"/main_worker*.log > "$out/workers.log" 2>/dev/null
  [ -f "$STASH/main.log" ] && cp "$STASH/main.log" "$out/main.log"
  [ -f "$STASH/bg.log" ] && cp "$STASH/bg.log" "$out/bg.log"
  ls -la "$out"; tail -n 3 "$STASH/main.log" "$STASH/bg.log" 2>/dev/null
  if running; then return 4; fi
  return 0
}
case "${1:-}" in
  one)
    mkdir -p "$STASH/smol"
    if compgen -G "$CARRY/part1/*" > /dev/null; then cp $CARRY/part1/* "$STASH/smol/"; fi
    if compgen -G "$CARRY/wheels/*.whl" > /dev/null; then
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$STASH/site" \
        $CARRY/wheels/*.whl || echo "gguf wheel install failed" >&2
    fi
    "$PY" -c 'import torch, transformers, sys; print("python", sys.version.split()[0], "torch", torch.__version__,
"transformers", transformers.__version__, "cuda", torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
    # the background job (GPU_BG, default mnist; empty: none) in its own process session: it outlives this call
    rm -rf "$STASH/bg" "$STASH/bg.log" "$STASH/bg.done"
    if [ -n "${GPU_BG-mnist}" ]; then
      : > "$STASH/bg.log"  # exists before the job starts, so `wait` never mistakes a starting job for none
      setsid nohup env PYTHONPATH=lib IML_GIT_REVISION="${IML_GIT_REVISION:-}" bash -c \
        '"$0" scripts/gpu_run.py --out "$1" --preset "$2" $3 --only "$4" "${@:6}" > "$1.log" 2>&1; echo $? > "$5"' \
        "$PY" "$STASH/bg" "$PRESET" "$DEV" "${GPU_BG-mnist}" "$STASH/bg.done" "${EXTRA[@]}" \
        < /dev/null > /dev/null 2>&1 &
      sleep "${GPU_ONE_WAIT:-15}"; cat "$STASH/bg.log" 2>/dev/null || true
    fi;;
  two)
    sha=${2:?two needs the git revision}; deadline=${3:?two needs the deadline in seconds}; workers=${4:?and the workers}
    if compgen -G "$CARRY/part2/*" > /dev/null; then
      cp "$CARRY"/part2/* "$STASH/smol/"
      export IML_SMOLLM2_GGUF=$(bash scripts/gpu_prepare_smollm2.sh assemble "$STASH/smol") || exit 3
    fi
    export PYTHONPATH="$STASH/site:lib" IML_GIT_REVISION="$sha"
    rm -rf "$STASH/main" "$STASH/main.done"; mkdir -p "$STASH/main"
    # in its own process session: the run may outlast this call (the machine stays while calls follow)
    setsid nohup bash -c '"$0" scripts/gpu_run.py --out "$1" --preset "$2" $3 --only main --workers "$4" \
        --deadline "$5" --grace "$6" "${@:8}" > "$1.log" 2>&1; echo $? > "$7"' \
      "$PY" "$STASH/main" "$PRESET" "$DEV" "$workers" "$deadline" "${GPU_GRACE:-40}" "$STASH/main.done" \
      "${EXTRA[@]}" < /dev/null > /dev/null 2>&1 &
    wait_and_collect;;
  three|wait)  # a background run outlasted the last call: wait for it again, then collect
    wait_and_collect;;
  probe-lr)  # after `two`: one short run of the gpu-probe preset per learning rate, all at once
    lrs=${2:?probe-lr needs the learning rates, e.g. "5.0e-5 3.0e-4 1.0e-3"}; out=${OUT:?OUT must be set}
    gguf="$STASH/smol/SmolLM2-135M-Instruct.Q4_1.gguf"
    [ -f "$gguf" ] && export IML_SMOLLM2_GGUF="$gguf"
    export PYTHONPATH="$STASH/site:lib" IML_GIT_REVISION="${IML_GIT_REVISION:-${3:-unknown}}"
    rm -rf "$STASH/probe"; mkdir -p "$STASH/probe"; pids=()
    for lr in $lrs; do
      "$PY" scripts/gpu_run.py --out "$STASH/probe/lr$lr" --preset "${GPU_PROBE_PRESET:-gpu-probe}" $DEV --only main \
        --set "main:stages.0.lr=$lr" --set "main:stages.1.lr=$lr" "${EXTRA[@]}" > "$STASH/probe/lr$lr.log" 2>&1 &
      pids+=($!)
    done
    rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
    mkdir -p "$STASH/probe/pack/results"
    for d in "$STASH"/probe/lr*/results; do [ -d "$d" ] && cp -r "$d/." "$STASH/probe/pack/results/"; done
    tar czf "$out/probe_results.tgz" -C "$STASH/probe/pack" results
    for lr in $lrs; do echo "== lr $lr"; tail -n 3 "$STASH/probe/lr$lr.log"; done | tee "$out/probe.log"
    exit $rc;;
  *) echo "usage: $0 one | two SHA DEADLINE WORKERS | three | wait | probe-lr \"LR ...\" [SHA]" >&2; exit 2;;
esac
