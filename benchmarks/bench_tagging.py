"""Benchmark: build the paper-default tagged dataset (4000 entities) and print its build time and sizes.

Uses the people KB (``data/people.csv``) when it exists, else the synthetic KB. Times, separately,
loading the knowledge base, ``iml.lm.tagging.build`` on the loaded base, and ``to_datasetdict``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tagging.py [--num-ents 4000] [--kb synthetic] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from iml.core.config import from_dict  # noqa: E402
from iml.core.files import DATA_DIR  # noqa: E402
from iml.lm.tagging import DataConfig, _load_kb, build  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-ents", type=int, default=4000)
    ap.add_argument("--kb", default=None, help="default: people if data/people.csv exists, else synthetic")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    kb_name = args.kb or ("people" if (DATA_DIR / "people.csv").exists() else "synthetic")
    cfg = from_dict(DataConfig, {"kb": kb_name, "num_ents": args.num_ents})

    load_s, build_s, dd_s, total_s = [], [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        kb = _load_kb(cfg)
        t1 = time.perf_counter()
        data = build(cfg, kb=kb)
        t2 = time.perf_counter()
        dd = data.to_datasetdict()
        t3 = time.perf_counter()
        load_s.append(t1 - t0)
        build_s.append(t2 - t1)
        dd_s.append(t3 - t2)
        total_s.append(t3 - t0)

    print(f"kb={kb_name} num_ents={args.num_ents} repeats={args.repeat} (best of)")
    print(f"load_kb_s={min(load_s):.3f}")
    print(f"build_s={min(build_s):.3f}")
    print(f"to_datasetdict_s={min(dd_s):.3f}")
    print(f"total_s={min(total_s):.3f}")
    sizes = data.split_sizes()
    st1 = data.splits["train_stage1"]
    print(f"stage1_qa={sum(r['kind'] == 'qa' for r in st1)} stage1_defs={sum(r['kind'] == 'definition' for r in st1)}"
          f" stage2={sizes['train_stage2']} full={sizes['train_full']}")
    print(f"n_splits={len(dd)} n_rows={sum(sizes.values())}")
    print(data.summary().to_string(index=False))


if __name__ == "__main__":
    main()
