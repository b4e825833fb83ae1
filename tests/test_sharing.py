"""Models to share (docs/sharing.md): nothing a file names runs unless trusted, and an export in the
Hugging Face Hub's layout that samples as its checkpoint does. Each crafted file names
``crafted.touch`` (tests/crafted.py), which would write a marker file if it were ever built; every
entry point that loads a file is run for real (sample.py, train.py, python -m dgmlab.evaluate, export
and runs) and must refuse it in one line, exit 2, with no traceback and no marker."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch
import yaml

from dgmlab.core.trust import allowed_targets, foreign_targets
from dgmlab.lit import CONFIG_KEY, load_model

from conftest import TINY_DDPM, compose_train, run_program

TARGET = "crafted.touch"


def crafted_config(marker, where: str = "network") -> dict:
    """A run config whose model (or data set) names the marker-writing target, as a checkpoint holds it."""
    cfg = {"model": {"_target_": "dgmlab.lit.DDPM", "network": {"_target_": "dgmlab.nn.UNet"}}, "dataset": {}}
    if where == "network":
        cfg["model"]["network"] = {"_target_": TARGET, "path": str(marker)}
    elif where == "list":  # deep inside a list
        cfg["model"]["network"]["_args_"] = [1, {"inner": [{"_target_": TARGET, "path": str(marker)}]}]
    elif where == "interpolation":  # a target that only appears once interpolations are resolved
        cfg["evil"] = {"target": TARGET}
        cfg["model"]["network"] = {"_target_": "${evil.target}", "path": str(marker)}
    elif where == "dataset":
        cfg["dataset"] = {"_target_": TARGET, "path": str(marker)}
    return cfg


def crafted_checkpoint(tmp_path, where: str = "network"):
    marker = tmp_path / "marker"
    path = tmp_path / f"crafted_{where}.ckpt"
    torch.save({CONFIG_KEY: crafted_config(marker, where), "state_dict": {}, "global_step": 1}, path)
    return path, marker


def assert_refused(result, marker, source: str, key: str = "model.network._target_"):
    """One line naming the file, the key and the target, and the opt-in; exit 2; nothing built."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    assert source in lines[0] and key in lines[0] and TARGET in lines[0] and "trust_config=true" in lines[0], lines[0]
    assert not marker.exists()


# --- the allowlist ---------------------------------------------------------------------------------
def test_the_allowlist_is_what_the_shipped_configs_name():
    allowed = allowed_targets()
    assert {"dgmlab.lit.DDPM", "dgmlab.nn.UNet", "torch.optim.Adam", "lightning.pytorch.Trainer"} <= allowed
    assert not {"numpy.savetxt", "os.system", "torch.save", "builtins.eval"} & allowed
    for overrides in ([], ["experiment=latent_ddpm"], ["experiment=lecture_vae"], ["logger=wandb", "eval=fid"]):
        cfg = compose_train(overrides)
        assert foreign_targets(cfg) == [], overrides  # every shipped config passes


@pytest.mark.parametrize("where", ["network", "list", "interpolation"])
def test_sample_py_refuses_a_checkpoint_that_names_a_foreign_target(tmp_path, where):
    path, marker = crafted_checkpoint(tmp_path, where)
    result = run_program("sample.py", f"ckpt={path}", f"out={tmp_path / 'out'}", "n=2")
    key = {"network": "model.network._target_", "list": "model.network._args_[1].inner[0]._target_"}.get(where, "")
    assert_refused(result, marker, f"ckpt='{path}'", key)
    assert not (tmp_path / "out").exists()


def test_trust_config_builds_what_the_file_names_and_says_so(tmp_path):
    """The opt-in: the same crafted file does reach its target (so the refusals above are not vacuous)."""
    path, marker = crafted_checkpoint(tmp_path)
    result = run_program("sample.py", f"ckpt={path}", "n=2", "trust_config=true")
    assert marker.exists()
    assert f"trust_config=true: building what ckpt='{path}' names beyond dgmlab's own targets: " in result.stderr
    assert f"model.network._target_={TARGET}" in result.stderr


