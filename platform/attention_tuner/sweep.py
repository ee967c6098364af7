"""Sweeps: a base trial configuration and a grid over dotted keys, run as Ray Tune trials tracked in MLflow.

A sweep file (``sweeps/*.py``) holds data: ``SWEEP = SweepSpec(...)`` and ``if __name__ == "__main__":
main(SWEEP)``, so both ``attention-tuner sweep sweeps/x.py`` and ``ray submit cluster.yaml sweeps/x.py``
run it. ``space`` maps a dotted key to its values, or a label to a list of named bundles of dotted
overrides (e.g. ``method: {"vanilla": {"memory.weight": 0}, ...}``); the grid is their product. Every
trial configuration is built and validated before anything starts, so a sweep can only name real fields.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attention_tuner import demos, tracking
from attention_tuner.allocator import GLIBC_ENV
from attention_tuner.config import (
    ConfigError,
    TrialConfig,
    apply_overrides,
    build,
    check_output_folder,
    flatten,
    to_dict,
)
from attention_tuner.console import OneLineParser, duration, run_command
from attention_tuner.outcomes import (
    NOT_AN_ARM,
    arm_label,
    main_arm,
    mean_cell,
    mean_se,
    rate,
    row_from_params,
    setting_defaults,
    trial_identity,
    with_arm_settings,
)
from attention_tuner.presets import (  # noqa: F401  (for sweep files)
    CPU_MODEL,
    METHODS,
    PAPER_MODEL,
    PAPER_TASKS,
    RL_BASELINE,
)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    """Experiment name in MLflow and folder name under the storage root."""
    base: dict[str, Any]
    """Dotted overrides of the default TrialConfig shared by every trial."""
    space: dict[str, Any]
    """Dotted key -> list of values, or label -> {name: {dotted overrides}}; the grid is the product."""
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    """Per trial: CPUs and (fractional) GPUs."""
    metric: str = "eval/success_rate"
    """The metric Tune records as the trial's result (maximised)."""
    max_failures: int = 2
    """Retries of a failed trial, each from its last checkpoint."""
    description: str = ""
    """What the sweep shows, for the dry run and the MLflow parent run."""


@dataclass(frozen=True)
class Trial:
    key: str
    labels: dict[str, str]
    config: TrialConfig


# ------------------------------------------------------------------------------------ loading, checking


_loading: Path | None = None  # the sweep file `load_sweep` is importing, if any


def load_sweep(path: str | Path) -> SweepSpec:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"sweep file {p}: is a folder, not a sweep file (expected a .py file)")
    if not p.is_file():
        raise ConfigError(f"sweep file not found (expected a .py file): {p}")
    if p.suffix != ".py":
        raise ConfigError(f"sweep file {p}: expected a .py file")
    spec = importlib.util.spec_from_file_location(f"sweep_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    global _loading
    _loading = p
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except ConfigError:
        raise
    except SystemExit as e:
        raise ConfigError(f"{p}: exits when imported (status {e.code})") from None
    except Exception as e:  # a broken sweep file is the user's mistake: say where, in one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(f"{p}: could not load ({type(e).__name__}{': ' + first if first else ''})") from None
    finally:
        _loading = None
    if not hasattr(module, "SWEEP"):
        raise ConfigError(f"{p}: defines no SWEEP = SweepSpec(...)")
    sweep = module.SWEEP
    if not isinstance(sweep, SweepSpec):
        raise ConfigError(f"{p}: SWEEP is a {type(sweep).__name__}, not a SweepSpec(...)")
    return sweep


def _axis(key: str, values: Any) -> list[tuple[str, dict[str, Any]]]:
    """One grid axis as (label, overrides) choices."""
    if isinstance(values, dict):
        if not values:
            raise ConfigError(f"space.{key}: expected a non-empty list of values or a mapping of named overrides")
        for name, over in values.items():
            if not isinstance(over, dict):
                raise ConfigError(f"space.{key}.{name}: expected a mapping of dotted overrides, got {over!r}")
        return [(str(name), dict(over)) for name, over in values.items()]
    if not isinstance(values, list | tuple) or not values:
        raise ConfigError(f"space.{key}: expected a non-empty list of values or a mapping of named overrides")
    return [(_short(v), {key: v}) for v in values]


def _short(v: Any) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, dict | list) else str(v)


