"""Bad input at every user-facing entry point: a non-zero exit and ONE line on stderr naming the problem.

Each row of ``CASES`` is a command line and a substring its one-line message must contain. The commands
run in real child processes, but not one interpreter per case (each would import torch, MLflow and Ray
for seconds): one driver process (this file run as a script) imports the CLI once, builds the bad inputs
(a tiny checkpoint and damaged copies, a tiny dataset and damaged copies, an MLflow store, broken sweep
and YAML files), then forks one child per case. A child points its file descriptors 1 and 2 at files,
runs ``attention_tuner.cli.main(argv)`` (or a sweep file as ``__main__``) and, if an exception escapes,
prints the traceback as the interpreter would. The driver's own stderr (import-time warnings) must be
empty, and a few cases also run through the installed console script and ``python -m``, so what the
fork shares is checked too. Every case must fail before anything heavy (no Ray, no training).

Run: ``.venv/bin/pytest -q tests/test_bad_input.py``. ``docs/reliability.md`` lists every case with its message
(``python tests/test_bad_input.py --table`` prints that table).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = Path(sys.executable).with_name("attention-tuner")


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    expect: str
    env: dict[str, str] = field(default_factory=dict)
    script: bool = False  # argv[0] is a sweep file run as __main__ (python sweeps/x.py ...)
    absent: tuple[str, ...] = ()  # paths that must not exist afterwards (nothing started, nothing written)
    hidden: str = ""  # a secret given on the command line that the message must not repeat
    max_chars: int = 2000  # of stderr: a message stays short whatever the input
    skip_on_cuda: bool = False  # the input is only wrong on a machine without CUDA


def sweep_file(body: str) -> str:
    return "from attention_tuner.sweep import SweepSpec\n" + body


TINY_BASE = ("{'task.name': 'Ordering', 'task.kwargs': {'length': 2}, 'data.episodes': 8, 'model.d_model': 16, "
             "'model.n_layers': 2, 'model.n_heads': 2, 'model.d_ff': 16}")
# Sweep files written into the workspace: name -> text.
SWEEP_FILES = {
    "syntax.py": "SWEEP = SweepSpec(name='x',\n",
    "nosweep.py": sweep_file("OTHER = 1\n"),
    "notspec.py": sweep_file("SWEEP = {'name': 'x', 'base': {}, 'space': {}}\n"),
    "missingargs.py": sweep_file("SWEEP = SweepSpec(name='x')\n"),
    "importerror.py": "import attention_tuner.no_such_module\n",
    "raises.py": "raise RuntimeError('boom\\nsecond line')\n",
    "selfmain.py": sweep_file("from attention_tuner.sweep import main\nSWEEP = SweepSpec(name='x', base={}, space={})\n"
                              "main(SWEEP)\n"),
    "exits.py": "raise SystemExit(3)\n",
    "duplicate.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={'seed': [0, 1, 0]})\n"),
    "samevanilla.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={'memory.weight': [0.0, 10.0], "
                                 "'data.annotation_fraction': [1.0, 0.0]})\n"),
    "samerun.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={'eval.every': [1, 2]})\n"),
    "unknownkey.py": sweep_file("SWEEP = SweepSpec(name='x', base={'optim.lrr': 1}, space={})\n"),
    "wrongtype.py": sweep_file("SWEEP = SweepSpec(name='x', base={'optim.epochs': 'many'}, space={})\n"),
    "unknowntask.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={'task.name': ['Hallway', 'Maze']})\n"),
    "badlayer.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={'memory.heads': [[[5, 0]]]})\n"),
    "badhead.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={'memory.heads': [[[0, 7]]]})\n"),
    "headshape.py": sweep_file("SWEEP = SweepSpec(name='x', base={'memory.heads': [[0, 0, 1]]}, space={})\n"),
    "fraction.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, "
                              "space={'data.annotation_fraction': [0.5, 1.5]})\n"),
    "negfraction.py": sweep_file("SWEEP = SweepSpec(name='x', base={'data.annotation_fraction': -0.1}, space={})\n"),
    "taskkw.py": sweep_file("SWEEP = SweepSpec(name='x', base={'task.kwargs': {'lenght': 3}}, space={})\n"),
    "axisnotlist.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={'seed': 3})\n"),
    "axisempty.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={'seed': []})\n"),
    "bundlenotmap.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={'method': {'vanilla': 0}})\n"),
    "bundlekey.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, "
                               "space={'method': {'vanilla': {'memory.wieght': 0}}})\n"),
    "basenotmap.py": sweep_file("SWEEP = SweepSpec(name='x', base=[1], space={})\n"),
    "resources.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={}, resources={'tpu': 1})\n"),
    "negresources.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={}, resources={'cpu': -1})\n"),
    "failures.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={}, max_failures=-1)\n"),
    "badname.py": sweep_file("SWEEP = SweepSpec(name='../escape', base={}, space={})\n"),
    "emptyname.py": sweep_file("SWEEP = SweepSpec(name='', base={}, space={})\n"),
    "longname.py": sweep_file(f"SWEEP = SweepSpec(name='{'x' * 101}', base={{}}, space={{}})\n"),
    "description.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={}, description=5)\n"),
    "nanresources.py": sweep_file("SWEEP = SweepSpec(name='x', base={}, space={}, resources={'cpu': float('nan')})\n"),
    "cudanogpu.py": sweep_file("SWEEP = SweepSpec(name='x', base={'device': 'cuda'}, space={'seed': [0]})\n"),
    "ok.py": sweep_file(f"SWEEP = SweepSpec(name='ok', base={TINY_BASE}, space={{'seed': [0]}})\n"
                        "if __name__ == '__main__':\n    from attention_tuner.sweep import main\n\n    main(SWEEP)\n"),
}
YAML_FILES = {
    "syntax.yaml": "optim: {lr: 1e-3\n",
    "list.yaml": "- optim\n- lr\n",
    "unknown.yaml": "optim:\n  lrr: 0.001\n",
    "notask.yaml": "optim:\n  lr: 0.001\n",
    "empty.yaml": "",
    "wrongtype.yaml": "optim:\n  epochs: many\n",
    # anchors expanding to 9^4 elements: the error message stays short
    "aliases.yaml": "task:\n  kwargs:\n    length: [&a [x, x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a],"
                    " &c [*b, *b, *b, *b, *b, *b, *b, *b, *b], [*c, *c, *c, *c, *c, *c, *c, *c, *c]]\n",
}

W, RO = "{ws}", "{ro}"  # the workspace, and a folder nobody may write to (placeholders)
SQLITE = "sqlite:///{ws}/store.db"  # an MLflow store with one experiment, "empty", that has no runs
OK_SWEEP = "{ws}/ok.py"
DRAFT = ["--storage", "{ws}/sweepstore", "--tracking-uri", "sqlite:///{ws}/sweep.db"]
NOTHING = ("{ws}/sweepstore", "{ws}/sweep.db")
TRAIN_DATA = ["train", "Hallway", "--kw", "length=5", "--preset", "smoke", "--set", "data.episodes=5",
              "--set", "device=cpu", "--actors", "0"]

CASES = [
    # ---- the command line itself
    Case("no-command", [], "the following arguments are required: command"),
    Case("unknown-command", ["fly"], "invalid choice: 'fly'"),
    Case("unknown-option", ["play", "Hallway", "--bogus"], "unrecognized arguments: --bogus"),
    Case("int-option-not-a-number", ["play", "Hallway", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    # ---- play
    Case("play-unknown-task", ["play", "Maze", "--out", f"{W}/o.gif"], "unknown task 'Maze'"),
    Case("play-kw-unknown-name", ["play", "Hallway", "--kw", "lenght=5", "--out", f"{W}/o.gif"],
         "Hallway: unknown parameter(s) lenght"),
    Case("play-kw-wrong-type", ["play", "Hallway", "--kw", "length=ten", "--out", f"{W}/o.gif"],
         "parameter length must be an integer, got 'ten'"),
    Case("play-kw-out-of-range", ["play", "Ordering", "--kw", "length=0", "--out", f"{W}/o.gif"],
         "parameter length must be >= 1, got 0"),
    Case("play-kw-probability", ["play", "Counting", "--kw", "test_freq=1.5", "--out", f"{W}/o.gif"],
         "parameter test_freq must be a probability in [0, 1]"),
    Case("play-kw-malformed", ["play", "Hallway", "--kw", "length", "--out", f"{W}/o.gif"],
         "--kw 'length': expected key=value"),
    Case("play-kw-empty-name", ["play", "Hallway", "--kw", "=5", "--out", f"{W}/o.gif"],
         "--kw '=5': expected key=value"),
    Case("play-kw-obs-mode", ["play", "Hallway", "--kw", "obs_mode=pixels", "--out", f"{W}/o.gif"],
         "--kw obs_mode: not a task parameter"),
    Case("play-kw-exponent", ["play", "Counting", "--kw", "test_freq=2e0", "--out", f"{W}/o.gif"],
         "test_freq must be a probability in [0, 1], got 2.0"),
    Case("play-kw-too-large", ["play", "Hallway", "--kw", "length=100000000", "--out", f"{W}/o.gif"],
         "does not fit in memory"),
    Case("play-out-not-gif", ["play", "Hallway", "--out", f"{W}/o.png"], "the file is a GIF; name it *.gif"),
    Case("play-fps-too-high", ["play", "Hallway", "--fps", "5000", "--out", f"{W}/o.gif"],
         "--fps must be between 1 and 50"),
    Case("play-out-empty", ["play", "Hallway", "--out", ""], "--out: empty path"),
    Case("play-negative-seed", ["play", "Hallway", "--seed", "-1", "--out", f"{W}/o.gif"], "--seed must be >= 0"),
    Case("play-fps-zero", ["play", "Hallway", "--fps", "0", "--out", f"{W}/o.gif"], "--fps must be between 1 and 50"),
    Case("play-out-missing-folder", ["play", "Hallway", "--out", f"{W}/nope/o.gif"],
         "output folder does not exist"),
    Case("play-out-is-folder", ["play", "Hallway", "--out", f"{W}/dir"], "is a folder, not a file"),
    Case("play-out-under-a-file", ["play", "Hallway", "--out", f"{W}/file.txt/o.gif"], "file.txt is a file, not a folder"),
    Case("play-out-not-writable", ["play", "Hallway", "--out", f"{RO}/o.gif"], "cannot write"),
    # ---- generate
    Case("generate-no-episodes", ["generate", "Hallway"], "the following arguments are required: --episodes"),
    Case("generate-episodes-zero", ["generate", "Hallway", "--episodes", "0", "--out", f"{W}/d"],
         "--episodes must be >= 1, got 0", absent=(f"{W}/d",)),
    Case("generate-episodes-negative", ["generate", "Hallway", "--episodes", "-5", "--out", f"{W}/d"],
         "--episodes must be >= 1, got -5", absent=(f"{W}/d",)),
    Case("generate-unknown-task", ["generate", "Maze", "--episodes", "5", "--out", f"{W}/d"],
         "unknown task 'Maze'", absent=(f"{W}/d",)),
    Case("generate-kw-unknown-name", ["generate", "Ordering", "--kw", "size=3", "--episodes", "5", "--out", f"{W}/d"],
         "Ordering: unknown parameter(s) size; it has: length (default 50)", absent=(f"{W}/d",)),
    Case("generate-kw-out-of-range", ["generate", "MysteryPath", "--kw", "size=99", "--episodes", "5"],
         "parameter size must be between"),
    Case("generate-kw-obs-mode", ["generate", "Ordering", "--kw", "obs_mode=pixels", "--episodes", "5"],
         "--kw obs_mode: not a task parameter"),
    Case("generate-negative-seed", ["generate", "Hallway", "--episodes", "5", "--seed", "-1", "--out", f"{W}/d"],
         "--seed must be >= 0, got -1", absent=(f"{W}/d",)),
    Case("generate-seed-in-eval-range", ["generate", "Hallway", "--episodes", "5", "--seed", "999999999"],
         "must stay below 1000000000, where the evaluation seeds start; got seed 999999999"),
    Case("generate-negative-actors", ["generate", "Hallway", "--episodes", "5", "--actors", "-1"],
         "--actors must be >= 0"),
    Case("generate-out-is-file", ["generate", "Hallway", "--episodes", "5", "--out", f"{W}/file.txt"],
         "exists and is not a folder"),
    Case("generate-out-not-writable", ["generate", "Hallway", "--episodes", "5", "--out", f"{RO}/d"],
         "cannot write"),
    # ---- train: configuration
    Case("datasets-no-root", ["datasets", "--root", f"{W}/none"], "--root: no such folder"),
    Case("datasets-root-is-a-file", ["datasets", "--root", f"{W}/file.txt"], "file.txt: exists and is not a folder"),
    Case("config-unknown-task", ["config", "Maze"], "task.name: unknown task 'Maze'"),
    Case("config-set-unknown-key", ["config", "Hallway", "--set", "optim.lrr=1"], "unknown key optim.lrr"),
    Case("config-missing-file", ["config", "Hallway", "--config", f"{W}/none.yaml"], "config file not found"),
    Case("train-unknown-task", ["train", "Maze", "--out", f"{W}/r"], "task.name: unknown task 'Maze'",
         absent=(f"{W}/r",)),
    Case("train-set-unknown-key", ["train", "Hallway", "--set", "optim.lrr=1"], "unknown key optim.lrr"),
    Case("train-set-unknown-section", ["train", "Hallway", "--set", "optimiser.lr=1"], "unknown key optimiser"),
    Case("train-set-wrong-type", ["train", "Hallway", "--set", "optim.lr=fast"], "optim.lr: expected float, got 'fast'"),
    Case("train-set-int-as-float", ["train", "Hallway", "--set", "optim.epochs=2.5"], "optim.epochs: expected int"),
    Case("train-set-malformed", ["train", "Hallway", "--set", "optim.lr"], "--set 'optim.lr': expected key=value"),
    Case("train-set-out-of-range", ["train", "Hallway", "--set", "optim.lr=-1"], "optim.lr must be > 0, got -1.0"),
    Case("train-set-bad-precision", ["train", "Hallway", "--set", "optim.precision=fp16"],
         "optim.precision must be one of auto, fp32, bf16, got 'fp16'"),
    Case("train-set-bad-layer", ["train", "Hallway", "--set", "memory.heads=[[9, 0]]"],
         "memory.heads: (9, 0) is out of range for 4 layers x 2 heads"),
    Case("train-set-bad-head", ["train", "Hallway", "--set", "memory.heads=[[0, 2]]"],
         "memory.heads: (0, 2) is out of range"),
    Case("train-set-duplicate-heads", ["train", "Hallway", "--set", "memory.heads=[[0, 1], [1, 0], [0, 1]]"],
         "memory.heads names (0, 1) more than once"),
    Case("train-set-below-a-value", ["train", "Hallway", "--set", "optim.lr.x=1"],
         "optim.lr.x: optim.lr is a value (0.0001), not a section with keys"),
    Case("train-set-odd-d-model", ["train", "Hallway", "--set", "model.n_heads=1", "--set", "model.d_model=9"],
         "model.d_model must be even (sinusoidal position encoding), got 9"),
    Case("train-set-huge-seed", ["train", "Hallway", "--set", "seed=99999999999999999999999"],
         "seed must be at most 9,223,372,036,854,775,807"),
    Case("train-set-huge-eval-episodes", ["train", "Hallway", "--set", "eval.episodes=99999999999999999999"],
         "eval.episodes must be at most 2,147,483,647"),
    Case("train-set-huge-model", ["train", "Hallway", "--set", "model.n_layers=99999999"],
         "model: about 3.1e+14 parameters"),
    Case("train-set-huge-noise", ["train", "Hallway", "--set", "data.noise.spurious=1e300"],
         "data.noise.spurious must be in [0, 100.0]"),
    Case("train-set-cuda-without-gpu", ["train", "Hallway", "--set", "device=cuda", "--out", f"{W}/r"],
         "device: cuda was asked for but no CUDA device is available", absent=(f"{W}/r",), skip_on_cuda=True),
    Case("train-config-empty-path", ["train", "Hallway", "--config", ""], "config file: empty path"),
    Case("train-out-empty-path", ["train", "Hallway", "--out", ""], "--out: empty path"),
    Case("train-config-aliases", ["train", "Hallway", "--config", f"{W}/aliases.yaml"],
         "parameter length must be an integer, got [[", max_chars=300),
    Case("train-kw-render-mode", ["train", "Hallway", "--kw", "render_mode=human"],
         "--kw render_mode: not a task parameter (the platform sets it"),
    Case("train-set-heads-word", ["train", "Hallway", "--set", "memory.heads=some"],
         "memory.heads must be a list of [layer, head] or 'all'"),
    Case("train-set-fraction", ["train", "Hallway", "--set", "data.annotation_fraction=1.5"],
         "data.annotation_fraction must be in [0, 1], got 1.5"),
    Case("train-set-noise", ["train", "Hallway", "--set", "data.noise.drop=-0.5"], "data.noise.drop must be in [0, 1]"),
    Case("train-set-section-value", ["train", "Hallway", "--set", "optim=3"], "optim: expected a mapping, got '3'"),
    Case("train-set-not-finite", ["train", "Hallway", "--set", "memory.weight=inf"],
         "memory.weight must be a finite number, got inf"),
    Case("train-set-negative-seed", ["train", "Hallway", "--set", "seed=-1"], "seed must be >= 0, got -1"),
    Case("train-set-seed-in-eval-range", ["train", "Hallway", "--set", "data.seed=999999999"],
         "data.seed + 2 x data.episodes + 250 (room for failed episodes) must stay below 1000000000"),
    Case("train-set-episodes-into-eval-range", ["train", "Hallway", "--set", "data.episodes=600000000"],
         "got data.seed 0 and data.episodes 600000000"),
    Case("train-set-device", ["train", "Hallway", "--set", "device=tpu"], "device must be auto, cpu or cuda"),
    Case("train-set-divisible", ["train", "Hallway", "--set", "model.n_heads=3"],
         "model.d_model (512) must be divisible by model.n_heads (3)"),
    Case("train-set-obs-mode", ["train", "Hallway", "--set", "task.obs_mode=rgb"], "task.obs_mode must be one of"),
    Case("train-kw-unknown-name", ["train", "Hallway", "--kw", "lenght=5", "--out", f"{W}/r"],
         "task.kwargs: Hallway: unknown parameter(s) lenght", absent=(f"{W}/r",)),
    Case("train-kw-wrong-type", ["train", "Hallway", "--kw", "length=ten"],
         "task.kwargs: Hallway: parameter length must be an integer, got 'ten'"),
    Case("train-set-task-kwarg", ["train", "Hallway", "--set", "task.kwargs.length=0"],
         "task.kwargs: Hallway: parameter length must be >= 1, got 0"),
    Case("train-set-task-kwargs-obs-mode", ["train", "Hallway", "--set", "task.kwargs.obs_mode=pixels"],
         "task.kwargs.obs_mode: not a task parameter"),
    Case("train-set-eval-kwarg", ["train", "Hallway", "--set", "eval.kwargs.lenght=60"],
         "eval.kwargs: Hallway: unknown parameter(s) lenght"),
    Case("train-unknown-preset", ["train", "Hallway", "--preset", "turbo"], "invalid choice: 'turbo'"),
    Case("train-config-missing", ["train", "Hallway", "--config", f"{W}/none.yaml"], "config file not found"),
    Case("train-config-is-folder", ["train", "Hallway", "--config", f"{W}/dir"], "is a folder, not a YAML file"),
    Case("train-config-syntax", ["train", "Hallway", "--config", f"{W}/syntax.yaml"], "not valid YAML"),
    Case("train-config-not-mapping", ["train", "Hallway", "--config", f"{W}/list.yaml"],
         "expected a mapping at the top level"),
    Case("train-config-unknown-key", ["train", "Hallway", "--config", f"{W}/unknown.yaml"], "unknown key optim.lrr"),
    Case("train-config-wrong-type", ["train", "Hallway", "--config", f"{W}/wrongtype.yaml"],
         "optim.epochs: expected int, got 'many'"),
    Case("train-config-binary", ["train", "Hallway", "--config", f"{W}/garbage.pt"], "not a text file"),
    Case("train-config-names-no-task", ["train", "--config", f"{W}/notask.yaml"],
         "notask.yaml names no task (task: {name: ...}): give the TASK (or --set task.name=...), or set task.name in the "
         "file"),
    Case("train-config-empty", ["train", "--config", f"{W}/empty.yaml"], "empty.yaml names no task"),
    Case("train-negative-actors", ["train", "Hallway", "--actors", "-2"], "--actors must be >= 0"),
    Case("train-out-is-file", ["train", "Hallway", "--out", f"{W}/file.txt"], "exists and is not a folder"),
    Case("train-out-not-writable", ["train", "Hallway", "--out", f"{RO}/run"], "cannot write"),
    Case("train-data-root-is-file", ["train", "Hallway", "--data-root", f"{W}/file.txt", "--out", f"{W}/r"],
         "exists and is not a folder", absent=(f"{W}/r",)),
    Case("train-data-root-not-writable", ["train", "Hallway", "--data-root", f"{RO}/data", "--out", f"{W}/r"],
         "cannot write", absent=(f"{W}/r",)),
    # ---- train: datasets on disk (found by their request key, damaged after generation)
    Case("dataset-shard-corrupted", [*TRAIN_DATA, "--data-root", f"{W}/data_sum", "--out", f"{W}/r1"],
         "checksum mismatch (the shard is corrupted or was changed; delete it and generate"),
    Case("dataset-manifest-incomplete", [*TRAIN_DATA, "--data-root", f"{W}/data_gone", "--out", f"{W}/r2"],
         "manifest lacks episodes, shards"),
    Case("dataset-manifest-not-object", [*TRAIN_DATA, "--data-root", f"{W}/data_list", "--out", f"{W}/r7"],
         "manifest is not a JSON object"),
    Case("dataset-manifest-not-json", [*TRAIN_DATA, "--data-root", f"{W}/data_json", "--out", f"{W}/r3"],
         "manifest is not valid JSON"),
    Case("dataset-manifest-schema", [*TRAIN_DATA, "--data-root", f"{W}/data_schema", "--out", f"{W}/r4"],
         "schema version 99, this version reads 1"),
    Case("dataset-folder-is-a-file", [*TRAIN_DATA, "--data-root", f"{W}/data_file", "--out", f"{W}/r6"],
         "File exists"),
    Case("dataset-shard-not-parquet", [*TRAIN_DATA, "--data-root", f"{W}/data_parquet", "--out", f"{W}/r5"],
         "unreadable shard"),
    # ---- evaluate
    Case("evaluate-missing-file", ["evaluate", f"{W}/none.pt"], "no checkpoint there"),
    Case("evaluate-huge-episodes", ["evaluate", f"{W}/none.pt", "--episodes", "99999999999999999999"],
         "--episodes must be in [1, 2,147,483,647]"),
    Case("evaluate-folder-without-checkpoint", ["evaluate", f"{W}/dir"],
         "dir: no checkpoint in this folder (looked for checkpoint.pt in it and in its checkpoint/)"),
    Case("evaluate-checkpoint-is-a-folder", ["evaluate", f"{W}/ckptdir"],
         "ckptdir/checkpoint.pt: a folder where a checkpoint file should be"),
    Case("evaluate-random-bytes", ["evaluate", f"{W}/garbage.pt"], "not a readable checkpoint"),
    Case("evaluate-text-file", ["evaluate", f"{W}/file.txt"], "not a readable checkpoint"),
    Case("evaluate-truncated", ["evaluate", f"{W}/trunc.pt"], "not a readable checkpoint"),
    Case("evaluate-other-torch-file", ["evaluate", f"{W}/notckpt.pt"], "not an attention-tuner checkpoint"),
    Case("evaluate-checksum-mismatch", ["evaluate", f"{W}/badsum"], "checksum mismatch"),
    Case("evaluate-pickled-code", ["evaluate", f"{W}/evil.pt"], "not a readable checkpoint",
         absent=(f"{W}/pwned",)),
    Case("evaluate-saved-config-invalid", ["evaluate", f"{W}/badcfg"], "saved configuration is not valid"),
    Case("evaluate-weights-not-of-config", ["evaluate", f"{W}/badweights"],
         "its weights do not match its configuration"),
    Case("evaluate-episodes-zero", ["evaluate", f"{W}/ckpt", "--episodes", "0"], "--episodes must be in [1, 2,147,483,647]"),
    Case("evaluate-episodes-negative", ["evaluate", f"{W}/ckpt", "--episodes", "-3"], "--episodes must be in [1, 2,147,483,647]"),
    Case("evaluate-num-envs-zero", ["evaluate", f"{W}/ckpt", "--num-envs", "0"], "--num-envs must be in [1, 2,147,483,647]"),
    Case("evaluate-kw-unknown-name", ["evaluate", f"{W}/ckpt", "--kw", "lenght=60"],
         "Hallway: unknown parameter(s) lenght"),
    Case("evaluate-kw-out-of-range", ["evaluate", f"{W}/ckpt", "--kw", "length=-1"],
         "parameter length must be >= 1, got -1"),
    Case("evaluate-kw-malformed", ["evaluate", f"{W}/ckpt", "--kw", "length:60"], "--kw 'length:60': expected key=value"),
    # ---- sweep files
    Case("sweep-file-missing", ["sweep", f"{W}/none.py"], "sweep file not found"),
    Case("sweep-file-is-folder", ["sweep", f"{W}/dir"], "is a folder, not a sweep file"),
    Case("sweep-file-not-python", ["sweep", f"{W}/file.txt"], "expected a .py file"),
    Case("sweep-syntax-error", ["sweep", f"{W}/syntax.py"], "could not load (SyntaxError"),
    Case("sweep-no-SWEEP", ["sweep", f"{W}/nosweep.py"], "defines no SWEEP = SweepSpec(...)"),
    Case("sweep-SWEEP-not-a-spec", ["sweep", f"{W}/notspec.py"], "SWEEP is a dict, not a SweepSpec"),
    Case("sweep-spec-missing-fields", ["sweep", f"{W}/missingargs.py"], "missing 2 required positional arguments"),
    Case("sweep-import-error", ["sweep", f"{W}/importerror.py"], "No module named 'attention_tuner.no_such_module'"),
    Case("sweep-raises-multiline", ["sweep", f"{W}/raises.py"], "could not load (RuntimeError: boom)"),
    Case("sweep-runs-main-on-import", ["sweep", f"{W}/selfmain.py"], "calls main(...) when imported"),
    Case("sweep-exits-on-import", ["sweep", f"{W}/exits.py"], "exits when imported (status 3)"),
    Case("sweep-unknown-key", ["sweep", f"{W}/unknownkey.py", *DRAFT], "base: unknown key optim.lrr", absent=NOTHING),
    Case("sweep-duplicate-trials", ["sweep", f"{W}/duplicate.py", *DRAFT],
         "trials 000-0 and 002-0 have the same configuration", absent=NOTHING),
    Case("sweep-vanilla-twice", ["sweep", f"{W}/samevanilla.py", *DRAFT],
         "trials 000-0.0-1.0 and 001-0.0-0.0 are one vanilla trial: they differ only in data.annotation_fraction, "
         "which a vanilla trial does not use", absent=NOTHING),
    Case("sweep-same-trial-run-twice", ["sweep", f"{W}/samerun.py", *DRAFT],
         "differ only in eval.every, which set how it runs, not what it learns", absent=NOTHING),
    Case("sweep-wrong-type", ["sweep", f"{W}/wrongtype.py", *DRAFT], "optim.epochs: expected int, got 'many'",
         absent=NOTHING),
    Case("sweep-unknown-task", ["sweep", f"{W}/unknowntask.py", *DRAFT], "unknown task 'Maze'", absent=NOTHING),
    Case("sweep-bad-layer", ["sweep", f"{W}/badlayer.py", *DRAFT], "(5, 0) is out of range", absent=NOTHING),
    Case("sweep-bad-head", ["sweep", f"{W}/badhead.py", *DRAFT], "(0, 7) is out of range", absent=NOTHING),
    Case("sweep-head-not-a-pair", ["sweep", f"{W}/headshape.py", *DRAFT], "memory.heads", absent=NOTHING),
    Case("sweep-fraction-above-1", ["sweep", f"{W}/fraction.py", *DRAFT], "annotation_fraction must be in [0, 1]",
         absent=NOTHING),
    Case("sweep-fraction-below-0", ["sweep", f"{W}/negfraction.py", *DRAFT], "annotation_fraction must be in [0, 1]",
         absent=NOTHING),
    Case("sweep-task-kwarg", ["sweep", f"{W}/taskkw.py", *DRAFT], "unknown parameter(s) lenght", absent=NOTHING),
    Case("sweep-axis-not-a-list", ["sweep", f"{W}/axisnotlist.py", *DRAFT], "space.seed: expected a non-empty list",
         absent=NOTHING),
    Case("sweep-axis-empty", ["sweep", f"{W}/axisempty.py", *DRAFT], "space.seed: expected a non-empty list",
         absent=NOTHING),
    Case("sweep-bundle-not-a-mapping", ["sweep", f"{W}/bundlenotmap.py", *DRAFT],
         "space.method.vanilla: expected a mapping of dotted overrides", absent=NOTHING),
    Case("sweep-bundle-unknown-key", ["sweep", f"{W}/bundlekey.py", *DRAFT], "unknown key memory.wieght",
         absent=NOTHING),
    Case("sweep-base-not-a-mapping", ["sweep", f"{W}/basenotmap.py", *DRAFT], "base and space must be mappings",
         absent=NOTHING),
    Case("sweep-resources-unknown", ["sweep", f"{W}/resources.py", *DRAFT], "resources: unknown key tpu",
         absent=NOTHING),
    Case("sweep-resources-negative", ["sweep", f"{W}/negresources.py", *DRAFT], "resources.cpu must be a non-negative",
         absent=NOTHING),
    Case("sweep-resources-nan", ["sweep", f"{W}/nanresources.py", *DRAFT], "resources.cpu must be a non-negative",
         absent=NOTHING),
    Case("sweep-cuda-without-a-gpu", ["sweep", f"{W}/cudanogpu.py", *DRAFT], "device: cuda, but resources.gpu is 0",
         absent=NOTHING),
    Case("sweep-description-not-text", ["sweep", f"{W}/description.py", *DRAFT], "description must be a text, got 5",
         absent=NOTHING),
    Case("sweep-name-too-long", ["sweep", f"{W}/longname.py", *DRAFT], "use at most 100 letters", absent=NOTHING),
    Case("sweep-max-failures-negative", ["sweep", f"{W}/failures.py", *DRAFT], "max_failures must be >= 0",
         absent=NOTHING),
    Case("sweep-name-with-slash", ["sweep", f"{W}/badname.py", *DRAFT], "name '../escape'", absent=NOTHING),
    Case("sweep-name-empty", ["sweep", f"{W}/emptyname.py", *DRAFT], "name ''", absent=NOTHING),
    # ---- sweep: options, tracking URIs, storage, Ray
    Case("sweep-set-unknown-key", ["sweep", OK_SWEEP, *DRAFT, "--set", "optim.lrr=1"], "unknown key optim.lrr",
         absent=NOTHING),
    Case("sweep-set-malformed", ["sweep", OK_SWEEP, *DRAFT, "--set", "optim.lr"], "expected key=value",
         absent=NOTHING),
    Case("sweep-dry-run-set-bad-value", ["sweep", OK_SWEEP, "--dry-run", "--set", "optim.lr=0"],
         "optim.lr must be > 0"),
    Case("sweep-uri-unsupported-scheme", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                          "ftp://example.org/mlruns"], "unsupported scheme 'ftp'", absent=NOTHING),
    Case("sweep-uri-no-scheme", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri", "mlruns"],
         "expected sqlite:///path", absent=NOTHING),
    Case("sweep-uri-sqlite-two-slashes", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                          "sqlite://mlruns.db"], "expected sqlite:///path", absent=NOTHING),
    Case("sweep-uri-http-refused", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                    "http://127.0.0.1:{port}"], "no MLflow server reachable", absent=NOTHING),
    Case("sweep-uri-http-unknown-host", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                         "http://no-such-host.invalid:5000"], "no MLflow server reachable",
         absent=NOTHING),
    Case("sweep-uri-http-bad-port", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                     "http://127.0.0.1:port"], "bad port", absent=NOTHING),
    Case("sweep-uri-sqlite-folder-missing", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                             "sqlite:///{ws}/nope/m.db"], "does not exist", absent=NOTHING),
    Case("sweep-uri-sqlite-not-writable", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                           "sqlite:///{ro}/m.db"], "not writable", absent=NOTHING),
    Case("sweep-uri-sqlite-not-a-database", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                             "sqlite:///{ws}/garbage.pt"], "not an SQLite database",
         absent=NOTHING),
    Case("sweep-uri-sqlite-is-folder", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                        "sqlite:///{ws}/dir"], "is a folder", absent=NOTHING),
    Case("sweep-uri-file-store", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                  "file://{ws}/mlruns"], "MLflow 3 refuses file stores unless MLFLOW_ALLOW_FILE_STORE",
         absent=(*NOTHING, f"{W}/mlruns")),
    Case("sweep-uri-file-not-writable", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri",
                                         "file://{ro}/mlruns"], "is not writable",
         env={"MLFLOW_ALLOW_FILE_STORE": "true"}, absent=NOTHING),
    Case("sweep-uri-from-environment", ["sweep", OK_SWEEP, "--storage", f"{W}/sweepstore"],
         "$MLFLOW_TRACKING_URI", env={"MLFLOW_TRACKING_URI": "ftp://example.org/x"}, absent=NOTHING),
    Case("sweep-dry-run-bad-uri", ["sweep", OK_SWEEP, "--dry-run", "--tracking-uri", "ftp://example.org/x"],
         "unsupported scheme 'ftp'"),
    Case("sweep-storage-is-file", ["sweep", OK_SWEEP, "--storage", f"{W}/file.txt", "--tracking-uri",
                                   "sqlite:///{ws}/sweep.db"], "exists and is not a folder", absent=NOTHING),
    Case("sweep-storage-not-writable", ["sweep", OK_SWEEP, "--storage", f"{RO}/store", "--tracking-uri",
                                        "sqlite:///{ws}/sweep.db"], "cannot write", absent=NOTHING),
    Case("sweep-storage-from-environment", ["sweep", OK_SWEEP, "--tracking-uri", "sqlite:///{ws}/sweep.db"],
         "$ATTENTION_TUNER_STORAGE", env={"ATTENTION_TUNER_STORAGE": "{ws}/file.txt"}, absent=NOTHING),
    Case("sweep-resume-nothing-to-resume", ["sweep", OK_SWEEP, "--resume", *DRAFT], "--resume: no earlier run",
         absent=NOTHING),
    Case("sweep-ray-address-unreachable", ["sweep", OK_SWEEP, *DRAFT], "no Ray cluster reachable",
         env={"RAY_ADDRESS": "127.0.0.1:{port}"}, absent=NOTHING),
    Case("sweep-ray-address-malformed", ["sweep", OK_SWEEP, *DRAFT], "RAY_ADDRESS='cluster': expected host:port",
         env={"RAY_ADDRESS": "cluster"}, absent=NOTHING),
    # ---- a sweep file run on its own (python sweeps/x.py, ray submit cluster.yaml sweeps/x.py)
    Case("sweep-script-unknown-option", [OK_SWEEP, "--bogus"], "unrecognized arguments: --bogus", script=True),
    Case("sweep-script-set-unknown-key", [OK_SWEEP, *DRAFT, "--set", "optim.lrr=1"], "unknown key optim.lrr",
         script=True, absent=NOTHING),
    Case("sweep-script-bad-uri", [OK_SWEEP, "--storage", f"{W}/sweepstore", "--tracking-uri", "ftp://x/y"],
         "unsupported scheme 'ftp'", script=True, absent=NOTHING),
    # ---- report
    Case("report-uri-malformed", ["report", "--experiment", "x", "--tracking-uri", "http://[::1", "--out", f"{W}/rep"],
         "not a valid URL (Invalid IPv6 URL)", absent=(f"{W}/rep",)),
    Case("report-databricks-no-profile", ["report", "--experiment", "x", "--tracking-uri", "databricks://nosuchprofile",
                                          "--out", f"{W}/rep"], "no Databricks profile 'nosuchprofile'",
         env={"DATABRICKS_CONFIG_FILE": f"{W}/none.cfg", "DATABRICKS_HOST": "", "DATABRICKS_RUNTIME_VERSION": ""}, absent=(f"{W}/rep",)),
    Case("report-neither-name", ["report", "--tracking-uri", SQLITE], "give exactly one of --experiment"),
    Case("report-both-names", ["report", "--experiment", "a", "--sweep", "b", "--tracking-uri", SQLITE],
         "give exactly one of --experiment"),
    Case("report-unknown-experiment", ["report", "--experiment", "nope", "--tracking-uri", SQLITE,
                                       "--out", f"{W}/rep"], "no MLflow experiment named 'nope'", absent=(f"{W}/rep",)),
    Case("report-unknown-sweep", ["report", "--sweep", "nope", "--tracking-uri", SQLITE, "--out", f"{W}/rep"],
         "no MLflow experiment named 'nope'", absent=(f"{W}/rep",)),
    Case("report-experiment-without-trials", ["report", "--experiment", "empty", "--tracking-uri", SQLITE,
                                              "--out", f"{W}/rep"], "no trial runs found", absent=(f"{W}/rep",)),
    Case("report-markdown-is-folder", ["report", "--sweep", "x", "--tracking-uri", SQLITE, "--out", f"{W}/rep",
                                       "--markdown", f"{W}/dir"], "is a folder, not a file", absent=(f"{W}/rep",)),
    Case("report-notes-binary", ["report", "--experiment", "empty", "--tracking-uri", SQLITE, "--out", f"{W}/rep",
                                 "--notes", f"{W}/garbage.pt"], "not a UTF-8 text file", absent=(f"{W}/rep",)),
    Case("report-notes-is-folder", ["report", "--experiment", "empty", "--tracking-uri", SQLITE, "--out", f"{W}/rep",
                                    "--notes", f"{W}/dir"], "dir: is a folder, not a text file", absent=(f"{W}/rep",)),
    Case("report-store-missing", ["report", "--experiment", "x", "--tracking-uri", "sqlite:///{ws}/none.db"],
         "no MLflow store at", absent=(f"{W}/none.db",)),
    Case("report-default-store-missing", ["report", "--experiment", "x"], "no MLflow store at",
         absent=(f"{W}/mlruns.db",)),
    Case("report-uri-unsupported-scheme", ["report", "--experiment", "x", "--tracking-uri", "mysql-ish"],
         "expected sqlite:///path"),
    Case("report-uri-http-refused", ["report", "--experiment", "x", "--tracking-uri", "http://127.0.0.1:{port}"],
         "no MLflow server reachable"),
    Case("report-uri-password-hidden", ["report", "--experiment", "x", "--tracking-uri",
                                        "http://alice:s3cret@127.0.0.1:{port}"], "'http://alice:***@127.0.0.1:",
         hidden="s3cret"),
    Case("report-uri-database-driver-missing", ["report", "--experiment", "x", "--tracking-uri",
                                                "postgresql+nosuchdriver://bob:s3cret@127.0.0.1:{port}/mlflow"],
         "the database driver nosuchdriver is not installed", hidden="s3cret"),
    Case("report-uri-not-a-database", ["report", "--experiment", "x", "--tracking-uri", "sqlite:///{ws}/file.txt"],
         "not an SQLite database"),
    Case("report-file-store-missing", ["report", "--experiment", "x", "--tracking-uri", "file://{ws}/none"],
         "no MLflow store at", env={"MLFLOW_ALLOW_FILE_STORE": "true"}, absent=(f"{W}/none",)),
    Case("report-out-is-file", ["report", "--experiment", "empty", "--tracking-uri", SQLITE, "--out",
                                f"{W}/file.txt"], "exists and is not a folder"),
    Case("report-out-not-writable", ["report", "--experiment", "empty", "--tracking-uri", SQLITE, "--out",
                                     f"{RO}/rep"], "cannot write"),
    # ---- demo
    Case("demo-seeds-zero", ["demo", "--seeds", "0", "--out", f"{W}/demo"], "--seeds must be >= 1",
         absent=(f"{W}/demo",)),
    Case("demo-seeds-negative", ["demo", "--seeds", "-2", "--out", f"{W}/demo"], "--seeds must be >= 1",
         absent=(f"{W}/demo",)),
    Case("demo-out-is-file", ["demo", "--seeds", "1", "--out", f"{W}/file.txt"], "exists and is not a folder"),
    Case("demo-out-not-writable", ["demo", "--seeds", "1", "--out", f"{RO}/demo"], "cannot write"),
]


# ------------------------------------------------------------------------------------------ the driver


def _setup(ws: Path) -> None:
    """The inputs the cases point at (run in a forked child: the driver itself never starts torch threads)."""
    import torch

    from attention_tuner import checkpoint, demos, tracking, training
    from attention_tuner.config import TrialConfig, apply_overrides, build, to_dict
    from attention_tuner.presets import SMOKE

    (ws / "file.txt").write_text("not what you wanted\n")
    (ws / "dir").mkdir()
    (ws / "garbage.pt").write_bytes(bytes(range(256)) * 16)
    for name, text in {**SWEEP_FILES, **YAML_FILES}.items():
        (ws / name).write_text(text)
    torch.save({"weights": torch.zeros(2)}, ws / "notckpt.pt")

    cfg = apply_overrides(build(TrialConfig, {}), {**SMOKE, "task.name": "Hallway", "device": "cpu"})
    n = training.n_actions_of("Hallway", {})
    state = {"config": to_dict(cfg), "model": training.build_model(cfg, n).state_dict(), "n_actions": n}
    good = checkpoint.save(ws / "ckpt", state)
    data = bytearray(good.read_bytes())
    (ws / "trunc.pt").write_bytes(bytes(data[: len(data) // 2]))
    shutil.copytree(ws / "ckpt", ws / "badsum")
    data[len(data) // 2] ^= 0xFF
    (ws / "badsum" / checkpoint.FILE).write_bytes(bytes(data))
    checkpoint.save(ws / "badcfg", {**state, "config": {**to_dict(cfg), "optim": {"lrr": 1}}})
    wider = {**to_dict(cfg), "model": {**to_dict(cfg)["model"], "d_model": 2 * cfg.model.d_model}}
    checkpoint.save(ws / "badweights", {**state, "config": wider})  # weights of one size, config of another

    class Evil:  # what a malicious checkpoint would hold: loading it must not run os.system
        def __reduce__(self):
            return os.system, (f"touch {ws}/pwned",)

    torch.save({"config": {}, "model": Evil(), "n_actions": 1}, ws / "evil.pt")

    # A tiny dataset (the one TRAIN_DATA asks for), then damaged copies of it.
    made = demos.generate("Hallway", {"length": 5}, episodes=5, seed=0, root=ws / "data_ok", actors=0, progress=False)
    for name in ("sum", "gone", "list", "json", "schema", "parquet"):
        shutil.copytree(ws / "data_ok", ws / f"data_{name}")
    shard = "shard-00000.parquet"
    d = ws / "data_sum" / made.name
    raw = bytearray((d / shard).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / shard).write_bytes(bytes(raw))
    m = ws / "data_gone" / made.name / demos.MANIFEST
    m.write_text(json.dumps({k: v for k, v in json.loads(m.read_text()).items() if k not in ("episodes", "shards")}))
    (ws / "data_list" / made.name / demos.MANIFEST).write_text("[1, 2]")
    (ws / "data_json" / made.name / demos.MANIFEST).write_text("{not json")
    m = ws / "data_schema" / made.name / demos.MANIFEST
    m.write_text(m.read_text().replace('"schema_version": 1', '"schema_version": 99'))
    p = ws / "data_parquet" / made.name
    (p / shard).write_text("not parquet")
    manifest = json.loads((p / demos.MANIFEST).read_text())
    manifest["shards"][0]["sha256"] = demos.sha256_of(p / shard)  # right checksum and size, wrong content
    manifest["shards"][0]["bytes"] = (p / shard).stat().st_size
    (p / demos.MANIFEST).write_text(json.dumps(manifest))

    (ws / "data_file").mkdir()
    (ws / "data_file" / made.name).write_text("a file where the dataset's folder should be")
    (ws / "ckptdir" / checkpoint.FILE).mkdir(parents=True)  # a folder where the checkpoint file should be

    tracking.ensure_experiment(f"sqlite:///{ws}/store.db", "empty")  # an experiment with no trial runs


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def _readonly_folder(ws: Path) -> str:
    """A folder this process cannot write to: /sys for root (permissions do not stop root), else a chmod 555 one."""
    if os.geteuid() == 0:
        return "/sys"
    ro = ws / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    return str(ro)


def expand(text: str, ws: Path, ro: str, port: int) -> str:
    return text.replace("{ws}", str(ws)).replace("{ro}", ro).replace("{port}", str(port))


class HeavyWorkStarted(BaseException):
    """Raised in a case's child if it gets as far as Ray, generation, training or evaluation (it must not)."""


