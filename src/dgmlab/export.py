"""A trained model to share: ``python -m dgmlab.export ckpt=CKPT out=DIR`` (config: conf/export.yaml).

Writes the Hugging Face Hub's layout (``lit/pretrained.py`` says what each file holds): the weights
the model samples with as ``model.safetensors``, the model's config, a sample grid and a model card.
``python sample.py ckpt=DIR`` and ``load_model("DIR")`` draw from it the same images as from the
checkpoint, and loading it unpickles nothing. A training checkpoint stays the file to resume from.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save as safetensors_bytes

from . import __version__
from .core.errors import ConfigError, reports_user_errors
from .core.files import file_sha256, write_atomically
from .core.images import save_grid
from .core.trust import trusting
from .lit import AUTOENCODER_KEY, load_model, read_checkpoint
from .lit.pretrained import CARD_FILE, CONFIG_FILE, SAMPLES_FILE, WEIGHTS_FILE
from .run.layout import RunDir
from .run.startup import count_parameters
from .runs import last_logged
from .sampling import generate

# Hub ids of the data sets dgmlab's configs name (the card's ``datasets``); others keep their name.
HUB_DATASETS = {
    "mnist_5k": "ylecun/mnist",
    "mnist": "ylecun/mnist",
    "fashion_mnist": "zalando-datasets/fashion_mnist",
    "cifar10": "uoft-cs/cifar10",
}


def export(cfg: DictConfig) -> Path:
    """Write ``cfg.out`` from the checkpoint ``cfg.ckpt``; see the module docstring."""
    if not cfg.out:
        raise ConfigError("out is required: pass out=DIR, the folder to write the model into")
    ckpt, out = Path(cfg.ckpt), Path(cfg.out)
    taken = [name for name in (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE) if (out / name).exists()]
    if taken and not cfg.overwrite:
        raise ConfigError(f"out={str(out)!r} already holds {', '.join(taken)}; choose another out= or overwrite=true")
    with trusting(cfg.trust_config):
        model, run_cfg = load_model(ckpt)
    checkpoint = read_checkpoint(ckpt)
    images = generate(model, cfg.n, cfg.seed, cfg.n, torch.device("cpu"), "32-true", options=model.sampling)

    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.sampling_state_dict().items()}
    write_atomically(out / WEIGHTS_FILE, safetensors_bytes(weights, metadata={"format": "pt", "library": "dgmlab"}))
    # config.yaml: the model's config (its sampler defaults in model.sampling), a latent model's
    # autoencoder config, and what the weights are.
    config: dict[str, Any] = {"model": OmegaConf.to_container(run_cfg.model, resolve=True)}
    if AUTOENCODER_KEY in checkpoint:  # the folder itself holds the autoencoder (load_model)
        config["model"]["autoencoder_ckpt"] = None
        config["autoencoder"] = checkpoint[AUTOENCODER_KEY]
    config["weights"] = {"file": WEIGHTS_FILE, "sha256": file_sha256(out / WEIGHTS_FILE, length=64)}
    config["source"] = {"checkpoint": ckpt.name, "step": checkpoint.get("global_step"), "dgmlab": __version__}
    write_atomically(out / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    save_grid(images, out / SAMPLES_FILE)
    write_atomically(out / CARD_FILE, model_card(model, run_cfg, checkpoint, ckpt, cfg))
    print(
        f"wrote {out}: {WEIGHTS_FILE} ({(out / WEIGHTS_FILE).stat().st_size / 2**20:.1f} MiB), {CONFIG_FILE}, "
        f"{SAMPLES_FILE}, {CARD_FILE}; sample from it: python sample.py ckpt={out}"
    )
    return out


def fid_results(run: RunDir) -> list[dict[str, Any]]:
    """The FID files ``python -m dgmlab.evaluate`` wrote beside the run's samples, oldest first."""
    results = []
    for path in sorted(run.samples.glob("*/*_metrics_*.json"), key=lambda p: p.stat().st_mtime):
        try:
            results.append({**json.loads(path.read_text()), "folder": path.parent.relative_to(run.root).as_posix()})
        except (OSError, ValueError):
            continue
    return results