def trials(spec: SweepSpec, extra: dict[str, Any] | None = None, allow_same: bool = False) -> list[Trial]:
    """Every point of the grid as a validated TrialConfig; the first bad one raises ConfigError, as do two trials
    that are one (`same_trial`) unless ``allow_same`` (a resumed run: it goes on with the trials it started,
    `check_same_trials`, which a run started before this check may hold)."""
    if not isinstance(spec.base, dict) or not isinstance(spec.space, dict):
        raise ConfigError(f"sweep {spec.name}: base and space must be mappings")
    _check_spec(spec)
    base = build(TrialConfig, {})
    try:
        base = apply_overrides(base, spec.base)
    except ConfigError as e:
        raise ConfigError(f"sweep {spec.name}: base: {e}") from None
    try:
        axes = [(key, _axis(key, values)) for key, values in spec.space.items()]
    except ConfigError as e:
        raise ConfigError(f"sweep {spec.name}: {e}") from None
    out = []
    for i, combo in enumerate(itertools.product(*[choices for _, choices in axes])):
        labels, overrides = {}, {}
        for (key, _), (label, over) in zip(axes, combo, strict=True):
            labels[key] = label
            overrides.update(over)
        overrides.update(extra or {})
        try:
            cfg = apply_overrides(base, overrides)
        except ConfigError as e:
            raise ConfigError(f"sweep {spec.name}: trial {labels}: {e}") from None
        if cfg.device == "cuda" and not spec.resources.get("gpu", 0):
            raise ConfigError(f"sweep {spec.name}: trial {labels}: device: cuda, but resources.gpu is 0 (Ray would "
                              "give it no GPU): ask for one, e.g. resources={'cpu': 1, 'gpu': 1}")
        key = f"{i:03d}-" + "-".join(f"{v}" for v in labels.values())
        out.append(Trial(key=_safe(key), labels=labels, config=cfg))
    if allow_same:
        return out
    seen: dict[str, Trial] = {}
    for t in out:  # the same trial twice would train twice and count once in a report (twice in the sweep's table)
        same = seen.setdefault(trial_identity({k: str(v) for k, v in trial_params(t).items()}), t)
        if same is not t:
            raise ConfigError(same_trial(spec.name, same, t))
    return out


def same_trial(name: str, a: Trial, b: Trial) -> str:
    """Why trials a and b of sweep ``name`` are one trial as reports count them (`outcomes.trial_identity`): the
    same configuration, or one that differs only in settings their method does not use (the vanilla
    Transformer's memory loss and annotation fraction), in task parameters named at their defaults, or in how
    they run (`outcomes.NOT_AN_ARM`)."""
    fa, fb = flatten(a.config), flatten(b.config)
    differ = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k) and k != "task.kwargs")  # {} flat
    if not differ:
        return (f"sweep {name}: trials {a.key} and {b.key} have the same configuration (a repeated value on an "
                "axis, or an override that makes two arms alike)")
    defaults = setting_defaults(a.config.task.name)
    groups: dict[str, list[str]] = {"default": [], "how": [], "unused": []}
    for k in differ:
        d = defaults.get(k)  # a task parameter left out is at its default
        at_default = k.startswith("task.kwargs.") and str(fa.get(k, d)) == str(fb.get(k, d)) == d
        groups["default" if at_default else "how" if k in NOT_AN_ARM else "unused"].append(k)
    method = a.config.method
    article = "an" if method[0] in "aeiou" else "a"
    why = " or ".join(text for kind, text in (
        ("unused", f"{article} {method} trial does not use"), ("default", "name a task parameter at its default"),
        ("how", "set how it runs, not what it learns")) if groups[kind])
    return (f"sweep {name}: trials {a.key} and {b.key} are one {method} trial: they differ only in "
            f"{', '.join(differ)}, which {why}; it would train twice and count once in a report (drop one: "
            "an axis of named arms, {name: {overrides}}, lists each arm once)")


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)[:120]


# A sweep's name is a folder name under the storage root and an MLflow experiment name.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME_MAX = 100  # with the date and time of a run, still a folder name well within the file system's 255 bytes


def _check_spec(spec: SweepSpec) -> None:
    if not isinstance(spec.name, str) or not NAME.fullmatch(spec.name) or len(spec.name) > NAME_MAX:
        raise ConfigError(f"sweep name {spec.name!r}: use at most {NAME_MAX} letters, digits, '_', '-' and '.' (it "
                          "names a folder and an MLflow experiment)")
    if not isinstance(spec.description, str):
        raise ConfigError(f"sweep {spec.name}: description must be a text, got {spec.description!r}")
    if not isinstance(spec.metric, str) or not spec.metric:
        raise ConfigError(f"sweep {spec.name}: metric must be a metric name such as eval/success_rate")
    if not isinstance(spec.resources, dict):
        raise ConfigError(f"sweep {spec.name}: resources must be a mapping such as {{'cpu': 1, 'gpu': 0}}")
    unknown = set(spec.resources) - {"cpu", "gpu"}
    if unknown:
        raise ConfigError(f"sweep {spec.name}: resources: unknown key {sorted(unknown)[0]} (known: cpu, gpu)")
    for k, v in spec.resources.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"sweep {spec.name}: resources.{k} must be a non-negative number, got {v!r}")
    if isinstance(spec.max_failures, bool) or not isinstance(spec.max_failures, int) or spec.max_failures < 0:
        raise ConfigError(f"sweep {spec.name}: max_failures must be >= 0, got {spec.max_failures!r}")


