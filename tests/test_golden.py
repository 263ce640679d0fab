"""Golden identities: results are keyed by config hash, so a refactor must keep every hash and every number.

`tests/golden.json` holds the config hash of every (experiment, preset) and of every sweep point, and a
checksum of each experiment's smoke-run table per CPU kernel level (``ATEN_CPU_CAPABILITY``: floating-point
sums differ between kernels, so each level has its own) on one CPU (``cpu_id``; elsewhere the numbers are not
compared, only the rows). Regenerate only on purpose:
``PYTHONPATH=lib python tests/test_golden.py --write`` (run once per kernel level to add its checksums).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from iml import registry
from iml.core.config import config_hash
from iml.core.env import cpu_info

GOLDEN = Path(__file__).with_name("golden.json")
EXPERIMENTS = ("main", "setinclusion", "mnist", "gradalign", "probe")


def preset_hashes() -> dict[str, str]:
    out = {}
    for name in EXPERIMENTS:
        mod = registry.get(name)
        for preset in mod.PRESETS:
            try:
                out[f"{name}/{preset}"] = config_hash(mod.make_config(preset))
            except Exception as e:  # noqa: BLE001 - a preset that needs a local checkpoint
                out[f"{name}/{preset}"] = f"error: {type(e).__name__}"
    return out


def sweep_hashes() -> dict[str, list[str]]:
    out = {}
    for name in ("batch_size", "alpha", "gradalign", "model_size", "setinclusion_size"):
        study = registry.sweep(name)
        for sweep in study.SWEEPS:
            out[f"{name}/{sweep}"] = [config_hash(c) for c in study.configs(sweep)]
    return out


def table_checksum(table) -> str:
    """sha256 of the table in a fixed row order with every float written exactly (repr)."""
    keys = [c for c in table.columns if c != "value"]
    t = table.sort_values(keys, kind="stable").reset_index(drop=True)
    lines = ["\t".join(map(str, t.columns))]
    for row in t.itertuples(index=False):
        lines.append("\t".join(repr(float(v)) if isinstance(v, float) else str(v) for v in row))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def smoke_checksums(root) -> dict[str, dict]:
    out = {}
    for name in EXPERIMENTS:
        mod = registry.get(name)
        res = mod.run(mod.make_config("smoke"), root=root, progress=False)
        keys = [c for c in res.table.columns if c != "value"]
        out[name] = {"hash": res.hash, "rows": len(res.table), "checksum": table_checksum(res.table),
                     "keys": hashlib.sha256(res.table[keys].astype(str).sort_values(keys).to_csv(index=False)
                                            .encode()).hexdigest()[:16]}
    return out


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_every_preset_hash_is_unchanged(golden):
    assert preset_hashes() == golden["presets"]


def test_every_sweep_point_hash_is_unchanged(golden):
    assert sweep_hashes() == golden["sweeps"]


def test_smoke_tables_are_unchanged(golden, tmp_path):
    """Same rows everywhere; the same numbers bit for bit on the CPU and kernel level the checksums were made on."""
    got = smoke_checksums(tmp_path)
    cpu = cpu_info()
    level = cpu.get("cpu_capability")
    exact = golden["smoke"].get(level) if cpu.get("cpu_id") == golden["cpu_id"] else None
    for name, g in got.items():
        ref = golden["smoke_rows"][name]
        assert (g["hash"], g["rows"], g["keys"]) == (ref["hash"], ref["rows"], ref["keys"]), name
        if exact is not None:
            assert g["checksum"] == exact[name], f"{name}: smoke table changed at kernel level {level}"
    if exact is None:
        pytest.skip(f"numbers not compared: checksums were made on {golden['cpu_id']} "
                    f"({', '.join(golden['smoke'])}), this is {cpu.get('cpu_id')} at {level}")


if __name__ == "__main__":  # pragma: no cover - regenerate on purpose only
    import tempfile

    import torch

    torch.set_num_threads(1)
    assert sys.argv[1:] == ["--write"], "usage: PYTHONPATH=lib python tests/test_golden.py --write"
    old = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    cpu = cpu_info()
    if old.get("cpu_id") != cpu.get("cpu_id"):
        old.pop("smoke", None)  # another CPU's checksums: this one starts its own
    with tempfile.TemporaryDirectory() as d:
        smoke = smoke_checksums(d)
    data = {"presets": preset_hashes(), "sweeps": sweep_hashes(), "cpu_id": cpu.get("cpu_id"),
            "smoke_rows": {k: {x: v[x] for x in ("hash", "rows", "keys")} for k, v in smoke.items()},
            "smoke": {**old.get("smoke", {}), cpu.get("cpu_capability"): {k: v["checksum"] for k, v in smoke.items()}}}
    if old and (old["presets"], old["sweeps"], old["smoke_rows"]) != (data["presets"], data["sweeps"],
                                                                       data["smoke_rows"]):
        raise SystemExit("hashes or rows differ from the committed golden file: refusing to overwrite")
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} for kernel level {cpu.get('cpu_capability')}")
