"""FID and KID during training: ``python train.py eval=fid eval.every_n_steps=500 ...``.

Every ``every_n_steps`` optimiser steps (and when training ends), the model draws
``num_samples`` images with the configured sampler (``eval.sampler``, ``eval.steps``, ...: the
SamplingOptions settings, null: the model's own; checked against the schedule at setup, before
training). Image i comes from its own seed (seed, i)
(``dgmlab.core.seeding``), so it is the image ``sample.py seed=S`` draws; the images are drawn in
batches of ``batch_size``, under DDP rank r draws batches r, r + W, r + 2W, ..., and the features
are all-gathered and put back in image order, so the scores are the same on 1 or many devices and
``sample.py`` + ``python -m dgmlab.evaluate`` give them again from files. Real statistics come from
the cache (:mod:`dgmlab.metrics.reference`). Logged: ``val/fid``, ``val/kid_mean``,
``val/kid_std``, ``val/fid_num_samples``, ``val/fid_sampling_steps`` and the FID again under a
name that carries the settings (``val/fid_<features>_<settings_tag>_n<N>``, e.g.
``val/fid_lenet_dpmpp_2m20_eta1_n1000``); every score is
also appended, with all its settings, to ``<dirpath>/fid.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..core.errors import ConfigError, choice, positive_int
from ..core.precision import CHOICES as PRECISIONS
from ..core.precision import autocast, resolve_precision
from ..core.progress import track
from ..diffusion import settings_tag
from ..metrics import (
    SPLITS,
    FeatureNet,
    KIDSettings,
    ReferenceFeatures,
    build_feature_net,
    check_feature_settings,
    load_or_compute_reference,
    score_features,
)
from ..sampling import draw, image_batches
from .periodic import EveryNSteps

log = logging.getLogger(__name__)
SCORE_LINE = (
    "step {step}: FID {fid:.4f}, KID {kid_mean:.5f} +- {kid_std:.5f} ({num_samples} samples, {sampler}, {features})"
)


class FIDCallback(EveryNSteps):
    """Scores generated samples with FID and KID every ``every_n_steps`` steps (see the module doc)."""

    def __init__(
        self,
        *,
        every_n_steps: int,
        num_samples: int,
        batch_size: int,
        seed: int,
        split: str,
        features: str,
        inception_weights: str | None,
        cache_dir: str,
        kid: dict,
        lenet: dict,
        dirpath: str | None,
        at_train_end: bool,
        precision: str = "auto",
        **sampling: Any,
    ):
        """Every argument comes from ``eval.*`` (conf/eval/fid.yaml), where each is explained; ``sampling``:
        the SamplingOptions settings (sampler, steps, eta, ...; sampling/overrides.yaml)."""
        positive_int(every_n_steps, "eval.every_n_steps")
        positive_int(num_samples, "eval.num_samples", minimum=2)
        positive_int(batch_size, "eval.batch_size")
        choice(split, "eval.split", SPLITS)
        check_feature_settings(features, inception_weights)  # e.g. missing Inception weights: before any training
        if str(precision) not in PRECISIONS:
            raise ConfigError(f"eval.precision={precision!r} is unknown; choose one of {list(PRECISIONS)}")
        self.requested_precision, self.precision = precision, None
        super().__init__(every_n_steps, at_train_end)
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.features, self.split, self.overrides = features, split, sampling
        self.options = None  # the model's sampling options with eval.sampler, eval.steps, ..., resolved at setup
        self.inception_weights, self.cache_dir, self.lenet = inception_weights, cache_dir, dict(lenet)
        self.kid = KIDSettings(**kid)
        self.dirpath = Path(dirpath) if dirpath else None
        self.feature_net: FeatureNet | None = None
        self.reference: ReferenceFeatures | None = None
        self.dataset_name: str | None = None

    # --- preparation (before training) -----------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.feature_net is not None:
            return
        self.resolve_sampling(pl_module)
        chosen = resolve_precision(self.requested_precision, pl_module.device.type, setting="eval.precision")
        self.precision = chosen.precision
        log.info("eval: sampling for FID in %s", chosen)
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "splits"):
            raise ConfigError("eval=fid needs dgmlab's ImageDataModule (the real images come from its splits)")
        datamodule.setup(stage)
        self.dataset_name = datamodule.name
        # Rank 0 trains/caches the feature net and the real statistics before the barrier, the others read them after.
        if not trainer.is_global_zero:
            trainer.strategy.barrier("fid_setup")
        self.feature_net = build_feature_net(
            self.features,
            splits=datamodule.splits,
            dataset_name=datamodule.name,
            cache_dir=self.cache_dir,
            inception_weights=self.inception_weights,
            lenet=self.lenet,
            log=log.info,
        )
        if trainer.is_global_zero:
            split = getattr(datamodule.splits, self.split)
            self.reference = load_or_compute_reference(
                split, datamodule.name, self.split, self.feature_net, self.cache_dir, log=log.info
            )
            trainer.strategy.barrier("fid_setup")

    def resolve_sampling(self, pl_module) -> None:
        """The sampling options, checked once against the model's schedule (None: one decoder pass)."""
        self.options = pl_module.sampling_with("eval.", **self.overrides)

    # --- the evaluation (when: EveryNSteps) -------------------------------------------------------
    def at_step(self, trainer, pl_module, step: int) -> dict:
        start = time.perf_counter()
        features = self.sample_features(trainer, pl_module)
        seconds = time.perf_counter() - start
        record = None
        if trainer.is_global_zero:
            scores = score_features(features.numpy(), self.reference, self.kid)
            sampler, steps = (self.options.sampler, self.options.steps) if self.options is not None else ("model", None)
            record = {
                "step": step,
                **asdict(scores),
                "features": self.feature_net.identity,
                "sampler": sampler,
                "sampling_steps": steps,
                "eta": self.options.eta_used if self.options is not None else None,
                "seed": self.seed,
                "dataset": self.dataset_name,
                "split": self.split,
                "seconds": round(seconds, 2),
            }
        record = trainer.strategy.broadcast(record, src=0)
        self._publish(trainer, record)
        return record

    def sample_features(self, trainer, pl_module) -> torch.Tensor:
        """Features of all ``num_samples`` images in image order, on every rank: rank r draws batches r, r + W, ...
        into rows of ``batch_size`` (zero-padded); the all-gathered rows, read across the ranks, are in order."""
        batches = image_batches(self.num_samples, self.batch_size)
        world = trainer.world_size
        features = torch.zeros(math.ceil(len(batches) / world), self.batch_size, self.feature_net.num_features)
        mine = track(
            batches[trainer.global_rank :: world], "FID: sampling", "batch", enabled=trainer.is_global_zero, leave=False
        )
        self.feature_net.network.to(pl_module.device)
        for row, indices in enumerate(mine):
            with autocast(pl_module.device, self.precision):
                images = draw(pl_module, self.seed, indices, options=self.options)
            features[row, : len(indices)] = self.feature_net(images)
        if world > 1:
            features = trainer.strategy.all_gather(features.to(pl_module.device)).cpu().transpose(0, 1)
        return features.flatten(0, -2)[: self.num_samples]

    def _publish(self, trainer, record: dict) -> None:
        sampler, steps, count = record["sampler"], record["sampling_steps"], record["num_samples"]
        metrics = {"val/fid": record["fid"], "val/kid_mean": record["kid_mean"], "val/kid_std": record["kid_std"]}
        metrics["val/fid_num_samples"] = float(count)
        metrics[f"val/fid_{self.features}_{settings_tag(sampler, steps, record.get('eta'))}_n{count}"] = record["fid"]
        if steps is not None:
            metrics["val/fid_sampling_steps"] = float(steps)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=record["step"])
        if trainer.is_global_zero:
            log.info(SCORE_LINE.format_map(record))
            if self.dirpath is not None:
                self.dirpath.mkdir(parents=True, exist_ok=True)
                with open(self.dirpath / "fid.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
