"""The config plumbing: unknown keys, wrong types and bad values name the field."""
import dataclasses
import hashlib

import pytest

from iml.core.config import (ConfigError, apply_overrides, check_fraction, config_hash, from_dict,
                        parse_override, to_dict)


@dataclasses.dataclass
class Inner:
    frac: float = 0.25
    name: str = "x"

    def __post_init__(self):
        check_fraction("frac", self.frac)


@dataclasses.dataclass
class Outer:
    epochs: int = 20
    lr: float = 5e-5
    order: str = "tve"
    tags: list[str] = dataclasses.field(default_factory=list)
    path: str | None = None
    inner: Inner = dataclasses.field(default_factory=Inner)
    flag: bool = False


def test_defaults_roundtrip():
    o = from_dict(Outer, {})
    assert o == Outer()
    assert from_dict(Outer, to_dict(o)) == o


def test_nested_values_are_built():
    o = from_dict(Outer, {"inner": {"frac": 0.5}, "tags": ["a", "b"], "lr": 1})
    assert o.inner.frac == 0.5 and o.tags == ["a", "b"] and o.lr == 1.0


@pytest.mark.parametrize("data, field", [
    ({"epoch": 3}, "epoch"),                       # unknown key (typo)
    ({"inner": {"fraq": 0.1}}, "inner.fraq"),      # unknown nested key
    ({"epochs": "20"}, "epochs"),                  # string for int
    ({"epochs": 2.5}, "epochs"),                   # float for int
    ({"epochs": True}, "epochs"),                  # bool is not an int here
    ({"lr": "fast"}, "lr"),
    ({"tags": "abc"}, "tags"),                     # a string is not a list
    ({"tags": [1]}, "tags[0]"),
    ({"inner": 3}, "inner"),
    ({"inner": {"frac": 1.5}}, "inner.frac"),      # fraction > 1
    ({"inner": {"frac": -0.1}}, "inner.frac"),     # negative fraction
    ({"inner": {"frac": float("nan")}}, "inner.frac"),
    ({"flag": "yes"}, "flag"),
    ({"path": 3}, "path"),
])
def test_bad_inputs_name_the_field(data, field):
    with pytest.raises(ConfigError) as e:
        from_dict(Outer, data)
    assert e.value.field == field, str(e.value)
    assert str(e.value).startswith(field + ":")


def test_hash_is_stable_and_sensitive():
    a = from_dict(Outer, {})
    assert config_hash(a) == config_hash(from_dict(Outer, {}))
    assert config_hash(a) != config_hash(from_dict(Outer, {"epochs": 21}))
    assert config_hash({"b": 1, "a": 2}) == config_hash({"a": 2, "b": 1})


def test_overrides():
    assert parse_override("inner.frac=0.5") == ("inner.frac", 0.5)
    assert parse_override("tags=[a, b]") == ("tags", ["a", "b"])
    assert parse_override("flag=true") == ("flag", True)
    d = apply_overrides({"inner": {"frac": 0.1}}, {"inner.frac": 0.3, "epochs": 5})
    assert d == {"inner": {"frac": 0.3}, "epochs": 5}
    with pytest.raises(ConfigError):
        parse_override("noequals")
    with pytest.raises(ConfigError):
        apply_overrides({"epochs": 3}, {"epochs.x": 1})


def test_override_numbers_in_exponent_form_are_numbers():
    # YAML 1.1 would read these as strings; a learning rate on the command line must stay a number
    assert parse_override("lr=1e-3") == ("lr", 1e-3)
    assert parse_override("lr=5.0e-5") == ("lr", 5e-5)
    assert parse_override("name=e5") == ("name", "e5")


# -- content-addressed inputs: a result is identified by the bytes it read, not by the path string ------------

def test_a_result_follows_its_input_file_not_its_path(tmp_path):
    from iml.lm import experiment

    a, b = tmp_path / "a" / "kb.csv", tmp_path / "b" / "same.csv"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("name,birth\nAda,1815\n")
    cfg = lambda p: experiment.make_config("smoke", {"data.kb": "cvdb", "data.path": str(p)})  # noqa: E731
    h = config_hash(cfg(a))
    assert cfg(a).inputs == {"data.path": hashlib.sha256(a.read_bytes()).hexdigest()}
    assert config_hash(cfg(b)) == h  # the same bytes mounted elsewhere: the same result
    a.write_text("name,birth\nAda,1816\n")  # one digit edited
    assert config_hash(cfg(a)) != h
    assert config_hash(experiment.make_config("smoke")) == config_hash(to_dict(experiment.make_config("smoke")))


def test_a_checkpoint_folder_is_hashed_by_every_file(tmp_path):
    from iml.core.config import content_sha256

    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"\0" * 64)
    h = content_sha256(d)
    (d / ".cache").write_text("ignored")  # hidden files do not count
    assert content_sha256(d) == h
    (d / "model.safetensors").write_bytes(b"\0" * 63 + b"\1")
    assert content_sha256(d) != h


def test_committed_configs_without_inputs_keep_their_hashes():
    import json

    from iml.core import files

    for p in sorted(files.RESULTS_DIR.glob("main/*/config.json")):
        stored = json.loads(p.read_text())
        assert "inputs" not in stored and config_hash(stored) == p.parent.name
        assert config_hash({**stored, "inputs": {}}) == p.parent.name


def test_the_gpu_a_shard_pins_is_not_part_of_the_identity():
    """cuda:0 and cuda:3 are the same result (one per GPU of a node); cpu vs cuda, and the thread count, are not."""
    from iml.lm import experiment
    from iml.mnist import experiment as mnist

    h = lambda **kw: config_hash(experiment.make_config("gpu", kw))  # noqa: E731
    assert h(**{"train.device": "cuda:3"}) == h(**{"train.device": "cuda:0"}) == h(**{"train.device": "cuda"})
    assert h(**{"train.device": "cpu"}) != h(**{"train.device": "cuda"})
    assert h(**{"train.threads": 2}) != h(**{"train.threads": 1})
    assert config_hash(mnist.make_config("gpu", {"device": "cuda:1"})) == config_hash(mnist.make_config("gpu", {"device": "cuda"}))
    assert config_hash(experiment.make_config("gpu")) == "48307769fd7a"
