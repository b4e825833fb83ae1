"""What each speed lever of the default DDPM buys, side by side in one process (not a test).

    python bench/levers.py [--steps 15] [--warmup 3] [--rounds 2] [--compile] [--variants NAME ...] [--precision auto]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python bench/levers.py     # as on an AVX2-only CPU

Times one training step (forward, backward, clipping, optimiser, EMA: the plain loop of
``train_throughput.py``) of the shipped default DDPM and of variants that each change one
thing (or two): the network of experiment=ddpm_24ch (24/48/48 channels) and the others tried
for the default (16 channels at 28x28 and 32/32 or 48/48 below, the latter also with
batch 48; 12/36/48), half the batch, no self-attention in the 7x7 blocks (the middle block keeps
its own), both, the network of dgmlab 0.1, its upsampling convolutions, 2x2 patches, the
channels-last layout, a non-foreach Adam, and bf16 autocast, each in fp32 and in the precision
``auto`` picks. Times are per optimiser
step, and a run takes ``trainer.max_steps`` of them at any batch size.
Variants run in turn, ``--rounds`` times, each keeping its best round; the last line
gives every variant's step time over the default's (> 1: slower than the default).
``--compile`` adds ``torch.compile`` of the network, with its compile time. Inductor keeps what it
compiled in its cache on disk (``TORCHINDUCTOR_CACHE_DIR``, default under /tmp), so a second
process compiles the same network faster: run ``--compile --variants default`` twice to see both
compile times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import plain_step  # noqa: E402

import _common as bench  # noqa: E402


def network(base: int, mults: str, **more: str) -> list[str]:
    """Overrides for a U-Net of ``base`` channels times ``mults`` (e.g. "[1,2,2]")."""
    extra = [f"model.network.{key}={value}" for key, value in more.items()]
    return [f"model.network.base_channels={base}", f"model.network.channel_mults={mults}", *extra]


HALF_BATCH, NO_7X7_ATTENTION = ["dataset.batch_size=32"], ["model.network.attention_resolutions=[]"]
BASE_24_NETWORK = network(24, "[1,2,2]")  # experiment=ddpm_24ch's network (ddpm_nov2026 before 0.2.0)
VARIANTS = {  # name: (config overrides, precision: None = the one measured)
    "default": ([], None),
    "base_24_mults_122": (BASE_24_NETWORK, None),
    "base_16_mults_122": (network(16, "[1,2,2]"), None),  # a default tried before the current one (0.27M)
    "base_16_mults_133": (network(16, "[1,3,3]"), None),
    "base_16_mults_133_batch_48": (network(16, "[1,3,3]") + ["dataset.batch_size=48"], None),
    "base_12_mults_134": (network(12, "[1,3,4]"), None),
    "batch_32": (HALF_BATCH, None),
    "no_attention_at_7x7": (NO_7X7_ATTENTION, None),
    "batch_32_no_attention_at_7x7": (HALF_BATCH + NO_7X7_ATTENTION, None),
    "v01_network": (network(32, "[1,2,2]", narrow_upsample="false"), None),
    "v01_network_narrow_upsample": (network(32, "[1,2,2]"), None),
    "patch_2x2_48ch": (network(48, "[1,2]", patch_size=2), None),
    "channels_last": (["model.network.channels_last=true"], None),
    "adam_not_foreach": (["model.optimizer.foreach=false"], None),
    "bf16_autocast": ([], "bf16-mixed"),
}


def compiled_step(cfg, precision: str, splits):
    """The default step with ``torch.compile`` on the network; returns (step, compile seconds)."""
    step = plain_step(cfg, precision, splits, compile_network=True)
    start = time.perf_counter()
    step()  # the first call compiles forward and backward
    return step, time.perf_counter() - start


def measure(precision: str, args, splits) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (overrides, forced) in VARIANTS.items():
            if name not in args.variants or (forced and forced == precision):
                continue  # the same as "default" in that precision
            cfg = bench.compose("train", overrides)
            step = plain_step(cfg, forced or precision, splits)
            seconds = bench.seconds_per_call(step, args.warmup, args.steps)
            best[name] = min(best.get(name, float("inf")), seconds)
            print(f"  {bench.short(precision)} {name:30s} {seconds * 1000:8.1f} ms/step", flush=True)
    if args.compile:
        step, compile_seconds = compiled_step(bench.compose("train"), precision, splits)
        best["torch_compile"] = bench.seconds_per_call(step, args.warmup, args.steps)
        best["torch_compile_seconds_to_compile"] = compile_seconds
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--precision", default="auto", choices=["auto", "32-true", "bf16-mixed"])
    bench.add_json_arg(parser, "levers")
    args = parser.parse_args()
    cpu = bench.describe_cpu()
    bench.print_cpu(cpu)
    splits = bench.mnist_5k_splits()
    results, rows, ratios = {}, [], {}
    args.variants = ["default", *(v for v in args.variants if v != "default")]  # the ratios' reference
    for precision in bench.precisions_to_measure(args.precision):
        times = results[precision] = measure(precision, args, splits)
        suffix = "" if precision == bench.auto_precision().precision else f"_{bench.short(precision)}"
        for name, seconds in times.items():
            if name.endswith("_seconds_to_compile"):
                rows.append([bench.short(precision), name, f"{seconds:.1f} s", ""])
                continue
            rows.append([bench.short(precision), name, f"{seconds * 1000:.1f}", f"{seconds / times['default']:.2f}"])
            if name != "default":
                ratios[f"{name}{suffix}"] = seconds / times["default"]
    print()
    print(bench.markdown_table(["precision", "variant", "ms/step", "time vs default"], rows))
    bench.write_json(
        args.json, {"cpu": cpu, "args": vars(args) | {"json": str(args.json)}, "seconds_per_step": results}
    )
    print(bench.ratio_line(ratios))


if __name__ == "__main__":
    main()
