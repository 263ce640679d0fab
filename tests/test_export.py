"""iml.lm.export: saved models reload with transformers and give the same logits; `save_models` writes one folder per
Stage-1 checkpoint used and per Stage-2 model without changing the result; `iml data export` writes the tagged
dataset so that it reloads identically, with its metadata, and refuses bad output folders with one line."""
import dataclasses
import importlib.util
import json

import pandas as pd
import pytest
import yaml

from iml.cli import main
from iml.core.config import config_hash, to_dict
from iml.lm import export
from iml.lm.experiment import make_config, run
from iml.lm.models import ModelConfig, load_model
from iml.lm.tagging import build
from iml.lm.tokenizer import TokenizerConfig, train_tokenizer
from iml.lm.vocab import COLUMNS

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPTS = ["Q: What did <|abcde|> do?\nA:", "<|fghij|> <|abcde|>", "Q: Where was Ada born?\nA: London"]


@pytest.fixture(scope="module")
def tiny():
    texts = [f"{p} answer {i}\n" for i in range(8) for p in PROMPTS]
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=300))
    model, tok = load_model(ModelConfig(name="tiny", pretrained=False), tok, seed=3)
    return model, tok


def _logits(model, tok, prompts=PROMPTS):
    enc = tok(prompts, return_tensors="pt", padding=True)
    model.eval()
    with torch.no_grad():
        return enc["input_ids"], model(**enc).logits


