"""The one console script, ``attention-tuner``, and its subcommands. Each is a thin ``main``.

A user mistake (bad task, parameter, path, configuration) prints one line ``attention-tuner: error: ...``
and exits with status 2; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from attention_tuner.checkpoint import CheckpointError
from attention_tuner.config import ConfigError, parse_assignments
from attention_tuner.demos import DatasetError
from attention_tuner.presets import CLI_PRESETS as PRESETS

USER_ERRORS = (ValueError, ConfigError, DatasetError, CheckpointError, FileNotFoundError, NotADirectoryError, PermissionError)


def parse_kwargs(items: list[str] | None) -> dict[str, Any]:
    """``--kw length=10`` -> {'length': 10} (values read as YAML scalars: numbers, booleans, strings)."""
    import yaml

    out = {}
    for key, value in parse_assignments(items or [], what="--kw").items():
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------ commands


def cmd_play(args: argparse.Namespace) -> int:
    from attention_tuner.animation import write_gif

    out = write_gif(args.task, args.seed, args.out, parse_kwargs(args.kw), fps=args.fps)
    print(f"wrote {out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from attention_tuner import demos

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    path = demos.generate(args.task, parse_kwargs(args.kw), episodes=args.episodes, seed=args.seed,
                          root=args.out, actors=args.actors, progress=not args.quiet)
    manifest = demos.read_manifest(path)
    print(f"{path}  episodes={manifest['episodes']} failed={manifest['failed']} "
          f"expert_success={manifest['expert_success_rate']:.3f}")
    return 0


def trial_config(args: argparse.Namespace):
    from attention_tuner.config import TrialConfig, apply_overrides, build, load_yaml

    cfg = load_yaml(args.config) if args.config else build(TrialConfig, {})
    overrides: dict[str, Any] = {}
    for preset in args.preset or []:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        overrides.update(PRESETS[preset])
    overrides["task.name"] = args.task
    kwargs = parse_kwargs(args.kw)
    if kwargs:
        overrides["task.kwargs"] = kwargs
    overrides.update(parse_assignments(args.set or []))
    return apply_overrides(cfg, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from attention_tuner.trial import run_trial

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cfg = trial_config(args)
    out = Path(args.out or f"runs/{cfg.task.name}-{cfg.method}-seed{cfg.seed}")

    def show(m: dict[str, float], epoch: int, _ckpt: Path | None) -> None:
        keys = ("train/action_loss", "train/memory_loss", "val/accuracy", "val/decision_accuracy",
                "val/expert_attention_mass", "eval/success_rate", "perf/samples_per_s")
        print(f"epoch {epoch:>4}  " + "  ".join(f"{k}={m[k]:.3f}" for k in keys if k in m), flush=True)

    result = run_trial(cfg, out, args.data_root, report=show, actors=args.actors, progress=True)
    print(f"run folder: {result['run_dir']} (checkpoint/, metrics.jsonl, attention.png, curves.png)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from attention_tuner.evaluation import evaluate
    from attention_tuner.training import load_policy

    model, cfg, _ = load_policy(args.checkpoint)
    kwargs = {**cfg.task.kwargs, **parse_kwargs(args.kw)}
    res = evaluate(model, cfg.task.name, kwargs, args.episodes, args.num_envs)
    print(json.dumps({"task": cfg.task.name, "kwargs": kwargs, **res}, indent=2))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from attention_tuner.sweep import execute, load_sweep

    return execute(load_sweep(args.file), args)


def cmd_report(args: argparse.Namespace) -> int:
    from attention_tuner import tracking
    from attention_tuner.report import report

    if bool(args.experiment) == bool(args.sweep):
        raise ValueError("give exactly one of --experiment NAME or --sweep NAME")
    md = report(tracking.resolve_uri(args.tracking_uri), args.out, experiment=args.experiment, sweep=args.sweep)
    print(f"wrote {md} (tables as Markdown and CSV, plots as PNG beside it)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Every task's expert on a few seeds: a quick look that the installation works."""
    import memory_tasks
    from attention_tuner.animation import summary, write_gif

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{'task':<14}{'seeds':>6}{'success':>9}{'mean len':>10}{'non-self pairs':>16}{'longest gap':>13}")
    for short in memory_tasks.TASKS:
        env = memory_tasks.make(short, obs_mode="symbolic")
        stats = [summary(memory_tasks.rollout(env, s)) for s in range(args.seeds)]
        mean = {k: sum(s[k] for s in stats) / len(stats) for k in stats[0]}
        print(f"{short:<14}{args.seeds:>6}{mean['success']:>9.2f}{mean['length']:>10.1f}"
              f"{mean['non_self_pairs']:>16.1f}{max(s['longest_gap'] for s in stats):>13}")
        write_gif(short, 0, out / f"{short}.gif")
    print(f"expert episodes as GIFs (recalled frames marked): {out}/<task>.gif")
    return 0