def datasets_needed(ts: list[Trial]) -> list[tuple[str, dict[str, Any], int, int]]:
    seen: dict[str, tuple[str, dict[str, Any], int, int]] = {}
    for t in ts:
        c = t.config
        if c.algorithm != "transformer":  # the RL baseline learns from reward alone
            continue
        item = (c.task.name, dict(c.task.kwargs), c.data.episodes, c.data.seed)
        seen.setdefault(demos.Request(*item).key, item)  # a parameter named at its default: the same dataset
    return list(seen.values())


# ----------------------------------------------------------------------------------------- dry run


# Throughputs the dry run's time estimates assume, in useful training FLOP/s: measured on the 2-core reference
# CPU (docs/performance.md: 168-230 GFLOP/s at the CPU and paper sizes); assumed, not measured, for a GPU
# worker of cluster.yaml (g5: one NVIDIA A10G, bfloat16; about a third of its tensor-core peak).
CPU_FLOPS = 150e9
GPU_FLOPS = 30e12


def conv_macs(model) -> tuple[int, int]:
    """(multiply-adds, parameters) of the observation encoder's convolutions for one observation: a convolution
    applies its weights at every output position, which 6 x parameters x tokens does not count."""
    import torch

    shapes: list[tuple[torch.nn.Conv2d, torch.Size]] = []
    convs = [m for m in model.obs_enc.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((m, o.shape))) for m in convs]
    with torch.no_grad():
        model.obs_enc(torch.zeros(1, *model.obs_shape, dtype=torch.uint8))
    for h in hooks:
        h.remove()
    macs = sum(m.weight.numel() * out[-1] * out[-2] for m, out in shapes)
    return macs, sum(m.weight.numel() for m in convs)


def step_flops(transformer_params: int, encoder_dense: int, encoder_macs: int, distinct: float) -> float:
    """Training FLOPs (forward + backward) of one episode step: 6 x parameters x tokens for the layers that see
    both of a step's tokens (observation and action), and for the observation encoder 6 x (its dense parameters
    + its convolutions' multiply-adds) on the share ``distinct`` of steps whose view it encodes (each distinct
    view of a batch once, `model.encode_unique`)."""
    return 6 * transformer_params * 2 + 6 * (encoder_dense + encoder_macs) * distinct


def distinct_share(views: list[Any]) -> float:
    """The share of distinct observations among the views of some episodes ((T, ...) uint8 arrays), as one
    batch of them holds: what the encoder computes of what it is asked."""
    import numpy as np

    rows = np.concatenate([v.reshape(len(v), -1) for v in views])
    return len(np.unique(rows, axis=0)) / max(len(rows), 1)


def cost(ts: list[Trial]) -> dict[str, float]:
    """Rough training compute from expert lengths, real steps only (no padding): `step_flops` with the
    episode length and distinct-view share of 10 expert episodes (seeds 0-9) of each task."""
    import memory_tasks
    from attention_tuner.training import build_model, n_actions_of

    episodes: dict[str, tuple[float, float]] = {}
    flops = 0.0
    for t in (t for t in ts if t.config.algorithm == "transformer"):  # the RL baseline's budget is env steps
        c = t.config
        key = json.dumps([c.task.name, c.task.kwargs], sort_keys=True)
        if key not in episodes:
            env = memory_tasks.make(c.task.name, **c.task.kwargs)
            eps = [memory_tasks.rollout(env, s) for s in range(10)]
            episodes[key] = (sum(e.length for e in eps) / 10, distinct_share([e.symbolic for e in eps]))
        length, distinct = episodes[key]
        model = build_model(c, n_actions_of(c.task.name, c.task.kwargs))
        macs, conv_params = conv_macs(model)
        encoder_params = sum(p.numel() for p in model.obs_enc.parameters())
        steps = length * c.data.episodes * (1 - c.data.val_fraction) * c.optim.epochs
        flops += steps * step_flops(model.num_parameters() - encoder_params, encoder_params - conv_params, macs,
                                    distinct)
    return {"pflop": flops / 1e15, "cpu_hours": flops / CPU_FLOPS / 3600, "gpu_hours": flops / GPU_FLOPS / 3600}


