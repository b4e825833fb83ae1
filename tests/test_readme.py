"""The guide's Python snippet (docs/sampling.md, From Python) runs as written, on checkpoints this test trains."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO, TINY_DDPM, run_script


def python_block_after(heading: str, page: str = "docs/sampling.md") -> str:
    text = (REPO / page).read_text()
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_from_python_snippet_runs(tmp_path):
    snippet = python_block_after("## From Python")
    checkpoints = {}
    for name, args in {
        "ddpm": [*TINY_DDPM, "schedule.timesteps=100"],
        "vae": ["model=vae", "model.encoder.latent_dim=20"],
    }.items():
        run_dir = tmp_path / name
        result = run_script(
            "train.py", *args, "trainer.max_steps=2", "trainer.val_check_interval=2", f"hydra.run.dir={run_dir}"
        )
        assert result.returncode == 0, result.stderr[-3000:]
        checkpoints[name] = run_dir / "checkpoints" / "last.ckpt"
    paths = re.findall(r'load_model\("([^"]+)"\)', snippet)
    assert len(paths) == 2, "the snippet loads a DDPM, then a VAE"
    for path, name in zip(paths, ("ddpm", "vae")):
        snippet = snippet.replace(f'"{path}"', f'"{checkpoints[name]}"')  # quoted: RUN_DIR is in VAE_RUN_DIR
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = result.stdout.splitlines()
    assert first == "ddpm mnist_5k (8, 1, 28, 28) torch.uint8"  # the guide shows this line
    assert second.startswith("(8, 20) ") and second.endswith(" (8, 1, 28, 28)")
