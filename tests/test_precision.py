"""precision: auto — each branch forced through a Hardware description, then the real jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from dgmlab.core.precision import Hardware, cpu_hardware, onednn_allows_bf16, resolve_precision

from conftest import TINY_DDPM, run_script

AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}

CPU_BF16 = Hardware("cpu", "AVX512 with AVX512-BF16/AMX", native_bf16=True)
CPU_AVX2 = Hardware("cpu", "AVX2", native_bf16=False)
GPU_BF16 = Hardware("cuda", "NVIDIA H100", native_bf16=True, native_fp16=True)
GPU_FP16 = Hardware("cuda", "Tesla V100", native_bf16=False, native_fp16=True)
APPLE = Hardware("mps", "Apple MPS", native_bf16=False)


@pytest.mark.parametrize(
    "hardware, expected, reason",
    [
        (CPU_BF16, "bf16-mixed", "CPU has native bf16: AVX512 with AVX512-BF16/AMX"),
        (CPU_AVX2, "32-true", "CPU has no native bf16: AVX2"),
        (GPU_BF16, "bf16-mixed", "GPU has native bf16: NVIDIA H100"),
        (GPU_FP16, "16-mixed", "GPU has no bf16 but fast fp16: Tesla V100"),
        (APPLE, "32-true", "MPS has no native bf16"),
    ],
)
def test_auto_follows_the_hardware(hardware, expected, reason):
    choice = resolve_precision("auto", hardware=hardware)
    assert choice.precision == expected
    assert reason in choice.reason and str(choice).startswith(f"precision: {expected} (")


def test_explicit_precision_is_kept_in_lightning_form():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning where bf16 is native, or for fp32
        assert resolve_precision("bf16", hardware=CPU_BF16).precision == "bf16-mixed"
        assert resolve_precision("32", hardware=CPU_AVX2).precision == "32-true"
        assert resolve_precision("16-mixed", hardware=GPU_FP16).precision == "16-mixed"


def test_explicit_bf16_on_an_emulating_cpu_runs_with_a_warning_that_says_what_to_set():
    with pytest.warns(UserWarning) as record:
        choice = resolve_precision("bf16-mixed", hardware=CPU_AVX2)
    assert choice.precision == "bf16-mixed"
    message = str(record[0].message)
    assert "emulated" in message and "slower than fp32" in message and "trainer.precision=auto" in message


def test_unknown_precision_names_the_setting():
    with pytest.raises(ValueError, match=r"sample\.precision='fp8'.*auto"):
        resolve_precision("fp8", hardware=CPU_AVX2, setting="sample.precision")


@pytest.mark.parametrize(
    "isa, allowed",
    [
        ("", True),
        ("ALL", True),
        ("AVX2", False),
        ("avx512_core", False),
        ("AVX512_CORE_BF16", True),
        ("AVX512_CORE_AMX", True),
        ("AVX2_VNNI", False),
    ],
)
def test_onednn_isa_limit(isa, allowed):
    assert onednn_allows_bf16(isa) is allowed


def test_cpu_detection_honours_the_avx2_environment():
    """Run in a fresh process: the kernel level is read once, when torch starts."""
    code = "from dgmlab.core.precision import cpu_hardware; h = cpu_hardware(); print(h.native_bf16, h.name)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **AVX2_ONLY}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "AVX2"]
    assert cpu_hardware().native_bf16 in (True, False)  # and detection works unforced, whatever this CPU is


def test_train_logs_the_choice_and_no_library_noise(tmp_path):
    run_dir = tmp_path / "run"
    env_before = dict(os.environ)
    os.environ.update(AVX2_ONLY)
    try:
        result = run_script(
            "train.py",
            *TINY_DDPM,
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "callbacks.sample_grid.num_samples=2",
            "dataset.batch_size=8",
            f"hydra.run.dir={run_dir}",
        )
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "precision: 32-true (CPU has no native bf16: AVX2)" in output
    assert f"run directory: {run_dir}" in output and "model: DDPM: UNet" in output
    for noise in ("Tip:", "GPU available", "LeafSpec", "Total params"):
        assert noise not in output
    # the bar is not a terminal here, so the run's progress is logged in steps of the whole run
    assert "step 2/2 (100%)" in output
