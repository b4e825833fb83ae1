"""What README.md and docs/ say that the code decides, read from the code: change a default and a test
here fails until the pages follow. Also: no machine paths in the docs, and the example outputs the
pages show are what ``python tests/doc_outputs.py`` makes (the cheap one here, all of them under ``-m slow``).

Each fact is checked where the guide says it (each fact has one page); the phrases are the pages' own.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from dgmlab.diffusion.samplers import SAMPLERS
from dgmlab.run import layout
from dgmlab.run.startup import count_parameters

import doc_outputs as regen
from conftest import CONF, REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "CHANGELOG.md"]
# How the pages name each sampler (with eta 0, and with eta 1) when they say which one is the default.
SAMPLER_NAMES = {
    ("dpmpp_2m", 0): "DPM-Solver++(2M)",
    ("dpmpp_2m", 1): "SDE-DPM-Solver++(2M)",
    ("ddim", 0): "DDIM",
    ("ddim", 1): "DDIM with η = 1",
    ("ddpm", 0): "ancestral sampling",
    ("ddpm", 1): "ancestral sampling",
}


def page(name: str) -> str:
    return (REPO / name).read_text()


def flat(text: str) -> str:
    """The text with its line breaks as spaces: a phrase may wrap."""
    return re.sub(r"\s*\n\s*", " ", text)


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.fixture(scope="module")
def default():
    return compose_train()


def millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


# --- the default model ----------------------------------------------------------------------------------
def test_the_default_model_is_described_with_its_parameter_count_and_widths(default):
    from hydra.utils import instantiate

    net = instantiate(default.model.network)
    size = millions(count_parameters(net))
    widths = [default.model.network.base_channels * m for m in default.model.network.channel_mults]
    widths_said = ", ".join(str(w) for w in widths[:-1]) + f" and {widths[-1]}"
    assert f"It trains a {size}-parameter U-Net DDPM" in flat(page("README.md"))
    targets = {"eps": "ε", "x0": "x₀", "v": "v"}
    weighting = f"min-SNR-{default.model.min_snr_gamma:g}" if default.model.loss_weighting == "min_snr" else "uniform"
    recipe = (
        f"(T = {default.schedule.timesteps}, {default.schedule.name} β, {targets[default.model.prediction]}-prediction "
        f"with {weighting} loss weighting, EMA weights)"
    )
    assert recipe in flat(page("README.md"))
    preset = next(line for line in page("docs/ddpm.md").splitlines() if line.startswith("| `model=ddpm` (the default)"))
    assert f"{size} parameters: {widths_said} channels" in preset
    assert f"The default model ({size} parameters" in flat(page("docs/performance.md"))


def test_the_default_sampler_and_its_steps_are_those_the_pages_name(default):
    sampler, eta = default.model.sampling.sampler, default.model.sampling.eta
    steps = default.model.sampling.steps or SAMPLERS[sampler].default_steps
    said = f"{SAMPLER_NAMES[sampler, eta]} with {steps} steps"
    for name in ("README.md", "docs/sampling.md", "docs/evaluation.md", "docs/troubleshooting.md", "docs/ddpm.md"):
        assert re.search(rf"(?<![\w-]){re.escape(said)}", flat(page(name))), (
            f"{name} does not say the default sampler is {said}"
        )
    options = {row[0]: row for row in table_rows(page("docs/sampling.md"), "| option | default | meaning |")}
    assert options["`sampler`"][1] == f"the model's (`{sampler}`)"
    assert options["`eta`"][1] == f"the model's ({eta:g})"
    for name, entry in SAMPLERS.items():  # the steps row: each sampler's default number of steps
        if entry.default_steps is not None:
            assert f"`{name}`: {entry.default_steps}" in options["`steps`"][2], name


def test_the_default_steps_batch_size_and_intervals_are_those_the_pages_say(default):
    steps, batch = default.trainer.max_steps, default.dataset.batch_size
    every_ckpt = default.callbacks.model_checkpoint.every_n_train_steps
    every_grid = default.callbacks.sample_grid.every_n_steps
    readme = flat(page("README.md"))
    assert f"for {steps:,} optimiser steps at batch size {batch} on `{default.dataset.name}`" in readme
    assert f"a checkpoint every {every_ckpt} steps" in readme
    assert f"(`step_{every_ckpt:06d}.ckpt` … `step_{steps:06d}.ckpt`)" in readme
    assert f"a grid of {default.callbacks.sample_grid.num_samples} samples every {every_grid} steps" in readme
    configuration = flat(page("docs/configuration.md"))
    assert f"`trainer.max_steps` (default {steps})" in configuration
    assert f"every `trainer.val_check_interval` steps ({default.trainer.val_check_interval})" in configuration
    assert f"`callbacks.model_checkpoint.every_n_train_steps` steps ({every_ckpt})" in configuration
    assert f"`callbacks.sample_grid.every_n_steps` steps ({every_grid})" in configuration


def test_the_precision_rule_is_what_resolve_precision_does():
    from dgmlab.core.precision import Hardware, resolve_precision

    cpus = [Hardware("cpu", "AVX2", False), Hardware("cpu", "AVX512 with AVX512-BF16/AMX", True)]
    devices = page("docs/devices.md")
    for hardware in cpus:  # the lines the page shows
        assert f"- {resolve_precision('auto', hardware=hardware)}\n" in devices
    gpus = {
        "bf16-mixed": Hardware("cuda", "a GPU", True, True),
        "16-mixed": Hardware("cuda", "a GPU", False, True),
        "32-true": Hardware("cpu", "AVX2", False),
    }
    rule = flat(devices)
    said = "It picks bf16 mixed precision only where the hardware computes in bf16 natively"
    assert said in rule and "On GPUs without bf16 it picks `16-mixed`; everywhere else fp32 (`32-true`)" in rule
    assert {resolve_precision("auto", hardware=h).precision: h for h in gpus.values()}.keys() == gpus.keys()
    assert all(resolve_precision("auto", hardware=h).precision == p for p, h in gpus.items())


# --- option lists ---------------------------------------------------------------------------------------
def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table that starts with ``header``."""
    lines = text[text.index(header) :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def options_of(group: str) -> set[str]:
    return {p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_")}


def test_the_config_group_table_lists_every_option_of_every_group():
    table = table_rows(page("docs/configuration.md"), "| group | options |")
    rows = {row[0].strip("`"): row[1] for row in table}
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "sampling")}
    assert set(rows) == groups
    for group, cell in rows.items():
        assert set(re.findall(r"`(\w+)`", cell)) == options_of(group), group
    vae_networks = next(row[2] for row in table if row[0] == "`model`").split("(`model/vae_network`:")[1]
    assert set(re.findall(r"`(\w+)`", vae_networks)) == options_of("model/vae_network")


