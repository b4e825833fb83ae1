"""Regenerate the example outputs that README.md and docs/*.md show, from what the code prints.

    python tests/doc_outputs.py                 # rewrite every block (runs experiment=smoke once: ~20 s on 2 cores)
    python tests/doc_outputs.py --check         # rewrite nothing; exit 1 naming each block that differs
    python tests/doc_outputs.py --only NAME ... # these blocks only

Run it from the repository root. A block in a page is a fenced ``text`` block between two markers:

    <!-- output: NAME -->
    ```text
    ...
    ```
    <!-- /output -->

NAME is one of :data:`OUTPUTS`. Every command runs in a fresh temporary working directory, so the paths
it prints are relative, as they are for a user who starts in the repository root. ``--check`` compares
the pages with the code's output with timings, dates, run-directory names, losses and the hardware's
own words (the precision and device lines) masked: those change from run to run and machine to
machine, everything else must not.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = re.compile(r"(<!-- output: (?P<name>[\w-]+) -->\n```text\n)(?P<body>.*?)(```\n<!-- /output -->)", re.S)
WARNING = re.compile(r"^\S+\.py:\d+: ")  # warnings.warn's "path/to/file.py:123: Category: message"
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job logging


# --- masking: what may differ between a page and a fresh run --------------------------------------------
MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\d[ _]\d\d[:-]\d\d([:-]\d\d(,\d+)?)?"), "<date>"),
    (re.compile(r"\b\d+(/\d+ +interrupted)"), r"<n>\1"),  # the step a signal stopped a run at
    (re.compile(r"(precision|device): .*"), r"\1: <hardware>"),
    (re.compile(r"\d+(\.\d+)? steps/s"), "<n> steps/s"),
    (re.compile(r"^(training loss:|the loss fell).*$", re.M), r"\1 <losses>"),
    (re.compile(r"(\d+ min )?\d+ s left"), "<t> left"),
    (re.compile(r"in (\d+ h )?(\d+ min )?\d+ s$", re.M), "in <t>"),
    (re.compile(r"((?:loss|elbo|nll|bpd|fid)[= ])-?\d+(\.\d+)?(e-?\d+)?"), r"\1<x>"),
    (re.compile(r"\(\d+ bytes;"), "(<n> bytes;"),
    (re.compile(r"just ran \d+x slower"), "just ran <n>x slower"),
    (re.compile(r"(by SIG[A-Z0-9]+ at step )\d+"), r"\1<n>"),  # where a signal stops a run: a matter of time
    (re.compile(r"pid \d+ on [^,]+,"), "pid <n> on <host>,"),  # the holder of a run directory's lock
]


def masked(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return re.sub(r"[ \t]{2,}", " ", text)  # a table's columns, as wide as what the masks hid


# --- running the programs -------------------------------------------------------------------------------
@dataclass
class Workspace:
    """A temporary working directory, and the smoke run made in it (once, on first use)."""

    repo: Path
    cwd: Path
    _smoke: Path | None = field(default=None, init=False)
    _smoke_output: str = field(default="", init=False)
    made: dict[str, str] = field(default_factory=dict, init=False)  # the outputs made so far, by name

    def run(self, command: str) -> tuple[str, int]:
        """``command`` (``python train.py ...``, ``python sample.py ...``) as a user runs it here."""
        variables = dict(_variables(command))
        result = subprocess.run(
            self.argv(command),
            cwd=self.cwd,
            env={**self.env(), **variables},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=900,
        )
        # a library's warning starts with the path of its file: left out (it names this machine's paths)
        output = "".join(line for line in result.stdout.splitlines(True) if not WARNING.match(line))
        return output, result.returncode

    def env(self) -> dict[str, str]:
        env = {**os.environ, "HYDRA_FULL_ERROR": "0", "WANDB_MODE": "offline", "COLUMNS": "200"}
        src = str(self.repo / "src")
        env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
        return env

    def argv(self, command: str) -> list[str]:
        words = shlex.split(command)
        while re.fullmatch(r"[A-Z_]+=\S+", words[0]):  # VAR=value before the program
            words = words[1:]
        assert words[0] == "python", command
        if words[1].endswith(".py"):
            words[1] = str(self.repo / words[1])
        return [sys.executable, *words[1:]]

    def smoke(self) -> tuple[Path, str]:
        """The run directory and output of ``python train.py experiment=smoke``."""
        if self._smoke is None:
            output, code = self.run(SMOKE)
            if code != 0:
                raise RuntimeError(f"{SMOKE} failed:\n{output}")
            self._smoke_output = output
            self._smoke = Path(re.search(r"run directory: (\S+)", output).group(1))
        return self._smoke, self._smoke_output


def _variables(command: str) -> list[tuple[str, str]]:
    """The ``VAR=value`` words before the program of ``command``."""
    found = []
    for word in shlex.split(command):
        if not re.fullmatch(r"[A-Z_]+=\S+", word):
            break
        found.append(tuple(word.split("=", 1)))
    return found


def transcript(ws: Workspace, command: str, keep: Callable[[str], bool] = lambda line: True, exit_code=False) -> str:
    """``$ command``, then what it printed (the lines ``keep`` keeps), then ``$ echo $?`` if asked."""
    output, code = ws.run(command)
    lines = [f"$ {command}", *(line for line in output.splitlines() if keep(line))]
    if exit_code:
        lines += ["$ echo $?", str(code)]
    return "\n".join(lines) + "\n"


def once(generate: Callable[[Workspace], str]) -> Callable[[Workspace], str]:
    """An output made once per workspace: another output may need the runs it made."""

    def cached(ws: Workspace) -> str:
        if generate.__name__ not in ws.made:
            ws.made[generate.__name__] = generate(ws)
        return ws.made[generate.__name__]

    cached.__name__ = generate.__name__
    cached.__doc__ = generate.__doc__
    return cached


def is_error(line: str) -> bool:
    return line.startswith("Error:")


SMOKE = "python train.py experiment=smoke"


# --- the outputs ----------------------------------------------------------------------------------------
def smoke_output(ws: Workspace) -> str:
    """The whole output of the one-minute check."""
    return f"$ {SMOKE}\n" + ws.smoke()[1]


# What each file of a run directory is, for the tree the README shows. A file the code starts writing
# that is missing here stops the regeneration, so the README learns of it.
RUN_FILES = {
    ".hydra/": "Hydra's record of the composed config and the command line's overrides",
    "checkpoints/": "every callbacks.model_checkpoint.every_n_train_steps steps",
    "checkpoints/last.ckpt": "the latest, also written when training ends or is interrupted",
    "config.yaml": "the resolved config (also inside every checkpoint)",
    "csv/": "metrics.csv: train/loss, val/loss, the learning rate (hparams.yaml: the config)",
    "curves.png": "those metrics against the step, drawn at the end (or on interruption)",
    "samples/": "a grid every callbacks.sample_grid.every_n_steps steps, the same noise each time",
    "status.json": "running, then finished, interrupted, diverged or failed, with the step",
    "train.log": "what the run printed",
    ".writer.json": "the process that writes the run (pid, host); one at a time",
    ".writer.lock": "the lock that keeps a second writer out (run/lock.py)",
}


def run_tree(root: Path, base: Path) -> str:
    """The files of the run directory ``root`` as a tree, folders first, with what each is."""
    lines = [f"{root}/"]

    def walk(folder: Path, prefix: str) -> None:
        entries = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name))
        for i, entry in enumerate(entries):
            relative = entry.relative_to(base / root).as_posix() + ("/" if entry.is_dir() else "")
            last = i == len(entries) - 1
            name = prefix + ("└── " if last else "├── ") + entry.name + ("/" if entry.is_dir() else "")
            note = RUN_FILES.get(relative)
            if note is None and prefix == "":
                raise KeyError(f"{relative}: a file of the run directory that RUN_FILES does not describe")
            lines.append(f"{name:<34}# {note}" if note else name)
            if entry.is_dir() and entry.name in ("checkpoints", "samples"):
                walk(entry, prefix + ("    " if last else "│   "))

    walk(base / root, "")
    return "\n".join(lines) + "\n"


def smoke_tree(ws: Workspace) -> str:
    root, _ = ws.smoke()
    return run_tree(root, ws.cwd)


def default_startup(ws: Workspace) -> str:
    """The start-up lines of ``python train.py``, from the functions train.py calls, without training."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    import dgmlab
    from dgmlab.lit import DDPM  # noqa: F401  (the model's imports, before the log handler)
    from dgmlab.run.startup import log_effective_batch_size, log_start, quiet_libraries
    from dgmlab.run.training import build, build_trainer, trainer_precision

    quiet_libraries()
    with initialize_config_dir(config_dir=str(Path(dgmlab.__file__).parent / "conf"), version_base="1.3"):
        cfg = compose("train")
    run_dir = ws.cwd / "outputs" / cfg.task_name / cfg.model.name / time.strftime("%Y-%m-%d_%H-%M-%S")
    with open_dict(cfg):  # what Hydra's runtime fills in
        cfg.paths.root_dir, cfg.paths.output_dir = str(ws.cwd), str(run_dir)
    precision = trainer_precision(cfg.trainer)
    model = build(cfg.model)
    records: list[str] = []
    handler = logging.Handler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.emit = lambda record: records.append(handler.format(record))
    logger = logging.getLogger("dgmlab.run.training")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    here = Path.cwd()
    try:
        os.chdir(ws.cwd)
        trainer = build_trainer(cfg.trainer, precision, logger=False, enable_progress_bar=False)
        log_start(run_dir, precision, trainer, model)
        log_effective_batch_size(cfg, trainer)
    finally:
        os.chdir(here)
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return "$ python train.py\n" + "\n".join(records) + "\n...\n"