def model_card(model, run_cfg: DictConfig, checkpoint: dict, ckpt: Path, cfg: DictConfig) -> str:
    """README.md in the Hub's layout: a YAML header, then what the model is, its samples and metrics."""
    run, kind, dataset, sampling = RunDir.of_checkpoint(ckpt), type(model).__name__, run_cfg.dataset, model.sampling
    net = model.net if model.has_ema else model  # the network it samples with
    diffusion, fids = sampling is not None, fid_results(run)
    task = "unconditional-image-generation"
    header = {
        "library_name": "dgmlab",
        "pipeline_tag": task,
        "tags": ["dgmlab", "pytorch", "diffusion" if diffusion else "vae", kind.lower(), task],
        "datasets": [HUB_DATASETS.get(dataset.name, dataset.name)],
        "metrics": ["fid"] if fids else [],
    }
    sampler = f"{sampling.sampler} with {sampling.steps} steps" if diffusion else "one decoder pass"
    weights = "; the weights are the EMA weights it samples with" if diffusion else ""
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).strip(),
        "---",
        "",
        f"# {kind} on {dataset.name}",
        "",
        f"A {kind} trained with dgmlab: a {type(net).__name__} of {count_parameters(net):,} parameters, trained for "
        f"{checkpoint.get('global_step')} optimiser steps (batch size {OmegaConf.select(run_cfg, 'dataset.batch_size')})"
        f" on `{dataset.name}` images of {dataset.channels} x {dataset.image_size} x {dataset.image_size}. It samples "
        f"with {sampler} (its config's `model.sampling`){weights}.",
        "",
        f"![{cfg.n} samples]({SAMPLES_FILE})",
        "",
        f"{SAMPLES_FILE}: {cfg.n} samples, seed {cfg.seed}, on a CPU in fp32.",
        "",
        "## Use",
        "",
        "```bash",
        "python sample.py ckpt=THIS_FOLDER n=64 seed=0     # grid.png and samples.npz in THIS_FOLDER/samples/",
        "```",
        "",
        "```python",
        "from dgmlab.lit import load_model",
        "",
        'model, config = load_model("THIS_FOLDER")',
        "```",
        "",
        f"`{WEIGHTS_FILE}` holds tensors only and `{CONFIG_FILE}` is YAML: loading runs no code from the folder,",
        f"and `{CONFIG_FILE}` records the sha256 of the weights, so an edited or truncated file is refused.",
        "",
        "## Training",
        "",
        "```bash",
        shlex.join(["python", "train.py", *run.stored_overrides()]),
        "```",
        "",
        "## Metrics",
        "",
        *metric_lines(last_logged(run.metrics_file, "val/loss"), fids),
    ]
    return "\n".join(lines) + "\n"


def metric_lines(val_loss: float | None, fids: list[dict[str, Any]]) -> list[str]:
    lines = [] if val_loss is None else [f"- val/loss {val_loss:.4f}, the run's last (its csv/metrics.csv)"]
    lines += [
        f"- FID {r['fid']:.4f}, KID {r['kid_mean']:.5f} ({r['features']} features, {r['num_samples']} samples "
        f"of `{r['folder']}` against {r['num_reference']} {r['dataset']} {r['split']} images): "
        f"`python -m dgmlab.evaluate samples={r['folder']}/samples.npz dataset={r['dataset']} "
        f"features={r['features']} split={r['split']}`"
        for r in fids
    ]
    return lines or ["None were recorded in the run directory."]


def main() -> None:
    import hydra

    hydra.main(version_base="1.3", config_path="conf", config_name="export")(reports_user_errors(export))()


if __name__ == "__main__":
    main()
