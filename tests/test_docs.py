"""Every command in README.md and docs/*.md parses and composes, with the real configs and parsers.

A command is a line of a ```bash block (``$ `` prompt, ``VAR=value`` prefixes and `` # comments``
allowed, ``\\`` continuing it) that runs ``python train.py``, ``python sample.py``, ``python -m
dgmlab.…``, ``python bench/….py``, ``python tests/….py`` or ``sbatch … slurm/train.sbatch`` (whose arguments go to
train.py). Hydra programs are composed from their shipped configs with the command's overrides
(every combination of a ``-m`` sweep) and checked as the program checks them before it starts work;
argparse programs parse their arguments with their own parsers. Placeholders for what an earlier run
wrote (RUN_DIR, VAE_RUN_DIR, AE_RUN_DIR, SAMPLES_DIR, SWEEP_DIR) become directories laid out as
train.py and sample.py write them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from dgmlab.core.errors import positive_int
from dgmlab.diffusion import SamplingOptions
from dgmlab.run.config import validate_train_config
from dgmlab.run.resume import output_folder, resume_argv

from conftest import CONF, REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The run each placeholder stands for: the overrides its train.py command had.
RUNS = {"RUN_DIR": [], "VAE_RUN_DIR": ["model=vae"], "AE_RUN_DIR": ["experiment=ldm_autoencoder"]}
FOLDERS = ("SAMPLES_DIR", "SWEEP_DIR")
PLACEHOLDER = re.compile(r"\b(" + "|".join([*RUNS, *FOLDERS]) + r")\b")
SHELL_SEPARATORS = {"&&", "||", ";", "|"}
# Command-line flags of a Hydra app that take no part in composing.
HYDRA_FLAGS = {"-m", "--multirun", "--cfg", "job", "hydra", "all", "--resolve", "--info", "-c"}


@dataclass(frozen=True)
class Command:
    source: str  # file:line
    program: str  # train | sample | dgmlab.<module> | bench/<name>.py | tests/<name>.py
    args: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.source}: {self.program} {shlex.join(self.args)}"


def bash_lines(path: Path):
    """(line number, logical line) of the ```bash blocks of a Markdown file."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            inside = not inside and line.strip() == "```bash"
            continue
        if not inside:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def parse_command(words: list[str]) -> tuple[str, list[str]] | None:
    """(program, arguments) if ``words`` (one shell command) runs one of the checked programs."""
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]  # VAR=value prefixes
    if not words:
        return None
    if words[0] == "sbatch":
        scripts = [i for i, w in enumerate(words) if w.endswith("slurm/train.sbatch")]
        return ("train", words[scripts[0] + 1 :]) if scripts else None
    if not Path(words[0]).name.startswith("python") or len(words) < 2:
        return None
    if words[1] in ("train.py", "sample.py"):
        return words[1][:-3], words[2:]
    if words[1] == "-m" and len(words) > 2 and words[2].startswith("dgmlab."):
        return words[2], words[3:]
    if words[1].startswith(("bench/", "tests/")) and words[1].endswith(".py"):
        return words[1], words[2:]
    return None


def doc_commands() -> list[Command]:
    found = []
    for path in DOCS:
        for number, line in bash_lines(path):
            line = line.strip().removeprefix("$ ")
            words = shlex.split(line, comments=True)
            command: list[str] = []
            for word in [*words, ";"]:
                if word not in SHELL_SEPARATORS:
                    command.append(word)
                    continue
                parsed = parse_command(command)
                if parsed:
                    found.append(Command(f"{path.relative_to(REPO)}:{number}", parsed[0], tuple(parsed[1])))
                command = []
    return found


COMMANDS = doc_commands()


def test_the_docs_have_commands_of_every_program():
    programs = {c.program for c in COMMANDS}
    assert {"train", "sample", "dgmlab.evaluate", "dgmlab.sweep", "dgmlab.runs"} <= programs, programs
    assert any(p.startswith("bench/") for p in programs), programs


# --- the places a command's placeholders stand for ----------------------------------------------------
@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("docs")
    paths = {}
    for name, overrides in RUNS.items():
        paths[name] = fake_run(root / name.lower(), overrides)
    for name in FOLDERS:
        (root / name.lower()).mkdir()
        paths[name] = root / name.lower()
    paths["log_dir"] = root / "outputs"
    return paths


