"""Label new texts with a finished run: its encoder, its chosen model, its thresholds.

    run = probekit.load_run("artifacts/demo"); run.predict(["what a lovely surprise"])
    probekit predict --run artifacts/demo --text "I can't believe it, that's wonderful!"
    probekit predict --run artifacts/demo --file comments.csv --column body --format jsonl
    (or: make predict RUN=artifacts/demo TEXT="...")

The model is the run's best (metrics.json ``comparisons.best``) unless ``--model`` names
another. Models that read features run the run's encoder (torch) with the cache's
settings; TF-IDF models need only the texts. The model's files are checked before loading:
against the checksums metrics.json recorded (runfolder.verify_run_outputs), then its own
(classify.persist): checksum, feature space and trusted types. The encoder is the one the
manifest names, whose own checksum is checked (cache_reader.read_manifest); nothing the run
folder names is imported. A :class:`Run` keeps what it loaded (encoder, fine-tuned model,
estimators) for its next call.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from probekit.core.cache_reader import PROBLEM_TYPES, read_manifest
from probekit.core.errors import ProbekitError
from probekit.core.metrics import predict_labels
from probekit.core.runfolder import METRICS_NAME, MODELS_DIRNAME, features_dir, is_finetuned_model, verify_run_outputs
from probekit.stages.classify import models
from probekit.stages.classify.compare import predict_entry
from probekit.stages.classify.persist import load_model, read_sidecar

logger = logging.getLogger(__name__)


def read_texts(texts: list[str] | None, file: str | None, column: str | None) -> list[str]:
    """Texts from the command line, a text file (one per line) or a csv column."""
    out = list(texts or [])
    if file:
        p = Path(file)
        if not p.is_file():
            raise FileNotFoundError(f"--file {p}: no such file.")
        try:
            out += _file_texts(p, column)
        except UnicodeDecodeError as e:
            raise ProbekitError(f"--file {p}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8 "
                                "and run again.") from None
        except csv.Error as e:
            raise ProbekitError(f"--file {p}: not a readable csv/tsv file ({e}).") from None
    if not out:
        raise ProbekitError("nothing to predict: pass --text TEXT (repeatable) or --file FILE.")
    return out


def _file_texts(p: Path, column: str | None) -> list[str]:
    if column or p.suffix.lower() in (".csv", ".tsv"):
        with open(p, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if p.suffix.lower() == ".tsv" else ",")
            col = column or "text"
            if col not in (reader.fieldnames or []):
                raise ProbekitError(f"{p}: no column {col!r}; it has {reader.fieldnames}. Pass --column NAME.")
            return [row[col] or "" for row in reader]
    with open(p, encoding="utf-8-sig") as f:
        return [line.rstrip("\r\n") for line in f if line.strip()]


def read_metrics(path: Path) -> dict:
    """metrics.json, checked to hold what predict reads (labels, problem type, models); one line if not."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run 'make classify' for this run first.")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProbekitError(f"{path}: not valid JSON ({type(e).__name__}); run 'make classify' again.") from None
    why = None
    if not isinstance(metrics, dict):
        why = f"holds a JSON {type(metrics).__name__}, not a table"
    elif not isinstance(metrics.get("labels"), list) or not all(isinstance(x, str) for x in metrics["labels"]):
        why = "'labels' is missing or not a list of names"
    elif metrics.get("problem_type") not in PROBLEM_TYPES:
        why = f"'problem_type' is not one of {PROBLEM_TYPES}"
    elif not isinstance(metrics.get("models"), dict) or not metrics["models"] \
            or not all(isinstance(e, dict) for e in metrics["models"].values()):
        why = "'models' is missing, empty or not a table of models"
    elif not isinstance(metrics.get("comparisons", {}), dict):
        why = "'comparisons' is not a table"
    if why:
        raise ProbekitError(f"{path}: {why}; run 'make classify' again.")
    return metrics