def dry_run(spec: SweepSpec, ts: list[Trial]) -> str:
    lines = [f"sweep {spec.name}: {len(ts)} trials, {spec.resources} each"]
    if spec.description:
        lines.append(spec.description)
    for t in ts:
        c = t.config
        budget = (f"env_steps={c.rl.env_steps:,}" if c.algorithm == "ppo_lstm" else
                  (f"annotated={c.data.annotation_fraction:g} " if c.method == "attention_tuner" else "")
                  + f"epochs={c.optim.epochs}")
        lines.append(f"  {t.key:<48} task={c.task.name}{c.task.kwargs or ''} method={c.method} seed={c.seed} "
                     + budget)
    lines.append("datasets (generated once each, reused when present):")
    for task, kwargs, n, seed in datasets_needed(ts):
        lines.append(f"  {task} {kwargs} episodes={n} seeds from {seed}")
    est = cost(ts)
    lines.append(f"cost estimate: {est['pflop']:.3g} PFLOP of training (6 x params x tokens, the observation "
                 "encoder on distinct views only as in 10 expert episodes, real steps only); about "
                 f"{duration(est['cpu_hours'] * 3600)} on a 2-core CPU at {CPU_FLOPS / 1e9:.0f} GFLOP/s (measured), "
                 f"{duration(est['gpu_hours'] * 3600)} of one GPU at {GPU_FLOPS / 1e12:.0f} TFLOP/s (assumed: an A10G "
                 "of cluster.yaml, bf16), in all trials together; datasets and evaluation not included")
    rl_trials = [t.config for t in ts if t.config.algorithm == "ppo_lstm"]
    if rl_trials:
        lines.append(f"RL baseline (ppo_lstm): {len(rl_trials)} trials, {sum(c.rl.env_steps for c in rl_trials):,} "
                     "environment steps in all (not in the estimate above)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- the trainable


def trainable(params: dict[str, Any], ctx: dict[str, Any]) -> None:
    """One Tune trial: continue its MLflow run, resume from its checkpoint, report every epoch.

    ``params`` is the trial's point of the grid (Tune saves it with the sweep); ``ctx`` (the tracking URI, the
    MLflow ids, the folders) comes from the session that runs it (`tune.with_parameters`), so a sweep resumed
    after its head was replaced reaches the MLflow server where it is now, and no URI is written to disk."""
    import ray
    import ray.tune as tune

    from attention_tuner.trial import run_trial

    spec = params["trial"]
    cfg = build(TrialConfig, spec["config"])
    uri, run_dir = ctx["uri"], Path(ctx["trials"]) / spec["key"]
    run_id = tracking.child_run(uri, ctx["experiment_id"], ctx["parent"], spec["key"], ctx["sweep"],
                                trial_params(Trial(spec["key"], spec["labels"], cfg)), ctx.get("sweep_id", ""))
    run_dir.mkdir(parents=True, exist_ok=True)
    demos.atomic_write_bytes(run_dir / "worker.pid", f"{os.getpid()}\n".encode())  # which process runs it
    keep_reported_checkpoint(run_dir / "checkpoint", tune.get_checkpoint())
    # A retry trains again the epochs after its reported checkpoint; those logged before it was killed keep
    # their first values (the same, up to float rounding on another node), each step once in the run.
    logged = tracking.logged_steps(uri, run_id)
    last: dict[str, float] = {}

    def report(metrics: dict[str, float], epoch: int, ckpt: Path | None) -> None:
        if epoch not in logged:
            tracking.log_metrics(uri, run_id, metrics, epoch)
        saved = tune.Checkpoint.from_directory(str(ckpt.parent)) if ckpt is not None else None
        last.clear()
        last.update(metrics)
        tune.report(dict(metrics), checkpoint=saved)

    try:
        cfg, device = trial_device(cfg, ray.get_gpu_ids() if ray.is_initialized() else None)
        tracking.set_tags(uri, run_id, {"device": device})  # what `device: auto` became on this node
        result = run_trial(cfg, run_dir, ctx["data_root"], report=report)
        config_file = [run_dir / "config.yaml"] if (run_dir / "config.yaml").is_file() else []  # for `train --config`
        for art in [*result["artifacts"], *config_file]:
            tracking.log_artifact(uri, run_id, art)
        tracking.log_artifact(uri, run_id, result["checkpoint"], "checkpoint")
        if result["manifest"] is not None:  # the RL baseline learns from no dataset
            manifest = run_dir / "dataset_manifest.json"
            demos.atomic_write_bytes(manifest, json.dumps(result["manifest"], indent=2).encode())
            tracking.log_artifact(uri, run_id, manifest)
        tracking.finish(uri, run_id)
    except Exception:
        tracking.finish(uri, run_id, "FAILED")
        raise
    # Last, once its run is finished: the mark that the trial is done, with its final metrics (a retried or
    # resumed trial that had trained every epoch reports none again). Tune's own `done` cannot say it: Tune
    # leaves it out of the results it saves (a resumed sweep's finished trials lack it) and ends the trials it
    # stopped at Ctrl-C as TERMINATED too.
    tune.report({**result["metrics"], **last, COMPLETE: 1})


def trial_device(cfg: TrialConfig, gpu_ids: list[Any] | None) -> tuple[TrialConfig, str]:
    """The configuration a sweep trial trains with and its device, named for its MLflow run ("cuda (NVIDIA
    A10G)", "cpu"). ``gpu_ids``: the GPUs Ray gave the trial (None: not run by Ray).

    Under ``device: auto`` a trial Ray gave no GPU trains on the CPU: Ray 2.60 no longer hides a node's GPUs
    from such a trial, and taking one would share it, unaccounted, with the trials that were given it. A trial
    that Ray gave a GPU and that would fall back to the CPU is refused: on a GPU node that means a CPU-only
    torch or a driver mismatch, and training on the CPU there would take days unnoticed."""
    import torch

    from attention_tuner.training import pick_device

    if gpu_ids is not None and not gpu_ids and cfg.device == "auto":
        cfg = dataclasses.replace(cfg, device="cpu")
    device = pick_device(cfg.device)  # device: cuda without CUDA is a ValueError already
    if gpu_ids and device.type != "cuda" and cfg.device == "auto":
        raise RuntimeError(f"this trial was given GPU {gpu_ids} but torch {torch.__version__} sees no CUDA device "
                           "(a CPU-only torch build, or a driver too old for it): not training on the CPU; set "
                           "device: cpu in the sweep to mean it")
    return cfg, f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


def keep_reported_checkpoint(folder: Path, reported: Any) -> None:
    """Make ``folder`` hold the checkpoint Tune last got reported (``tune.get_checkpoint()``), or none.

    A trial saves its checkpoint, logs the epoch's metrics to MLflow, then reports both to Tune. Killed in
    between, its local checkpoint is an epoch ahead of what Tune and MLflow have: resuming from it would skip
    that epoch's metrics. So a retry continues from the reported checkpoint (on any node), and with none
    reported starts over; an epoch logged to MLflow but not reported is then trained again, and `trainable`
    does not log it a second time.
    """
    if folder.exists():
        shutil.rmtree(folder)
    if reported is not None:
        reported.to_directory(str(folder))


def trial_params(t: Trial) -> dict[str, Any]:
    """What a trial's MLflow run logs as params: every config field (task kwargs too) and its grid labels; the
    RL baseline's settings (rl.*) only for its trials, where they are used (else 15 unused columns in MLflow's
    compare view). A report's trial identity does not change with it (`outcomes.trial_identity`)."""
    fields = {k: v for k, v in flatten(t.config).items() if t.config.algorithm == "ppo_lstm" or not k.startswith("rl.")}
    return {**fields, **{f"label.{k}": v for k, v in t.labels.items()}}


def parent_params(spec: SweepSpec, ts: list[Trial]) -> dict[str, Any]:
    """What the sweep's parent run logs as params: its size, description, grid axes and base configuration
    (``base.<dotted key>``, what every trial starts from)."""
    return {"trials": len(ts), "description": spec.description, **flatten_space(spec),
            **{f"base.{k}": _short(v) for k, v in spec.base.items()}}


# ------------------------------------------------------------------------------------------- running


def storage_root(storage: str | None) -> Path:
    """--storage, else $ATTENTION_TUNER_STORAGE, else runs/sweeps; checked writable, created by nobody yet."""
    if storage:
        given, what = storage, "--storage"
    elif os.environ.get("ATTENTION_TUNER_STORAGE"):
        given, what = os.environ["ATTENTION_TUNER_STORAGE"], "$ATTENTION_TUNER_STORAGE"
    else:
        given, what = "runs/sweeps", "storage folder"
    return check_output_folder(given, what).resolve()


def ray_address() -> str | None:
    """$RAY_ADDRESS, checked to answer within a few seconds (Ray itself would keep retrying); None: local."""
    address = os.environ.get("RAY_ADDRESS") or None
    if address is None or address in ("auto", "local"):
        return address
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"RAY_ADDRESS={address!r}: expected host:port (or ray://host:port, or auto)")
    why = tracking.unreachable(host.strip("[]"), int(port))
    if why:
        raise ConfigError(f"RAY_ADDRESS={address}: no Ray cluster reachable at {host}:{port} ({why})")
    return address


