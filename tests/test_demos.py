"""The lecture's pictures: each demo command writes a PNG."""

from __future__ import annotations

import pytest
from PIL import Image

from dgmlab.demos import DEMOS, main


def test_every_demo_writes_a_png(tmp_path):
    paths = main(["all", "--out", str(tmp_path)])
    assert len(paths) == len(DEMOS)
    for path in paths:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 150


@pytest.mark.slow
def test_the_samplers_picture_draws_the_same_seeds_with_every_sampler(tmp_path, monkeypatch):
    from dgmlab import demos
    from dgmlab.sampling import generate

    from conftest import TINY_DDPM, run_script

    run_dir = tmp_path / "run"
    result = run_script(
        "train.py",
        *TINY_DDPM,
        "schedule.timesteps=100",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = []

    def recording_generate(model, *args, options=None, **kwargs):
        images = generate(model, *args, options=options, **kwargs)
        drawn.append((options.sampler, options.steps, images))
        return images

    monkeypatch.setattr("dgmlab.sampling.generate", recording_generate)  # the real sampling, recorded
    from matplotlib.figure import Figure

    titles = []
    suptitle = Figure.suptitle
    monkeypatch.setattr(Figure, "suptitle", lambda fig, text, **kw: titles.append(text) or suptitle(fig, text, **kw))
    path = demos.sampler_comparison(tmp_path, run_dir / "checkpoints" / "last.ckpt", num_samples=4)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 600  # six panels
    assert titles == ["ddpm on mnist_5k: seed 0, images 0..3"]  # the model, not the checkpoint's path
    assert [(s, n) for s, n, _ in drawn] == [(s, n or 100) for s, n in demos.SAMPLER_SETTINGS]  # resolved: T = 100
    assert all(images.shape == (4, 1, 28, 28) for *_, images in drawn)
    ddim_100, ddim_20 = drawn[1][2], drawn[2][2]
    assert (ddim_100.int() - ddim_20.int()).abs().float().mean() < 40  # the same x_T: related images