@pytest.mark.parametrize("task,where", [("nll", "network"), ("val", "network"), ("nll", "dataset")])
def test_evaluate_refuses_a_crafted_checkpoint(tmp_path, task, where):
    path, marker = crafted_checkpoint(tmp_path, where)
    result = run_program("dgmlab.evaluate", task, f"ckpt={path}")
    key = "dataset._target_" if where == "dataset" else "model.network._target_"
    assert_refused(result, marker, f"ckpt='{path}'", key)
    assert not (tmp_path / "eval").exists()


def crafted_run(tmp_path, overrides: list[str]):
    """A run directory with a last.ckpt whose stored overrides are ``overrides``."""
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    torch.save({"global_step": 1}, run_dir / "checkpoints" / "last.ckpt")
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return run_dir


def test_train_py_resume_refuses_stored_overrides_that_name_a_foreign_target(tmp_path):
    marker = tmp_path / "marker"
    run_dir = crafted_run(tmp_path, [f"model.network._target_={TARGET}", f"+model.network.path={marker}"])
    result = run_program("train.py", f"resume={run_dir}", "trainer.max_steps=1")
    assert_refused(result, marker, f"resume={run_dir} (its .hydra/overrides.yaml)")
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "checkpoints"]  # nothing written


def test_a_target_typed_on_the_command_line_is_the_users_own(tmp_path):
    marker = tmp_path / "marker"
    result = run_program(
        "train.py",
        f"model.network._target_={TARGET}",
        f"+model.network.path={marker}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "trainer.max_steps=1",
    )
    assert marker.exists() and "dgmlab's own targets" not in result.stderr


def crafted_vae_checkpoint(tmp_path):
    marker = tmp_path / "marker"
    config = {
        "model": {"_target_": "dgmlab.lit.VAE", "encoder": {"_target_": TARGET, "path": str(marker)}},
        "dataset": {"name": "mnist_5k", "channels": 1, "image_size": 28},
    }
    path = tmp_path / "vae.ckpt"
    torch.save({CONFIG_KEY: config, "state_dict": {}}, path)
    return path, marker


