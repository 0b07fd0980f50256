"""sentence-transformers' CPU backends as peers of probekit's extraction (``make bench-extract``).

What a user picks today to embed texts on a CPU, each built offline from the packaged model folder:

    st_torch          SentenceTransformer(path), torch fp32 (the bench's ratio_vs_st is against it)
    st_onnx           backend="onnx": exported by optimum to ONNX, run by onnxruntime, fp32
    st_openvino       backend="openvino": exported to OpenVINO IR, fp32 weights; OpenVINO picks the
                      inference precision (bf16 where the CPU has avx512_bf16 or AMX), recorded per peer
    st_onnx_int8      export_dynamic_quantized_onnx_model: int8 weights, activations quantised at run time,
                      the config of this CPU's ISA (avx512_vnni, avx512, avx2 or arm64)
    st_openvino_int8  export_static_quantized_openvino_model's recipe (NNCF post-training static int8),
                      calibrated on the bench's own texts instead of its default Hub data set (glue/sst2)

The exports are made once into a cache folder and reused (``extract.bench.peer_exports``). Each
peer is a callable ``texts -> (n, dim) float32`` and knows its padded tokens (sentence-transformers'
batches of 32, longest first).

The vector: ``pooling="mean"`` is sentence-transformers' own output (masked mean, then L2
normalisation: the cosine to another mean vector is unchanged by it); ``pooling="cls"`` is row 0 of
its token embeddings, the last layer's [CLS] as probekit's default pooling stores it (st_torch's
equals probekit float32's to cosine 1.0). A peer's ``min_cosine_vs_fp32`` compares it with st_torch's
vector of the same pooling: like with like, as probekit's dtypes are compared with probekit float32 on
[encoder] pooling. The pooling matters: on MiniLM, int8 moves the mean vector more than the [CLS] one
(500 GoEmotions texts, ONNX dynamic int8: min cosine 0.949 mean, 0.990 [CLS]), so a bench that scores
probekit on [CLS] scores the peers on [CLS] too.

Its packages are the ``peers`` extra (``pip install -e '.[peers]'``): optimum-onnx with
onnxruntime, optimum-intel with openvino and nncf; :func:`check_peers` names what is missing.
"""

from __future__ import annotations

import logging
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from probekit.core.errors import ProbekitError
from probekit.core.sections_tools import PEERS
from probekit.stages.extract.bench.baselines import SentenceTransformersEncode
from probekit.stages.extract.bench.peer_exports import (
    CALIBRATION_MAX,
    ONNX_FILE,
    OV_FILE,
    export_onnx,
    export_onnx_int8,
    export_openvino,
    export_openvino_int8,
    load_st,
    onnx_quantization_isa,
)

logger = logging.getLogger(__name__)

PRECISION = {"st_torch": "fp32", "st_onnx": "fp32", "st_openvino": "fp32",
             "st_onnx_int8": "int8", "st_openvino_int8": "int8"}
BACKEND = {"st_torch": "torch", "st_onnx": "onnx", "st_onnx_int8": "onnx",
           "st_openvino": "openvino", "st_openvino_int8": "openvino"}
# import names each backend needs -> the distribution that provides it
NEEDS = {"torch": {"sentence_transformers": "sentence-transformers"},
         "onnx": {"sentence_transformers": "sentence-transformers", "onnxruntime": "onnxruntime",
                  "optimum.onnxruntime": "optimum-onnx"},
         "openvino": {"sentence_transformers": "sentence-transformers", "openvino": "openvino", "nncf": "nncf",
                      "optimum.intel": "optimum-intel", "datasets": "datasets"}}
POOLINGS = ("mean", "cls")


