"""The run folder's layout and how files get into it: names, paths, atomic writes, hashes.

    <artifacts>/<run>/
        features/                      the feature cache (probekit.core.cache; written by extract)
        finetuned/                     the fine-tuned encoder, result.json, scores/ (written by finetune)
        scores/<model>.<split>.npy     float32 probabilities of every classify model (written by classify)
        models/<model>.skops|.json     fitted classify models (written by classify)
        metrics.json                   every model's metrics (written by classify; read by report)
        report/                        the HTML report and plots (written by report)

Every file name lives here, once. Torch-free and sklearn-free: every stage imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np

SPLITS = ("train", "validation", "test")
MANIFEST_NAME = "manifest.json"
FEATURES_DIRNAME = "features"
X_SUFFIX, Y_SUFFIX, TEXTS_SUFFIX = ".X.npy", ".y.npy", ".texts.jsonl"
# The classify stage's outputs, read by the report (see README, "metrics.json").
METRICS_NAME = "metrics.json"
SCORES_DIRNAME = "scores"
MODELS_DIRNAME = "models"
CLASSIFY_CONFIG_NAME = "classify.config.json"  # the resolved config classify ran with
FEATURES, TEXTS, BOTH = "features", "texts", "both"  # a model's "input" in metrics.json and models/<model>.json


# The fine-tuning stage's folder (written by finetune only; classify gathers it when present).
FINETUNED_DIRNAME = "finetuned"
FINETUNED_MODEL = "finetuned"  # its name among the models of metrics.json
FINETUNED_RESULT = "result.json"  # <run>/finetuned/result.json: settings, run key, data, history (no metrics)
FINETUNED_SCORES_DIRNAME = "scores"  # <run>/finetuned/scores/<split>.npy: float32 (n_rows, n_labels)
FINETUNED_SCORED_SPLITS = ("validation", "test")


def finetuned_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / FINETUNED_DIRNAME


def finetuned_scores_name(split: str) -> str:
    """A split's probabilities, relative to the fine-tuned folder: scores/<split>.npy."""
    return f"{FINETUNED_SCORES_DIRNAME}/{split}.npy"


def finetuned_scores_path(run_dir: str | Path, split: str) -> Path:
    return finetuned_dir(run_dir) / finetuned_scores_name(split)


def features_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / FEATURES_DIRNAME


def x_name(split: str, pooling: str | None = None) -> str:
    """File name of a split's features: the default pooling (None) or another one."""
    return f"{split}{X_SUFFIX}" if pooling is None else f"{split}.X.{pooling}.npy"


def scores_path(run_dir: str | Path, model: str, split: str) -> Path:
    """float32 (n_rows, n_labels) probabilities of `model` on `split`, columns in label order."""
    return Path(run_dir) / SCORES_DIRNAME / f"{model}.{split}.npy"


def write_scores(run_dir: str | Path, model: str, split: str, P: np.ndarray) -> Path:
    """Write :func:`scores_path` atomically (:func:`save_npy_atomic`)."""
    path = scores_path(run_dir, model, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(path, P)
    return path


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary name in the same folder, then rename: never half a file under `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:  # a full disk or an interrupt: leave no partial file behind
        tmp.unlink(missing_ok=True)
        raise


def cache_key(identity: dict) -> str:
    """Short stable hash of everything that determines the features."""
    blob = json.dumps(identity, sort_keys=True, ensure_ascii=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_commit() -> str:
    """The commit of the probekit checkout that runs, or "" (an installed copy has none to report)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # a wheel in site-packages: git would name the user's repository
        return ""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=root)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def write_json_atomic(path: str | Path, obj: object) -> None:
    """Write JSON to a temporary name in the same folder, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk or an interrupt: leave no partial file behind
        tmp.unlink(missing_ok=True)
        raise
