"""Label new texts with a finished run: its encoder, its chosen model, its thresholds.

    probekit predict --run artifacts/demo --text "I can't believe it, that's wonderful!"
    probekit predict --run artifacts/demo --file comments.csv --column body --format jsonl
    (or: make predict RUN=artifacts/demo TEXT="...")

The model is the run's best (metrics.json ``comparisons.best``) unless ``--model`` names
another. Models that read features run the run's encoder (torch) with the cache's
settings; TF-IDF models need only the texts. The model file is checked before loading
(classify.persist): checksum, feature space and trusted types.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from probekit.core.errors import ProbekitError
from probekit.core.metrics import predict_labels
from probekit.core.runfolder import MANIFEST_NAME, METRICS_NAME, features_dir
from probekit.stages.classify import models
from probekit.stages.classify.persist import load_model

logger = logging.getLogger(__name__)


def read_texts(texts: list[str] | None, file: str | None, column: str | None) -> list[str]:
    """Texts from the command line, a text file (one per line) or a csv column."""
    out = list(texts or [])
    if file:
        p = Path(file)
        if not p.is_file():
            raise FileNotFoundError(f"--file {p}: no such file.")
        if column or p.suffix.lower() in (".csv", ".tsv"):
            with open(p, encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f, delimiter="\t" if p.suffix.lower() == ".tsv" else ",")
                col = column or "text"
                if col not in (reader.fieldnames or []):
                    raise ProbekitError(f"{p}: no column {col!r}; it has {reader.fieldnames}. Pass --column NAME.")
                out += [row[col] or "" for row in reader]
        else:
            out += [line.rstrip("\r\n") for line in p.open(encoding="utf-8-sig") if line.strip()]
    if not out:
        raise ProbekitError("nothing to predict: pass --text TEXT (repeatable) or --file FILE.")
    return out


def _json(path: Path, make: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run '{make}' for this run first.")
    return json.loads(path.read_text(encoding="utf-8"))


def predict(run_dir: str | Path, texts: list[str], model: str | None = None) -> dict:
    """Probabilities and predicted labels of `texts` under the run's model.

    Returns:
        {"model", "labels", "probabilities" (n, L), "predicted" (n, L) 0/1, "thresholds"}
    """
    run_dir = Path(run_dir)
    metrics = _json(run_dir / METRICS_NAME, "make classify")
    name = model or metrics.get("comparisons", {}).get("best") or next(iter(metrics["models"]))
    if name not in metrics["models"]:
        raise ProbekitError(f"--model {name!r}: this run has {', '.join(metrics['models'])}.")
    if name == "finetuned":  # the fine-tuned encoder reads the texts itself (imports torch)
        from probekit.stages.extract.finetune import predict_texts

        P, entry = predict_texts(run_dir, texts)
        labels = metrics["labels"]
        thr = np.asarray(list(entry["thresholds"].values())) if entry.get("thresholds") else entry["threshold"]
        return {"model": name, "labels": labels, "probabilities": P,
                "predicted": predict_labels(P, metrics["problem_type"], thr), "thresholds": entry.get("thresholds")}
    manifest = _json(features_dir(run_dir) / MANIFEST_NAME, "make extract")
    meta_path = run_dir / "models" / f"{name}.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    kind, pooling = meta.get("input", models.FEATURES), meta.get("feature_set")
    X = None if kind == models.TEXTS else encode_like_cache(manifest, texts, pooling)
    expect = {"model_id": manifest.get("model_id"), "model_revision": manifest.get("model_revision"),
              "max_length": manifest.get("max_length"), "label_names": manifest["label_names"]}
    if X is not None:
        expect.update(feature_set=pooling, hidden_size=int(X.shape[1]))
    est, meta = load_model(run_dir, name, expect=expect)
    labels = meta["label_names"]
    P = models.predict_scores(est, models.model_input(kind, X, texts), len(labels))
    thr = np.asarray(meta["thresholds"]) if meta.get("thresholds") else meta.get("threshold", 0.5)
    Yhat = predict_labels(P, meta["problem_type"], thr)
    return {"model": name, "labels": labels, "probabilities": P, "predicted": Yhat,
            "thresholds": None if np.ndim(thr) == 0 else dict(zip(labels, map(float, thr)))}


def encode_like_cache(manifest: dict, texts: list[str], pooling: str) -> np.ndarray:
    """Features of new texts made exactly as the cache's: same encoder, weights, settings.

    Imports torch (the extract extra). Refuses when the encoder's weights are no longer
    the ones the cache was built with.
    """
    from probekit.core.config import EncoderSection
    from probekit.stages.extract import encode

    enc = EncoderSection(**{k: (tuple(v) if isinstance(v, list) else v)
                            for k, v in manifest["config"]["encoder"].items()})
    path, local = encode.resolve_model(enc)
    _, revision = encode.model_identity(enc, path, local)
    if revision != manifest.get("model_revision"):
        raise ProbekitError(
            f"[encoder] model={enc.model!r} now resolves to revision {revision}, but the run's features were made "
            f"with {manifest.get('model_revision')}; its models do not fit these weights. Re-run make extract."
        )
    device = encode.pick_device(enc.device)
    dtype = manifest.get("compute_dtype", "float32")
    tokenizer, model = encode.load_encoder(enc, path, local, device, dtype=dtype,
                                           quantize=manifest.get("quantize", "none"))
    arrays, _ = encode.make_extractor(enc, tokenizer, model, device, poolings=[pooling]).encode(texts)
    return np.asarray(arrays[pooling], dtype=np.float32)


def format_rows(texts: list[str], result: dict, fmt: str = "table", top: int = 3) -> str:
    """JSON lines (every label's probability) or a readable table (predicted labels, top scores)."""
    labels, P, Yhat = result["labels"], result["probabilities"], result["predicted"]
    lines = []
    for i, text in enumerate(texts):
        predicted = [labels[k] for k in np.flatnonzero(Yhat[i])]
        if fmt == "jsonl":
            lines.append(json.dumps({"text": text, "model": result["model"], "labels": predicted,
                                     "probabilities": {lab: round(float(p), 4) for lab, p in zip(labels, P[i])}},
                                    ensure_ascii=False))
        else:
            best = np.argsort(-P[i])[:top]
            scores = ", ".join(f"{labels[k]} {P[i, k]:.2f}" for k in best)
            short = text if len(text) <= 60 else text[:57] + "..."
            lines.append(f"{short!r:64}  -> {', '.join(predicted) or '(none)':24}  [{scores}]")
    if fmt != "jsonl":
        lines.insert(0, f"model: {result['model']}" + ("  (per-label thresholds tuned on validation)"
                                                       if result["thresholds"] else ""))
    return "\n".join(lines)
