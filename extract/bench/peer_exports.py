"""Exports of sentence-transformers' ONNX and OpenVINO peers, made offline and cached (``extract.bench.peers``).

Each export goes to ``<cache_dir>/<peer>-<key>/``, a sentence-transformers model folder (the source
folder's configs and tokenizer plus ``onnx/`` or ``openvino/``), written in a temporary folder and
renamed when complete; the key hashes the weights, the peer, the library versions and (static int8)
the calibration texts, so a rerun loads the export instead of making it again.

* ONNX fp32: ``SentenceTransformer(path, backend="onnx")`` (optimum's exporter), saved;
* ONNX int8: ``export_dynamic_quantized_onnx_model`` with the config of this CPU's widest int8 ISA;
* OpenVINO fp32: ``SentenceTransformer(path, backend="openvino")``, saved;
* OpenVINO int8: ``export_static_quantized_openvino_model``'s recipe (optimum-intel's OVQuantizer, NNCF
  post-training static int8, saved by sentence-transformers' own helper under its file name), calibrated
  on given texts rather than its default Hub data set (glue/sst2), which an offline machine cannot load.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from probekit.core.errors import ProbekitError

logger = logging.getLogger(__name__)

VERSIONED = ("sentence-transformers", "transformers", "torch", "optimum", "optimum-onnx", "onnxruntime",
             "optimum-intel", "openvino", "nncf")
ONNX_FILE = "onnx/model.onnx"
OV_FILE = "openvino/openvino_model.xml"
OV_INT8_SUFFIX = "qint8_quantized"  # export_static_quantized_openvino_model's default file suffix
CALIBRATION_MAX = 300  # export_static_quantized_openvino_model's default number of calibration samples


def library_versions() -> dict:
    """The installed versions of the libraries that export and run the peers (absent ones left out)."""
    out = {}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def onnx_quantization_isa() -> str:
    """The sentence-transformers dynamic-quantisation config for this CPU: its widest int8 ISA."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64"
    try:
        flags = next((line.split(":", 1)[1].split() for line in
                      Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines() if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


@functools.lru_cache(maxsize=8)
def _weights_digest(path: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    for f in sorted(Path(path).glob("*.safetensors")) + [Path(path) / "config.json"]:
        if f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()


def _key(path: Path, *parts: str) -> str:
    """A short hash of the model's weights and config, the library versions and `parts`."""
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(path.glob("*.safetensors")))
    h = hashlib.sha256(_weights_digest(str(path), stamp).encode())
    h.update(repr(sorted(library_versions().items())).encode())
    for p in parts:
        h.update(p.encode())
    return h.hexdigest()[:12]


@contextmanager
def _staged(final: Path) -> Iterator[Path]:
    """A temporary folder beside `final`, renamed to it when the block completes, removed if it fails."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():  # another run finished the same export first
            shutil.rmtree(tmp)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy_configs(src: Path, dst: Path) -> None:
    """The sentence-transformers folder's configs and tokenizer, without any weights or exports."""
    shutil.copytree(src, dst, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("onnx", "openvino", "*.safetensors", "*.bin", "*.onnx", "*.xml"))


def load_st(folder, backend: str, max_length: int | None = None, **model_kwargs):
    """``SentenceTransformer(folder)`` on `backend` from local files, on the CPU, truncating at `max_length`."""
    from sentence_transformers import SentenceTransformer

    kwargs = {"backend": backend} if backend != "torch" else {}
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True, model_kwargs=model_kwargs or None,
                                **kwargs)
    if max_length:
        model.max_seq_length = min(max_length, model.max_seq_length)
    return model


def _export_fp32(path: Path, cache_dir: Path, backend: str, file: str) -> Path:
    """sentence-transformers' own export of the model folder `path` to `backend` (exported once, then reused)."""
    final = cache_dir / f"st_{backend}-{_key(path, backend)}"
    if not (final / file).is_file():
        logger.info("bench peers: exporting %s to %s -> %s", path, backend, final)
        with _staged(final) as tmp:
            load_st(path, backend, None).save_pretrained(str(tmp))
    return final


def export_onnx(path: Path, cache_dir: Path) -> Path:
    """The fp32 ONNX export of the model folder `path`."""
    return _export_fp32(path, cache_dir, "onnx", ONNX_FILE)


def export_openvino(path: Path, cache_dir: Path) -> Path:
    """The OpenVINO IR export (fp32 weights) of the model folder `path`."""
    return _export_fp32(path, cache_dir, "openvino", OV_FILE)


def export_onnx_int8(path: Path, cache_dir: Path, isa: str | None = None) -> tuple[Path, str]:
    """sentence-transformers' dynamic int8 quantisation of the ONNX export; (folder, file in it)."""
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    isa = isa or onnx_quantization_isa()
    fp32 = export_onnx(path, cache_dir)
    final = cache_dir / f"st_onnx_int8-{_key(path, 'onnx_int8', isa)}"
    # sentence-transformers names it model_<weights dtype>_<isa>.onnx: qint8, or quint8 for avx2
    found = sorted(final.glob(f"onnx/model_*int8_{isa}.onnx"))
    if not found:
        logger.info("bench peers: dynamic int8 quantisation (%s) of %s -> %s", isa, fp32, final)
        with _staged(final) as tmp:
            _copy_configs(fp32, tmp)
            export_dynamic_quantized_onnx_model(load_st(fp32, "onnx", None, file_name=ONNX_FILE), isa, str(tmp))
        found = sorted(final.glob(f"onnx/model_*int8_{isa}.onnx"))
    return final, found[0].relative_to(final).as_posix()


def export_openvino_int8(path: Path, cache_dir: Path, calibration_texts: list[str]) -> tuple[Path, str]:
    """Static int8 quantisation of the OpenVINO export, as ``export_static_quantized_openvino_model``
    does it, but calibrated on `calibration_texts` (at most 300, each its own unpadded sample) instead
    of its default Hub data set, which an offline machine cannot load; (folder, file in it).
    """
    import datasets
    from optimum.intel.openvino import OVConfig, OVQuantizationConfig, OVQuantizer
    from sentence_transformers.backend import save_or_push_to_hub_model

    texts = [t for t in calibration_texts if t.strip()][:CALIBRATION_MAX]
    if not texts:
        raise ProbekitError("bench peers: st_openvino_int8 needs calibration texts; none were given.")
    fp32 = export_openvino(path, cache_dir)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    final = cache_dir / f"st_openvino_int8-{_key(path, 'openvino_int8', digest)}"
    file = f"openvino/openvino_model_{OV_INT8_SUFFIX}.xml"
    if not (final / file).is_file():
        logger.info("bench peers: static int8 quantisation of %s on %d texts -> %s", fp32, len(texts), final)
        model = load_st(fp32, "openvino", None, file_name=OV_FILE)
        encoded = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
        calibration = datasets.Dataset.from_dict(dict(encoded))
        config = OVQuantizationConfig(num_samples=len(texts))
        ov_config = OVConfig(quantization_config=config)
        quantizer = OVQuantizer.from_pretrained(model.transformers_model)
        with _staged(final) as tmp:
            _copy_configs(fp32, tmp)
            save_or_push_to_hub_model(
                export_function=lambda save_dir: quantizer.quantize(calibration, save_directory=save_dir,
                                                                    ov_config=ov_config),
                export_function_name="export_static_quantized_openvino_model", config=ov_config.quantization_config,
                model_name_or_path=str(tmp), file_suffix=OV_INT8_SUFFIX, backend="openvino", model=model)
    return final, file
