"""The one console script, ``attention-tuner``, and its subcommands. Each is a thin ``main``.

A user mistake (bad task, parameter, path, configuration) prints one line ``attention-tuner: error: ...``
and exits with status 2; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from attention_tuner.config import (
    INT_MAX,
    RESERVED_TASK_KWARGS,
    ConfigError,
    check_output_file,
    check_output_folder,
    parse_assignments,
    parse_scalar,
)
from attention_tuner.console import OneLineParser, duration, run_command
from attention_tuner.presets import CLI_PRESETS as PRESETS

DESCRIPTION = ("Memory tasks with scripted experts, demonstration datasets, AttentionTuner training and evaluation, "
               "sweeps (Ray Tune, MLflow) and reports.")
class DefaultsHelp(argparse.HelpFormatter):
    """--help shows each option's default where it has one worth showing (not None or a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = not (action.default is None or action.default is False or action.default == argparse.SUPPRESS)
        if shown and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def add(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    return sub.add_parser(name, formatter_class=DefaultsHelp, **kwargs)


def task_list() -> str:
    """'Hallway, Ordering, ... or MysteryPath': the registered tasks (memory_tasks.TASKS)."""
    import memory_tasks

    *first, last = memory_tasks.TASKS
    return f"{', '.join(first)} or {last}" if first else last


def need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def kw_assignments(items: list[str] | None) -> dict[str, str]:
    """``--kw length=10`` -> {'length': '10'}: the names checked (none reserved), the values as typed."""
    out = parse_assignments(items or [], what="--kw")
    for key in out:
        if key in RESERVED_TASK_KWARGS:
            how = ("train with --set task.obs_mode=... instead" if key == "obs_mode"
                   else "the platform sets it for the pictures it draws")
            raise ConfigError(f"--kw {key}: not a task parameter ({how})")
    return out


def parse_kwargs(items: list[str] | None) -> dict[str, Any]:
    """``--kw length=10`` -> {'length': 10} (values read as YAML scalars: numbers, booleans, strings)."""
    return {key: parse_scalar(value) for key, value in kw_assignments(items).items()}


def task_kwargs(task: str, items: list[str] | None) -> dict[str, Any]:
    """``--kw`` values checked against the task itself (unknown name, wrong type, out of range)."""
    from attention_tuner.config import check_task_kwargs

    kwargs = parse_kwargs(items)
    check_task_kwargs(task, kwargs, "--kw")
    return kwargs


# ------------------------------------------------------------------------------------------ commands


def cmd_play(args: argparse.Namespace) -> int:
    import memory_tasks

    need(args.seed >= 0, f"--seed must be >= 0, got {args.seed}")
    need(1 <= args.fps <= 50, f"--fps must be between 1 and 50 (a GIF frame lasts at least 20 ms), got {args.fps}")
    memory_tasks.resolve_task(args.task)
    kwargs = task_kwargs(args.task, args.kw)
    check_output_file(args.out, "--out")
    need(Path(args.out).suffix.lower() == ".gif", f"--out {args.out}: the file is a GIF; name it *.gif")
    from attention_tuner.animation import write_gif

    out = write_gif(args.task, args.seed, args.out, kwargs, fps=args.fps)
    print(f"wrote {out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import memory_tasks

    need(args.actors is None or args.actors >= 0, f"--actors must be >= 0, got {args.actors}")
    need(args.episodes >= 1, f"--episodes must be >= 1, got {args.episodes}")
    need(args.seed >= 0, f"--seed must be >= 0, got {args.seed}")
    memory_tasks.resolve_task(args.task)
    kwargs = task_kwargs(args.task, args.kw)
    check_output_folder(args.out, "--out")
    from attention_tuner import demos

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    where = demos.check_request(demos.Request(args.task, kwargs, args.episodes, args.seed)).directory(args.out)
    before = (where / demos.MANIFEST).read_bytes() if (where / demos.MANIFEST).is_file() else None
    path = demos.generate(args.task, kwargs, episodes=args.episodes, seed=args.seed,
                          root=args.out, actors=args.actors, progress=not args.quiet)
    manifest = demos.read_manifest(path)
    reused = before is not None and (path / demos.MANIFEST).read_bytes() == before
    print(f"{path}  {memory_tasks.short_name(manifest['task'])} {manifest['kwargs']} episodes={manifest['episodes']} "
          f"failed={manifest['failed']} expert_success={manifest['expert_success_rate']:.3f}"
          + ("  (found: already generated, reused)" if reused else ""))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    """The datasets under a root: what each hash-named folder holds, and whether it is stale."""
    from attention_tuner.demos import list_datasets

    if os.path.exists(args.root) and not os.path.isdir(args.root):
        raise ValueError(f"--root {args.root}: exists and is not a folder")
    if not os.path.isdir(args.root):
        raise ValueError(f"--root: no such folder: {args.root}")
    rows = list_datasets(args.root)
    print(f"{'folder':<30}{'task':<14}{'parameters':<34}{'episodes':>9}  {'seeds':<14}{'MB':>8}  state")
    for r in rows:
        params = "?" if r["kwargs"] is None else ", ".join(f"{k}={v}" for k, v in r["kwargs"].items()) or "(defaults)"
        episodes = "?" if r["episodes"] is None else f"{r['episodes']:,}"
        print(f"{r['folder']:<30}{r['task']:<14}{params:<34}{episodes:>9}  {r['seeds']:<14}{r['mb']:>8.1f}  "
              f"{r['state']}")
    if not rows:
        print(f"(no datasets under {args.root})")
    return 0


def trial_config(args: argparse.Namespace):
    from attention_tuner.config import TrialConfig, apply_overrides, build, read_yaml

    if args.task is None and args.config is None:
        raise ValueError(f"give the TASK ({task_list()}) or --config FILE")
    sets = parse_assignments(args.set or [])
    values = read_yaml(args.config) if args.config is not None else {}
    task = values.get("task")
    named = task.get("name") if isinstance(task, dict) else None
    if args.config is not None and named is None and (task is None or isinstance(task, dict)):
        given = args.task if args.task is not None else sets.get("task.name")
        if given is None:
            raise ConfigError(f"{args.config} names no task (task: {{name: ...}}): give the TASK (or --set "
                              "task.name=...), or set task.name in the file")
        values = {**values, "task": {**(task or {}), "name": given}}  # its task parameters are that task's
    cfg = build(TrialConfig, values)
    overrides: dict[str, Any] = {}
    for preset in args.preset or []:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        overrides.update(PRESETS[preset])
    if args.task is not None and named is not None:
        import memory_tasks

        given = args.task
        with contextlib.suppress(ValueError):  # an unknown TASK: the configuration's check names it below
            given = memory_tasks.short_name(args.task)
        if given != memory_tasks.short_name(cfg.task.name):
            raise ConfigError(f"TASK {args.task} differs from --config's task.name {cfg.task.name} (its task "
                              "parameters are that task's): leave TASK out, or set task.name in the file")
    if args.task is not None:
        overrides["task.name"] = args.task
    for key, value in kw_assignments(args.kw).items():  # into --config's task parameters; read as --set values
        overrides[f"task.kwargs.{key}"] = value
    overrides.update(sets)
    return apply_overrides(cfg, overrides)


def evaluated_at(cfg) -> str:
    """", at length=60" when the closed-loop evaluation plays other task parameters (eval.kwargs) than training."""
    import memory_tasks

    trained = {**memory_tasks.parameters(cfg.task.name), **cfg.task.kwargs}
    other = {k: v for k, v in cfg.eval_task_kwargs.items() if trained.get(k, object()) != v}
    return ", at " + ", ".join(f"{k}={v}" for k, v in other.items()) if other else ""


def trial_summary(cfg, device: str) -> str:
    """One line, before anything starts: what is trained, how big, how long, where."""
    from attention_tuner.config import approx_parameters

    kwargs = ", ".join(f"{k}={v}" for k, v in cfg.task.kwargs.items())
    task = f"{cfg.task.name} ({kwargs})" if kwargs else cfg.task.name
    if cfg.algorithm == "ppo_lstm":
        return f"training {task}, seed {cfg.seed}: PPO with an LSTM (RL baseline), {cfg.rl.env_steps:,} environment steps"
    m = cfg.model
    line = (f"training {task} ({cfg.task.obs_mode} observations), seed {cfg.seed}: {cfg.method}, d_model {m.d_model}, {m.n_layers} layers x {m.n_heads} "
            f"heads, about {approx_parameters(m) / 1e6:.1f}M parameters; {cfg.data.episodes:,} demonstrations, "
            f"{cfg.optim.epochs} epochs of batch {cfg.optim.batch_size}, on the {device.upper()}")
    if device == "cpu" and m.d_model >= 512:
        line += " (the paper's model size: hours on a CPU; --preset cpu is a CPU-sized model)"
    return line


def progress_head(cfg, epoch: int, m: dict[str, float], took: float | None = None) -> str:
    """'epoch  3/50 (1.2 s each, ~1 min left)' from ``took``, the seconds an epoch takes with its share of the
    evaluations (else the epoch's training and evaluation time in ``m``); for the RL baseline 'iteration 7'."""
    if cfg.algorithm == "ppo_lstm":
        return f"iteration {epoch:>4}"
    n = cfg.optim.epochs
    head = f"epoch {epoch:>{len(str(n))}}/{n}"
    if took is None and m.get("perf/epoch_s"):
        took = m["perf/epoch_s"] + (m["eval/episodes"] / m["eval/episodes_per_s"] if m.get("eval/episodes_per_s") else 0)
    if not took or epoch >= n:
        return head

    return f"{head} ({duration(took)} each, ~{duration(took * (n - epoch))} left)"


def cmd_config(args: argparse.Namespace) -> int:
    """The configuration `train` would use with the same arguments, as YAML with each key's meaning: save it,
    edit it, pass it back with --config."""
    from attention_tuner.config import commented_yaml

    print(commented_yaml(trial_config(args)), end="")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    need(args.actors is None or args.actors >= 0, f"--actors must be >= 0, got {args.actors}")
    cfg = trial_config(args)  # every value checked before anything starts
    if cfg.algorithm == "ppo_lstm":
        from attention_tuner.rl import require_rllib

        require_rllib()
    out = check_output_folder(f"runs/{cfg.task.name}-{cfg.method}-seed{cfg.seed}" if args.out is None else args.out,
                              "--out")
    check_output_folder(args.data_root, "--data-root")
    device = "cpu"
    if cfg.algorithm != "ppo_lstm":
        from attention_tuner.training import pick_device

        device = pick_device(cfg.device).type  # device cuda without one: said now, not after the dataset
    from attention_tuner.trial import run_trial

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print(trial_summary(cfg, device), flush=True)

    seen: list[tuple[int, float]] = []  # (epoch, when it was reported): the time an epoch takes, evaluations in

    def show(m: dict[str, float], epoch: int, _ckpt: Path | None) -> None:
        seen.append((epoch, time.monotonic()))
        (e0, t0), (e1, t1) = seen[0], seen[-1]
        took = (t1 - t0) / (e1 - e0) if e1 > e0 else None  # the first epoch: from its own metrics
        keys = ("train/action_loss", "train/memory_loss", "val/accuracy", "val/decision_accuracy",
                "val/expert_attention_mass", "val/recall_attention_mass", "train/episode_return_mean",
                "perf/env_steps", "eval/success_rate", "perf/samples_per_s")
        print(f"{progress_head(cfg, epoch, m, took)}  " + "  ".join(f"{k}={m[k]:.3f}" for k in keys if k in m), flush=True)

    result = run_trial(cfg, out, args.data_root, report=show, actors=args.actors, progress=True)
    final = {k: v for k, v in result["metrics"].items() if k in ("eval/success_rate", "val/accuracy")}
    if final and result["done_before"] is None:
        print("done: " + ", ".join(f"{k}={v:.3f}" for k, v in final.items())
              + (f" (on {cfg.eval.episodes} held-out seeds{evaluated_at(cfg)})" if "eval/success_rate" in final else ""))
    if result["done_before"] is not None:
        unit, budget = (("iterations", f"{cfg.rl.env_steps} environment steps") if cfg.algorithm == "ppo_lstm"
                        else ("epochs", f"{cfg.optim.epochs} epochs"
                              + (f" or {cfg.optim.time_budget_s:g} s" if cfg.optim.time_budget_s > 0 else "")))
        print(f"nothing to train: the run in {result['run_dir']} already has {result['done_before']} {unit} "
              f"(asked for {budget}); its config.yaml and checkpoint are unchanged")
    pictures = "curves.png" if cfg.algorithm == "ppo_lstm" else "attention.png, curves.png"
    print(f"run folder: {result['run_dir']} (checkpoint/, metrics.jsonl, {pictures})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    need(1 <= args.episodes <= INT_MAX, f"--episodes must be in [1, {INT_MAX:,}], got {args.episodes}")
    need(1 <= args.num_envs <= INT_MAX, f"--num-envs must be in [1, {INT_MAX:,}], got {args.num_envs}")
    extra = parse_kwargs(args.kw)
    from attention_tuner import checkpoint, rl
    from attention_tuner.config import check_task_kwargs
    from attention_tuner.evaluation import evaluate
    from attention_tuner.training import load_policy

    try:
        state = checkpoint.load(args.checkpoint)
        rl_baseline = state["config"].get("algorithm") == "ppo_lstm"
        if rl_baseline:
            module, cfg = rl.load_module(args.checkpoint)
        else:
            model, cfg, _ = load_policy(args.checkpoint)
    except rl.RLlibMissing:
        raise
    except ConfigError as e:
        raise checkpoint.CheckpointError(
            f"{checkpoint.resolve(args.checkpoint)}: saved configuration is not valid here ({e})") from None
    kwargs = {**cfg.eval_task_kwargs, **extra}  # as the trial's own evaluations, then --kw
    check_task_kwargs(cfg.task.name, kwargs, "--kw")
    if rl_baseline:
        res = rl.evaluate(module, cfg, kwargs, args.episodes, args.num_envs)
    else:
        res = evaluate(model, cfg.task.name, kwargs, args.episodes, args.num_envs)
    res = {k: int(v) if k == "episodes" else round(v, 4) for k, v in res.items()}
    from attention_tuner.datasets import eval_seeds

    seeds = eval_seeds(int(res["episodes"]))
    print(json.dumps({"checkpoint": str(checkpoint.resolve(args.checkpoint)), "epoch": state.get("epoch"),
                      "task": cfg.task.name, "kwargs": kwargs, "obs_mode": cfg.task.obs_mode,
                      "seeds": f"{seeds[0]}-{seeds[-1]} (held out from every dataset)", **res}, indent=2))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from attention_tuner.sweep import execute, load_sweep

    return execute(load_sweep(args.file), args)


def cmd_report(args: argparse.Namespace) -> int:
    from attention_tuner import tracking
    from attention_tuner.report import report

    if bool(args.experiment) == bool(args.sweep):
        raise ValueError("give exactly one of --experiment NAME or --sweep NAME")
    if args.out is None:  # beside the runs (ignored by git), as `make run` writes its report
        name = (args.experiment or args.sweep).strip("/").replace("/", "_") or "report"  # e.g. Databricks paths
        args.out = str(Path("runs") / "reports" / name)
    check_output_folder(args.out, "--out")
    if args.markdown is not None:  # a file; its folder is created when missing, as for --out
        if Path(args.markdown).is_dir() or not str(args.markdown).strip():
            check_output_file(args.markdown, "--markdown")  # the message for a folder or an empty path
        check_output_folder(Path(args.markdown).parent, "--markdown")
    uri = tracking.resolve_uri(args.tracking_uri, must_exist=True)  # a report never creates an empty store
    if args.notes:
        if os.path.isdir(args.notes):
            raise ValueError(f"--notes {args.notes}: is a folder, not a text file")
        if not os.path.isfile(args.notes):
            raise ValueError(f"--notes: no such file: {args.notes}")
        try:
            Path(args.notes).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"--notes {args.notes}: not a UTF-8 text file") from None
    md = report(uri, args.out, experiment=args.experiment, sweep=args.sweep, markdown=args.markdown,
                notes=args.notes, on_removed=lambda p: print(f"removed {p}: an earlier report's, whose tables and "
                                                             "plots in that folder this report has replaced"))
    folder = Path(args.out).resolve()
    where = "beside it" if md.resolve().parent == folder else f"in {args.out}"
    print(f"wrote {md} (tables as Markdown; the CSVs and PNG plots {where})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Every task's expert on a few seeds: a quick look that the installation works."""
    import memory_tasks

    need(args.seeds >= 1, f"--seeds must be >= 1, got {args.seeds}")
    out = check_output_folder(args.out, "--out")
    from attention_tuner.animation import summary, write_gif

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
    parser = OneLineParser(prog="attention-tuner", description=DESCRIPTION, formatter_class=DefaultsHelp)
    sub = parser.add_subparsers(dest="command", required=True)

    p = add(sub, "play", help="write a GIF of the expert's episode, recalled frames marked")
    p.add_argument("task", help=task_list())
    p.add_argument("--seed", type=int, default=0, help="environment seed")
    p.add_argument("--kw", action="append", metavar="KEY=VALUE", help="task parameter, e.g. length=10")
    p.add_argument("--out", default="episode.gif", help="GIF file to write")
    p.add_argument("--fps", type=int, default=4, help="frames per second")
    p.set_defaults(func=cmd_play)

    p = add(sub, "generate", help="generate (or find) an expert dataset with Ray actors")
    p.add_argument("task", help=task_list())
    p.add_argument("--kw", action="append", metavar="KEY=VALUE", help="task parameter, e.g. length=10")
    p.add_argument("--episodes", type=int, required=True, help="successful expert episodes to store")
    p.add_argument("--seed", type=int, default=0, help="first environment seed")
    p.add_argument("--actors", type=int, default=None,
                   help="Ray actors (default: sized to the CPUs Ray has; 0: no Ray, this process)")
    p.add_argument("--out", default="datasets", help="dataset root folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    def trial_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("task", nargs="?", help=f"{task_list()} (with --config: optional, its task.name)")
        p.add_argument("--kw", action="append", metavar="KEY=VALUE", help="task parameter, e.g. length=10")
        p.add_argument("--set", action="append", metavar="DOTTED.KEY=VALUE",
                       help="configuration override, e.g. optim.lr=1e-3 or memory.weight=0 (vanilla); every key: "
                            "attention-tuner config TASK")
        p.add_argument("--preset", action="append", choices=sorted(PRESETS),
                       help="named overrides, repeatable, applied in order before --set; without any, the paper's "
                            "settings (d_model 512, 300 epochs: GPU-sized); cpu: a CPU-sized model; vanilla: the "
                            "memory loss off (attention_tuner, on, is the default)")
        p.add_argument("--config", help="YAML trial configuration to start from")

    p = add(sub, "datasets", help="list the datasets under a folder: task, parameters, episodes, size, stale or not")
    p.add_argument("--root", default="datasets", help="dataset root folder (sweeps: runs/sweeps/datasets)")
    p.set_defaults(func=cmd_datasets)

    p = add(sub, "config", help="print the configuration train would use, every key with what it does (YAML)")
    trial_arguments(p)
    p.set_defaults(func=cmd_config)

    p = add(sub, "train", help="train one trial (dataset generated or reused)")
    trial_arguments(p)
    p.add_argument("--out", help="run folder (default runs/<task>-<method>-seed<seed>); resumed if present")
    p.add_argument("--data-root", default="datasets", help="dataset root folder")
    p.add_argument("--actors", type=int, default=None,
                   help="Ray actors for generation (default: one per CPU; 0: in-process, no Ray)")
    p.set_defaults(func=cmd_train)

    p = add(sub, "evaluate", help="closed-loop evaluation of a checkpoint on held-out seeds")
    p.add_argument("checkpoint", help="a run folder, its checkpoint/ folder or a checkpoint file")
    p.add_argument("--episodes", type=int, default=100, help="episodes on held-out seeds")
    p.add_argument("--num-envs", type=int, default=32, help="environments stepped together")
    p.add_argument("--kw", action="append", metavar="KEY=VALUE",
                   help="task parameter override, e.g. length=60 (length generalisation); default: the "
                        "task parameters the trial was evaluated with (task.kwargs, then eval.kwargs)")
    p.set_defaults(func=cmd_evaluate)

    from attention_tuner.sweep import build_parser as sweep_parser

    p = add(sub, "sweep", help="run a sweep file with Ray Tune, tracked in MLflow",
                       parents=[sweep_parser()], add_help=False)
    p.add_argument("file", help="sweep file, e.g. sweeps/quickstart.py")
    p.set_defaults(func=cmd_sweep)

    p = add(sub, "report", help="tables and plots from the MLflow runs of an experiment or sweep")
    p.add_argument("--experiment", help="MLflow experiment name: every sweep run in it, each trial counted once (its latest finished run)")
    p.add_argument("--sweep", help="sweep name (the trial runs of its latest parent run)")
    p.add_argument("--out", help="folder for report.md, CSVs and PNGs (default runs/reports/NAME)")
    p.add_argument("--markdown", help="write the Markdown report here instead of OUT/report.md (e.g. docs/results.md)")
    p.add_argument("--notes", help="a Markdown file to include after the summary (interpretation, machine)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns.db)")
    p.set_defaults(func=cmd_report)

    p = add(sub, "demo", help="run every task's expert on a few seeds and write GIFs")
    p.add_argument("--seeds", type=int, default=20, help="seeds per task (seeds 0..N-1) for the table")
    p.add_argument("--out", default="runs/demo", help="folder for the GIFs (one per task, seed 0)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    def command() -> int:
        args = build_parser().parse_args(argv)  # inside: Ctrl-C while the modules load is an interruption too
        return int(args.func(args) or 0)

    return run_command("attention-tuner", command)


if __name__ == "__main__":
    sys.exit(main())

