"""The machine under ``make bench-extract``, and the matmul ceiling its shares of peak are taken against.

* :func:`describe` reads what the machine reports: the CPU's model name, vendor and family, the
  logical cores this process may use, the ISA flags that matter to a CPU encoder, and a clock;
  from ``/proc/cpuinfo`` (Linux), else ``platform.processor()`` with no flags. It reports what the
  file says: a VM may hide a flag the chip has.
* :func:`theoretical_peaks`: cores x clock x FLOP per cycle of the widest ISA listed; null where
  the clock or the ISA's rate is unknown (no guess). The clock is ``cpuinfo_max_freq`` or else
  /proc/cpuinfo's ``cpu MHz``, which is the listed clock: a turbo clock can run above it, so a
  measured peak may exceed this one.
* :func:`ceiling`: the peak one precision's shares are taken against: the highest of every
  matmul sample in the run and of the best GFLOP/s any method of that precision reached, so no
  share exceeds 100% however the machine's load moved between the samples and the method's run;
  ``peak_source`` says which it was. Pure Python: no torch.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
MAX_FREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def parse_cpuinfo(text: str) -> dict:
    """The first processor block of /proc/cpuinfo: model name, vendor, family, MHz, flags of interest."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    mhz = fields.get("cpu MHz")
    try:
        family = int(fields["cpu family"]) if "cpu family" in fields else None
    except ValueError:
        family = None
    return {"cpu": fields.get("model name") or None, "vendor": fields.get("vendor_id") or None, "family": family,
            "listed_mhz": float(mhz) if mhz else None, "flags": {f: f in flags for f in FLAGS},
            "flags_listed": bool(flags)}


def describe(cpuinfo: Path = CPUINFO, max_freq: Path = MAX_FREQ) -> dict:
    """The machine as it reports itself (see the module docstring)."""
    try:
        info = parse_cpuinfo(cpuinfo.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        info = parse_cpuinfo("")
    if not info["cpu"]:
        info["cpu"] = platform.processor() or platform.machine() or "unknown"
    try:
        ghz, source = int(max_freq.read_text().strip()) / 1e6, str(max_freq)
    except (OSError, ValueError):
        ghz, source = (info["listed_mhz"] / 1e3, f"{cpuinfo} cpu MHz") if info["listed_mhz"] else (None, None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    info.pop("listed_mhz")
    return {**info, "logical_cores": cores, "clock_ghz": round(ghz, 3) if ghz else None, "clock_source": source,
            "machine": platform.machine()}


def flop_per_cycle(m: dict) -> dict:
    """Per core and cycle, fp32 and bf16 FLOPs of the widest ISA listed (None where unknown).

    AVX2: two 256-bit FMA units, 8 lanes x 2 FLOPs x 2 = 32. AVX-512: 64 on Intel (two 512-bit FMA
    units), 32 on AMD Zen 4 (family 25: it runs 512-bit ops on its 256-bit units in two halves),
    64 on Zen 5 (family 26). avx512_bf16's dot product does twice the fp32 rate; AMX 1024 bf16
    FLOPs per cycle.
    """
    flags = m["flags"]
    fp32 = None
    if flags.get("avx512f"):
        amd = (m.get("vendor") or "") == "AuthenticAMD"
        fp32 = (32 if m.get("family") == 25 else 64 if (m.get("family") or 0) >= 26 else None) if amd else 64
    elif flags.get("avx2"):
        fp32 = 32
    bf16 = 1024 if flags.get("amx_bf16") else 2 * fp32 if fp32 and flags.get("avx512_bf16") else None
    return {"float32": fp32, "bfloat16": bf16}


def theoretical_peaks(m: dict) -> dict:
    """GFLOP/s = logical cores x clock (GHz) x FLOP per cycle, per precision; None where not known."""
    rates = flop_per_cycle(m)
    if not m.get("clock_ghz"):
        return {p: None for p in rates}
    return {p: round(m["logical_cores"] * m["clock_ghz"] * r, 1) if r else None for p, r in rates.items()}


def ceiling(samples: list[float], methods: dict[str, float]) -> dict:
    """The peak a precision's shares are taken against: max(every sample, every method's GFLOP/s).

    Args:
        samples: matmul GFLOP/s measured through the run in this precision.
        methods: name -> the GFLOP/s it reached (useful or executed, the higher).
    Returns:
        {"gflops", "sampled_max", "peak_source"}: "sampled", or "bounded by <method>" when a method
        ran faster than every sample (the samples met a busier machine than the method did).
    """
    sampled = max(samples) if samples else 0.0
    best = max(methods.items(), key=lambda kv: kv[1], default=(None, 0.0))
    if best[0] is not None and best[1] > sampled:
        return {"gflops": best[1], "sampled_max": sampled, "peak_source": f"bounded by {best[0]}"}
    return {"gflops": sampled, "sampled_max": sampled, "peak_source": "sampled"}


def header(m: dict) -> str:
    """One line naming the CPU for the bench's table."""
    on = [f for f in FLAGS if m["flags"].get(f)]
    flags = ", ".join(on) if on else ("none of " + ", ".join(FLAGS) if m["flags_listed"] else "no flags listed")
    clock = f", {m['clock_ghz']:.2f} GHz listed" if m.get("clock_ghz") else ""
    return f"CPU: {m['cpu']}, {m['logical_cores']} logical cores{clock}; {flags}"
