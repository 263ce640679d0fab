"""Bad input, as a careful user gives it: every case exits with code 2 and one line on stderr that names the
problem, and leaves no file behind. The CLI's entry point runs in-process, so each case costs milliseconds
to seconds; add a case here whenever a new bad input is found (the list only grows)."""
import json
import os
import re
import struct

import pytest

from iml import cli

TINY_NEOX = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "vocab_size": 64,
             "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
             "max_position_embeddings": 64}


def _checkpoint(d, weights: bytes | None = None, config: str | None = None):
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(config if config is not None else json.dumps(TINY_NEOX))
    (d / "model.safetensors").write_bytes(weights if weights is not None else os.urandom(4096))
    return d


@pytest.fixture
def inputs(tmp_path):
    return make_inputs(tmp_path / "inputs")


def make_inputs(d):
    """Bad files a user might point the config at, in folder `d`."""
    d.mkdir()
    (d / "list.yaml").write_text("- a\n- b\n")
    (d / "not.gguf").write_text("this is not a GGUF file\n")
    (d / "a_file").write_text("x")
    _checkpoint(d / "random_bytes")
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    _checkpoint(d / "truncated", weights=struct.pack("<Q", len(header)) + header + b"\0" * 5)
    _checkpoint(d / "pickle", weights=b"\x80\x04\x95" + os.urandom(64))  # a renamed pickle
    _checkpoint(d / "bad_config", config="{not json")
    (d / "empty_dir").mkdir()
    _mismatched_checkpoint(d / "vocab_mismatch")
    return d