# ------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attention-tuner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("play", help="write a GIF of the expert's episode, recalled frames marked")
    p.add_argument("task", help="Hallway, Ordering, Counting, MortarMayhem or MysteryPath")
    p.add_argument("--seed", type=int, default=0, help="environment seed")
    p.add_argument("--kw", action="append", metavar="KEY=VALUE", help="task parameter, e.g. length=10")
    p.add_argument("--out", default="episode.gif", help="GIF file to write")
    p.add_argument("--fps", type=int, default=4, help="frames per second")
    p.set_defaults(func=cmd_play)

    p = sub.add_parser("generate", help="generate (or find) an expert dataset with Ray actors")
    p.add_argument("task", help="Hallway, Ordering, Counting, MortarMayhem or MysteryPath")
    p.add_argument("--kw", action="append", metavar="KEY=VALUE", help="task parameter, e.g. length=10")
    p.add_argument("--episodes", type=int, required=True, help="successful expert episodes to store")
    p.add_argument("--seed", type=int, default=0, help="first environment seed")
    p.add_argument("--actors", type=int, default=None,
                   help="Ray actors (default: sized to the CPUs Ray has; 0: no Ray, this process)")
    p.add_argument("--out", default="datasets", help="dataset root folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train", help="train one trial (dataset generated or reused)")
    p.add_argument("task", help="Hallway, Ordering, Counting, MortarMayhem or MysteryPath")
    p.add_argument("--kw", action="append", metavar="KEY=VALUE", help="task parameter, e.g. length=10")
    p.add_argument("--set", action="append", metavar="DOTTED.KEY=VALUE",
                   help="configuration override, e.g. optim.lr=1e-3 or memory.weight=0 (vanilla)")
    p.add_argument("--preset", action="append", choices=sorted(PRESETS),
                   help="named overrides applied before --set (vanilla, cpu, smoke, ...)")
    p.add_argument("--config", help="YAML trial configuration to start from")
    p.add_argument("--out", help="run folder (default runs/<task>-<method>-seed<seed>); resumed if present")
    p.add_argument("--data-root", default="datasets", help="dataset root folder")
    p.add_argument("--actors", type=int, default=None, help="Ray actors for generation (0: in-process)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="closed-loop evaluation of a checkpoint on held-out seeds")
    p.add_argument("checkpoint", help="checkpoint file or run folder's checkpoint/ directory")
    p.add_argument("--episodes", type=int, default=100, help="episodes on held-out seeds")
    p.add_argument("--num-envs", type=int, default=32, help="environments stepped together")
    p.add_argument("--kw", action="append", metavar="KEY=VALUE",
                   help="task parameter override, e.g. length=60 (length generalisation)")
    p.set_defaults(func=cmd_evaluate)

    from attention_tuner.sweep import build_parser as sweep_parser

    p = sub.add_parser("sweep", help="run a sweep file with Ray Tune, tracked in MLflow",
                       parents=[sweep_parser()], add_help=False)
    p.add_argument("file", help="sweep file, e.g. sweeps/quickstart.py")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="tables and plots from the MLflow runs of an experiment or sweep")
    p.add_argument("--experiment", help="MLflow experiment name (every trial run in it)")
    p.add_argument("--sweep", help="sweep name (the trial runs of its latest parent run)")
    p.add_argument("--out", default="reports", help="folder for report.md, CSVs and PNGs")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns.db)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="run every task's expert on a few seeds and write GIFs")
    p.add_argument("--seeds", type=int, default=20, help="seeds per task")
    p.add_argument("--out", default="runs/demo", help="folder for the GIFs")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"attention-tuner: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attention-tuner: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