# The trials a sweep's run started with, in its folder: a resumed run goes on with these (Tune restores them), so
# `--resume` refuses a sweep file or --set/--kw that now make other trials instead of silently ignoring them.
STARTED = "trials.json"


def started_trials(ts: list[Trial]) -> dict[str, Any]:
    """{trial key: its configuration as dotted keys}, as JSON holds it."""
    return json.loads(json.dumps({t.key: flatten(t.config) for t in ts}, sort_keys=True))


def check_same_trials(path: Path, ts: list[Trial], name: str) -> None:
    """A one-line ValueError when the trials asked for now are not those the run at ``path`` started with (no
    check for a run started before this file was written)."""
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    now = started_trials(ts)
    if before == now:
        return
    if set(before) != set(now):
        new, gone = sorted(set(now) - set(before)), sorted(set(before) - set(now))
        keys, verb = (new, "new") if new else (gone, "gone")
        what = f"trials {', '.join(keys[:2])}{' ...' if len(keys) > 2 else ''} are {verb}"
    else:
        key = next(k for k in sorted(now) if now[k] != before[k])
        a, b = before[key], now[key]
        field = next(f for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f))
        what = f"trial {key}'s {field} was {a.get(field)!r} and is now {b.get(field)!r}"
    raise ValueError(f"--resume continues sweep {name} with the trials it started with, but {what}: resume with the "
                     "same sweep file, --set and --kw, or run it without --resume (a new run of the sweep)")