def _forbid_heavy_work() -> None:
    import ray

    from attention_tuner import demos, evaluation, training

    def forbid(what: str):
        def refuse(*args, **kwargs):
            raise HeavyWorkStarted(f"{what} was reached: the bad input was not caught early")
        return refuse

    ray.init = forbid("ray.init")
    demos.write_shard = forbid("dataset generation")
    training.train = forbid("training")
    evaluation.evaluate = forbid("evaluation")


def _start_case(case: Case, ws: Path, ro: str, port: int) -> dict:
    """Fork the child of one case; returns what ``_finish_case`` needs."""
    out, err = ws / f".{case.id}.out", ws / f".{case.id}.err"
    argv = [expand(a, ws, ro, port) for a in case.argv]
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: one CLI run, as `attention-tuner ...` would do it
        code = 1
        try:
            os.setsid()  # its own process group: a timeout kills whatever it started
            _forbid_heavy_work()
            os.chdir(ws)
            os.environ.update({k: expand(v, ws, ro, port) for k, v in case.env.items()})
            for fd, path in ((1, out), (2, err)):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(f, fd)
                os.close(f)
            try:
                if case.script:
                    import runpy

                    sys.argv = argv
                    runpy.run_path(argv[0], run_name="__main__")
                    code = 0
                else:
                    from attention_tuner.cli import main

                    code = main(argv)
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)
    return {"case": case, "pid": pid, "start": start, "out": out, "err": err, "argv": argv,
            "absent": [expand(p, ws, ro, port) for p in case.absent]}


