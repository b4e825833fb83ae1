"""Numeric precision chosen from the hardware: ``precision: auto`` everywhere a precision is set.

bf16 mixed precision pays only where the hardware computes in bf16 natively: a CUDA GPU that
supports it, or a CPU with AVX512-BF16 or AMX. Elsewhere (AVX2-only x86 such as AMD Zen 3 or
Intel before Sapphire Rapids, ARM laptops) bf16 is emulated and several times *slower* than fp32
(measured in docs/devices.md), so ``auto`` picks fp32 there, and 16-mixed on GPUs without bf16.

The CPU check honours ``ATEN_CPU_CAPABILITY`` and ``ONEDNN_MAX_CPU_ISA``: with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` a bf16 CPU behaves like an AVX2-only one,
and ``auto`` then picks fp32 as it would there.
"""

from __future__ import annotations

import contextlib
import os
import timeit
import warnings
from dataclasses import dataclass

import torch

from .errors import ConfigError

# Lightning's names for the precisions we resolve to or accept, and the short forms of four of them.
LONG_NAMES = ("32-true", "bf16-mixed", "16-mixed", "64-true", "bf16-true", "16-true")
CANONICAL = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed", "64": "64-true"} | {n: n for n in LONG_NAMES}
CHOICES = ("auto", *CANONICAL)


@dataclass(frozen=True)
class Hardware:
    """What the precision choice depends on. Tests build one to force each branch."""

    kind: str  # "cpu" | "cuda" | "mps"
    name: str  # e.g. "CPU AVX2" or the GPU's name
    native_bf16: bool  # bf16 arithmetic runs at least as fast as fp32
    native_fp16: bool = False  # fp16 tensor cores (CUDA)


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # one of Lightning's names: "32-true", "bf16-mixed", "16-mixed", ...
    reason: str

    def __str__(self) -> str:
        return f"precision: {self.precision} ({self.reason})"


def onednn_allows_bf16(isa: str) -> bool:
    """Whether a ``ONEDNN_MAX_CPU_ISA`` value still admits bf16 instructions (unset: no limit)."""
    isa = isa.strip().upper()
    return (
        isa in ("", "ALL", "DEFAULT") or "BF16" in isa or "AMX" in isa or isa.startswith(("AVX10", "AVX512_CORE_FP16"))
    )


def cpu_hardware() -> Hardware:
    """The CPU as PyTorch will use it: its kernel level (AVX2, AVX512, ...) and whether it has
    AVX512-BF16 or AMX, both as limited by the environment variables above."""
    capability = torch.backends.cpu.get_cpu_capability()
    has_bf16_units = bool(
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )
    native = (
        capability.startswith("AVX512")
        and has_bf16_units
        and onednn_allows_bf16(os.environ.get("ONEDNN_MAX_CPU_ISA", ""))
    )
    units = " with AVX512-BF16/AMX" if native else ""
    return Hardware("cpu", f"{capability}{units}", native)


def detect_hardware(accelerator: str = "auto") -> Hardware:
    """The device a job with ``accelerator`` (auto | cpu | gpu | cuda | mps) will run on."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return Hardware(
            "cuda", torch.cuda.get_device_name(0), torch.cuda.is_bf16_supported(including_emulation=False), True
        )
    if accelerator in ("auto", "gpu", "mps") and torch.backends.mps.is_available():
        return Hardware("mps", "Apple MPS", False)
    return cpu_hardware()


def resolve_precision(
    requested: str | int = "auto",
    accelerator: str = "auto",
    hardware: Hardware | None = None,
    setting: str = "trainer.precision",
) -> PrecisionChoice:
    """``auto`` -> bf16-mixed where bf16 is native, 16-mixed on GPUs without it, 32-true otherwise.

    An explicit precision is kept (in Lightning's long form); an explicit bf16 on a CPU that
    emulates it runs, with a warning that says how much slower it is and what to set.
    """
    requested = str(requested)
    if requested not in CHOICES:
        raise ConfigError(f"{setting}={requested!r} is unknown; choose one of {list(CHOICES)}")
    hardware = hardware or detect_hardware(accelerator)
    if requested != "auto":
        precision = CANONICAL[requested]
        if precision.startswith("bf16") and hardware.kind == "cpu" and not hardware.native_bf16:
            warnings.warn(
                f"{setting}={requested} on a CPU without native bf16 ({hardware.name}): bf16 is emulated here, "
                f"and a bf16 matrix product just ran {measure_bf16_slowdown():.0f}x slower than fp32 on it. "
                f"Set {setting}=auto (or 32-true) for fp32.",
                stacklevel=2,
            )
        return PrecisionChoice(precision, f"set by {setting}")
    device = "GPU" if hardware.kind == "cuda" else hardware.kind.upper()
    if hardware.native_bf16:
        return PrecisionChoice("bf16-mixed", f"{device} has native bf16: {hardware.name}")
    if hardware.native_fp16:
        return PrecisionChoice("16-mixed", f"{device} has no bf16 but fast fp16: {hardware.name}")
    return PrecisionChoice("32-true", f"{device} has no native bf16: {hardware.name}")


def measure_bf16_slowdown() -> float:
    """Time of a 256 x 256 bf16 matrix product over the fp32 one (best of 3, after one to warm up)."""

    def best(dtype):
        a = torch.randn(256, 256).to(dtype)
        return min(timeit.repeat(lambda: a @ a, number=1, repeat=4)[1:])

    return best(torch.bfloat16) / best(torch.float32)


def autocast(device: torch.device | str, precision: str):
    """The forward-pass context for a resolved precision: autocast for the mixed ones, else none."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(CANONICAL.get(str(precision)))
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else contextlib.nullcontext()
