"""The one console script, ``attention-tuner``, and its subcommands. Each is a thin ``main``.

A user mistake (bad task, parameter, path, configuration) prints one line ``attention-tuner: error: ...``
and exits with status 2; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from attention_tuner.config import ConfigError, parse_assignments
from attention_tuner.demos import DatasetError

USER_ERRORS = (ValueError, ConfigError, DatasetError, FileNotFoundError, NotADirectoryError, PermissionError)


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