def test_autoencoder_ckpt_refuses_a_crafted_autoencoder(tmp_path):
    path, marker = crafted_vae_checkpoint(tmp_path)
    result = run_program(
        "train.py", "experiment=latent_ddpm", f"model.autoencoder_ckpt={path}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert_refused(result, marker, f"model.autoencoder_ckpt='{path}'", "model.encoder._target_")


def test_the_run_browser_builds_nothing_from_a_crafted_run_directory(tmp_path):
    from dgmlab import runs

    marker = tmp_path / "marker"
    for name in ("a", "b"):
        run_dir = tmp_path / "outputs" / name
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(
            f"model: !!python/object/apply:{TARGET} [{marker}]\nnetwork: {{_target_: {TARGET}, path: {marker}}}\n"
        )
    assert runs.main([str(tmp_path / "outputs")]) == 0  # listed, as broken
    code = runs.main([str(tmp_path / "outputs"), "--compare", "a", "b", "--out", str(tmp_path / "c.png")])
    assert code == 2 and not marker.exists()


# --- export ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny DDPM trained by the real train.py, and its export."""
    root = tmp_path_factory.mktemp("sharing")
    run_dir = root / "run"
    result = run_program(
        "train.py",
        *TINY_DDPM,
        f"hydra.run.dir={run_dir}",
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        "trainer.limit_val_batches=1",
        "callbacks.sample_grid.num_samples=4",
        "dataset.batch_size=16",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    out = root / "export"
    result = run_program("dgmlab.export", f"ckpt={ckpt}", f"out={out}", "n=16")
    assert result.returncode == 0, result.stderr[-3000:]
    return ckpt, out


def test_an_export_holds_the_hubs_files_and_a_card(trained):
    ckpt, out = trained
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.yaml", "model.safetensors", "samples.png"]
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["library_name"] == "dgmlab" and header["datasets"] == ["ylecun/mnist"] and "ddpm" in header["tags"]
    model, _ = load_model(ckpt)
    parameters = sum(p.numel() for p in model.net.parameters())
    assert f"a UNet of {parameters:,} parameters, trained for 20 optimiser steps" in card
    assert f"It samples with {model.sampling.sampler} with {model.sampling.steps} steps" in card
    assert "python train.py model=ddpm schedule.timesteps=20" in card and "val/loss" in card
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["sampling"]["sampler"] == model.sampling.sampler
    assert config["weights"]["sha256"] == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    assert config["source"] == {"checkpoint": "last.ckpt", "step": 20, "dgmlab": "0.1.0"}


def test_the_export_holds_the_ema_weights(trained):
    from safetensors.torch import load_file

    ckpt, out = trained
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    exported = load_file(out / "model.safetensors")
    assert not any(k.startswith("ema.") for k in exported)
    name = next(k for k in exported if k.startswith("net.") and k.endswith("weight"))
    assert torch.equal(exported[name], state["ema." + name.removeprefix("net.")])
    assert not torch.equal(exported[name], state[name])  # the training weights differ from the EMA's


def test_an_export_samples_bit_identically_to_its_checkpoint(trained, tmp_path):
    ckpt, out = trained
    drawn = {}
    for name, source in (("ckpt", ckpt), ("export", out)):
        result = run_program("sample.py", f"ckpt={source}", "n=6", "seed=3", f"out={tmp_path / name}", "progress=false")
        assert result.returncode == 0, result.stderr[-2000:]
        drawn[name] = np.load(tmp_path / name / "samples.npz")["samples"]
    assert np.array_equal(drawn["ckpt"], drawn["export"])
    model, _ = load_model(out)  # the one-line loader of the card
    again = model.to_uint8(model.sample_images(2, generator=torch.Generator().manual_seed(0)))
    reference, _ = load_model(ckpt)
    assert torch.equal(
        again, reference.to_uint8(reference.sample_images(2, generator=torch.Generator().manual_seed(0)))
    )


def test_loading_an_export_unpickles_nothing(trained, monkeypatch):
    _, out = trained

    def refuse(*args, **kwargs):
        raise AssertionError("an export was unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    model, _ = load_model(out)
    assert model.sampling is not None


@pytest.mark.parametrize("damage", ["truncated", "edited"])
def test_a_damaged_export_is_refused_in_one_line(trained, tmp_path, damage):
    import shutil

    _, out = trained
    copy = tmp_path / "export"
    shutil.copytree(out, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[-8] ^= 0x40  # one weight changed
    weights.write_bytes(bytes(data))
    result = run_program("sample.py", f"ckpt={copy}", "n=2")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr
    assert "model.safetensors" in lines[0] and "sha256 differs" in lines[0]


def test_an_export_whose_config_names_a_foreign_target_is_refused(trained, tmp_path):
    import shutil

    _, out = trained
    copy = tmp_path / "export"
    shutil.copytree(out, copy)
    marker = tmp_path / "marker"
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["model"]["network"] = {"_target_": TARGET, "path": str(marker)}
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    assert_refused(run_program("sample.py", f"ckpt={copy}", "n=2"), marker, f"ckpt='{copy}'")


def test_export_refuses_a_crafted_checkpoint(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    result = run_program("dgmlab.export", f"ckpt={path}", f"out={tmp_path / 'export'}")
    assert_refused(result, marker, f"ckpt='{path}'")
    assert not (tmp_path / "export").exists()


def test_export_keeps_an_earlier_export(trained):
    ckpt, out = trained
    before = (out / "model.safetensors").stat().st_mtime_ns
    result = run_program("dgmlab.export", f"ckpt={ckpt}", f"out={out}")
    assert result.returncode == 2 and "overwrite=true" in result.stderr
    assert (out / "model.safetensors").stat().st_mtime_ns == before
