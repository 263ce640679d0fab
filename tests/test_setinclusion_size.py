"""iml.scratch.model_size: the set-inclusion transformer at several sizes (paper claim 3 in a language model)."""
import pytest

from iml import cli, registry
from iml.core import paper
from iml.core.config import ConfigError, config_hash, to_dict
from iml.report import claims, notebook
from iml.scratch import model_size, search


def _by_hand(d, layers):
    """Non-embedding parameters of a pre-LN GPT block stack (d_mlp = 4d), counted by hand: two LayerNorms, qkv,
    proj, fc and out with biases per layer, and the final LayerNorm."""
    m = 4 * d
    per_layer = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * m + m) + (m * d + d)
    return layers * per_layer + 2 * d


def test_points_share_seeds_and_data_and_differ_only_in_size():
    cfgs = model_size.configs("cpu")
    rest = [{k: v for k, v in to_dict(c).items() if k not in ("d_model", "n_layers", "d_mlp")} for c in cfgs]
    assert all(r == rest[0] for r in rest)
    assert [(c.d_model, c.n_layers, c.d_mlp) for c in cfgs] == [(32, 1, 128), (48, 2, 192), (64, 2, 256), (128, 2, 512)]
    assert (cfgs[0].start_seed, cfgs[0].n_seeds) == (5000, 20)


def test_the_largest_point_is_the_preregistered_confirmation():
    """Its result is reused, so the confirmation and the sweep's largest model are one result."""
    assert config_hash(model_size.configs("cpu")[-1]) == config_hash(search.configs("confirm")[0])


def test_non_embedding_counts_match_a_count_by_hand_and_span_ten_times():
    cfgs = model_size.configs("cpu")
    n = [model_size.n_params(c) for c in cfgs]
    assert n == [_by_hand(c.d_model, c.n_layers) for c in cfgs] == [12768, 56640, 100096, 396800]
    assert n[-1] / n[0] >= 10
    d = model_size.describe(to_dict(cfgs[2]))
    assert d["params_non_embedding"] == n[2] and d["params"] > n[2] and d["size"] == "64 / 2"


@pytest.mark.parametrize("kwargs, key", [
    (dict(sweep="huge"), "sweep"), (dict(points=[]), "points"), (dict(points=[(0, 1)]), "points"),
    (dict(points=[(32, 1.5)]), "points"), (dict(points=[(32, 1), (32, 1)]), "points"),
    (dict(overrides={"d_mlp": 64}), "d_mlp"), (dict(points=[(30, 1)]), "n_heads"),
])
def test_bad_sweeps_name_the_problem(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        model_size.configs(**kwargs)


def test_smoke_sweep_through_the_command_line(tmp_path, capsys):
    assert cli.main(["sweep", "setinclusion_size", "--sweep", "smoke", "--root", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "d_model / layers" in out and "non-embedding parameters" in out and "Verdict on this sweep" in out
    rs = model_size.finished("smoke", root=tmp_path)
    assert rs is not None and [model_size.n_params(r.config) for r in rs] == [_by_hand(16, 1), _by_hand(32, 1)]
    assert model_size.find([tmp_path]) is None  # smoke sweeps are not shown on the claims page


def _fake(d, layers, gap, seed):
    return notebook.fake_result("setinclusion", n_stage1=10, n_stage2=1, gap=gap, seed=seed,
                                config={**to_dict(model_size.configs("cpu")[0]), "d_model": d, "n_layers": layers,
                                        "d_mlp": 4 * d, "stage1_epochs": 4, "stage2_epochs": 3})


def test_claim_3_has_a_language_model_row_judged_by_this_sweep():
    rows = [c for c in paper.CLAIMS if c.rank == 3]
    assert [c.experiment for c in rows] == ["model_size", "setinclusion_size"]
    assert registry.STUDIES["setinclusion_size"] is model_size
    fakes = [_fake(d, n, g, i + 1) for i, ((d, n), g) in enumerate(zip([(32, 1), (48, 2), (64, 2), (128, 2)],
                                                                      [0.05, 0.1, 0.2, 0.3]))]
    t = claims.claims_table({"setinclusion_size": ("cpu sweep", fakes)})
    row = t[(t["#"] == 3) & (t["tested on"] == model_size.tested_on)].iloc[0]
    assert row["status"] == "reproduced"  # a language model: no "(analogue)"
    assert "397k non-embedding parameters" in row["this book"] and row["scale"].endswith("13k, 57k, 100k, 397k")
    power = model_size.power_rows(("cpu sweep", fakes))
    assert [r["seeds"] for r in power] == [10, 10] and "set inclusion, cpu sweep" in power[0]["comparison"]
