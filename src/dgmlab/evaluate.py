"""Scores from files: ``python -m dgmlab.evaluate ...`` (config: conf/evaluate.yaml).

- ``samples=DIR/samples.npz dataset=NAME features=lenet|inception``: FID and KID of the samples
  against the data set's val (or train: ``split=train``) images, printed and written to
  ``DIR/samples_metrics_<features>.json`` (named after the input file) with the settings used. The same feature networks, cache and
  KID estimator as the training callback, so the numbers are the same.
- ``val ckpt=PATH`` (or ``'ckpt=[A,B]'``): each checkpoint's validation metrics (``val/loss``,
  ``val/elbo``, ...) over the whole val split of its own data set, as ``train.py`` logs them.
- ``nll ckpt=PATH`` (or ``'ckpt=[A,B]'``): the likelihood bound of each checkpoint on its own
  data set's val split, in nats per image and bits/dim, as one table; written to
  ``<run dir>/eval/nll_<split>_<checkpoint name>.json``.
"""

from __future__ import annotations

import json
import logging
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import hydra
import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from .core.errors import ConfigError, choice, positive_int, reports_user_errors
from .core.precision import autocast
from .core.progress import configure as configure_progress
from .core.trust import trusting
from .data.sources import class_interleaved
from .lit import load_model, read_checkpoint
from .metrics import KIDSettings, build_feature_net, check_feature_settings, load_or_compute_reference, score_features
from .metrics.nll import model_nll
from .metrics.reference import SPLITS
from .run.layout import RunDir
from .run.startup import quiet_libraries
from .sampling import resolve_device, resolve_job_precision

log = logging.getLogger(__name__)
TASKS = ("fid", "nll", "val")


def evaluate(cfg: DictConfig):
    configure_progress(cfg.progress)
    choice(cfg.task, "task", TASKS)
    with trusting(cfg.trust_config):
        return {"fid": evaluate_samples, "nll": evaluate_nll, "val": evaluate_val}[cfg.task](cfg)


# --- FID / KID of a samples file -------------------------------------------------------------------
def load_samples(path: str | Path, dataset: DictConfig) -> torch.Tensor:
    """samples.npz -> uint8 (N, C, H, W), checked against the shape of ``dataset``'s images."""
    path = Path(path)
    where = f"samples={str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file; pass the samples.npz that sample.py wrote")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "samples" not in archive.files:
                raise ConfigError(
                    f"{where} has no array 'samples' (found {archive.files}); pass a samples.npz written by sample.py"
                )
            samples = archive["samples"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(
            f"{where} is not a readable .npz file ({type(e).__name__}: {e}); write it again with sample.py"
        ) from None
    if samples.dtype != np.uint8 or samples.ndim != 4:
        raise ConfigError(f"{where}: 'samples' must be uint8 N x H x W x C, got {samples.dtype} {samples.shape}")
    expected = (dataset.image_size, dataset.image_size, dataset.channels)
    if samples.shape[1:] != expected:
        raise ConfigError(
            f"{where} holds images of shape {samples.shape[1:]} (H, W, C) but dataset={dataset.name} "
            f"has {expected}; pass the data set the model was trained on (dataset=...)"
        )
    if len(samples) < 2:
        raise ConfigError(f"{where} holds {len(samples)} image(s); FID needs at least 2 (sample.py n=...)")
    return torch.from_numpy(samples).permute(0, 3, 1, 2).contiguous()


def evaluate_samples(cfg: DictConfig) -> dict:
    """FID and KID of ``cfg.samples`` against ``cfg.dataset``'s ``cfg.split`` images."""
    if not cfg.samples:
        raise ConfigError("samples is required: pass samples=PATH/samples.npz (written by sample.py)")
    choice(cfg.split, "split", SPLITS)
    check_feature_settings(cfg.features, cfg.eval.inception_weights, setting_name="features")
    path = Path(cfg.samples)
    out = path.with_name(f"{path.stem}_metrics_{cfg.features}.json")  # one result per input file
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"{out} already exists; pass overwrite=true to replace it")
    samples = load_samples(path, cfg.dataset)

    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    feature_net = build_feature_net(
        cfg.features,
        splits=datamodule.splits,
        dataset_name=cfg.dataset.name,
        cache_dir=cfg.eval.cache_dir,
        inception_weights=cfg.eval.inception_weights,
        lenet=OmegaConf.to_container(cfg.eval.lenet),
        log=log.info,
    )
    split = getattr(datamodule.splits, cfg.split)
    reference = load_or_compute_reference(
        split, cfg.dataset.name, cfg.split, feature_net, cfg.eval.cache_dir, log=log.info
    )
    scores = score_features(feature_net(samples).numpy(), reference, KIDSettings(**cfg.eval.kid))
    result = {
        **asdict(scores),
        "samples": str(path.resolve()),
        "features": feature_net.identity,
        "feature_details": feature_net.details,
        "dataset": cfg.dataset.name,
        "split": cfg.split,
        "reference_cache": str(reference.path),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"FID {scores.fid:.4f}   KID {scores.kid_mean:.5f} +- {scores.kid_std:.5f}   ({scores.num_samples} samples vs "
        f"{scores.num_reference} {cfg.dataset.name} {cfg.split} images, {feature_net.identity}) -> {out}"
    )
    return result