def _present(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent is missing
        return False


def missing_packages(names=PEERS) -> list[str]:
    """The distributions that the peers `names` need and this environment lacks (none imported)."""
    out: list[str] = []
    for name in names:
        for module, dist in NEEDS[BACKEND[name]].items():
            if not _present(module) and dist not in out:
                out.append(dist)
    return out


def check_peers(names=PEERS) -> None:
    """Raise one line naming the missing packages and the extra to install, or return.

    Raises:
        ProbekitError: an unknown peer name, or a package the named peers need is not installed.
    """
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ProbekitError(f"bench peers: {unknown[0]!r} is not a peer; choose from {', '.join(PEERS)}.")
    missing = missing_packages(names)
    if missing:
        raise ProbekitError(f"bench peers {', '.join(names)} need {', '.join(missing)}, not installed: run "
                            "pip install -e '.[peers]' (or make bench-extract after adding it).")


class PeerEncode(SentenceTransformersEncode):
    """One peer: a sentence-transformers model on one backend; ``peer(texts)`` -> (n, dim) float32.

    Attributes:
        name, precision: the peer ("st_onnx", ...) and "fp32" or "int8".
        folder: the model folder it was loaded from (the export, or the packaged folder for st_torch).
        detail: what the report records: backend, file, threads, quantisation config, run precision.
    """

    def __init__(self, name: str, model, folder: str, pooling: str = "mean", detail: dict | None = None):
        self.name, self.model, self.folder, self.pooling = name, model, str(folder), pooling
        self.precision = PRECISION[name]
        self.detail = {"backend": BACKEND[name], "precision": self.precision, "pooling": pooling,
                       "max_seq_length": model.max_seq_length, **(detail or {})}

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.pooling == "mean":
            return np.asarray(self.model.encode(texts, show_progress_bar=False), dtype=np.float32)
        tokens = self.model.encode(texts, output_value="token_embeddings", show_progress_bar=False)
        return np.stack([np.asarray(t[0].float().cpu() if hasattr(t, "cpu") else t[0], dtype=np.float32)
                         for t in tokens])


def _ort_options(threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    return so


def _ov_config(threads: int | None, precision: str | None) -> dict:
    cfg = {"CACHE_DIR": ""}  # no compiled-blob cache beside the export: each run compiles (timed in warm-up)
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = str(threads)
    if precision:
        cfg["INFERENCE_PRECISION_HINT"] = precision
    return cfg


def _ov_precision(model) -> str | None:
    """The precision OpenVINO's CPU plugin runs the compiled model in (bf16 on CPUs with native bf16)."""
    ov = model.transformers_model
    try:
        ov.compile()
        hint = ov.request.get_property("INFERENCE_PRECISION_HINT")
        return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    except Exception:  # an OpenVINO without the property: the report says unknown
        return None


def build_peer(name: str, path, cache_dir, *, calibration_texts: list[str] | None = None,
               max_length: int | None = None, pooling: str = "mean", threads: int | None = None,
               ov_precision: str | None = None) -> PeerEncode:
    """Build one peer from the packaged model folder `path`, exporting into `cache_dir` when needed.

    Args:
        max_length: tokens per text (the bench's [encoder] max_length), capped at the model's own.
        pooling: "mean" (sentence-transformers' output) or "cls" (row 0 of its token embeddings).
        threads: intra-op threads of onnxruntime and OpenVINO (torch's are the caller's); None: theirs.
        ov_precision: OpenVINO's INFERENCE_PRECISION_HINT ("f32", "bf16"); None: its default.
        calibration_texts: st_openvino_int8's calibration data (the bench's texts).

    Raises:
        ProbekitError: an unknown name or pooling, a missing package (naming the extra), no calibration texts.
    """
    check_peers([name])
    if pooling not in POOLINGS:
        raise ProbekitError(f"bench peers: pooling={pooling!r} is not one of {', '.join(POOLINGS)}.")
    path, cache_dir = Path(path), Path(cache_dir)
    detail: dict = {}
    if name == "st_torch":
        folder, model = path, load_st(path, "torch", max_length)
    elif name in ("st_onnx", "st_onnx_int8"):
        if name == "st_onnx":
            folder, file = export_onnx(path, cache_dir), ONNX_FILE
        else:
            isa = onnx_quantization_isa()
            folder, file = export_onnx_int8(path, cache_dir, isa)
            detail["quantization"] = f"dynamic int8, {isa}"
        model = load_st(folder, "onnx", max_length, file_name=file, session_options=_ort_options(threads),
                        provider="CPUExecutionProvider")
        detail.update(file=file, threads=threads)
    else:
        if name == "st_openvino":
            folder, file = export_openvino(path, cache_dir), OV_FILE
        else:
            folder, file = export_openvino_int8(path, cache_dir, calibration_texts or [])
            n = min(sum(1 for t in calibration_texts or [] if t.strip()), CALIBRATION_MAX)
            detail["quantization"] = f"static int8 (NNCF), {n} texts"
        model = load_st(folder, "openvino", max_length, file_name=file, ov_config=_ov_config(threads, ov_precision))
        detail.update(file=file, threads=threads, inference_precision=_ov_precision(model))
    return PeerEncode(name, model, folder, pooling, detail)


def build_peers(names, path, cache_dir, **kwargs) -> dict[str, PeerEncode]:
    """name -> :func:`build_peer` for each of `names` (checked all at once first: one error line)."""
    names = list(names)
    check_peers(names)
    return {n: build_peer(n, path, cache_dir, **kwargs) for n in names}
