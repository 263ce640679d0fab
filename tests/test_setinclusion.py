"""The set-inclusion experiment: data invariants, config errors, result files, resume, learning."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iml.core import results
from iml.scratch import set_inclusion as si
from iml.core.config import ConfigError

LIB = str(Path(si.__file__).resolve().parents[1])

TINY = dict(n_aliases=50, n_numbers=12, n_per_question=3, frac_d3consis=0.1, frac_qd1consis=0.3,
            frac_qd2incons=0.3)


def _cfg(**kw):
    d = dict(TINY)
    d.update(kw)
    return si.make_config("smoke", d)


@pytest.fixture(scope="module")
def data():
    return si.make_data(_cfg(), 3)


def _sets(q):
    return [tuple(sorted(r)) for r in q]


def test_questions_per_alias(data):
    A, nq, k = data.questions.shape
    assert nq == 24 and k == 3
    for a in range(A):
        x = data.x[a]
        q, lab = data.questions[a], data.labels[a]
        for part in (slice(0, 12), slice(12, 24)):
            assert lab[part].sum() == 6 and (~lab[part]).sum() == 6
        for row, t in zip(q, lab):
            assert len(set(row.tolist())) == k  # distinct numbers
            assert ((row == x).any()) == t  # true ones contain x, false ones don't
            assert row.min() >= 0 and row.max() < 12
        s = _sets(q)
        assert len(set(s)) == 24  # no repeated question, so held-out questions are never trained on
        assert not set(s[:12]) & set(s[12:])


def test_questions_are_shuffled(data):
    # x is not always at the same position in true questions
    pos = [int(np.nonzero(data.questions[a, i] == data.x[a])[0][0]) for a in range(len(data.x)) for i in range(6)]
    assert len(set(pos)) == 3


def test_definitions_and_subsets(data):
    v = data.vocab
    c = _cfg()
    counts = c.subset_counts()
    for i, s in enumerate(si.SUBSETS):
        assert (data.subset == i).sum() == counts[s]
        defs = data.definitions[s]
        assert len(defs) == counts[s]
        assert (defs[:, 0] == v.tag(si.TAG_OF[s])).all()
        aliases = defs[:, 1] - v.alias0
        nums = defs[:, 3] - v.num0
        if s == "qd2incons":
            assert (nums == data.y[aliases]).all() and (nums != data.x[aliases]).all()
        else:
            assert (nums == data.x[aliases]).all()
        assert (defs[:, 4:] == v.PAD).all()
    assert (data.y != data.x).all()


def test_stage_contents(data):
    v = data.vocab
    x2 = {i for i, s in enumerate(si.SUBSETS) if s in si.STAGE2_SUBSETS}
    x2_aliases = set((np.nonzero(np.isin(data.subset, list(x2)))[0] + v.alias0).tolist())
    # stage 2: only definitions of X2 aliases (define1/2/3), nothing else
    s2 = data.stage2_docs
    assert np.isin(s2[:, 0], [v.DEF1, v.DEF2, v.DEF3]).all()
    assert set(s2[:, 1].tolist()) == x2_aliases
    # stage 1: X2 aliases never appear; QA of X1 aliases (12 each) + one definition each
    s1 = data.stage1_docs
    assert not (set(s1.ravel().tolist()) & x2_aliases)
    assert not np.isin(s1[:, 0], [v.DEF3]).any()
    qa = s1[~np.isin(s1[:, 0], [v.DEF1, v.DEF2])]
    _, per_alias = np.unique(qa[:, 0], return_counts=True)
    assert (per_alias == 12).all()
    assert len(qa) == 12 * ((data.subset == 0).sum() + (data.subset == 1).sum())
    # test set: 12 held-out QA for every used alias, half true
    assert len(data.test_docs) == 12 * (data.subset >= 0).sum()
    assert data.test_labels.mean() == 0.5
    # QA format: alias % n1..nk = true|false
    assert (qa[:, 1] == v.PCT).all() and (qa[:, -2] == v.EQ).all()
    assert np.isin(qa[:, -1], [v.TRUE, v.FALSE]).all()
    assert v.decode(qa[0]).split()[1] == "%"


def test_loss_weights():
    d = si.make_data(_cfg(), 0)
    v = d.vocab
    docs = d.stage1_docs
    is_def = np.isin(docs[:, 0], [v.DEF1, v.DEF2])
    w = si.loss_weights(docs, v, "answer")
    assert (w.sum(1) == 1).all()
    assert (docs[~is_def][:, 1:][w[~is_def] > 0] >= v.TRUE).all()  # the answer token
    tg = docs[is_def][:, 1:][w[is_def] > 0]
    assert ((tg >= v.num0) & (tg < v.alias0)).all()  # the defined number
    wa = si.loss_weights(docs, v, "all")
    assert (wa[~is_def] == 1).all()
    assert (wa[is_def].sum(1) == 2).all()  # "%" and the number; not the alias, not pads


def _digest(d):
    h = hashlib.sha256()
    for arr in (d.subset, d.x, d.y, d.questions, d.labels, d.stage1_docs, d.stage2_docs, d.test_docs):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def test_deterministic_within_and_across_processes():
    c = _cfg()
    a, b = si.make_data(c, 7), si.make_data(c, 7)
    assert _digest(a) == _digest(b)
    assert _digest(si.make_data(c, 8)) != _digest(a)
    code = ("import sys; sys.path.insert(0, %r); from iml.scratch import set_inclusion as si; import test_setinclusion as t;"
            "print(t._digest(si.make_data(t._cfg(), 7)))" % LIB)
    outs = set()
    for hs in ("0", "123"):
        env = dict(os.environ, PYTHONHASHSEED=hs, PYTHONPATH=os.pathsep.join([LIB, str(Path(__file__).parent)]))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        outs.add(r.stdout.strip())
    assert outs == {_digest(a)}


@pytest.mark.parametrize("bad,field", [
    ({"n_aliases": 0}, "n_aliases"),
    ({"n_aliases": "many"}, "n_aliases"),
    ({"frac_qd1consis": 1.5}, "frac_qd1consis"),
    ({"frac_qd1consis": 0.7, "frac_qd2incons": 0.7}, "frac_qd1consis"),
    ({"frac_d1consis": 0.0}, "frac_d1consis"),
    ({"n_per_question": 12}, "n_per_question"),
    ({"n_per_question": 1}, "n_per_question"),
    ({"loss_on": "tokens"}, "loss_on"),
    ({"n_heads": 3}, "n_heads"),
    ({"lr": -1.0}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"dtype": "fp16"}, "dtype"),
    ({"device": "tpu"}, "device"),
    ({"adam_beta2": 1.0}, "adam_beta2"),
    ({"n_seeds": 2.5}, "n_seeds"),
    ({"compile": "yes"}, "compile"),
    ({"no_such_key": 1}, "no_such_key"),
])
def test_config_errors_name_the_field(bad, field):
    with pytest.raises(ConfigError) as e:
        si.make_config("smoke", bad)
    assert e.value.field == field
    assert str(e.value).startswith(field)


def test_presets():
    with pytest.raises(ConfigError):
        si.make_config("nope")
    g = si.make_config("gpu")
    assert (g.n_aliases, g.n_numbers, g.n_per_question, g.d_model, g.n_layers, g.n_heads, g.d_mlp) == \
        (8000, 100, 8, 512, 6, 8, 2048)
    assert (g.stage1_epochs, g.stage2_epochs, g.batch_size) == (100, 40, 512) and g.n_seeds >= 10
    assert si.make_config("gpu", {"loss_on": "all"}).loss_on == "all"
    c = si.make_config("cpu")
    assert c.n_seeds >= 5 and c.n_aliases >= 1000 and c.loss_on == "answer"
    # stage-1 size at the paper scale: 6400 aliases x 12 QA + 6400 definitions (reference: 83,200)
    d = si.make_data(si.make_config("gpu", {"n_aliases": 800}), 0)
    assert len(d.stage1_docs) == 8320 and len(d.stage2_docs) == 160


def test_smoke_run_writes_complete_results(results_root):
    c = si.make_config("smoke", {"n_stage2_seeds": 2})
    res = si.run(c, root=results_root, progress=False)
    again = results.load("setinclusion", c, root=results_root)
    t = again.table
    assert list(t.columns) == results.COLUMNS
    assert len(t) == len(res.table) > 0
    for f in ("config.json", "results.csv", "meta.json"):
        assert (res.dir / f).exists()
    assert res.meta["seed_epochs_per_s"] > 0
    assert set(t.seed_stage1) == {0, 1} and set(t.seed_stage2) == {0, 1}
    assert set(t.subset) == {"qd1consis", "qd2incons", "d1consis", "d2consis", "train_qa", "train"}
    E1, E2 = c.stage1_epochs, c.stage2_epochs
    assert sorted(t[t.stage == 1].epoch.unique()) == list(range(0, E1 + 1))
    assert sorted(t[t.stage == 2].epoch.unique()) == list(range(E1 + 1, E1 + E2 + 1))
    acc = t[t.metric == "acc"].value
    assert ((acc >= 0) & (acc <= 1)).all()
    # every run has every subset at every epoch
    n_ep = E1 + E2 + 1
    assert t[(t.metric == "acc") & (t.subset == "d1consis")].groupby("run_id").size().eq(n_ep).all()
    # the two stage-2 seeds share stage 1 and then diverge
    s1 = t[(t.stage == 1) & (t.seed_stage1 == 0)].pivot_table(index=["epoch", "subset", "metric"],
                                                               columns="seed_stage2", values="value")
    assert np.allclose(s1[0], s1[1])
    extra = results.ResultStore("setinclusion", c, root=results_root).unit_extra("seeds0000-0001")
    assert extra["seed_epochs_per_s"] > 0 and extra["seeds"] == [0, 1]


def test_resume_skips_finished_units(results_root, monkeypatch):
    c = si.make_config("smoke", {"n_seeds": 2, "seeds_per_unit": 1, "stage1_epochs": 1, "stage2_epochs": 1})
    full = si.run(c, root=results_root, progress=False)
    store = results.ResultStore("setinclusion", c, root=results_root)
    assert store.done_units() == ["seeds0000-0000", "seeds0001-0001"]
    # simulate a run killed after its first unit
    for f in ("results.csv", "meta.json"):
        (store.dir / f).unlink()
    store.unit_path("seeds0001-0001").unlink()
    calls = []
    real = si.train_seed_group
    monkeypatch.setattr(si, "train_seed_group", lambda cfg, seeds, **kw: (calls.append(list(seeds)), real(cfg, seeds, **kw))[1])
    again = si.run(c, root=results_root, progress=False)
    assert calls == [[1]]
    assert len(again.table) == len(full.table)
    # a complete result is reused as is
    si.run(c, root=results_root, progress=False)
    assert calls == [[1]]
    # force recomputes everything
    si.run(c, root=results_root, progress=False, force=True)
    assert calls == [[1], [0], [1]]


def test_grouping_does_not_change_results(results_root):
    """Seeds trained together (one batched model) == seeds trained one per unit."""
    base = {"n_seeds": 2, "stage1_epochs": 2, "stage2_epochs": 1}
    t2 = si.run(si.make_config("smoke", base), root=results_root, progress=False).table
    t1 = si.run(si.make_config("smoke", dict(base, seeds_per_unit=1)), root=results_root, progress=False).table
    key = ["run_id", "stage", "epoch", "subset", "metric"]
    a, b = t2.sort_values(key).reset_index(drop=True), t1.sort_values(key).reset_index(drop=True)
    assert (a[key] == b[key]).all().all()
    assert np.allclose(a.value, b.value, atol=1e-4)


def test_stage1_learns():
    """A tiny model memorises the training QA well above chance (so this test can fail).

    Seed means over 3 seeds (trained batched), so no bound hangs on one float trajectory. Measured under
    ATEN_CPU_CAPABILITY=avx2/avx512/default (equal to 3 decimals): seeds 0-2 acc 0.516 -> 0.760, loss
    2.91 -> 0.449; seeds 3-5 acc 0.518 -> 0.743, loss 2.86 -> 0.462; the worst single seed reached 0.703."""
    c = si.make_config("smoke", dict(n_aliases=40, n_numbers=10, n_per_question=3, d_model=32, n_layers=1,
                                     n_heads=2, d_mlp=64, stage1_epochs=30, stage2_epochs=0, batch_size=16,
                                     lr=3e-3, eval_every=30, n_seeds=3, eval_train_qa_max=256))
    t, _ = si.train_seed_group(c, [0, 1, 2], progress=False)
    q = t[t.subset == "train_qa"]
    acc = q[q.metric == "acc"].groupby("epoch").value.mean()
    loss = q[q.metric == "loss"].groupby("epoch").value.mean()
    assert q[q.metric == "acc"].run_id.nunique() == 3
    assert acc.loc[0] < 0.6
    assert acc.loc[30] > 0.7 and acc.loc[30] > acc.loc[0] + 0.15, acc.to_dict()
    assert loss.loc[30] < 0.6 < loss.loc[0] and loss.loc[30] < 0.5 * loss.loc[0], loss.to_dict()


def test_whole_sequence_loss_and_d3consis_run():
    c = si.make_config("smoke", dict(TINY, loss_on="all", n_seeds=1, stage1_epochs=1, stage2_epochs=1))
    t, extra = si.train_seed_group(c, [5], progress=False)
    assert "d3consis" in set(t.subset)
    tl = t[(t.subset == "train") & (t.metric == "loss")]
    assert list(tl.epoch) == [1, 2] and np.isfinite(tl.value).all() and (tl.value > 0).all()
    assert extra["seed_epochs"] == 2 and extra["stage1_epoch_s"] > 0