def test_the_data_set_table_and_the_schedule_table_list_every_option():
    rows = table_rows(page("docs/configuration.md"), "| `dataset=` | what | files |")
    assert {name for row in rows for name in re.findall(r"`(\w+)`", row[0])} == options_of("dataset")
    rows = table_rows(page("docs/ddpm.md"), "| `schedule=` | defined on | parameters |")
    assert {re.match(r"`(\w+)`", row[0]).group(1) for row in rows} == options_of("schedule")
    default = [row[0] for row in rows if "(default)" in row[0]]
    assert default == [f"`{compose_train().schedule.name}` (default)"]


def test_the_sampler_lists_name_every_registered_sampler():
    options = {row[0]: row for row in table_rows(page("docs/sampling.md"), "| option | default | meaning |")}
    assert set(re.findall(r"`(\w+)`", options["`sampler`"][2])) == set(SAMPLERS)
    ddpm = next(row for row in table_rows(page("docs/ddpm.md"), "| file | what |") if "samplers.py" in row[0])
    assert set(re.findall(r"`(\w+)` \(", ddpm[1])) == set(SAMPLERS)


def test_the_sample_options_table_is_all_of_sample_yaml_with_its_defaults():
    config = yaml.safe_load((CONF / "sample.yaml").read_text())
    config.pop("defaults", None)
    config.pop("hydra", None)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("sample", overrides=["ckpt=x"])
    rows = {row[0].strip("`"): row[1] for row in table_rows(page("docs/sampling.md"), "| option | default | meaning |")}
    keys = {k for k in cfg if k not in ("hydra",)}
    assert set(rows) == keys
    for key, said in rows.items():
        value = cfg[key]
        if isinstance(value, bool):
            assert said == f"`{str(value).lower()}`", key
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            assert said == str(value), key
        elif isinstance(value, str) and key not in ("ckpt",):
            assert said == f"`{value}`", key