def fake_run(run_dir: Path, overrides: list[str]) -> Path:
    """A run directory as train.py lays it out; resuming reads its overrides and finds last.ckpt."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    return run_dir


def filled(args: tuple[str, ...], places: dict[str, Path]) -> list[str]:
    return [PLACEHOLDER.sub(lambda m: str(places[m.group(1)]), a) for a in args]


# --- checking each kind of program ------------------------------------------------------------------
def combinations(overrides: list[str]) -> list[list[str]]:
    """Each job of a ``-m`` sweep (the overrides themselves without one)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def compose_program(config_name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides)
    if "paths" in cfg:  # what Hydra's runtime fills in
        with open_dict(cfg):
            cfg.paths.root_dir = str(REPO)
            cfg.paths.output_dir = "/nonexistent/run"
    return cfg


def check_train(args: list[str], places: dict[str, Path]) -> None:
    args = [*args, f"paths.log_dir={places['log_dir']}"]  # resume=last looks for runs there
    if "resume=last" in args:
        others = [a for a in args if a != "resume=last" and a not in HYDRA_FLAGS]
        fake_run(output_folder(others, CONF, "train") / "2026-01-01_00-00-00", others)
    argv = resume_argv(["train.py", *args], CONF)[1:]
    for job in combinations([a for a in argv if a not in HYDRA_FLAGS]):
        validate_train_config(compose_program("train", job))


def check_sample(args: list[str], places: dict[str, Path]) -> None:
    cfg = compose_program("sample", args)
    for key in ("n", "batch_size"):
        positive_int(cfg[key], key)
    given = {k: cfg[k] for k in SamplingOptions.names() if cfg.get(k) is not None}
    SamplingOptions().override(**given).resolve(1000)  # the default schedule's T


def check_evaluate(args: list[str], places: dict[str, Path]) -> None:
    from dgmlab.evaluate import TASKS, _task_from_first_word

    cfg = compose_program("evaluate", _task_from_first_word(["evaluate", *args])[1:])
    assert cfg.task in TASKS, cfg.task


class Parsed(Exception):
    """Raised by the patched parser once the arguments parse: the program does no work."""


def check_argparse(module, args: list[str], monkeypatch) -> None:
    """Run ``module.main`` on ``args`` until its parser has parsed them."""
    for method in ("parse_args", "parse_intermixed_args"):
        original = getattr(argparse.ArgumentParser, method)

        def parse_then_stop(self, argv=None, namespace=None, _original=original):
            _original(self, argv, namespace)
            raise Parsed

        monkeypatch.setattr(argparse.ArgumentParser, method, parse_then_stop)
    monkeypatch.setattr(sys, "argv", [module.__name__, *args])
    with pytest.raises(Parsed):
        module.main(args) if "argv" in module.main.__code__.co_varnames else module.main()


def bench_module(script: str):
    """A bench/ or tests/ script, imported from its file (registered first: a dataclass needs that)."""
    monkeypatch_path = str(REPO / "bench")
    if monkeypatch_path not in sys.path:
        sys.path.insert(0, monkeypatch_path)
    name = f"script_{Path(script).parent.name}_{Path(script).stem}"
    spec = importlib.util.spec_from_file_location(name, REPO / script)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_a_documented_command_parses_and_composes(command: Command, places, monkeypatch):
    args = filled(command.args, places)
    if command.program == "train":
        check_train(args, places)
    elif command.program == "sample":
        check_sample(args, places)
    elif command.program in ("dgmlab.evaluate", "dgmlab.metrics.lenet"):
        check_evaluate(args, places)
    elif command.program == "dgmlab.export":
        compose_program("export", args)
    elif command.program.startswith(("bench/", "tests/")):
        check_argparse(bench_module(command.program), args, monkeypatch)
    else:
        check_argparse(importlib.import_module(command.program), args, monkeypatch)


def test_a_wrong_command_fails_the_check(places, monkeypatch):
    """The checks above can fail: a key the config lacks, a bad value, a flag a script lacks."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        check_train(["trainer.no_such_key=1"], places)
    with pytest.raises(ValueError, match="sampler"):
        check_sample(["ckpt=x", "sampler=nosuch"], places)
    with pytest.raises(SystemExit):
        check_argparse(bench_module("bench/sampling.py"), ["CKPT"], monkeypatch)
    assert OmegaConf.is_config(compose_program("sample", ["ckpt=x"]))