def _finish_case(h: dict, status: int | None) -> dict:
    return {"rc": None if status is None else os.waitstatus_to_exitcode(status),
            "stdout": h["out"].read_text(errors="replace"), "stderr": h["err"].read_text(errors="replace"),
            "seconds": round(time.perf_counter() - h["start"], 2), "argv": h["argv"],
            "present": [a for a in h["absent"] if os.path.lexists(a)]}


def _run_all(cases: list[Case], ws: Path, ro: str, port: int, timeout: float, parallel: int) -> dict:
    """Every case's child, ``parallel`` at a time; a child past ``timeout`` seconds is killed (a hang)."""
    todo, out = list(cases), {}
    running: list[dict] = []
    while todo or running:
        while todo and len(running) < parallel:
            running.append(_start_case(todo.pop(0), ws, ro, port))
        time.sleep(0.01)
        for h in list(running):
            status: int | None
            done, status = os.waitpid(h["pid"], os.WNOHANG)
            if not done and time.perf_counter() - h["start"] > timeout:
                os.killpg(h["pid"], 9)  # the child and whatever it started
                os.waitpid(h["pid"], 0)
                done, status = h["pid"], None
            if done:
                running.remove(h)
                out[h["case"].id] = _finish_case(h, status)
    return out


def _driver(ws: Path, results: Path, only: list[str] | None = None, timeout: float = 20.0) -> None:
    # The heavy imports once, here (a real command pays them once too; their warnings would show on stderr).
    import mlflow.tracking  # noqa: F401
    import ray  # noqa: F401
    import ray.tune  # noqa: F401

    import attention_tuner.animation  # noqa: F401
    import attention_tuner.cli  # noqa: F401
    import attention_tuner.evaluation  # noqa: F401
    import attention_tuner.report  # noqa: F401
    import attention_tuner.report_plots  # noqa: F401
    import attention_tuner.sweep  # noqa: F401
    import attention_tuner.trial  # noqa: F401

    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            f = os.open(ws / ".setup.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, 1)
            os.dup2(f, 2)  # MLflow logs its database creation: not part of any case
            _setup(ws)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("setup of the bad inputs failed:\n" + (ws / ".setup.log").read_text()[-3000:])
    ro, port = _readonly_folder(ws), _closed_port()
    cases = [c for c in CASES if only is None or c.id in only]
    out = _run_all(cases, ws, ro, port, timeout, parallel=min(2, os.cpu_count() or 1))
    results.write_text(json.dumps({"meta": {"ws": str(ws), "ro": ro, "port": port}, "cases": out}, indent=1))


def run_cases(ws: Path, only: list[str] | None = None) -> tuple[dict, str, float]:
    """Run the driver in a fresh interpreter; (results by case id, the driver's own stderr, seconds)."""
    results = ws / "results.json"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "ATTENTION_TUNER_STORAGE", "RAY_ADDRESS")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--driver", str(ws), str(results), *(only or [])],
                          capture_output=True, text=True, env=env, cwd=ws, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(results.read_text()), proc.stderr, time.perf_counter() - start