def run(spec: SweepSpec, resume: bool = False, tracking_uri: str | None = None, storage: str | None = None,
        extra: dict[str, Any] | None = None, verbose: int = 1) -> list[dict[str, Any]]:
    """Generate the datasets, run the trials with Ray Tune, return one row per trial.

    verbose: 0 prints only the final table; 1 adds a line per trial event (`progress.Progress`); 2 adds Ray
    Tune's own tables (each trial's configuration, results, status every few seconds).
    """
    # Everything a user can get wrong is checked before anything is created (Ray is started first only for the
    # one check that needs the cluster: which machines its trials may run on).
    ts = trials(spec, extra, allow_same=resume)
    if any(t.config.algorithm == "ppo_lstm" for t in ts):
        from attention_tuner.rl import require_rllib

        require_rllib()
    uri = tracking.resolve_uri(tracking_uri)
    root = storage_root(storage)
    latest = root / f"{spec.name}.latest"
    if resume:
        if not latest.is_file():
            raise ValueError(f"--resume: no earlier run of sweep {spec.name} under {root}")
        run_name = latest.read_text().strip()
        check_same_trials(root / run_name / STARTED, ts, spec.name)
    else:
        run_name = ""  # claimed below, once nothing can fail before the sweep starts
    connected = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    address = None if connected else ray_address()
    if verbose < 2:  # Tune's newer console output prints its configuration box and paths even at verbose 0,
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the older one nothing but a warning about short epochs
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:  # a local instance: its dashboard on the loopback interface only, never every interface
            # workers keep freed memory for the next training step from their start (allocator.GLIBC_ENV)
            ray.init(dashboard_host="127.0.0.1", log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": dict(GLIBC_ENV)})
    # can every node that may run a trial reach the tracking store? (also when `ray.init()` above joined a
    # cluster already running on this machine, as under `ray submit`, with no address given)
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if alive:
        machines = len({n.get("NodeManagerAddress") for n in alive})  # nodes of one machine share its files
        check_cluster_tracking(uri, machines, sum(n.get("Resources", {}).get("GPU", 0) for n in alive),
                               float(spec.resources.get("gpu", 0)))
    root.mkdir(parents=True, exist_ok=True)
    run_name = run_name or new_run_name(root, spec.name)
    home = root / run_name
    home.mkdir(parents=True, exist_ok=True)
    if not resume:
        demos.atomic_write_bytes(home / STARTED, (json.dumps(started_trials(ts), indent=1) + "\n").encode())
    demos.atomic_write_bytes(latest, (run_name + "\n").encode())

    experiment_id = tracking.ensure_experiment(uri, spec.name)
    before = tracking.find_run(uri, experiment_id, {"sweep_id": run_name}, parent=True) if resume else None
    if before and tracking.retry(lambda: tracking.client(uri).get_run(before)).info.status == "FINISHED":
        print(f"sweep {spec.name}: its latest run {run_name} had finished, every trial done: nothing to resume "
              "(its results again below)", flush=True)
    parent = tracking.start_parent(uri, experiment_id, spec.name, run_name, parent_params(spec, ts),
                                   spec.description)
    session_start = time.time()  # a session's time runs from here, as the parent run's (its start-to-end span)
    session = tracking.start_session(uri, parent, resumed=resume)
    try:
        return _run_session(spec, ts, resume, uri, root, home, experiment_id, parent, verbose)
    finally:  # this session's time, also when interrupted (not when killed; an unreachable store loses it)
        failing = sys.exc_info()[0] is not None  # then one quick try: the error that ended the session comes first
        try:
            with tracking.without_http_retries() if failing else contextlib.nullcontext():
                tracking.add_running_time(uri, parent, time.time() - session_start, session)
        except Exception as e:  # noqa: BLE001  (never hide what ended the session)
            print(f"warning: could not log the sweep's running time to MLflow: {str(e).splitlines()[0]}",
                  file=sys.stderr)


def _run_session(spec: SweepSpec, ts: list[Trial], resume: bool, uri: str, root: Path, home: Path,
                 experiment_id: str, parent: str, verbose: int) -> list[dict[str, Any]]:
    """`run` once Ray is up and the parent run exists: the datasets, Tune, the results."""
    from ray import tune

    from attention_tuner.progress import Progress

    print(f"MLflow: {tracking.display_uri(uri)}  experiment {spec.name!r}  parent run {parent}", flush=True)
    data_root = root / "datasets"
    for task, kwargs, n, seed in datasets_needed(ts):  # each distinct dataset once, before any trial
        demos.generate(task, kwargs, n, seed, root=data_root, actors=None, progress=True)
    demos.release_workers()  # their CPUs go to the trials

    ctx = {"uri": uri, "experiment_id": experiment_id, "parent": parent, "sweep": spec.name,
           "trials": str(home / "trials"), "data_root": str(data_root), "sweep_id": home.name}
    trainer = tune.with_resources(tune.with_parameters(trainable, ctx=ctx),
                                  {"cpu": spec.resources.get("cpu", 1), "gpu": spec.resources.get("gpu", 0)})
    space = {"trial": tune.grid_search([{"key": t.key, "labels": t.labels,
                                                     "config": to_dict(t.config)} for t in ts])}
    tune_path = home / "tune"
    if resume and tune.Tuner.can_restore(str(tune_path)):
        tuner = tune.Tuner.restore(str(tune_path), trainable=trainer, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainer,
            param_space=space,
            # No metric here: Tune would reject epochs that do not evaluate; spec.metric is read from results.
            tune_config=tune.TuneConfig(reuse_actors=False, trial_name_creator=_trial_name,
                                        trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(
                name="tune", storage_path=str(home), verbose=1 if verbose >= 2 else 0,
                callbacks=[Progress(len(ts))] if verbose >= 1 else None,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        )
    grid = tuner.fit()
    rows = finished_by_mlflow(results_rows(grid, spec.metric),
                              lambda key: tracking.run_status(uri, experiment_id, parent, key))
    table = results_table(rows, spec.metric)
    out = home / "results.md"
    demos.atomic_write_bytes(out, (table + "\n").encode())
    tracking.log_artifact(uri, parent, out)
    failed = [r["trial"] for r in rows if r["status"].startswith("error")]
    stopped = [r["trial"] for r in rows if r["status"] == INTERRUPTED]
    tracking.end_unfinished_trials(uri, experiment_id, parent, failed, "FAILED")
    tracking.end_unfinished_trials(uri, experiment_id, parent, stopped, "KILLED")
    tracking.finish(uri, parent, "KILLED" if stopped else "FAILED" if failed else "FINISHED")
    print("\n" + table, flush=True)
    if stopped:  # Tune caught Ctrl-C and returned: the sweep was interrupted, not done
        print(f"{len(stopped)} of {len(rows)} trials did not finish; continue them with the same command and --resume",
              file=sys.stderr, flush=True)
        raise KeyboardInterrupt
    return rows


def check_cluster_tracking(uri: str, machines: int, gpus_now: float, gpu_per_trial: float) -> None:
    """On a Ray cluster whose trials can run on other machines (nodes on more than one machine, or trials
    asking for GPUs that no node has yet, so they wait for workers to join), refuse a tracking store that is a
    file on this machine (sqlite, file): every trial elsewhere would log to an empty store of its own, or fail."""
    elsewhere = machines > 1 or (gpu_per_trial > 0 and gpus_now == 0)
    scheme = uri.partition(":")[0].partition("+")[0].lower()
    if elsewhere and scheme in ("sqlite", "file"):
        shown = tracking.display_uri(uri)
        server = "give an MLflow server (--tracking-uri http://HOST:5000 or $MLFLOW_TRACKING_URI; cluster.yaml starts one)"
        if machines > 1:
            raise ValueError(f"tracking URI {shown!r} is a file on this machine, which the other machines of this "
                             f"Ray cluster ({machines} in all) cannot reach; {server}")
        raise ValueError(f"tracking URI {shown!r} is a file on this machine, and the trials ask for GPUs that no "
                         f"node has: they can only run on machines that join later, which cannot reach it; {server}, "
                         "or on a machine without a GPU, a sweep whose trials ask for none")


def new_run_name(root: Path, name: str) -> str:
    """<name>-<date>-<time>, its folder under root claimed now (a second sweep started in the same second gets
    a -2 suffix, never the first one's folder, parent run or trial runs)."""
    base = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    root.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        run_name = base if k == 1 else f"{base}-{k}"
        try:
            (root / run_name).mkdir()
            return run_name
        except FileExistsError:
            continue
    raise OSError(f"{root}: could not claim a folder for {base}")


def _trial_name(trial) -> str:
    """Tune shows and stores trials under their sweep key (e.g. 002-MortarMayhem3-attention_tuner-0)."""
    return trial.config["trial"]["key"]


def flatten_space(spec: SweepSpec) -> dict[str, Any]:
    return {f"space.{k}": _short(list(v)) for k, v in spec.space.items()}


# The status of a trial Tune stopped unfinished (the sweep interrupted): `--resume` continues it.
INTERRUPTED = "interrupted"
COMPLETE = "trial_complete"  # in a trial's last Tune result only (never in MLflow), after its run finished


def results_rows(grid, metric: str) -> list[dict[str, Any]]:
    """One row per trial for the table a sweep prints, its arm as the report takes it (`outcomes`): the task's
    name carries the settings its trials differ in, the method what sets an AttentionTuner trial apart from its
    task's main arm (`outcomes.arm_label`)."""
    trials = [r.config["trial"] for r in grid]
    params = [{k: str(v) for k, v in trial_params(Trial(t["key"], t["labels"], build(TrialConfig, t["config"]))).items()}
              for t in trials]
    arms = with_arm_settings([row_from_params(p, name=t["key"]) for p, t in zip(params, trials, strict=True)])
    main = main_arm(arms)
    rows = []
    for r, trial, arm in zip(grid, trials, arms, strict=True):
        m = r.metrics or {}
        if r.error is not None:
            status = f"error: {str(r.error).splitlines()[0][:80]}"
        else:  # a trial stopped by Ctrl-C (or never started) lacks the mark its last result gets (`trainable`)
            status = "ok" if m.get(COMPLETE) else INTERRUPTED
        rows.append({"trial": trial["key"], **trial["labels"], "task": arm.task,
                     "method": arm.method + arm_label(arm, main[arm.task]), "seed": arm.seed, metric: m.get(metric),
                     "val/decision_accuracy": m.get("val/decision_accuracy"), "status": status})
    return sorted(rows, key=lambda r: r["trial"])


def finished_by_mlflow(rows: list[dict[str, Any]], run_status: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """Rows whose trial lacks the completion mark but whose MLflow run is FINISHED become "ok": trials done
    before the mark existed (Tune states saved before 2026-12-04), or stopped between ending their run and the
    mark. A trial's run is ended only after everything it logs; a stopped trial's is still RUNNING here."""
    return [{**r, "status": "ok"} if r["status"] == INTERRUPTED and run_status(r["trial"]) == "FINISHED" else r
            for r in rows]


def results_table(rows: list[dict[str, Any]], metric: str = "eval/success_rate") -> str:
    """Per trial, then task x method: mean ± standard error over seeds of the final ``metric``, of the trials
    that finished (a failed trial's last report is mid-training: listed, not counted)."""
    name = "success rate" if metric == "eval/success_rate" else metric
    lines = [f"| trial | task | method | seed | {name} | decision-step accuracy | status |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        s, d = r.get(metric), r.get("val/decision_accuracy")
        lines.append(f"| {r['trial']} | {r['task']} | {r['method']} | {r['seed']} | "
                     f"{rate(s)} | {rate(d)} | {r['status']} |")
    groups: dict[tuple[str, str], list[float]] = {}
    left_out: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        key = (r["task"], r["method"])
        if r["status"] == "ok" and r.get(metric) is not None:
            groups.setdefault(key, []).append(r[metric])
        else:
            left_out.setdefault(key, []).append(r["trial"])
    lines += ["", f"| task | method | {name} (mean ± s.e.) | seeds | not counted |", "|---|---|---|---|---|"]
    for key in sorted(set(groups) | set(left_out)):
        vals = groups.get(key, [])
        mean, se = mean_se(vals) if vals else (float("nan"), float("nan"))
        cell = mean_cell({"n": len(vals), "mean": mean, "se": se})
        lines.append(f"| {key[0]} | {key[1]} | {cell} | {len(vals)} | {', '.join(left_out.get(key, []))} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- entry point


def build_parser(prog: str = "sweep") -> argparse.ArgumentParser:
    ap = OneLineParser(prog=prog, description="Run a sweep with Ray Tune, tracked in MLflow.")
    ap.add_argument("--dry-run", action="store_true", help="print the trials, datasets and cost; start nothing")
    ap.add_argument("--resume", action="store_true", help="continue the latest run of this sweep (interrupted or killed), found under the same "
                    "--storage and tracked in the same --tracking-uri as it was")
    ap.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns.db)")
    ap.add_argument("--storage", help="folder for Tune results, trials and datasets (default $ATTENTION_TUNER_STORAGE or runs/sweeps)")
    ap.add_argument("--set", action="append", metavar="DOTTED.KEY=VALUE",
                    help="override applied to every trial (e.g. optim.epochs=1 for a smoke run)")
    ap.add_argument("--tune-output", action="store_true",
                    help="also print Ray Tune's own tables (every trial's configuration and results)")
    return ap


def execute(spec: SweepSpec, args: argparse.Namespace) -> int:
    from attention_tuner.config import parse_assignments

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    extra = parse_assignments(args.set or [])
    ts = trials(spec, extra, allow_same=args.resume)
    if args.dry_run:  # the same checks as a real run, but nothing created, started or connected to
        tracking.resolve_uri(args.tracking_uri)
        storage_root(args.storage)
        print(dry_run(spec, ts))
        return 0
    rows = run(spec, resume=args.resume, tracking_uri=args.tracking_uri, storage=args.storage, extra=extra,
               verbose=2 if args.tune_output else 1)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def main(spec: SweepSpec, argv: list[str] | None = None) -> None:
    """The ``__main__`` of every sweep file (so that ``ray submit cluster.yaml sweeps/x.py`` works)."""
    if _loading is not None:  # a sweep file that runs itself on import, read by `attention-tuner sweep`
        raise ConfigError(f"{_loading}: calls main(...) when imported; call it under "
                          "`if __name__ == \"__main__\":` as sweeps/quickstart.py does")

    prog = Path(sys.argv[0]).name
    args = build_parser(prog=prog).parse_args(argv)
    sys.exit(run_command(prog, lambda: execute(spec, args)))
