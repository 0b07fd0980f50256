"""The bench's machine description, its ceiling of peak and its peer ratios (extract/bench/machine.py, report.py).

Pure functions on literal inputs: /proc/cpuinfo texts of three machines, dicts of GFLOP/s and texts/s.
"""

from __future__ import annotations

import numpy as np
import pytest

from probekit.stages.extract.bench import machine, report

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model name\t: Intel(R) Xeon(R) Platinum 8480+
cpu MHz\t\t: 2000.000
flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: a second block is not read
"""
AMD = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
cpu MHz\t\t: 2596.146
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni
"""
NO_FLAGS = """processor\t: 0
model name\t: Some CPU
"""


def test_cpuinfo_names_the_cpu_and_the_flags_it_lists():
    intel = machine.parse_cpuinfo(INTEL)
    assert intel["cpu"] == "Intel(R) Xeon(R) Platinum 8480+" and intel["vendor"] == "GenuineIntel"
    assert all(intel["flags"].values()) and intel["listed_mhz"] == 2000.0
    amd = machine.parse_cpuinfo(AMD)
    assert amd["cpu"] == "AMD EPYC" and amd["family"] == 25
    assert {f for f, on in amd["flags"].items() if on} == {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}
    bare = machine.parse_cpuinfo(NO_FLAGS)
    assert bare["cpu"] == "Some CPU" and not any(bare["flags"].values()) and not bare["flags_listed"]
    assert bare["listed_mhz"] is None and machine.parse_cpuinfo("")["cpu"] is None


def test_describe_reads_the_files_and_falls_back_without_them(tmp_path):
    (tmp_path / "cpuinfo").write_text(AMD)
    (tmp_path / "max_freq").write_text("3700000\n")  # kHz
    m = machine.describe(tmp_path / "cpuinfo", tmp_path / "max_freq")
    assert m["cpu"] == "AMD EPYC" and m["clock_ghz"] == 3.7 and m["clock_source"].endswith("max_freq")
    assert m["logical_cores"] >= 1
    listed = machine.describe(tmp_path / "cpuinfo", tmp_path / "none")  # no cpufreq: the listed clock
    assert listed["clock_ghz"] == 2.596 and "cpu MHz" in listed["clock_source"]
    elsewhere = machine.describe(tmp_path / "none", tmp_path / "none")  # no /proc/cpuinfo
    assert elsewhere["cpu"] and elsewhere["clock_ghz"] is None and not elsewhere["flags_listed"]
    assert machine.theoretical_peaks(elsewhere) == {"float32": None, "bfloat16": None}  # no clock: no guess
    assert machine.header(listed).startswith("CPU: AMD EPYC, ") and "avx512_bf16" in machine.header(listed)
    assert "no flags listed" in machine.header(elsewhere)


def test_the_theoretical_peak_uses_the_isa_s_flop_per_cycle():
    amd = {**machine.parse_cpuinfo(AMD), "logical_cores": 2, "clock_ghz": 2.5}
    # Zen 4 runs AVX-512 on 256-bit units: 32 fp32 FLOP per cycle, bf16 dot products twice that
    assert machine.theoretical_peaks(amd) == {"float32": 160.0, "bfloat16": 320.0}
    intel = {**machine.parse_cpuinfo(INTEL), "logical_cores": 2, "clock_ghz": 2.0}
    assert machine.theoretical_peaks(intel) == {"float32": 256.0, "bfloat16": 4096.0}  # AMX: 1024 per cycle
    avx2 = {**amd, "flags": {"avx2": True}}
    assert machine.flop_per_cycle(avx2) == {"float32": 32, "bfloat16": None}
    zen9 = {**amd, "family": 24}  # an AMD family whose AVX-512 rate this table does not know
    assert machine.theoretical_peaks(zen9) == {"float32": None, "bfloat16": None}