def _mismatched_checkpoint(d):
    """A loadable checkpoint whose tokenizer has more tokens (40) than its embedding has rows (8)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    GPTNeoXForCausalLM(GPTNeoXConfig(**{**TINY_NEOX, "vocab_size": 8})).save_pretrained(d)
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(40)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="w1", unk_token="w0").save_pretrained(d)


ZERO_FRACTIONS = ("data.fractions={d1consis: 0, d2consis: 0, d3consis: 0, no_qd_baseline: 0, q: 0, "
                  "q_no_replacement_baseline: 0, qd1consis: 0, qd2incons: 0}")

# (argv after `iml`, a regex the error line must contain: the field or the problem)
CASES = {
    # numbers: finite, in range
    "lr inf": (["run", "main", "--preset", "smoke", "--set", "stages.0.lr=.inf"], r"stages\[0\]\.lr|lr.*finite"),
    "lr nan": (["run", "main", "--preset", "smoke", "--set", "stages.0.lr=.nan"], r"lr.*finite"),
    "lr negative": (["run", "main", "--preset", "smoke", "--set", "stages.0.lr=-1e-3"], r"lr"),
    "lr zero": (["run", "main", "--preset", "smoke", "--set", "stages.1.lr=0"], r"lr"),
    "max_length 1": (["run", "main", "--preset", "smoke", "--set", "train.max_length=1"], r"max_length"),
    "threads 1000": (["run", "main", "--preset", "smoke", "--set", "train.threads=1000"], r"threads.*cores"),
    "threads 0": (["run", "main", "--preset", "smoke", "--set", "train.threads=0"], r"threads"),
    "batch 0": (["run", "main", "--preset", "smoke", "--set", "stages.0.batch_size=0"], r"batch_size"),
    "num_ents 0": (["run", "main", "--preset", "smoke", "--set", "data.num_ents=0"], r"num_ents"),
    "num_ents 1": (["run", "main", "--preset", "smoke", "--set", "data.num_ents=1"], r"num_ents"),
    "all fractions 0": (["run", "main", "--preset", "smoke", "--set", ZERO_FRACTIONS], r"fractions"),
    "mnist lr inf": (["run", "mnist", "--preset", "smoke", "--set", "lr=.inf"], r"lr.*finite"),
    "setinclusion lr inf": (["run", "setinclusion", "--preset", "smoke", "--set", "lr=.inf"], r"lr.*finite"),
    # names and types
    "stage named init": (["run", "main", "--preset", "smoke", "--set", "stages.0.name=init"], r"init.*reserved"),
    "unknown key": (["run", "main", "--preset", "smoke", "--set", "nosuch=1"], r"nosuch"),
    "wrong type": (["run", "main", "--preset", "smoke", "--set", "seeds.n_stage1=abc"], r"n_stage1"),
    "index out of range": (["run", "main", "--preset", "smoke", "--set", "stages.5.lr=1"], r"stages\.5"),
    "override without =": (["run", "main", "--preset", "smoke", "--set", "stages.0.lr"], r"key=value"),
    "unknown experiment": (["run", "nosuch"], r"unknown experiment"),
    "unknown preset": (["run", "main", "--preset", "nosuch"], r"preset"),
    "unknown sweep": (["sweep", "nosuch"], r"unknown sweep"),
    "unknown sweep preset": (["sweep", "alpha", "--sweep", "nosuch"], r"--sweep"),
    "workers 0": (["sweep", "alpha", "--sweep", "smoke", "--workers", "0"], r"workers"),
    "shard out of range": (["run", "mnist", "--preset", "smoke", "--shard", "2/2"], r"--shard"),
    "shard not I/N": (["run", "mnist", "--preset", "smoke", "--shard", "a/b"], r"--shard"),
    # devices
    "main cuda": (["run", "main", "--preset", "smoke", "--set", "train.device=cuda"], r"train\.device.*CUDA"),
    "main tpu": (["run", "main", "--preset", "smoke", "--set", "train.device=tpu"], r"device"),
    "mnist cuda": (["run", "mnist", "--preset", "smoke", "--set", "device=cuda"], r"device.*CUDA"),
    "probe cuda": (["run", "probe", "--preset", "smoke", "--set", "task.device=cuda"], r"task\.device.*CUDA"),
    "setinclusion cuda": (["run", "setinclusion", "--preset", "smoke", "--set", "device=cuda"], r"device.*CUDA"),
    # files
    "config is a list": (["run", "mnist", "--preset", "smoke", "--config", "{inputs}/list.yaml"], r"mapping"),
    "config missing": (["run", "main", "--preset", "smoke", "--config", "{inputs}/nosuch.yaml"], r"not found"),
    "data.path missing": (["run", "main", "--preset", "smoke", "--set", "data.kb=cvdb",
                           "--set", "data.path={inputs}/nosuch.csv"], r"path"),
    "model.path missing": (["run", "main", "--preset", "smoke", "--set", "model.path={inputs}/nosuch"],
                           r"model\.path"),
    "model.path empty": (["run", "main", "--preset", "smoke", "--set", "model.path={inputs}/empty_dir"],
                         r"model\.path"),
    "safetensors random": (["run", "main", "--preset", "smoke", "--set", "model.path={inputs}/random_bytes"],
                           r"model\.path.*cannot load"),
    "safetensors truncated": (["run", "main", "--preset", "smoke", "--set", "model.path={inputs}/truncated"],
                              r"model\.path.*cannot load"),
    "safetensors pickle": (["run", "main", "--preset", "smoke", "--set", "model.path={inputs}/pickle"],
                           r"model\.path.*cannot load"),
    "bad config.json": (["run", "main", "--preset", "smoke", "--set", "model.path={inputs}/bad_config"],
                        r"model\.path.*config\.json"),
    "vocabulary mismatch": (["run", "main", "--preset", "smoke", "--set", "model.path={inputs}/vocab_mismatch"],
                            r"model\.path.*tokenizer has 40 tokens.*8 rows"),
    "gguf not gguf": (["run", "main", "--preset", "smoke", "--set", "model.gguf_file={inputs}/not.gguf"],
                      r"model\.gguf_file.*GGUF"),
    "gguf missing": (["run", "main", "--preset", "smoke", "--set", "model.gguf_file={inputs}/nosuch.gguf"],
                     r"model\.gguf_file"),
    # roots and result folders
    "root is a file": (["run", "mnist", "--preset", "smoke", "--root", "{inputs}/a_file"], r"--root.*not a directory"),
    "root in /proc": (["run", "mnist", "--preset", "smoke", "--root", "/proc/x"], r"--root"),
    "sweep root is a file": (["sweep", "alpha", "--sweep", "smoke", "--root", "{inputs}/a_file"],
                             r"--root.*not a directory"),
    "show missing": (["show", "{inputs}/nosuch"], r"not a result folder"),
    "show a file": (["show", "{inputs}/a_file"], r"not a result folder"),
}


def _argv(args, inputs):
    return [a.replace("{inputs}", str(inputs)) for a in args]


def _files(root):
    return sorted(p for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_nothing_written(case, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IML_RESULTS_ROOT", str(tmp_path / "env_root"))
    args, pattern = CASES[case]
    argv = _argv(args, inputs)
    root = tmp_path / "results"
    if argv[0] in ("run", "sweep") and "--root" not in argv:
        argv += ["--root", str(root)]
    before = _files(inputs)
    code = cli.main(argv + (["--quiet"] if argv[0] in ("run", "sweep") else []))
    err = capsys.readouterr().err.strip()
    assert code == 2, (case, err)
    assert len(err.splitlines()) == 1 and err.startswith("iml: error: "), err
    assert re.search(pattern, err), (pattern, err)
    assert _files(root) == [] and _files(tmp_path / "env_root") == [], "files were written"
    assert _files(inputs) == before


def test_show_epoch_that_does_not_exist_names_the_epochs(capsys):
    from iml.core import files

    d = next(iter(sorted(files.RESULTS_DIR.glob("mnist/*/meta.json")))).parent
    assert cli.main(["show", str(d), "--epoch", "999"]) == 2
    err = capsys.readouterr().err
    assert "--epoch 999" in err and "no such epoch" in err