def test_saved_model_reloads_with_transformers_and_same_logits(tiny, tmp_path):
    model, tok = tiny
    dest = export.save_model(model, tok, tmp_path / "m", {"experiment": "main", "stage": "stage1", "unit": "s0-0"})
    names = {p.name for p in dest.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer_config.json", "README.md", export.MODEL_CARD_JSON} <= names
    assert not any(n.endswith(".bin") for n in names)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left beside it
    m2 = transformers.AutoModelForCausalLM.from_pretrained(str(dest))
    t2 = transformers.AutoTokenizer.from_pretrained(str(dest))
    ids, a = _logits(model, tok)
    ids2, b = _logits(m2, t2)
    assert torch.equal(ids, ids2)  # the tokenizer splits the aliases the same way
    assert torch.equal(a, b)
    card = (dest / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "transformers"
    assert front["iml"]["stage"] == "stage1" and front["iml"]["unit"] == "s0-0" and front["iml"]["git_revision"]
    info = json.loads((dest / export.MODEL_CARD_JSON).read_text())
    assert info["experiment"] == "main" and info["git_revision"] == front["iml"]["git_revision"]


def test_save_model_replaces_atomically_and_a_failed_save_leaves_the_old_folder(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    dest = tmp_path / "m"
    export.save_model(model, tok, dest, {"stage": "first"})
    export.save_model(model, tok, dest, {"stage": "second"})
    assert json.loads((dest / export.MODEL_CARD_JSON).read_text())["stage"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(type(model), "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        export.save_model(model, tok, dest, {"stage": "third"})
    assert json.loads((dest / export.MODEL_CARD_JSON).read_text())["stage"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


# ----------------------------------------------------------------------------------------------
# save_models in the main experiment
# ----------------------------------------------------------------------------------------------

OVERRIDES = {"data.num_ents": 24, "stages.0.epochs": 4, "stages.1.epochs": 2, "seeds.n_stage1": 1,
             "seeds.n_stage2": 2, "stage2_from_epochs": [4, 2], "eval.every": 2,
             "eval.sets": ["test_d1consis", "test_qd1consis"]}


def test_save_models_is_not_part_of_the_config_hash():
    """It changes no number (the next test): a run with it shares the result folder of a run without it, and
    results committed before the field keep their folders."""
    cfg = make_config("smoke")
    assert cfg.save_models is False
    d = to_dict(cfg)
    del d["save_models"]
    assert config_hash(d) == config_hash(cfg) == config_hash(make_config("smoke", {"save_models": True}))
    with pytest.raises(Exception, match="save_models"):
        make_config("smoke", {"save_models": "yes"})


def test_run_with_save_models_writes_every_model_and_changes_no_number(tmp_path):
    plain = run(make_config("smoke", OVERRIDES), root=tmp_path / "plain", progress=False)
    cfg = make_config("smoke", {**OVERRIDES, "save_models": True})
    res = run(cfg, root=tmp_path / "saved", progress=False)
    cols = ["run_id", "stage", "epoch", "subset", "metric", "value"]
    pd.testing.assert_frame_equal(res.table[cols].reset_index(drop=True), plain.table[cols].reset_index(drop=True))
    assert not (plain.dir / "models").exists()
    models = res.dir / "models"
    found = sorted(str(p.parent.relative_to(models)) for p in models.rglob("model.safetensors"))
    assert found == ["s0/stage1", "s0/stage1_epoch2", "s0_0/stage2", "s0_0/stage2_from2", "s0_1/stage2",
                     "s0_1/stage2_from2"]
    assert not [p for p in models.rglob(".*")]  # no temporary folders left
    info = json.loads((models / "s0_1" / "stage2" / export.MODEL_CARD_JSON).read_text())
    assert info["config_hash"] == res.dir.name == config_hash(cfg)
    assert info["unit"] == "s0-1" and info["seed_stage2"] == 1 and info["stage"] == "stage2" and info["epoch"] == 6
    info1 = json.loads((models / "s0" / "stage1_epoch2" / export.MODEL_CARD_JSON).read_text())
    assert info1["units"] == ["s0-0", "s0-1"] and info1["epoch"] == 2 and info1["seed_stage2"] is None
    # each folder loads, and the Stage-2 models differ from the Stage-1 model they started from
    a = transformers.AutoModelForCausalLM.from_pretrained(str(models / "s0" / "stage1"))
    b = transformers.AutoModelForCausalLM.from_pretrained(str(models / "s0_0" / "stage2"))
    tok = transformers.AutoTokenizer.from_pretrained(str(models / "s0_0" / "stage2"))
    rows = build(dataclasses.replace(cfg.data, seed=0, seed_stage2=0)).splits["test_d1consis"]
    prompts = [r["prompt"] for r in rows[:4]]
    _, la = _logits(a, tok, prompts)
    _, lb = _logits(b, tok, prompts)
    assert la.shape == lb.shape and not torch.equal(la, lb)


# ----------------------------------------------------------------------------------------------
# iml data export
# ----------------------------------------------------------------------------------------------

def test_exported_dataset_reloads_identically_with_its_metadata(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "export"
    assert main(["data", "export", "--preset", "smoke", "--set", "data.num_ents=30", "--seed-stage1", "1",
                 "--out", str(out)]) == 0
    assert "dataset: " in capsys.readouterr().out
    cfg = make_config("smoke", {"data.num_ents": 30})
    data = build(dataclasses.replace(cfg.data, seed=1, seed_stage2=0))
    assert sorted(p.name for p in out.iterdir()) == ["hf", "metadata.json", "parquet"]
    loaded = datasets.load_from_disk(str(out / "hf"))
    assert sorted(loaded) == sorted(data.splits)
    for name, rows in data.splits.items():
        assert loaded[name].column_names == list(COLUMNS)
        assert loaded[name].to_list() == rows, name
        frame = pd.read_parquet(out / "parquet" / f"{name}.parquet")
        pd.testing.assert_frame_equal(frame, pd.DataFrame(rows, columns=list(COLUMNS)), check_dtype=bool(rows))
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["kind"] == export.EXPORT_KIND and meta["unit"] == "s1-0"
    assert meta["config_hash"] == config_hash(cfg) and meta["inputs"] == cfg.inputs and meta["git_revision"]
    assert meta["tags"] == data.tags and meta["aliases"] == data.aliases
    assert meta["entities"] == {a: e for e, a in data.aliases.items()} and len(meta["entities"]) == len(data.aliases)
    assert meta["splits"] == {k: len(v) for k, v in data.splits.items()}
    assert meta["preset"] == "smoke" and meta["overrides"] == {"data.num_ents": 30}
    assert meta["data_config"]["seed"] == 1
    from iml.core.files import sha256_file

    assert meta["sha256"] == {f"parquet/{n}.parquet": sha256_file(out / "parquet" / f"{n}.parquet")
                              for n in data.splits}


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_export_refuses_bad_output_folders_with_one_line(tmp_path, capsys):
    pytest.importorskip("datasets")
    args = ["data", "export", "--preset", "smoke"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main([*args, "--out", str(other)]) == 2
    _one_line_error(capsys, "--out", "not empty", "--force")
    assert main([*args, "--out", str(other), "--force"]) == 2  # --force replaces only an earlier export
    _one_line_error(capsys, "--out", "not an earlier")
    assert (other / "notes.txt").read_text() == "keep me"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main([*args, "--out", str(afile)]) == 2
    _one_line_error(capsys, "not a directory")
    assert main([*args, "--out", str(afile / "sub")]) == 2
    _one_line_error(capsys, "--out", "cannot create")

    out = tmp_path / "export"
    out.mkdir()  # an empty folder is fine
    assert main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    first = json.loads((out / "metadata.json").read_text())["exported_at"]
    assert main([*args, "--out", str(out)]) == 2
    _one_line_error(capsys, "not empty")
    assert main([*args, "--out", str(out), "--force", "--seed-stage2", "0"]) == 0
    capsys.readouterr()
    assert json.loads((out / "metadata.json").read_text())["exported_at"] >= first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "export", "mine"]  # no temporary folders

    assert main([*args, "--out", str(tmp_path / "n"), "--seed-stage1", "7"]) == 2
    _one_line_error(capsys, "--seed-stage1", "7")
    assert main([*args, "--out", str(tmp_path / "n"), "--seed-stage2", "3"]) == 2
    _one_line_error(capsys, "--seed-stage2")
    assert main([*args, "--out", str(tmp_path / "n"), "--set", "data.bogus=1"]) == 2
    _one_line_error(capsys, "data.bogus")
    assert main(["data", "export", "--preset", "nope", "--out", str(tmp_path / "n")]) == 2
    _one_line_error(capsys, "nope")
    assert not (tmp_path / "n").exists()
    with pytest.raises(SystemExit) as e:  # --out is required
        main(["data", "export", "--preset", "smoke"])
    assert e.value.code == 2


def test_export_without_datasets_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a))
    assert main(["data", "export", "--preset", "smoke", "--out", str(tmp_path / "n")]) == 2
    _one_line_error(capsys, "datasets", "iml-companion[hf]")
    assert not (tmp_path / "n").exists()