def test_a_method_faster_than_every_sample_bounds_the_ceiling_and_no_share_exceeds_one():
    assert machine.ceiling([150.0, 172.0], {"book": 40.0, "probekit float32": 120.0}) == {
        "gflops": 172.0, "sampled_max": 172.0, "peak_source": "sampled"}
    c = machine.ceiling([150.0, 172.0], {"book": 40.0, "probekit float32": 195.0})
    assert c == {"gflops": 195.0, "sampled_max": 172.0, "peak_source": "bounded by probekit float32"}
    # the run: 195 GFLOP/s against a burst peak of 172 printed 114%
    samples = {"float32": [150.0, 172.0], "bfloat16": [300.0], "float32_paired": {"probekit float32": [160.0]}}
    methods = {"probekit float32": {"precision": "float32", "gflops": 195.0, "executed_gflops": 170.0},
               "book": {"precision": "float32", "gflops": 40.0},
               "probekit bfloat16": {"precision": "bfloat16", "gflops": 280.0},
               "probekit int8": {"precision": "int8", "gflops": 250.0}}
    caps = report.ceilings(samples, methods)
    assert caps["float32"]["peak_source"] == "bounded by probekit float32" and caps["float32"]["gflops"] == 195.0
    assert caps["bfloat16"] == {"gflops": 300.0, "sampled_max": 300.0, "peak_source": "sampled",
                                "samples_of": "bfloat16"}
    assert caps["int8"]["peak_source"] == "bounded by probekit int8" and caps["int8"]["samples_of"] == "float32"
    for name, m in methods.items():
        assert m["gflops"] / caps[m["precision"]]["gflops"] <= 1.0, name


def test_the_summary_s_shares_stay_at_or_below_one_and_name_their_bound():
    lengths = np.array([10, 20, 30])
    X = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    seconds = {"probekit float32": [0.01, 0.02], "st_torch": [0.05], "st_onnx_int8": [0.02],
               "probekit int8": [0.015]}
    padded = {k: 60 for k in seconds}
    features = {"probekit float32": X, "st_torch": X, "st_onnx_int8": X + 0.01, "probekit int8": X}
    detail = {"st_torch": {"backend": "torch", "precision": "fp32"},
              "st_onnx_int8": {"backend": "onnx", "precision": "int8", "quantization": "dynamic int8, avx2"}}
    samples = {"float32": [1.0], "bfloat16": [2.0], "float32_paired": {}}
    r = report.summarise(3, lengths, samples, seconds, padded, features, 5e9, "float32", ["float32", "int8"],
                         peer_detail=detail)
    for e in [*r["peers"].values(), *r["probekit"].values()]:
        assert 0 < e["peak_fraction"] <= 1
    assert r["ceilings"]["float32"]["peak_source"] == "bounded by probekit float32"
    assert r["probekit"]["float32"]["peak_fraction"] == 1.0
    assert r["peers"]["st_onnx_int8"]["quantization"] == "dynamic int8, avx2"
    assert r["peers"]["st_torch"]["min_cosine_vs_fp32"] == 1.0 and r["peers"]["st_onnx_int8"]["min_cosine_vs_fp32"] < 1
    assert r["probekit"]["int8"]["best_peer"] == "st_onnx_int8"
    assert r["probekit"]["int8"]["ratio_vs_best_peer"] == pytest.approx(0.02 / 0.015, rel=1e-3)
    assert "st_onnx_int8" in report.format_table(r)


def test_ratio_vs_best_peer_takes_the_fastest_peer_of_the_same_precision():
    peers = {"st_torch": {"texts_per_s": 300.0}, "st_onnx": {"texts_per_s": 450.0},
             "st_openvino": {"texts_per_s": 420.0}, "st_onnx_int8": {"texts_per_s": 900.0},
             "st_openvino_int8": {"texts_per_s": 700.0}}
    assert report.best_peer(peers, "float32") == ("st_onnx", 450.0)
    assert report.best_peer(peers, "bfloat16") == ("st_onnx", 450.0)  # bf16 against the fp32 peers
    assert report.best_peer(peers, "int8") == ("st_onnx_int8", 900.0)  # int8 against the int8 ones only
    assert report.best_peer({"st_torch": {"texts_per_s": 1.0}}, "int8") == (None, None)
    assert report.precision_of("st_openvino", {"precision": "fp32", "inference_precision": "bf16"}) == "bfloat16"
    assert report.precision_of("st_openvino", {"precision": "fp32", "inference_precision": "f32"}) == "float32"
    assert report.precision_of("probekit int8") == "int8" and report.precision_of("book") == "float32"