def test_the_experiments_each_have_a_line_in_a_guide_page():
    guide = "".join(page(f"docs/{name}") for name in ("ddpm.md", "vae.md", "latent-diffusion.md"))
    for experiment in options_of("experiment"):
        assert f"experiment={experiment}" in guide, experiment


# --- files and metrics ----------------------------------------------------------------------------------
def test_the_run_directory_the_readme_shows_holds_the_files_the_run_directory_object_names():
    readme = page("README.md")
    tree = readme[readme.index("<!-- output: smoke-tree -->") :]
    for name in (layout.CONFIG_FILE, layout.LAST_CHECKPOINT, layout.METRICS_FILE, layout.STATUS_FILE):
        assert Path(name).name in tree or f"{Path(name).parent}/" in tree, name
    assert layout.CURVES_FILE in tree and "train.log" in tree and ".hydra/" in tree
    for entry in regen.RUN_FILES:  # every described entry is one of the run directory's
        assert entry.rstrip("/") in tree, entry


def logged_metric_names() -> list[re.Pattern]:
    """A pattern for each metric name in the code: its literal names, and its f-string ones with each
    ``{...}`` as a wildcard (``f"val/fid_{self.features}_..."``, ``f"{split}/loss"``)."""
    source = "".join(p.read_text() for p in (REPO / "src" / "dgmlab").rglob("*.py"))
    names = set(re.findall(r"""["']((?:train|val|test)/[a-z_0-9]+)["']""", source))
    templates = set(re.findall(r"""f["']((?:train|val|test|\{\w+\})/(?:[a-z_0-9]|\{[^}]*\})+)["']""", source))
    patterns = [re.compile(re.escape(n)) for n in names]
    for template in templates:
        if not re.search(r"/[a-z]", template):  # f"{prefix}/{key}": names built elsewhere
            continue
        parts = re.split(r"\{[^}]*\}", template)
        patterns.append(re.compile("[a-z_0-9]+".join(re.escape(p) for p in parts).replace(r"\[a-z_0-9]+", "")))
    return patterns


def test_every_metric_the_pages_name_is_one_the_code_logs():
    logged = logged_metric_names()

    def is_logged(name: str) -> bool:
        return any(p.fullmatch(name) for p in logged)

    assert all(map(is_logged, ("train/loss", "val/loss", "val/fid", "test/bpd", "val/fid_lenet_ddim50_n1000")))
    assert not is_logged("val/no_such_metric")
    for path in PAGES:
        for name in set(re.findall(r"(?<![\w/.])((?:train|val|test)/[a-z_0-9]+)\b", path.read_text())):
            assert is_logged(name), f"{path.name}: {name} is not a metric the code logs"


# --- no machine paths -----------------------------------------------------------------------------------
# An absolute path of a machine: /work/..., /tmp/..., /home/..., C:\... (placeholders such as
# /path/to/images and a user's ~/.cache are no machine's).
MACHINE_PATH = re.compile(
    r"(?<![\w.~/:])/(?:work|tmp|home|Users|root|mnt|scratch|data|opt|var|srv|private|net|gpfs|lustre)/"
    r"|\b[A-Z]:\\\\"
)


def machine_paths(text: str) -> list[str]:
    return [line for line in text.splitlines() if MACHINE_PATH.search(line)]


def test_the_docs_hold_no_machine_paths():
    for path in PAGES:
        assert machine_paths(path.read_text()) == [], path.name
    for image in (REPO / "docs").glob("*.png"):
        with Image.open(image) as im:
            assert not any(machine_paths(str(v)) for v in im.info.values()), image.name


def test_the_machine_path_check_finds_one():
    assert machine_paths("run directory: /work/main/outputs/x\nok: outputs/x, /path/to/images, ~/.cache/torch")
    assert len(machine_paths("saved /tmp/a.ckpt\nrun dir C:\\\\Users\\\\me\nrelative outputs/x")) == 2