# -------------------------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    ws = tmp_path_factory.mktemp("bad_input")
    return run_cases(ws)


def message_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_the_driver_itself_prints_nothing_on_stderr(ran):
    """Import-time warnings would show on every real command; the forked cases would not see them."""
    _, driver_err, _ = ran
    assert driver_err.strip() == ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, ran):
    if case.skip_on_cuda:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    res = ran[0]["cases"][case.id]
    shown = f"argv={res['argv']}\nrc={res['rc']} ({res['seconds']} s)\nstderr:\n{res['stderr']}"
    assert res["rc"] is not None, f"hung (killed after the timeout)\n{shown}"
    assert res["rc"] != 0, shown
    assert "Traceback" not in res["stderr"], shown
    lines = message_lines(res["stderr"])
    assert len(lines) == 1, shown
    assert case.expect in lines[0], f"expected {case.expect!r}\n{shown}"
    assert not res["present"], f"left behind {res['present']}\n{shown}"
    assert not case.hidden or case.hidden not in res["stderr"] + res["stdout"], shown
    assert len(res["stderr"]) <= case.max_chars, shown[:3000]


def test_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)


REAL = [
    ([str(CONSOLE), "generate", "Hallway", "--episodes", "0"], "--episodes must be >= 1"),
    ([str(CONSOLE), "report", "--experiment", "x", "--tracking-uri", "ftp://example.org/x"], "unsupported scheme"),
    ([sys.executable, "-m", "attention_tuner.cli", "evaluate", "none.pt", "--episodes", "0"], "--episodes must be"),
    ([sys.executable, "-m", "attention_tuner.cli", "sweep", "none.py", "--bogus"], "unrecognized arguments"),
]