# --- NLL of checkpoints ----------------------------------------------------------------------------
def checkpoint_paths(ckpt) -> list[Path]:
    if ckpt is None:
        raise ConfigError("ckpt is required: pass ckpt=PATH (or 'ckpt=[A.ckpt,B.ckpt]' for one table)")
    paths = [Path(p) for p in (ckpt if isinstance(ckpt, (list, ListConfig)) else [ckpt])]
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"ckpt={str(p)!r}: no such file; pass the path of a .ckpt written by train.py")
    return paths


def evaluate_val(cfg: DictConfig) -> list[dict]:
    """The validation step of each checkpoint in ``cfg.ckpt`` over its data set's whole val split."""
    quiet_libraries()  # no tips, banners or deprecation notes around the numbers
    paths = checkpoint_paths(cfg.ckpt)
    device = resolve_device(cfg.device)
    precision = resolve_job_precision(cfg.val.precision, device, setting="val.precision")
    rows = []
    for path in paths:
        model, run_cfg = load_model(path)
        trainer = L.Trainer(
            accelerator=device.type,
            devices=1,
            precision=precision,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=1.0,
        )
        (metrics,) = trainer.validate(model, datamodule=instantiate(run_cfg.dataset), verbose=False)
        step = read_checkpoint(path, setting="ckpt").get("global_step")
        metrics = {k: float(v) for k, v in metrics.items()}
        rows.append({"ckpt": str(path), "step": step, "precision": precision, **metrics})
        print(f"{path} (step {step}): " + ", ".join(f"{k} {v:.5g}" for k, v in metrics.items()), flush=True)
    return rows


def evaluate_nll(cfg: DictConfig) -> list[dict]:
    """The likelihood bound of every checkpoint in ``cfg.ckpt``, printed as one table."""
    settings = cfg.nll
    choice(settings.split, "nll.split", SPLITS)
    paths = checkpoint_paths(cfg.ckpt)
    outputs = [RunDir.of_checkpoint(p).eval / f"nll_{settings.split}_{p.stem}.json" for p in paths]
    for out in outputs:
        if out.exists() and not cfg.overwrite:
            raise ConfigError(f"{out} already exists; pass overwrite=true to replace it")
    device = resolve_device(cfg.device)
    precision = resolve_job_precision(settings.precision, device, setting="nll.precision")
    rows = []
    for path, out in zip(paths, outputs):
        model, run_cfg = load_model(path)
        model = model.to(device)
        images, dataset_name = split_images(run_cfg, settings.split, settings.max_images)
        print(f"{path}: {type(model).__name__} on {len(images)} {dataset_name} {settings.split} images ...", flush=True)
        result = model_nll(
            model, images, settings.batch_size, settings.seed, settings.iw_samples, lambda: autocast(device, precision)
        )
        row = {
            **asdict(result),
            "run": run_cfg.get("task_name", ""),
            "ckpt": str(path),
            "dataset": dataset_name,
            "split": settings.split,
            "precision": precision,
            "seed": settings.seed,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(row, indent=2) + "\n")
        rows.append(row)
    print(nll_table(rows))
    return rows


def split_images(run_cfg: DictConfig, split: str, max_images: int | None) -> tuple[torch.Tensor, str]:
    """The uint8 images of the checkpoint's own data set split; with ``max_images``, the first of them
    in the class-interleaved order (every class in proportion)."""
    datamodule = instantiate(run_cfg.dataset)
    datamodule.setup()
    images = getattr(datamodule.splits, split).images
    if max_images is not None:
        positive_int(max_images, "nll.max_images")
        labels = getattr(datamodule.splits, split).labels
        images = images[class_interleaved(labels)[:max_images]] if split == "train" else images[:max_images]
    return images, run_cfg.dataset.name


def nll_table(rows: list[dict]) -> str:
    """A markdown table of the bounds."""
    lines = [
        "| run | model | bound | data | NLL (nats/image) | bits/dim | comparable | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = "yes" if r["comparable"] else "no (not a probability of 8-bit pixels)"
        lines.append(
            f"| {r['run']} | {r['model']} | {r['bound']} | {r['dataset']} {r['split']}, {r['num_images']} images | "
            f"{r['nats']:.2f} | {r['bits_per_dim']:.4f} | {note} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def _task_from_first_word(argv: list[str]) -> list[str]:
    """``python -m dgmlab.evaluate nll ckpt=...`` reads as ``task=nll ckpt=...``."""
    if len(argv) > 1 and argv[1] in TASKS:
        return [argv[0], f"task={argv[1]}", *argv[2:]]
    return argv


def main() -> None:
    @hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
    @reports_user_errors
    def run(cfg: DictConfig) -> None:
        evaluate(cfg)

    sys.argv = _task_from_first_word(sys.argv)
    run()


if __name__ == "__main__":
    main()
