"""What the fine-tuning loop, the stage and predict share: the model, dtypes, autocast, scores, prediction.

torch is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
from tqdm.auto import tqdm

from probekit.core.config import ClassifySection, Config
from probekit.core.errors import ProbekitError
from probekit.core.metrics import positive_block, score
from probekit.core.thresholds import tune_binary_threshold, tune_thresholds
from probekit.stages.extract.engine.loading import remote_code_error

logger = logging.getLogger(__name__)

# config attributes that hold a dropout probability, across BERT-, DistilBERT- and RoBERTa-style models
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                "seq_classif_dropout", "classifier_dropout")


def load_model(cfg: Config, path: str, local: bool, names: list[str], multi: bool):
    """(tokenizer, AutoModelForSequenceClassification, the parameters not in the checkpoint)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    ft = cfg.finetune
    kw = {"local_files_only": True} if local else {"revision": cfg.encoder.revision}
    kw["trust_remote_code"] = cfg.trust_remote_code  # only the command-line flag sets it
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kw)
        config = AutoConfig.from_pretrained(
            path, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: k for k, n in enumerate(names)},
            problem_type="multi_label_classification" if multi else "single_label_classification", **kw)
        if ft.dropout >= 0:
            for key in DROPOUT_KEYS:
                if hasattr(config, key):
                    setattr(config, key, ft.dropout)
        quiet = logging.getLogger("transformers")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # its load report says the head is new; we log that below
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(path, config=config,
                                                                             output_loading_info=True, **kw)
        finally:
            quiet.setLevel(level)
    except OSError as e:
        raise ProbekitError(f"[finetune] model={path!r}: cannot load it: {str(e).splitlines()[0][:200]}") from None
    except ValueError as e:  # transformers refusing a model's own code without trust_remote_code
        raise remote_code_error(cfg.encoder, e) from None
    if not tokenizer.is_fast:
        raise ProbekitError(f"[finetune] model={path!r} has no fast tokenizer (tokenizer.json); probekit needs one.")
    return tokenizer, model, set(info.get("missing_keys") or ())


def validation_scores(Y: np.ndarray, P: np.ndarray, problem_type: str, names: list[str],
                      cfg: ClassifySection, positive: int | None = None) -> dict:
    """Validation metrics of one epoch: thresholds tuned on these very scores when classify tunes them.

    Binary data (`positive`: the positive column) adds ``positive_f1``: the positive class's F1 at
    the threshold classify's ``binary_threshold`` rule picks on these scores.
    """
    tuned = problem_type == "multi_label" and cfg.thresholds == "tune"
    out = score(Y, P, problem_type, names, tune_thresholds(Y, P) if tuned else cfg.threshold)
    if positive is not None:
        y, p = Y[:, positive], P[:, positive]
        threshold = tune_binary_threshold(y, p, cfg.binary_threshold, cfg.threshold, cfg.recall_target)
        out["positive_f1"] = positive_block(y, p, names[positive], threshold)["f1"]
    return out


def amp_dtype(name: str, device: str) -> str:
    """The compute dtype of [finetune] dtype: auto = bfloat16 where the device computes it natively
    (a CPU with AVX512-BF16 or AMX, a GPU with bf16), float16 on older GPUs, else float32."""
    import torch

    from probekit.stages.extract.engine.loading import native_bf16

    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if native_bf16(device) else "float32"


def autocast(device: str, dtype: str):
    """Autocast to `dtype` (the weights stay float32: the master copy the optimiser updates)."""
    import torch

    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=getattr(torch, dtype))


def probabilities(logits, multi: bool):
    import torch

    return torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)


def predict_rows(model, rows: list[dict], collate, batch_size: int, device: str, amp: str, multi: bool,
                 desc: str = "predict") -> np.ndarray:
    """Probabilities (n, L) of tokenized rows (dicts): length-sorted batches, returned in row order."""
    import torch

    model.eval()
    order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")
    out = np.empty((len(rows), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch", leave=False,
                          disable=not logger.isEnabledFor(logging.INFO) or len(rows) <= batch_size):
            idx = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate([rows[i] for i in idx]).items()}
            with autocast(device, amp):
                logits = model(**batch).logits.float()
            out[idx] = probabilities(logits, multi).cpu().numpy()
    return out


def fmt_score(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