class Run:
    """A finished run, loaded once for many predictions (``probekit.load_run``).

    The encoder, the fine-tuned model and every scikit-learn model are loaded on first use
    and kept, so a notebook that calls :meth:`predict` many times pays for loading once.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir)
        self.metrics = read_metrics(self.path / METRICS_NAME)
        self.labels: list[str] = list(self.metrics["labels"])
        self.problem_type: str = self.metrics["problem_type"]
        self._manifest: dict | None = None
        self._encoder = None  # (EncoderSection, tokenizer, model, device), loaded on first use
        self._extractors: dict = {}  # pooling -> the fast extractor over the loaded encoder
        self._estimators: dict = {}  # model name -> (estimator, its .json metadata)
        self._metas: dict = {}  # model name -> models/<name>.json, read once
        self._finetuned: dict = {}  # fine-tuned model name -> its FinetunedModel, loaded on first use

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, models={self.models}, best={self.best!r})"

    @property
    def models(self) -> list[str]:
        return list(self.metrics["models"])

    @property
    def best(self) -> str:
        """The model chosen on validation (metrics.json ``comparisons.best``)."""
        return self.metrics.get("comparisons", {}).get("best") or self.models[0]

    def predict(self, texts: list[str], model: str | None = None) -> dict:
        """Probabilities and predicted labels of `texts` under `model` (default: the best on validation).

        Returns:
            {"model", "labels", "probabilities" (n, L), "predicted" (n, L) 0/1, "thresholds"}
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        name = model or self.best
        if name not in self.metrics["models"]:
            raise ProbekitError(f"--model {name!r}: this run has {', '.join(self.models)}.")
        if is_finetuned_model(name):
            return self._predict_finetuned(texts, name)
        if name not in self._estimators:  # its files are those metrics.json was written with
            verify_run_outputs(self.path, self.metrics, [name])
        meta = self._meta(name)
        kind = meta.get("input", models.FEATURES)
        X = None if kind == models.TEXTS else self.encode(texts, meta.get("feature_set"))
        est, meta = self._estimator(name, None if X is None else int(X.shape[1]))
        labels = meta["label_names"]
        P = models.predict_scores(est, models.model_input(kind, X, texts), len(labels))
        thr = np.asarray(meta["thresholds"]) if meta.get("thresholds") else meta.get("threshold", 0.5)
        pos = self.metrics["models"][name].get("positive")  # binary data: the positive class at its tuned threshold
        return {"model": name, "labels": labels, "probabilities": P,
                "predicted": predict_labels(P, meta["problem_type"], pos["threshold"] if pos else thr,
                                            int(pos["index"]) if pos else None),
                "thresholds": None if np.ndim(thr) == 0 else dict(zip(labels, map(float, thr))), "positive": pos}

    def encode(self, texts: list[str], pooling: str | None = None) -> np.ndarray:
        """Features of `texts` made exactly as the cache's (same encoder, weights, settings); float32."""
        manifest = self.manifest
        pooling = pooling or manifest.get("pooling", "cls")
        if pooling not in self._extractors:
            from probekit.stages.extract.engine import loading

            enc, tokenizer, model, device = self._load_encoder()
            self._extractors[pooling] = loading.make_extractor(enc, tokenizer, model, device, poolings=[pooling])
        arrays, _ = self._extractors[pooling].encode(texts)
        return np.asarray(arrays[pooling], dtype=np.float32)

    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            self._manifest = read_manifest(features_dir(self.path))  # its own checksum checked
        return self._manifest

    def _meta(self, name: str) -> dict:
        """What models/<name>.json says the model reads (input kind, feature set); {} for old runs."""
        if name not in self._metas:
            meta_path = self.path / MODELS_DIRNAME / f"{name}.json"
            self._metas[name] = read_sidecar(meta_path) if meta_path.is_file() else {}
        return self._metas[name]

    def _estimator(self, name: str, hidden_size: int | None):
        """The fitted model, checked against the run (classify.persist) on its first load only."""
        if name not in self._estimators:
            manifest = self.manifest
            expect = {"model_id": manifest.get("model_id"), "model_revision": manifest.get("model_revision"),
                      "max_length": manifest.get("max_length"), "label_names": manifest["label_names"]}
            if hidden_size is not None:
                expect.update(feature_set=self._meta(name).get("feature_set"), hidden_size=hidden_size)
            self._estimators[name] = load_model(self.path, name, expect=expect)
        return self._estimators[name]

    def _load_encoder(self):
        """The run's encoder, loaded once; refused when its weights are no longer the cache's."""
        if self._encoder is None:
            from probekit.core.config import EncoderSection
            from probekit.stages.extract.engine import loading

            enc = self._encoder_section(EncoderSection)
            manifest = self.manifest
            path, local = loading.resolve_model(enc)
            _, revision = loading.model_identity(enc, path, local)
            if revision != manifest.get("model_revision"):
                raise ProbekitError(
                    f"[encoder] model={enc.model!r} now resolves to revision {revision}, but the run's features were "
                    f"made with {manifest.get('model_revision')}; its models do not fit these weights. "
                    "Re-run make extract.")
            device = loading.pick_device(enc.device)
            tokenizer, model = loading.load_encoder(enc, path, local, device,
                                                   dtype=manifest.get("compute_dtype", "float32"),
                                                   quantize=manifest.get("quantize", "none"))
            self._encoder = (enc, tokenizer, model, device)
        return self._encoder

    def _encoder_section(self, section_type):
        """The [encoder] settings the features were made with, from the (checksummed) manifest; its
        recorded identity fields (model_id, max_length, pooling) must agree with them."""
        manifest, where = self.manifest, features_dir(self.path) / "manifest.json"
        raw = manifest.get("config", {}).get("encoder") if isinstance(manifest.get("config"), dict) else None
        if not isinstance(raw, dict):
            raise ProbekitError(f"{where}: no [encoder] settings under 'config'; run 'make extract' again.")
        try:
            enc = section_type(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items()})
        except (TypeError, ValueError) as e:
            raise ProbekitError(f"{where}: its [encoder] settings are not valid ({' '.join(str(e).split())}); "
                                "run 'make extract' again.") from None
        for key, value in (("model_id", enc.model), ("max_length", enc.max_length), ("pooling", enc.pooling)):
            if key in manifest and manifest[key] != value:
                raise ProbekitError(f"{where}: {key}={manifest[key]!r} but its config says {value!r}; the manifest "
                                    "was edited. Run 'make extract' again.")
        return enc

    def _predict_finetuned(self, texts: list[str], name: str) -> dict:
        """The fine-tuned encoder (``<run>/<name>/``) reads the texts itself (imports torch); thresholds are
        classify's."""
        entry = self.metrics["models"][name]
        if name not in self._finetuned:
            from probekit.stages.extract.finetune import FinetunedModel

            self._finetuned[name] = FinetunedModel(self.path, folder=self.path / name)
        tuned = self._finetuned[name]
        if entry.get("run_key") != tuned.result.get("run_key"):
            raise ProbekitError(f"{self.path / METRICS_NAME}: its {name!r} entry was scored for another "
                                f"fine-tuned model than the one in {name}/; run 'make classify' again.")
        P = tuned.predict_proba(texts)
        return {"model": name, "labels": self.labels, "probabilities": P,
                "predicted": predict_entry(P, self.problem_type, entry), "thresholds": entry.get("thresholds"),
                "positive": entry.get("positive")}


def load_run(path: str | Path) -> Run:
    """A finished run (``<artifacts>/<name>/`` with metrics.json), ready for :meth:`Run.predict`."""
    return Run(path)


def predict(run_dir: str | Path, texts: list[str], model: str | None = None) -> dict:
    """One-off :meth:`Run.predict` (loads the run, and its encoder when needed, on every call)."""
    return load_run(run_dir).predict(texts, model)


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
