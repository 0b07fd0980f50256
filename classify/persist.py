"""Save and load fitted models with skops (no pickle), refusing anything suspicious.

Each model is ``models/<name>.skops`` plus ``models/<name>.json``: the sha256 of the
.skops file and the feature space it was trained on (cache key, encoder, pooling,
dimension, label names). :func:`load_model` refuses a file whose checksum changed, one
whose feature space differs from the caller's, and any type outside an explicit list.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from probekit.core.errors import ProbekitError
from probekit.core.runfolder import MODELS_DIRNAME, name_the_file, sha256_file, write_json_atomic

# Beyond skops' defaults (numpy, scipy and scikit-learn estimators), the types our models
# hold: the fitted trees of the random forests, and hybrid_logreg's own estimator.
TRUSTED_TYPES = ["sklearn.tree._tree.Tree", "probekit.stages.classify.models.LogitFusion"]
# What must match between a saved model and the features it is asked to score.
FEATURE_SPACE_KEYS = ("model_id", "model_revision", "feature_set", "hidden_size", "max_length", "label_names")


def model_paths(run_dir: str | Path, name: str) -> tuple[Path, Path]:
    d = Path(run_dir) / MODELS_DIRNAME
    return d / f"{name}.skops", d / f"{name}.json"


def plain_vocabularies(model, _depth: int = 0) -> None:
    """Turn the numpy-int values of every fitted TF-IDF vocabulary in `model` into plain ints.

    skops writes each numpy scalar as a node of its own: GoEmotions' 58k-term vocabulary took
    372 s to save that way (loaded machine) and 2.6 s with plain ints. Lookups are unchanged.
    """
    if _depth > 6:
        return
    vocab = getattr(model, "vocabulary_", None)
    if isinstance(vocab, dict):
        model.vocabulary_ = {term: int(i) for term, i in vocab.items()}
    parts = [step for _, step in getattr(model, "steps", [])]
    parts += [getattr(model, a) for a in ("text_model_", "feature_model_") if hasattr(model, a)]
    parts += [t for _, t in getattr(model, "transformer_list", [])]  # a word + char_wb FeatureUnion
    for part in parts:
        plain_vocabularies(part, _depth + 1)


def save_model(model, run_dir: str | Path, name: str, meta: dict) -> Path:
    """Write the model (temporary name, then rename) and its sidecar JSON."""
    path, meta_path = model_paths(run_dir, name)
    import skops
    import skops.io as sio  # imported here: skops imports torch whenever it is installed

    path.parent.mkdir(parents=True, exist_ok=True)
    plain_vocabularies(model)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        sio.dump(model, tmp)
        os.replace(tmp, path)
    except BaseException as e:  # a full disk (skops' zip writer) or an interrupt: no partial file stays
        tmp.unlink(missing_ok=True)
        name_the_file(e, path)
        raise
    write_json_atomic(meta_path, {**meta, "file": path.name, "sha256": sha256_file(path),
                                  "skops_version": skops.__version__})
    return path


def load_model(run_dir: str | Path, name: str, expect: dict | None = None):
    """Load a saved model after checking its checksum, feature space and types.

    Args:
        expect: feature-space fields (see FEATURE_SPACE_KEYS) the caller's features have.

    Raises:
        FileNotFoundError: no such model in the run.
        ProbekitError: tampered file, other feature space, or an untrusted type.
    """
    path, meta_path = model_paths(run_dir, name)
    if not path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"{path} (and {meta_path.name}) not found: run 'make classify' for this run first.")
    meta = read_sidecar(meta_path)
    if sha256_file(path) != meta.get("sha256"):
        raise ProbekitError(
            f"{path}: its sha256 differs from the one recorded in {meta_path.name} when it was saved; the file "
            "was modified or replaced. Refusing to load it; run 'make classify' to rebuild it."
        )
    for key in FEATURE_SPACE_KEYS:
        if expect is not None and key in expect and expect[key] != meta.get(key):
            raise ProbekitError(
                f"{path}: trained on {key}={meta.get(key)!r}, but these features have {key}={expect[key]!r}; "
                "a model only scores features of the space it was trained on. Use the run that made the features."
            )
    import skops.io as sio

    try:
        untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
        if untrusted:
            raise ProbekitError(f"{path}: holds types outside the trusted list ({', '.join(untrusted)}); "
                                "refusing to load it.")
        return sio.load(path, trusted=TRUSTED_TYPES), meta
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, json.JSONDecodeError, EOFError) as e:
        # skops files are zip archives with a schema: anything else (a pickle renamed .skops, a
        # truncated or hand-made archive) is refused without being run.
        raise ProbekitError(f"{path}: not a skops model file this probekit can read ({type(e).__name__}); "
                            "refusing to load it. Run 'make classify' to rebuild it.") from None


def read_sidecar(meta_path: Path) -> dict:
    """models/<name>.json, checked to be a JSON object; one line when it is not."""
    try:
        meta = json.loads(Path(meta_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{meta_path} not found: run 'make classify' for this run first.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProbekitError(f"{meta_path}: not valid JSON ({type(e).__name__}); run 'make classify' again.") from None
    if not isinstance(meta, dict):
        raise ProbekitError(f"{meta_path}: holds a JSON {type(meta).__name__}, not the model's record; "
                            "run 'make classify' again.")
    return meta
