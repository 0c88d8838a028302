"""``precision=auto``: the compute dtype a run uses, decided from the hardware it runs on.

bfloat16 pays where the hardware multiplies bf16 matrices natively: on a CPU with AVX512-BF16 or AMX the
matrix products of an update run ~2× faster than in float32 (``docs/benchmarks.md``). A CPU without those
instructions emulates bf16 and gains nothing. On a GPU our update is launch-bound and bf16 autocast measured
slower than float32 (1.09–1.60× on an H100), so ``auto`` keeps float32 there. The resolved value, not
``auto``, is what a run's ``config.yaml`` records.
"""
from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["PRECISIONS", "UNRECORDED_PRECISION", "cpu_flags", "native_cpu_bfloat16", "resolve_precision"]

#: what the ``precision`` key accepts
PRECISIONS = ("float32", "bfloat16", "auto")
#: what a run recorded before the ``precision`` key existed computed in (a resumed ``auto`` run keeps it)
UNRECORDED_PRECISION = "float32"
#: CPU flags (Linux ``/proc/cpuinfo``) of native bf16 matrix products
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty where ``/proc/cpuinfo`` cannot be read, as off Linux).

    Examples:
        >>> isinstance(cpu_flags(), set)
        True
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def native_cpu_bfloat16(flags: set[str] | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX).

    Examples:
        >>> native_cpu_bfloat16({"avx2", "avx512f", "avx512_bf16"}), native_cpu_bfloat16({"avx2"})
        (True, False)
    """
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_FLAGS)


def resolve_precision(precision: str, device: str | torch.device = "cpu", flags: set[str] | None = None) -> str:
    """``float32`` or ``bfloat16``: the value itself, or for ``auto`` the dtype this device computes fastest.

    Args:
        precision: ``float32``, ``bfloat16`` or ``auto``.
        device: the learner's device (``cpu``, ``cuda[:i]``).
        flags: CPU flags (default: this machine's); for tests.

    Examples:
        >>> resolve_precision("auto", "cpu", flags={"avx512_bf16"}), resolve_precision("auto", "cpu", flags=set())
        ('bfloat16', 'float32')
        >>> resolve_precision("auto", "cuda"), resolve_precision("bfloat16", "cuda")  # auto: float32 on a GPU
        ('float32', 'bfloat16')
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if torch.device(device).type == "cpu" and native_cpu_bfloat16(flags):
        return "bfloat16"
    return "float32"
