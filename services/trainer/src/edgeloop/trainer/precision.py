"""The trials' arithmetic: float32, or bfloat16 where the CPU computes it natively.

No TensorFlow here: the trainer process decides with it how many trials run at once
(:func:`min_cpus_per_trial`), the trials set Keras's policy with it
(:func:`edgeloop.trainer.model.set_training_precision`).
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("auto", "float32", "bfloat16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU flags with native bfloat16 arithmetic (oneDNN uses them; elsewhere it is emulated)."""
BFLOAT16_CPUS_PER_TRIAL = 2
"""CPUs a bfloat16 trial gets at least when the trainer fits trials to the CPUs.

Measured on a 2-vCPU VM (bench/README, "One bfloat16 trial at a time"): two bfloat16
trials at once took 5.2-5.6 s an epoch each, one alone on two threads 2.5-3.1 s, so the
pair trained no faster and held a second TensorFlow process (~0.5 GiB). float32 trials do
gain from running side by side there (one alone on two threads: 3.0-5.7 s an epoch), so
they keep one CPU each."""


def resolve_precision(precision: str, cpuinfo: str | None = None) -> str:
    """``float32`` or ``bfloat16`` for a requested precision on this machine's CPU.

    ``auto`` is bfloat16 where the CPU computes it natively (AMX or AVX512-BF16: an epoch
    costs about 1.5x less CPU) and float32 elsewhere. ``cpuinfo`` is /proc/cpuinfo's text.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "float32"
    flags = set(cpuinfo.split())
    return "bfloat16" if any(flag in flags for flag in BF16_CPU_FLAGS) else "float32"


def min_cpus_per_trial(precision: str, cpuinfo: str | None = None) -> int:
    """The fewest CPUs a trial of ``precision`` gets when trials are fitted to the CPUs.

    Judged on this machine's CPU: a cluster's worker nodes may differ, and each trial
    resolves ``auto`` again on its own node.
    """
    return BFLOAT16_CPUS_PER_TRIAL if resolve_precision(precision, cpuinfo) == "bfloat16" else 1
