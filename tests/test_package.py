"""dgmlab from a plain (non-editable) install: the Hydra configs ship inside the package, so the
``python -m dgmlab.…`` commands work without the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of this checkout, installed (without dependencies: they are this environment's) into
    a folder of its own that is put first on PYTHONPATH."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "wheel")]
    subprocess.run([*build, str(source)], check=True, capture_output=True, timeout=600)
    wheel = next((root / "wheel").glob("dgmlab-*.whl"))
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(root / "site"), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    return wheel, root / "site", {**os.environ, "PYTHONPATH": str(root / "site")}


def run(args, env, cwd):
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_wheel_ships_the_configs_and_the_commands_run_from_it(installed, tmp_path):
    wheel, site, env = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(REPO / "src").as_posix() for p in (REPO / "src" / "dgmlab" / "conf").rglob("*.yaml")}
    assert shipped and shipped <= names  # every config file is in the wheel
    where = run(["-c", "import dgmlab; print(dgmlab.__file__)"], env, tmp_path)
    assert where.stdout.strip().startswith(str(site))  # the installed copy, not the source tree
    # Far from the repository: Hydra finds evaluate.yaml inside the package, and our own check answers.
    result = run(["-m", "dgmlab.evaluate", "samples=missing.npz"], env, tmp_path)
    assert "missing.npz" in result.stderr and "no such file" in result.stderr, result.stderr[-2000:]
    result = run(["-m", "dgmlab.metrics.lenet", "--cfg", "job"], env, tmp_path)
    assert result.returncode == 0 and "train_steps: 2000" in result.stdout, result.stderr[-2000:]
    result = run(
        ["-m", "dgmlab.sweep", str(REPO / "sweeps" / "vae_beta_grid.yaml"), "--dry-run", "--count", "1"], env, REPO
    )
    assert result.returncode == 0 and "model.beta=" in result.stdout, result.stderr[-2000:]