def test_real_processes_console_script_and_python_m(tmp_path):
    """A few cases end to end in fresh interpreters: the console script and ``python -m`` (no fork)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    procs = [(subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True), expect) for argv, expect in REAL]
    for p, expect in procs:
        out, err = p.communicate(timeout=120)
        lines = message_lines(err)
        assert p.returncode == 2 and len(lines) == 1 and expect in lines[0], (p.args, p.returncode, err)
        assert lines[0].startswith("attention-tuner"), lines


# ------------------------------------------------------------------------------- security, cheaply


CREDENTIAL_WORDS = ("password", "passwd", "secret", "token", "credential", "api_key", "apikey", "access_key",
                    "private_key", "auth")


def test_logged_mlflow_params_hold_no_credentials():
    """Every param a sweep logs (parent and child runs of every sweep file) names a config field or label."""
    from attention_tuner import sweep

    for path in sorted((ROOT / "sweeps").glob("*.py")):
        spec = sweep.load_sweep(path)
        ts = sweep.trials(spec)
        logged = [sweep.parent_params(spec, ts)] + [sweep.trial_params(t) for t in ts]
        for params in logged:
            for key, value in params.items():
                assert not any(w in key.lower() for w in CREDENTIAL_WORDS), (path.name, key)
                assert "@" not in str(value), (path.name, key, value)  # no user:password@host URIs


def test_shown_tracking_uris_hide_passwords():
    from attention_tuner.tracking import display_uri

    assert display_uri("http://alice:s3cret@mlflow.internal:5000") == "http://alice:***@mlflow.internal:5000"
    assert display_uri("postgresql://bob:pw@db/mlflow") == "postgresql://bob:***@db/mlflow"
    assert display_uri("sqlite:////tmp/mlruns.db") == "sqlite:////tmp/mlruns.db"


def test_a_local_ray_started_by_a_sweep_has_its_dashboard_on_loopback_only():
    """Every ``ray.init`` in sweep.py that starts a local instance (no address) names dashboard_host=127.0.0.1."""
    import ast

    tree = ast.parse((ROOT / "platform" / "attention_tuner" / "sweep.py").read_text())
    inits = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "init"
             and getattr(n.func.value, "id", "") == "ray"]
    local = [n for n in inits if not any(k.arg == "address" for k in n.keywords)]
    assert local and all(any(k.arg == "dashboard_host" and getattr(k.value, "value", None) == "127.0.0.1"
                             for k in n.keywords) for n in local)


# ------------------------------------------------------------------------------------ as a script


def _table(results: dict) -> str:
    """The Markdown table in docs/reliability.md: command, message, test (workspace paths made relative)."""
    meta = results["meta"]

    def local(text: str) -> str:
        for ws in (meta["ws"], "{ws}"):  # inside a URI the workspace is $PWD, elsewhere paths are relative
            for prefix in ("sqlite:///", "file://"):
                text = text.replace(prefix + ws, prefix + "$PWD")
            text = text.replace(ws + "/", "").replace(ws, ".")
        return text.replace(f":{meta['port']}", ":PORT").replace("{port}", "PORT")

    rows = ["| command | message (stderr, exit status) | test |", "|---|---|---|"]
    for case in CASES:
        if case.id not in results["cases"]:
            continue
        res = results["cases"][case.id]
        argv = case.argv if case.script else ["attention-tuner", *case.argv]
        if case.script:
            argv = ["python", *argv]
        env = " ".join(f"{k}={v}" for k, v in case.env.items())
        cmd = (env + " " if env else "") + " ".join(a if a and " " not in a else repr(a) for a in argv)
        cmd = local(cmd.replace("{ro}", meta["ro"]))
        lines = message_lines(res["stderr"])
        msg = local(lines[-1] if len(lines) == 1 else f"{len(lines)} lines, last: {lines[-1]}" if lines else "(nothing)")
        cell = lambda s: s.replace("|", "\\|")  # noqa: E731
        rows.append(f"| `{cell(cmd)}` | `{cell(msg)}` ({res['rc']}) | "
                    f"`tests/test_bad_input.py::test_bad_input[{case.id}]` |")
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--driver"]:
        _driver(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:] or None)
    elif sys.argv[1:2] == ["--table"]:
        with tempfile.TemporaryDirectory() as tmp:
            res, err, seconds = run_cases(Path(tmp), sys.argv[2:] or None)
        print(_table(res))
        print(f"\n{len(res['cases'])} cases in {seconds:.1f} s; driver stderr: {err.strip() or '(empty)'}", file=sys.stderr)
    else:
        sys.exit("usage: python tests/test_bad_input.py --table [CASE_ID ...]")