def error_vae_schedule(ws: Workspace) -> str:
    return transcript(ws, "python train.py model=vae schedule=cosine", exit_code=True)


def error_bad_schedule(ws: Workspace) -> str:
    return transcript(ws, "python train.py schedule.beta_end=1.5", exit_code=True)


def error_missing_checkpoint(ws: Workspace) -> str:
    return transcript(ws, "python sample.py ckpt=outputs/none.ckpt", exit_code=True)


def error_unknown_key(ws: Workspace) -> str:
    return transcript(ws, "python train.py trainer.no_such_key=1", exit_code=True)


def error_missing_dataset(ws: Workspace) -> str:
    return transcript(ws, "python train.py dataset=cifar10", is_error, exit_code=True)


def error_sampler_steps(ws: Workspace) -> str:
    root, _ = ws.smoke()
    return transcript(ws, f"python sample.py ckpt={root}/checkpoints/last.ckpt sampler=ddpm steps=20", is_error)


def error_resume_changed(ws: Workspace) -> str:
    root, _ = ws.smoke()
    command = f"python train.py resume={root} model.network.base_channels=16 schedule.timesteps=30"
    return transcript(ws, command, is_error, exit_code=True)


@once
def error_diverged(ws: Workspace) -> str:
    command = (
        "python train.py experiment=smoke trainer.precision=32-true model.optimizer.lr=1e6 "
        "callbacks.model_checkpoint.every_n_train_steps=1 hydra.run.dir=outputs/docs/diverged"
    )
    return transcript(ws, command, is_error, exit_code=True)


