"""The run folder's layout and how files get into it: names, paths, atomic writes, hashes.

    <artifacts>/<run>/
        features/                      the feature cache (probekit.core.cache; written by extract)
        finetuned/                     the fine-tuned encoder, result.json, scores/ (written by finetune)
        finetuned-<name>/              another fine-tuned variant ([finetune] name), laid out the same
        scores/<model>.<split>.npy     float32 probabilities of every classify model (written by classify)
        models/<model>.skops|.json     fitted classify models (written by classify)
        metrics.json                   every model's metrics (written by classify; read by report)
        report/                        the HTML report and plots (written by report)

Every file name lives here, once. Torch-free and sklearn-free: every stage imports it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np

from probekit.core.errors import ProbekitError

logger = logging.getLogger(__name__)

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


FINETUNED_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,39}$")  # [finetune] name: finetuned-<name>/


def finetuned_model_name(name: str = "") -> str:
    """A fine-tuned model's name in metrics.json and its folder's name: ``finetuned`` or ``finetuned-<name>``.

    ``[finetune] name`` keeps several fine-tuned variants in one run folder (e.g. every layer and
    the top two), each scored by classify beside the frozen models.
    """
    return f"{FINETUNED_MODEL}-{name}" if name else FINETUNED_MODEL


def finetuned_dir(run_dir: str | Path, name: str = "") -> Path:
    return Path(run_dir) / (f"{FINETUNED_DIRNAME}-{name}" if name else FINETUNED_DIRNAME)


def is_finetuned_model(model: str) -> bool:
    """Whether a metrics.json model name is a fine-tuned one (``finetuned`` or ``finetuned-<name>``)."""
    return model == FINETUNED_MODEL or (model.startswith(FINETUNED_MODEL + "-")
                                        and bool(FINETUNED_NAME_RE.match(model[len(FINETUNED_MODEL) + 1:])))


def finetuned_variants(run_dir: str | Path) -> list[tuple[str, Path]]:
    """Every fine-tuned folder of a run, as (model name, folder), sorted: finetuned/ and finetuned-<name>/."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(p.name, p) for p in run_dir.iterdir() if p.is_dir() and is_finetuned_model(p.name)]
    return sorted(found)


def finetuned_scores_name(split: str) -> str:
    """A split's probabilities, relative to the fine-tuned folder: scores/<split>.npy."""
    return f"{FINETUNED_SCORES_DIRNAME}/{split}.npy"


def finetuned_scores_path(run_dir: str | Path, split: str, name: str = "") -> Path:
    return finetuned_dir(run_dir, name) / finetuned_scores_name(split)


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
    except BaseException as e:  # a full disk or an interrupt: leave no partial file behind
        tmp.unlink(missing_ok=True)
        name_the_file(e, path)
        raise


def name_the_file(e: BaseException, path: str | Path) -> None:
    """Give an OSError that names no file (numpy's short write, zipfile's) the file it was writing."""
    if isinstance(e, OSError) and not e.filename:
        e.filename = str(path)


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
    except BaseException as e:  # a full disk or an interrupt: leave no partial file behind
        tmp.unlink(missing_ok=True)
        name_the_file(e, path)
        raise


# --- what a run folder's outputs hold, checked by every reader --------------------------------

METRICS_FILES_KEY = "files"  # metrics.json: {"models/<m>.skops": sha256, "scores/<m>.test.npy": ..., ...}
MODEL_SUFFIXES = (".skops", ".json")  # models/<model>.skops (the estimator) and .json (its sidecar)
SCORED_SPLITS = ("validation", "test")


def output_files(model: str, fitted: bool = True) -> list[str]:
    """The files a classify model owns, relative to the run folder (a fine-tuned one has scores only)."""
    models = [f"{MODELS_DIRNAME}/{model}{s}" for s in MODEL_SUFFIXES] if fitted else []
    return [*models, *(f"{SCORES_DIRNAME}/{model}.{s}.npy" for s in SCORED_SPLITS)]


def verify_run_outputs(run_dir: str | Path, metrics: dict, models: list[str] | None = None) -> None:
    """Refuse a run folder whose model and score files are not the ones its metrics.json was written with.

    classify records every model and score file's sha256 in metrics.json (``files``); a classify
    that failed half way, or an edited file, shows here as a missing file or another checksum.
    A metrics.json from before the checksums were recorded (no ``files``) is not checked.

    Args:
        models: check only these models' files (predict); None: every file (the report).

    Raises:
        ProbekitError: one line naming the file and the fix.
    """
    run_dir = Path(run_dir)
    where = run_dir / METRICS_NAME
    files = metrics.get(METRICS_FILES_KEY)
    if files is None:
        return
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ProbekitError(f"{where}: '{METRICS_FILES_KEY}' must map file names to sha256 digests; "
                            "run 'make classify' again.")
    wanted = dict(files)
    if models is not None:
        owned = {f for m in models for f in output_files(m)}
        wanted = {k: v for k, v in files.items() if k in owned}
    for rel, digest in wanted.items():
        p = run_dir / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ProbekitError(f"{where}: names {rel!r}, outside the run folder; run 'make classify' again.")
        if not p.is_file():
            raise ProbekitError(f"{p}: missing, but {METRICS_NAME} records it: the run folder is incomplete. "
                                "Run 'make classify' again.")
        if sha256_file(p) != digest:
            raise ProbekitError(f"{p}: not the file {METRICS_NAME} was written with (its sha256 differs): the "
                                "run folder mixes two classify runs or was edited. Run 'make classify' again.")


def swap_in_dirs(run_dir: str | Path, staged: str | Path, names: tuple[str, ...], then: Callable[[], None]) -> None:
    """Replace ``run_dir/<name>`` by ``staged/<name>`` for every name, then call `then` (which writes
    the file that names them, e.g. metrics.json); on any error every old folder is put back.

    Each swap is a rename, so the folders change together or not at all as far as any
    exception can tell; a ``kill -9`` between two renames leaves files that metrics.json's
    checksums (:func:`verify_run_outputs`) refuse.
    """
    run_dir, staged, pid = Path(run_dir), Path(staged), os.getpid()
    done: list[str] = []
    try:
        for name in names:
            live, old = run_dir / name, run_dir / f".{name}.old-{pid}"
            if live.exists():
                os.replace(live, old)
            done.append(name)
            os.replace(staged / name, live)
        then()
    except BaseException:
        for name in reversed(done):
            live, old = run_dir / name, run_dir / f".{name}.old-{pid}"
            if not (staged / name).exists() and live.exists():
                os.replace(live, staged / name)  # the new one went in: take it back out
            if old.exists():
                os.replace(old, live)
        raise
    for name in names:
        shutil.rmtree(run_dir / f".{name}.old-{pid}", ignore_errors=True)


_TEMP = re.compile(r"\.(?:tmp|old)-(\d+)$")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp(run_dir: str | Path) -> list[Path]:
    """Delete temporary files and folders (``*.tmp-<pid>``, ``*.old-<pid>``) left in a run folder by
    processes that died (``kill -9``); called by the holder of the run folder's lock. W&B's folder
    is not searched. Returns what was removed."""
    removed: list[Path] = []
    for root, dirs, files in os.walk(run_dir):
        dirs[:] = [d for d in dirs if d != "wandb"]
        for name in [*files, *dirs]:
            m = _TEMP.search(name)
            if not m or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
                continue
            p = Path(root) / name
            try:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            except OSError:
                continue
            removed.append(p)
            if name in dirs:
                dirs.remove(name)
    for p in removed:
        logger.info("removed %s, left by an interrupted run", p)
    return removed