# --- example outputs ------------------------------------------------------------------------------------
def test_every_output_block_is_one_the_script_makes_and_every_output_has_a_block():
    assert set(regen.blocks(REPO)) == set(regen.OUTPUTS)


def test_the_default_runs_start_up_lines_are_what_train_py_prints():
    fresh = regen.generate(REPO, ["default-startup"])
    assert regen.differences(REPO, fresh) == [], "run python tests/doc_outputs.py --only default-startup"
    assert "run directory: outputs/train/ddpm/" in fresh["default-startup"]  # relative to where it ran


def test_the_masks_keep_what_the_code_decides():
    shown = "[2026-12-07 12:58:01,144][x][INFO] - done: 100 steps in 14 s\n  final:      train/loss 0.1025"
    assert regen.masked(shown) == regen.masked(shown.replace("14 s", "1 min 3 s").replace("0.1025", "0.2"))
    assert regen.masked(shown) != regen.masked(shown.replace("100 steps", "200 steps"))
    assert regen.masked("model: DDPM: UNet 0.44M") != regen.masked("model: DDPM: UNet 0.45M")


@pytest.mark.slow
def test_every_example_output_is_what_the_code_prints():
    fresh = regen.generate(REPO, sorted(regen.OUTPUTS))
    assert regen.differences(REPO, fresh) == [], "run python tests/doc_outputs.py"


def test_the_vae_settings_table_gives_the_defaults_of_model_vae():
    cfg = compose_train("model=vae")
    rows = table_rows(page("docs/vae.md"), "| setting | default | meaning |")
    checked = 0
    for setting, said, _ in rows:
        key = setting.strip("`")
        if not key.startswith("model."):
            continue
        value = OmegaConf.select(cfg, key)
        shown = f"`{OmegaConf.to_container(value)}`" if OmegaConf.is_config(value) else str(value)
        if isinstance(value, str):
            shown = f"`{value}`"
        assert said == shown, (key, said, shown)
        checked += 1
    assert checked >= 8


def test_the_fid_callback_defaults_are_those_evaluation_md_says():
    cfg = compose_train("eval=fid").eval
    evaluation = flat(page("docs/evaluation.md"))
    assert re.search(rf"python train.py eval=fid +# every {cfg.every_n_steps} steps and at the end", evaluation)
    assert f"draws `eval.num_samples` images (default {cfg.num_samples})" in evaluation
    assert f"`eval.split` ({cfg.split} by default)" in evaluation
    assert cfg.sampler is None  # "default: the model's own", whose name the sampler test checks


def test_the_script_finds_a_stale_block_and_rewrites_it(tmp_path, capsys):
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    shutil.copytree(REPO / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("*.png"))
    readme = tmp_path / "README.md"
    text = readme.read_text()
    block = text[text.index("<!-- output: default-startup -->") :]
    stale = block.replace("(+ an EMA copy)", "(+ two EMA copies)", 1)
    readme.write_text(text.replace(block, stale))
    check = ["--check", "--only", "default-startup", "--repo", str(tmp_path)]
    assert regen.main(check) == 1
    assert "README.md: block default-startup differs" in capsys.readouterr().out
    assert regen.main(["--only", "default-startup", "--repo", str(tmp_path)]) == 0  # rewrites it
    assert regen.main(check) == 0
    assert "(+ two EMA copies)" not in readme.read_text()
    assert regen.main(["--check", "--repo", str(tmp_path / "docs")]) == 2  # not the repository root


def test_the_ddpm_options_the_guide_writes_with_a_value_are_the_defaults(default):
    text = page("docs/ddpm.md")
    options = text[text.index("Other options: ") :].split("\n\n")[0]
    # a number or a list is a default; true/false there names a switch (model.class_conditional=true)
    written = [(k, v) for k, v in re.findall(r"`(model\.[\w.]+)=([^`|]+)`", options) if v not in ("true", "false")]
    assert len(written) >= 6, written
    for key, value in written:
        parsed = yaml.safe_load(value)
        parsed = float(value) if isinstance(parsed, str) and re.fullmatch(r"[\d.]+e-?\d+", value) else parsed
        assert OmegaConf.select(default, key) == parsed, key
    assert f"`trainer.gradient_clip_val` (default {default.trainer.gradient_clip_val})" in flat(text)