def error_damaged_checkpoint(ws: Workspace) -> str:
    root, _ = ws.smoke()
    data = (ws.cwd / root / "checkpoints" / "last.ckpt").read_bytes()
    (ws.cwd / "truncated.ckpt").write_bytes(data[: len(data) // 2])  # a checkpoint cut to half its size
    return transcript(ws, "python sample.py ckpt=truncated.ckpt n=2", is_error, exit_code=True)


def error_foreign_target(ws: Workspace) -> str:
    """A checkpoint whose stored config names a function outside dgmlab's own targets."""
    import torch

    crafted = {"_target_": "numpy.savetxt", "fname": "written.txt", "X": [], "header": "x", "comments": ""}
    config = {"model": {"_target_": "dgmlab.lit.DDPM", "network": crafted}}
    torch.save({"dgmlab_config": config, "state_dict": {}}, ws.cwd / "their.ckpt")
    return transcript(ws, "python sample.py ckpt=their.ckpt", is_error, exit_code=True)


def error_second_writer(ws: Workspace) -> str:
    """``resume=`` of a run that another process is writing (this one holds its lock meanwhile)."""
    from dgmlab.run.lock import hold, release

    root, _ = ws.smoke()
    hold(ws.cwd / root, "hydra.run.dir")
    try:
        return transcript(ws, f"python train.py resume={root}", is_error, exit_code=True)
    finally:
        release(ws.cwd / root)


PREFIX = re.compile(r"^\[[^]]*\]\[[^]]*\]\[[A-Z]+\] - ", re.M)


@once
def debug_overfit(ws: Workspace) -> str:
    """``debug=overfit`` of the default model, the log prefix cut from each line."""
    command = "python train.py debug=overfit hydra.run.dir=outputs/docs/overfit"
    output, code = ws.run(command)
    if code != 0:
        raise RuntimeError(f"{command} failed:\n{output}")
    lines = PREFIX.sub("", output).splitlines()
    return f"$ {command}\n" + "\n".join(lines) + "\n"


@once
def signal_stop(ws: Workspace) -> str:
    """A long run sent SIGTERM once its third checkpoint is written: what it logs, and its exit code."""
    command = "python train.py experiment=smoke trainer.max_steps=100000 hydra.run.dir=outputs/docs/stopped"
    third = ws.cwd / "outputs" / "docs" / "stopped" / "checkpoints" / "step_000150.ckpt"
    with open(ws.cwd / "stopped.log", "w+") as log:
        process = subprocess.Popen(ws.argv(command), cwd=ws.cwd, env=ws.env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while not third.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=300)
        log.seek(0)
        lines = [line.rstrip("\n") for line in log if "[dgmlab.run.signals]" in line]
    return "\n".join([f"$ {command}", "...", *lines, "$ echo $?", str(code)]) + "\n"


def bf16_warning(ws: Workspace) -> str:
    """The warning an explicit bf16 gets on a CPU that emulates it (measured on the spot)."""
    command = (
        "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -W always -c "
        "\"from dgmlab.core.precision import resolve_precision; resolve_precision('bf16-mixed')\""
    )
    # Python 3.13 echoes the warned line of a -c program after the warning, indented; 3.11 does not
    return transcript(ws, command, keep=lambda line: not line.startswith("  "))


def runs_listing(ws: Workspace) -> str:
    """``python -m dgmlab.runs outputs/docs`` over runs that ended in each way: finished (debug=overfit),
    interrupted (signal-stop), diverged (error-diverged), and refused before training."""
    debug_overfit(ws), signal_stop(ws), error_diverged(ws)  # in the order of OUTPUTS: the listing is by time
    ws.run("python train.py model=vae schedule=cosine hydra.run.dir=outputs/docs/refused")
    return transcript(ws, "python -m dgmlab.runs outputs/docs")


OUTPUTS: dict[str, Callable[[Workspace], str]] = {
    "debug-overfit": debug_overfit,
    "signal-stop": signal_stop,
    "error-diverged": error_diverged,
    "smoke-output": smoke_output,
    "smoke-tree": smoke_tree,
    "default-startup": default_startup,
    "error-vae-schedule": error_vae_schedule,
    "error-bad-schedule": error_bad_schedule,
    "error-missing-checkpoint": error_missing_checkpoint,
    "error-unknown-key": error_unknown_key,
    "error-missing-dataset": error_missing_dataset,
    "error-sampler-steps": error_sampler_steps,
    "error-resume-changed": error_resume_changed,
    "error-damaged-checkpoint": error_damaged_checkpoint,
    "error-foreign-target": error_foreign_target,
    "error-second-writer": error_second_writer,
    "runs-listing": runs_listing,
    "bf16-warning": bf16_warning,
}


# --- the pages ------------------------------------------------------------------------------------------
def pages(repo: Path) -> list[Path]:
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def blocks(repo: Path) -> dict[str, tuple[Path, str]]:
    """Every output block of the pages: name -> (page, body). A name used twice is an error."""
    found: dict[str, tuple[Path, str]] = {}
    for page in pages(repo):
        for match in BLOCK.finditer(page.read_text()):
            name = match["name"]
            if name in found:
                raise ValueError(f"output block {name} appears twice ({found[name][0].name}, {page.name})")
            if name not in OUTPUTS:
                raise ValueError(f"{page.name}: output block {name} is none of {sorted(OUTPUTS)}")
            found[name] = (page, match["body"])
    return found


def generate(repo: Path, names) -> dict[str, str]:
    """The fresh output of each block named, made in a temporary working directory."""
    with tempfile.TemporaryDirectory(prefix="dgmlab-docs-") as tmp:
        ws = Workspace(repo=repo.resolve(), cwd=Path(tmp))
        return {name: OUTPUTS[name](ws) for name in OUTPUTS if name in names}  # OUTPUTS' order: runs-listing


def write(repo: Path, fresh: dict[str, str]) -> list[Path]:
    changed = []
    for page in pages(repo):
        text = page.read_text()
        new = BLOCK.sub(lambda m: m[1] + fresh.get(m["name"], m["body"]) + m[4], text)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def differences(repo: Path, fresh: dict[str, str]) -> list[str]:
    """The blocks whose page differs from ``fresh``, timings and dates aside."""
    found = blocks(repo)
    return [name for name, body in fresh.items() if masked(found[name][1]) != masked(body)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/doc_outputs.py", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs")
    parser.add_argument("--only", nargs="+", choices=sorted(OUTPUTS), help="these blocks only")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the repository root (default: here)")
    args = parser.parse_args(argv)
    if not (args.repo / "README.md").is_file() or not (args.repo / "docs").is_dir():
        print(f"Error: {args.repo} holds no README.md and docs/: run it from the repository root", file=sys.stderr)
        return 2
    found = blocks(args.repo)
    missing = sorted(set(args.only or OUTPUTS) - set(found))
    if missing:
        print(f"Error: no page has a block for {missing}", file=sys.stderr)
        return 1
    fresh = generate(args.repo, args.only or sorted(found))
    if args.check:
        stale = differences(args.repo, fresh)
        for name in stale:
            print(f"{found[name][0].relative_to(args.repo)}: block {name} differs from what the code prints")
        return 1 if stale else 0
    for page in write(args.repo, fresh):
        print(f"rewrote {page.relative_to(args.repo)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
