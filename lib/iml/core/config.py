"""Config plumbing shared by every part of `iml`.

Configs are plain dataclasses whose defaults match the paper. They are built from dicts (YAML files,
`--set key=value` overrides, notebook parameters) by :func:`from_dict`, which rejects unknown keys and
wrong types with a :class:`ConfigError` that names the offending field, e.g.::

    ConfigError: data.fractions.qd1consis: must be in [0, 1], got 1.3

The CLI turns a ConfigError into one line on stderr and exit code 2.
"""
from __future__ import annotations

import codecs
import copy
import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = [
    "ConfigError",
    "from_dict",
    "to_dict",
    "config_hash",
    "check_fraction",
    "check_positive",
    "check_choice",
    "check_file",
    "check_text_codec",
    "content_address",
    "content_sha256",
    "apply_overrides",
    "parse_override",
    "fix_numbers",
    "read_mapping",
    "build",
]


class ConfigError(ValueError):
    """A bad config value. The message always starts with the dotted field name."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


# ----------------------------------------------------------------------------------------------
# Small validators: each raises ConfigError naming the field.
# ----------------------------------------------------------------------------------------------

def check_fraction(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, f"must be a number in [0, 1], got {value!r}")
    if not (0.0 <= float(value) <= 1.0) or value != value:  # NaN check
        raise ConfigError(field, f"must be in [0, 1], got {value!r}")
    return float(value)


def check_positive(field: str, value: Any, *, allow_zero: bool = False, integer: bool = True) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ConfigError(field, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise ConfigError(field, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    if value == float("inf"):
        raise ConfigError(field, f"must be finite, got {value!r}")
    return value


def check_choice(field: str, value: Any, choices) -> Any:
    if value not in choices:
        raise ConfigError(field, f"must be one of {sorted(choices)}, got {value!r}")
    return value


def check_text_codec(field: str, value: Any) -> codecs.CodecInfo:
    """The text codec named `value` (``codecs.lookup``), refusing unknown names and bytes-to-bytes codecs such as
    base64 (what ``open()`` refuses too)."""
    try:
        if not isinstance(value, str) or not value.strip():
            raise LookupError(value)
        info = codecs.lookup(value)
        if not getattr(info, "_is_text_encoding", True):
            raise LookupError(value)
    except LookupError:
        raise ConfigError(field, f"must be a Python text codec name such as 'utf-8' or 'latin-1', or null (detect), "
                                 f"got {value!r}") from None
    return info


def check_file(field: str, value: Any) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(field, f"must be a file path, got {value!r}")
    p = Path(value).expanduser()
    if not p.exists():
        raise ConfigError(field, f"file not found: {p}")
    return p


# ----------------------------------------------------------------------------------------------
# dict <-> dataclass
# ----------------------------------------------------------------------------------------------

def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(field: str, tp, value: Any) -> Any:
    """Check `value` against the annotation `tp`; build nested dataclasses from dicts."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(field, a, value)
            except ConfigError as e:
                errors.append(e.problem)
        raise ConfigError(field, errors[0] if len(errors) == 1 else f"invalid value {value!r}")
    if origin is typing.Literal:
        return check_choice(field, value, set(args))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(field, f"must be a mapping, got {value!r}")
        return from_dict(tp, value, prefix=field)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(field, f"must be a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(f"{field}.{k}", vt, v) for k, v in value.items()}
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(field, f"must be a list, got {value!r}")
        et = args[0] if args else Any
        out = [_coerce(f"{field}[{i}]", et, v) for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(field, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(field, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(field, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(field, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(field, f"must be a string, got {value!r}")
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(field, f"must be {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls, data: Mapping[str, Any] | None, prefix: str = ""):
    """Build dataclass `cls` from `data`, rejecting unknown keys and wrong types.

    Nested dataclass fields take nested mappings. After construction the dataclass's own
    `__post_init__` runs its semantic checks (fractions summing to <= 1, ...).
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(name, f"unknown key (valid keys: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        full = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(full, hints[name], value)
    try:
        obj = cls(**kwargs)
    except ConfigError as e:
        if prefix and not e.field.startswith(prefix + "."):
            raise ConfigError(f"{prefix}.{e.field}" if e.field else prefix, e.problem) from None
        raise
    return obj


def to_dict(obj) -> Any:
    """Dataclass -> plain JSON-able structure (tuples become lists, Paths strings)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


HASH_NEUTRAL: dict[str, Any] = {
    "train.fast_forward": False,  # iml.lm.train.TrainConfig (main experiment), added 2026-11-26
    "train.compile": False,  # iml.lm.train.TrainConfig (main experiment), added 2026-11-26
    "joint": False,  # iml.mnist.grid.Config (single-stage MNIST), added 2026-11-26
    # iml.mnist.grid.GridFractions: the tag-consistency-correlation subsets (iml.mnist.alpha), added 2026-11-26, and the
    # same fields inside iml.mnist.gradient_alignment's task
    "fractions.qd1incons": 0.0,
    "fractions.qd2consis": 0.0,
    "task.fractions.qd1incons": 0.0,
    "task.fractions.qd2consis": 0.0,
    # iml.lm.experiment.Config: content hashes of data.path / model.path / model.gguf_file, added 2026-12-02
    "inputs": {},
    # iml.scratch.set_inclusion.Config: training questions used per alias, added 2026-12-01
    "n_train_true": 6,
    "n_train_false": 6,
    "data.encoding": None,  # iml.lm.tagging.DataConfig (main experiment): a cvdb CSV's codec, added 2026-12-02
}
"""Dotted config paths of fields added after results were committed, each with the value that reproduces
the behaviour from before the field existed. At that value the field is left out of :func:`config_hash`,
so adding an option does not orphan the committed results (their stored configs lack the field, and hash
the same); any other value changes the hash as usual. Listed here, not next to the field, so that every
hash (also of a stored config.json read without its experiment's module) drops the same fields."""


INPUTS = "inputs"
"""The top-level config field holding ``{dotted path field: sha256 of the file or folder it names}``
(:func:`content_address`). When a path field has its content hash there, the path string itself is left out of
:func:`config_hash`: a result is identified by what it read, not where the file was mounted."""


def _parent(d: Any, path: str) -> tuple[dict | None, str]:
    """(the mapping that holds dotted `path`'s last key in nested dict `d`, or None; that key)."""
    *parents, leaf = path.split(".")
    node = d
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), leaf


def _drop_input_paths(d: Any) -> Any:
    sums = d.get(INPUTS) if isinstance(d, dict) else None
    for path in (sums or {}):
        node, leaf = _parent(d, path)
        if node is not None:
            node.pop(leaf, None)
    return d


_SHA_CACHE: dict[tuple, str] = {}


def content_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (as ``sha256sum`` prints it), or of a folder: of every file's relative name and
    sha256, in sorted order (hidden files left out). Cached per (path, size, mtime) within a process: a checkpoint
    is read once."""
    from iml.core.files import sha256_file

    def one(q: Path) -> str:
        st = q.stat()
        key = (str(q), st.st_size, st.st_mtime_ns)
        if key not in _SHA_CACHE:
            _SHA_CACHE[key] = sha256_file(q)
        return _SHA_CACHE[key]

    p = Path(path).expanduser().resolve()
    if p.is_file():
        return one(p)  # what `sha256sum` prints
    h = hashlib.sha256()
    for q in sorted(q for q in p.rglob("*") if q.is_file() and not any(
            part.startswith(".") for part in q.relative_to(p).parts)):
        h.update(f"{q.relative_to(p)}\0{one(q)}\n".encode())
    return h.hexdigest()


def content_address(cfg, fields: Sequence[str]):
    """`cfg` (a dataclass with an :data:`INPUTS` field) with the content hash of every file or folder that the
    dotted `fields` name (those not None), so that its hash changes when a file's content does. Files that do not
    exist are left for the experiment's own checks to report."""
    sums = {}
    for f in fields:
        node = cfg
        for part in f.split("."):
            node = getattr(node, part, None)
        if node is not None and Path(str(node)).expanduser().exists():
            sums[f] = content_sha256(str(node))
    return dataclasses.replace(cfg, **{INPUTS: sums})


_CUDA_INDEX = re.compile(r"^cuda:\d+$")


def _same_device_type(d: Any) -> Any:
    """`cuda:1` hashes as `cuda`: which GPU of a machine a shard pins changes no number, so shards share one result.
    The device type and the thread count stay in the hash: CPU and GPU kernels, and reductions split over
    another number of threads, round differently."""
    if isinstance(d, dict):
        return {k: ("cuda" if k == "device" and isinstance(v, str) and _CUDA_INDEX.match(v) else _same_device_type(v))
                for k, v in d.items()}
    if isinstance(d, list):
        return [_same_device_type(v) for v in d]
    return d


EXECUTION_ONLY = ("save_models", "train.checkpoint_every")
"""Dotted config paths that change how a run executes but no number it computes (tested: saving the models,
resume files): left out of :func:`config_hash` at any value, so a run with them set shares the result of one
without (a finished result is loaded, not recomputed: ``--force`` recomputes it)."""


def _drop_neutral(d: Any) -> Any:
    for path, value in HASH_NEUTRAL.items():
        node, leaf = _parent(d, path)
        if node is not None and leaf in node and node[leaf] == value:
            del node[leaf]
    for path in EXECUTION_ONLY:
        node, leaf = _parent(d, path)
        if node is not None and leaf in node:
            del node[leaf]
    return d


def config_hash(obj, length: int = 12) -> str:
    """A stable hash of a config: sha256 of its canonical JSON (sorted keys), without the fields at their
    :data:`HASH_NEUTRAL` values and the :data:`EXECUTION_ONLY` ones, without the path fields whose content hash it holds (:data:`INPUTS`), and with
    ``cuda:N`` devices as ``cuda``."""
    d = _same_device_type(_drop_input_paths(_drop_neutral(copy.deepcopy(to_dict(obj)))))
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


# ----------------------------------------------------------------------------------------------
# The one override dialect: dotted keys (``stages.1.epochs``; integers index lists), YAML values, and nested
# mappings merged key by key (presets, --config files). Every experiment's make_config goes through `build`.
# ----------------------------------------------------------------------------------------------

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)$")


def fix_numbers(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string; turn such strings (in lists and mappings too) back into numbers."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [fix_numbers(x) for x in value]
    if isinstance(value, Mapping):
        return {k: fix_numbers(x) for k, x in value.items()}
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=3` -> ("a.b", 3). The value is parsed as YAML, so lists and booleans work."""
    import yaml

    if "=" not in text:
        raise ConfigError(text, "override must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(text, "override has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(key, f"cannot parse value {raw!r}: {e}") from None
    return key, fix_numbers(value)


def _merge(a: dict, b: Mapping) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = d
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.lstrip("-").isdigit():
                raise ConfigError(where, f"{'.'.join(parts[:i])} is a list; index it with a number")
            idx = int(part)
            if not (-len(node) <= idx < len(node)):
                raise ConfigError(where, f"index out of range (the list has {len(node)} items)")
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = _merge(node[part], value) if isinstance(value, Mapping) and isinstance(
                    node.get(part), dict) else value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(".".join(parts[:i]), "is not a mapping; cannot set a sub-key")


def apply_overrides(data: dict, overrides: Mapping[str, Any]) -> dict:
    """A deep copy of nested dict `data` with `overrides` applied: dotted keys (integers index lists), values
    number-fixed (:func:`fix_numbers`), a mapping value merged into the mapping it lands on."""
    out = copy.deepcopy(data)
    for key, value in overrides.items():
        _set_dotted(out, str(key), fix_numbers(copy.deepcopy(value)))
    return out


def read_mapping(path: str | Path, field: str = "config") -> dict:
    """The mapping of config keys in YAML file `path` (a ConfigError naming `field` otherwise)."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(field, f"file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(field, f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(field, f"{p}: must hold a mapping of config keys")
    return dict(data)


def build(cls, presets: Mapping[str, Mapping[str, Any]], preset: str | None,
          overrides: Mapping[str, Any] | None = None, config_file: str | Path | None = None,
          base: Mapping[str, Any] | None = None):
    """`cls` from its defaults (or `base`), then preset `preset`'s overrides (None: none), then the mapping in
    YAML `config_file`, then `overrides`: the one make_config of every experiment."""
    d = to_dict(cls()) if base is None else copy.deepcopy(dict(base))
    if preset is not None:
        if preset not in presets:
            raise ConfigError("preset", f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
        d = apply_overrides(d, presets[preset])
    if config_file is not None:
        d = apply_overrides(d, read_mapping(config_file))
    return from_dict(cls, apply_overrides(d, dict(overrides or {})))
