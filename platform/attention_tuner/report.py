"""Reports: MLflow runs -> the paper's tables and plots (Markdown, CSV, PNG).

Reads the child runs (one per trial) of an experiment, or of one sweep's parent run, takes each trial's
final metrics, and aggregates over seeds: mean ± standard error and the number of seeds, per task x method
(x annotation fraction, x supervised heads). Failed or unfinished trials are listed, never silently dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import memory_tasks
from attention_tuner import tracking
from memory_tasks.core import short_repr

METRIC = "eval/success_rate"
UNCOMMITTED = " + uncommitted changes"  # after a trial's commit, when its checkout had some (tracking.commit_tags)


@dataclass
class TrialRow:
    run_id: str
    name: str
    status: str
    task: str
    method: str
    fraction: float
    heads: str
    noise: str
    seed: int
    metrics: dict[str, float]
    start_time: int = 0  # ms since the epoch
    commit: str = "?"
    trial: str = ""  # the trial's identity: a digest of its parameters (equal for a re-run of the same trial)
    memory: str = ""  # AttentionTuner's memory-loss settings where its trials differ in them (`arm_settings`)
    params: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def success(self) -> float | None:
        return self.metrics.get(METRIC)

    @property
    def counted(self) -> bool:
        return self.status == "FINISHED" and self.success is not None


def method_of(params: dict[str, str]) -> str:
    """vanilla, attention_tuner or ppo_lstm, from a trial run's params (as TrialConfig.method); "?" for a run
    without params (killed before it logged them)."""
    if not params:
        return "?"
    if params.get("algorithm") == "ppo_lstm":
        return "ppo_lstm"
    weight = float(params.get("memory.weight", "0"))
    fraction = float(params.get("data.annotation_fraction", "1"))
    return "attention_tuner" if weight > 0 and fraction > 0 else "vanilla"


def annotated_fraction(params: dict[str, str]) -> float:
    """The fraction of demonstrations whose pairs reach the memory loss: 0 for the vanilla Transformer."""
    return float(params.get("data.annotation_fraction", "1")) if method_of(params) == "attention_tuner" else 0.0


# Params that never set a trial's arm apart: the seed (what a cell averages over), where and how it ran, how
# often it was evaluated on the way (the final evaluation is the one counted).
NOT_AN_ARM = frozenset({"seed", "device", "checkpoint_every", "eval.num_envs", "eval.every"})
# Params with columns of their own: the method (algorithm, annotated fraction), the heads, the noise. (The memory
# loss's weight, zero for the vanilla method, sets AttentionTuner's arms apart as its other settings do.)
OWN_COLUMNS = frozenset({"algorithm", "data.annotation_fraction", "memory.heads",
                         "data.noise.drop", "data.noise.shift", "data.noise.spurious"})


def _setting_kind(key: str, method: str) -> str | None:
    """Which of a run's settings ``key`` is: "shared" (any method's: the task's parameters, the model, the
    training), "memory" (AttentionTuner's memory loss) or None (no arm of this method, or never an arm)."""
    if key.startswith("label.") or key in NOT_AN_ARM or key in OWN_COLUMNS:
        return None
    if method == "ppo_lstm":  # learns from reward: the Transformer's and the dataset's settings do not apply
        return "shared" if key.startswith(("task.", "eval.", "rl.")) else None
    if key.startswith("rl."):
        return None
    if key.startswith("memory."):
        return "memory" if method == "attention_tuner" else None
    return "shared"


def arm_settings(params: list[dict[str, str]]) -> list[tuple[str, str]]:
    """Per run (its params as logged; the runs of one report): what sets its arm apart beyond the task, the
    method and the fraction, heads and noise columns, as ("key=value; ...", "key=value; ..."): the settings
    every method has (the task's parameters, the model, the training) and AttentionTuner's memory-loss
    settings, each listing only the keys whose values differ among one method's runs of the task ("" when none
    do: settings that differ between methods alone, such as the RL baseline's own evaluation schedule, are
    each method's configuration). Without it a sweep over, say, Hallway lengths or memory.variant would pool
    its arms into one cell."""
    defaults = logged_defaults()
    out = [("", "")] * len(params)
    by_task: dict[str, list[int]] = {}
    for i, p in enumerate(params):
        by_task.setdefault(p.get("task.name", "?"), []).append(i)
    for runs in by_task.values():
        seen: dict[tuple[str, str, str], set[str | None]] = {}
        for i in runs:
            p = params[i]
            method = method_of(p)
            for key in {*p, *defaults}:
                kind = _setting_kind(key, method)
                if kind is not None:
                    seen.setdefault((kind, key, method), set()).add(p.get(key, defaults.get(key)))
        varying = sorted({(kind, key) for (kind, key, _), values in seen.items() if len(values) > 1})
        for i in runs:
            p, method = params[i], method_of(params[i])
            parts: dict[str, list[str]] = {"shared": [], "memory": []}
            for kind, key in varying:
                if _setting_kind(key, method) == kind:
                    parts[kind].append(f"{key.removeprefix('task.kwargs.')}={p.get(key, defaults.get(key))}")
            out[i] = ("; ".join(parts["shared"]), "; ".join(parts["memory"]))
    return out


def with_arm_settings(rows: list[TrialRow]) -> list[TrialRow]:
    """The rows with their arms apart (`arm_settings`): the shared settings added to the task's name, e.g.
    "Hallway (length=10)", the memory-loss ones in ``memory``."""
    settings = arm_settings([r.params for r in rows])
    return [dataclasses.replace(r, task=f"{r.task} ({shared})" if shared else r.task, memory=memory)
            for r, (shared, memory) in zip(rows, settings, strict=True)]


def main_memory(rows: list[TrialRow], task: str) -> str:
    """The memory-loss setting of ``task``'s main AttentionTuner arm (`pick_main_memory`)."""
    return pick_main_memory([r.memory for r in rows if r.task == task and r.method == "attention_tuner"])


def pick_main_memory(used: list[str]) -> str:
    """Among the memory-loss settings of one task's AttentionTuner trials (`arm_settings`), the main arm's: the
    default configuration's when some trial used it, else the most common ("" when they do not differ). The
    report and the table a sweep prints both take this rule."""
    if not used:
        return ""
    defaults = logged_defaults()
    default = [m for m in used if all(defaults.get(k) == v for k, _, v in
                                      (part.partition("=") for part in m.split("; ")))]
    return default[0] if default else max(sorted(set(used)), key=used.count)


def main_heads(rows: list[TrialRow], task: str) -> str | None:
    """The supervised heads of AttentionTuner in ``task``'s main comparison (`pick_main_heads` over its trials
    without annotation noise)."""
    return pick_main_heads([(r.heads, r.fraction) for r in rows
                            if r.task == task and r.method == "attention_tuner" and r.noise == "none"])


def pick_main_heads(clean: list[tuple[str, float]]) -> str | None:
    """The main comparison's supervised heads among one task's AttentionTuner trials without annotation noise,
    given as (heads as logged, annotated fraction): among the fully annotated ones (else all), the default
    configuration's heads when some used them, else the most common (None: no such trial). The report and the
    table a sweep prints both take this rule."""
    from attention_tuner.config import TrialConfig, build, flatten

    used = [h for h, fraction in clean if fraction == 1.0] or [h for h, _ in clean]
    if not used:
        return None
    default = str(flatten(build(TrialConfig, {}))["memory.heads"])
    return default if default in used else max(sorted(set(used)), key=used.count)


def main_arm(rows: list[TrialRow]) -> dict[str, tuple[str | None, str]]:
    """Per task: the supervised heads and the memory-loss setting of its main AttentionTuner arm (`main_heads`,
    `main_memory`)."""
    return {t: (main_heads(rows, t), main_memory(rows, t)) for t in {r.task for r in rows}}


def clean_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The trials without an ablation of the annotations or of the supervised heads: no annotation noise, and
    AttentionTuner on its task's main heads and memory-loss setting (`main_arm`); any annotated fraction."""
    main = main_arm(rows)
    return [r for r in rows if r.noise == "none" and (r.method != "attention_tuner"
                                                      or (r.heads, r.memory) == main[r.task])]


def main_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The trials of the main comparison: vanilla, fully annotated AttentionTuner and the RL baseline; not the
    fraction, noise or (layer, head) arms, which get tables of their own."""
    return [r for r in clean_rows(rows) if r.fraction in (0.0, 1.0)]


def heads_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The (layer, head) ablation: fully annotated AttentionTuner without annotation noise, on its task's main
    memory-loss setting, any heads."""
    main = main_arm(rows)
    return [r for r in rows if r.method == "attention_tuner" and r.fraction == 1.0 and r.noise == "none"
            and r.memory == main[r.task][1]]


def memory_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The memory-loss ablation (its settings other than the heads, e.g. memory.variant or its weight): fully
    annotated AttentionTuner without annotation noise on its task's main heads, any memory-loss setting."""
    main = main_arm(rows)
    return [r for r in rows if r.method == "attention_tuner" and r.fraction == 1.0 and r.noise == "none"
            and r.heads == main[r.task][0]]


def noise_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The annotation-noise ablation: vanilla, and fully annotated AttentionTuner on its task's main heads, at
    every noise level (not the fraction or head arms, which would mix into the same cells)."""
    main = main_arm(rows)
    return [r for r in rows if r.method == "vanilla" or (r.method == "attention_tuner" and r.fraction == 1.0
                                                          and (r.heads, r.memory) == main[r.task])]


def demonstration_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The Transformer trials (vanilla and AttentionTuner), trained on demonstrations: not the RL baseline."""
    return [r for r in rows if r.method != "ppo_lstm"]


def rl_table(rows: list[TrialRow]) -> str:
    """The RL baseline's trials with their budgets: environment steps and wall time of training."""
    ppo = sorted((r for r in rows if r.method == "ppo_lstm"), key=lambda r: (r.task, r.seed))
    lines = ["### RL baseline: PPO with an LSTM (RLlib), from reward alone", "",
             "No demonstrations: the budget is environment steps. Success is measured as for the Transformer "
             "(greedy, the same held-out seeds).", "",
             "| trial | task | seed | status | environment steps | training wall time (min) | success rate |",
             "|---|---|---|---|---|---|---|"]
    for r in ppo:
        steps, wall, s = r.metrics.get("perf/env_steps"), r.metrics.get("perf/train_s"), r.success
        lines.append(f"| {r.name} | {r.task} | {r.seed} | {r.status.lower()} | "
                     f"{'' if steps is None else f'{steps:,.0f}'} | {'' if wall is None else f'{wall / 60:.1f}'} | "
                     f"{rate(s)} |")
    return "\n".join(lines)


# A difference counts when Welch's two-sided t-test gives p below this.
ALPHA = 0.05


# Success rates closer than this are equal (they are counts over at most a few thousand episodes; sums of
# floats differ in their last bits).
SAME = 1e-9


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances) for the means of a and b (2 values or more each);
    None when neither has any spread (the test is undefined; `verdicts` says so)."""
    import warnings

    from scipy import stats

    if max(a) - min(a) < SAME and max(b) - min(b) < SAME:
        return None
    with warnings.catch_warnings():  # near-constant samples: scipy warns of precision loss, the p stays usable
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def verdicts(rows: list[TrialRow]) -> list[dict[str, Any]]:
    """Per task: AttentionTuner minus vanilla, Welch's p, and a verdict (one entry per task, compared or not)."""
    groups = {(g["task"], g["method"]): g for g in aggregate(main_rows(rows), ("task", "method"))}
    out = []
    for task in sorted({t for t, m in groups if m in ("attention_tuner", "vanilla")}):
        at, van = groups.get((task, "attention_tuner")), groups.get((task, "vanilla"))
        entry: dict[str, Any] = {"task": task, "attention_tuner": at, "vanilla": van, "diff": None, "se": None,
                                 "p": None}
        out.append(entry)
        short = [f"{name} {g['n'] if g else 0} finished of {len(g['values']) + len(g['missing']) if g else 0}"
                 for name, g in (("AttentionTuner", at), ("vanilla", van)) if not g or g["n"] < 2]
        if not at or not van or not at["n"] or not van["n"]:
            entry["verdict"] = "cannot compare: " + ", ".join(short)
            continue
        entry["diff"], entry["se"] = at["mean"] - van["mean"], math.hypot(at["se"], van["se"])
        if short:
            entry["verdict"] = "too few seeds to tell: " + ", ".join(short)
            continue
        entry["p"] = p = welch_p(at["values"], van["values"])
        if p is None:
            entry["verdict"] = ("no difference: every seed of both the same" if abs(entry["diff"]) < SAME else
                                "cannot test: every seed of each method the same, no spread to judge the gap by")
        elif p >= ALPHA:
            entry["verdict"] = "no clear difference"
        else:
            entry["verdict"] = "AttentionTuner ahead" if entry["diff"] > 0 else "vanilla ahead"
    return out


def verdict_table(rows: list[TrialRow]) -> str:
    lines = ["### AttentionTuner against the vanilla Transformer", "",
             f"A difference counts when Welch's t-test (two-sided, unequal variances, over the seeds) gives p < "
             f"{ALPHA:g}. With 2-3 seeds a side the test has little power: \"no clear difference\" is not \"no "
             "difference\".", "",
             "| task | AttentionTuner | vanilla | difference (± s.e.) | Welch p | verdict |", "|---|---|---|---|---|---|"]
    for v in verdicts(rows):
        at, van = v["attention_tuner"], v["vanilla"]
        cells = [("none" if not g else mean_cell(g) if g["n"] == 1 else f"{mean_cell(g)} (n={g['n']})")
                 for g in (at, van)]
        one_seed = at is not None and van is not None and min(at["n"], van["n"]) < 2
        diff = ("" if v["diff"] is None else f"{v['diff']:+.3f} (no s.e.: one seed)" if one_seed
                else f"{v['diff']:+.3f} ± {v['se']:.3f}")
        p = "" if v["p"] is None else f"{v['p']:.3f}"
        lines.append(f"| {v['task']} | {cells[0]} | {cells[1]} | {diff} | {p} | {v['verdict']} |")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """A time as a person reads it: '0.2 s', '14 s', '7 min', '3.5 h', '145 days'."""
    if seconds < 1:
        return f"{seconds:.1g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def minutes(m: float) -> str:
    """A wall time given in minutes: '14 s' under a minute, else '7 min' (a report's unit for sweeps)."""
    return f"{m * 60:.0f} s" if m < 1 else f"{m:.0f} min"


def wall_time(span_min: float, sessions: int, running_s: float | None, timed: int) -> str:
    """A sweep's wall time from its parent run: start to end, and for a sweep run in several sessions (resumed)
    the time it was running, without the time between: ``running_s`` summed over the ``timed`` sessions that
    logged theirs (`tracking.add_running_time`; a killed session could not)."""
    if sessions <= 1 or running_s is None:
        return f"wall time {minutes(span_min)} (datasets, trials and results)"
    running = minutes(running_s / 60) if timed >= sessions else f"at least {minutes(running_s / 60)}"
    n = sessions - timed
    untimed = "" if n <= 0 else f"; {n} of them killed or cut off from MLflow before logging {'its' if n == 1 else 'their'} time"
    return (f"{minutes(span_min)} from start to end, of which {running} running in {sessions} sessions (datasets, "
            f"trials and results; the time between sessions not counted{untimed})")


def run_summary(uri: str, experiment: str | None, sweep: str | None) -> list[str]:
    """Start, end, wall time and commit of the sweep's latest parent run (nothing for a bare experiment)."""
    import datetime

    if not sweep:
        return []
    c = tracking.client(uri)
    parents, children = experiment_runs(uri, sweep)
    if not parents:
        return []
    p = max(parents, key=lambda r: r.info.start_time)
    earlier = [q for q in parents if q is not p]

    def stamp(ms: int) -> str:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")

    line = (f"Sweep run `{p.data.tags.get('mlflow.runName', p.info.run_id)}` (MLflow run {p.info.run_id}, "
            f"commit {p.data.tags.get('git_commit', '?')[:12]}{UNCOMMITTED if p.data.tags.get('git_uncommitted') else ''}"
            f"): started {stamp(p.info.start_time)}")
    if p.info.end_time:
        minutes = (p.info.end_time - p.info.start_time) / 60000
        timed = len(tracking.retry(lambda: c.get_metric_history(p.info.run_id, "sweep/running_s")))
        line += f", ended {stamp(p.info.end_time)}, " + wall_time(
            minutes, int(p.data.metrics.get("sweep/sessions", 1)), p.data.metrics.get("sweep/running_s"), timed)
    else:
        line += f", not finished (status {p.info.status.lower()})"
    lines = [line + ".", ""]
    if earlier:
        n = sum(r.data.tags[tracking.PARENT_TAG] != p.info.run_id for r in children)
        lines += [f"This report counts that run only. The experiment holds {len(earlier)} earlier "
                  f"run{'s' if len(earlier) > 1 else ''} of the sweep with {n} trial runs: `report --experiment "
                  f"{sweep}` counts every trial of them all once (its latest finished run).", ""]
    return lines


def search_all(c, experiment_id: str) -> list:
    """Every (not deleted) run of an experiment, page by page."""
    runs, token = [], None
    while True:
        page = tracking.retry(functools.partial(c.search_runs, [experiment_id], max_results=1000, page_token=token))
        runs += list(page)
        token = page.token
        if not token:
            return runs


def experiment_runs(uri: str, name: str | None) -> tuple[list, list]:
    """(parent runs, trial runs) of the experiment ``name``; a one-line ValueError when it is missing."""
    c = tracking.client(uri)
    exp = tracking.retry(lambda: c.get_experiment_by_name(name)) if name else None
    if exp is None:
        names = sorted(e.name for e in tracking.retry(lambda: c.search_experiments()) if e.name != "Default")
        there = f"; its experiments: {short_repr(names)}" if names else "; it holds no experiment"
        raise ValueError(f"no MLflow experiment named {short_repr(name)} at {tracking.display_uri(uri)}{there}")
    if exp.lifecycle_stage == "deleted":
        raise ValueError(f"MLflow experiment {name!r} at {tracking.display_uri(uri)} is deleted (restore it first: "
                         f"mlflow experiments restore --experiment-id {exp.experiment_id})")
    runs = search_all(c, exp.experiment_id)
    return ([r for r in runs if tracking.PARENT_TAG not in r.data.tags],
            [r for r in runs if tracking.PARENT_TAG in r.data.tags])


def trial_identity(params: dict[str, str]) -> str:
    """What makes two runs the same trial: a digest of their params, less the grid labels (names, not
    settings) and the params at today's default value, so that a field added to the configuration since (logged
    at its default by the newer run, absent from the older) does not make a re-run of a trial another trial."""
    defaults = logged_defaults()
    settings = sorted((k, v) for k, v in params.items() if not k.startswith("label.") and defaults.get(k) != v)
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]


@functools.cache
def logged_defaults() -> dict[str, str]:
    """Every param of the default configuration as MLflow logs it (built once, not once per run)."""
    from attention_tuner.config import TrialConfig, build, flatten

    return {k: str(v) for k, v in flatten(build(TrialConfig, {})).items()}


def trial_row(r) -> TrialRow:
    p = dict(r.data.params)
    if "task.name" in p:  # one spelling per task, also for runs logged before names were made canonical
        with contextlib.suppress(ValueError):
            p["task.name"] = memory_tasks.short_name(p["task.name"])
    noise = ",".join(f"{k.split('.')[-1]}={p[k]}" for k in ("data.noise.drop", "data.noise.shift",
                                                             "data.noise.spurious") if p.get(k) not in (None, "0", "0.0"))
    identity = trial_identity(p) if p else r.info.run_id
    return TrialRow(
        run_id=r.info.run_id, name=r.data.tags.get("mlflow.runName", r.info.run_id), status=r.info.status,
        task=p.get("task.name", "?"), method=method_of(p), fraction=annotated_fraction(p),
        heads=p.get("memory.heads", "?"), noise=noise or "none", seed=int(p.get("seed", 0)),
        metrics=dict(r.data.metrics), start_time=r.info.start_time or 0,
        commit=r.data.tags.get("git_commit", "?") + (UNCOMMITTED if r.data.tags.get("git_uncommitted") else ""),
        trial=identity, params=p)


def load_rows(uri: str, experiment: str | None = None, sweep: str | None = None) -> list[TrialRow]:
    """One row per trial run of the experiment (or of the latest run of ``sweep``), re-runs included (see
    `latest_runs`)."""
    parents, children = experiment_runs(uri, experiment or sweep)
    if sweep and parents:  # the latest run of the sweep
        latest = max(parents, key=lambda r: r.info.start_time)
        every, children = children, [r for r in children if r.data.tags[tracking.PARENT_TAG] == latest.info.run_id]
        if not children:
            others = len({r.data.tags[tracking.PARENT_TAG] for r in every})
            raise ValueError(f"the latest run of sweep {sweep!r} ({latest.data.tags.get('mlflow.runName', '')}, MLflow "
                             f"run {latest.info.run_id}) has no trial runs"
                             + (f"; {others} earlier runs have some: --experiment {sweep} reports them" if others else ""))
    return sorted((trial_row(r) for r in children), key=lambda r: r.name)


def latest_runs(rows: list[TrialRow]) -> tuple[list[TrialRow], list[tuple[TrialRow, TrialRow]]]:
    """Each trial once: of the runs with the same parameters (a sweep run again into its experiment), the
    latest finished one (else the latest). Returns (kept rows, [(superseded row, the row kept instead)])."""
    by_trial: dict[str, list[TrialRow]] = {}
    for r in rows:
        by_trial.setdefault(r.trial or r.run_id, []).append(r)
    kept, superseded = [], []
    for runs in by_trial.values():
        best = max(runs, key=lambda r: (r.counted, r.start_time, r.run_id))
        kept.append(best)
        superseded += [(r, best) for r in runs if r is not best]
    return sorted(kept, key=lambda r: r.name), sorted(superseded, key=lambda x: x[0].name)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def aggregate(rows: list[TrialRow], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Group finished trials by ``keys``; each group: mean, s.e., seeds, and the trials left out."""
    groups: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        k = tuple(getattr(r, key) for key in keys)
        g = groups.setdefault(k, {**dict(zip(keys, k, strict=True)), "values": [], "missing": []})
        if r.counted:
            g["values"].append(r.success)
        else:
            g["missing"].append(f"{r.name} ({r.status.lower()})")
    out = []
    for g in groups.values():
        if g["values"]:
            g["mean"], g["se"] = mean_se(g["values"])
        else:
            g["mean"], g["se"] = float("nan"), float("nan")
        g["n"] = len(g["values"])
        out.append(g)
    return sorted(out, key=lambda g: tuple(str(g[k]) for k in keys))


def rate(x: float | None) -> str:
    """A success rate as the tables print it: 3 decimals (200 evaluation episodes move it in steps of 0.005)."""
    return "" if x is None else f"{x:.3f}"


def mean_cell(g: dict[str, Any]) -> str:
    """'mean ± s.e.', 'mean (one seed)' (no standard error to give) or 'n/a' (no finished seed)."""
    if g["n"] == 0:
        return "n/a"
    return f"{rate(g['mean'])} (one seed)" if g["n"] == 1 else f"{rate(g['mean'])} ± {rate(g['se'])}"


def markdown_table(groups: list[dict[str, Any]], keys: tuple[str, ...], title: str) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(keys) + " | success rate (mean ± s.e.) | seeds | not counted |",
             "|" + "---|" * (len(keys) + 3)]
    for g in groups:
        lines.append("| " + " | ".join(str(g[k]) for k in keys) + f" | {mean_cell(g)} | {g['n']} | "
                     + (", ".join(g["missing"]) or "") + " |")
    return "\n".join(lines)


def write_csv(groups: list[dict[str, Any]], keys: tuple[str, ...], path: Path) -> None:
    import csv
    import io

    from attention_tuner.demos import atomic_write_bytes

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*keys, "mean", "se", "seeds", "not_counted"])
    for g in groups:
        se = g["se"] if g["n"] >= 2 else ""  # no standard error from fewer than two seeds
        w.writerow([*(g[k] for k in keys), g["mean"], se, g["n"], ";".join(g["missing"])])
    atomic_write_bytes(path, buf.getvalue().encode())


def report(uri: str, out: str | Path, experiment: str | None = None, sweep: str | None = None,
           markdown: str | Path | None = None, notes: str | Path | None = None) -> Path:
    """Write the Markdown report (``out``/report.md, or ``markdown``), CSVs and PNG plots under ``out``.

    ``notes``: a Markdown file included after the summary (the reader's interpretation, the machine).
    """
    from attention_tuner import report_plots

    every = load_rows(uri, experiment, sweep)
    if not every:
        raise ValueError(f"no trial runs found in experiment {experiment or sweep!r} at {tracking.display_uri(uri)}")
    latest, superseded = latest_runs(every)
    rows = with_arm_settings([r for r in latest if r.task != "?"])
    no_params = [r for r in latest if r.task == "?"]
    preface = Path(notes).read_text() if notes else ""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    md = Path(markdown) if markdown else folder / "report.md"
    link = Path(os.path.relpath(folder.resolve(), md.resolve().parent))
    sections = [f"# Report: {experiment or sweep}", "",
                f"{len(rows)} trials from `{tracking.display_uri(uri)}`; the final `{METRIC}` of each trial "
                "(closed-loop, held-out seeds), aggregated over seeds: mean ± standard error of the mean.", "",
                *run_summary(uri, experiment, sweep), *not_counted(superseded, no_params),
                *commits_note(rows)]
    if preface:
        sections += [preface.rstrip(), ""]
    sections += [verdict_table(rows), ""]
    main = main_rows(rows)
    tables: list[tuple[str, tuple[str, ...], str, list[TrialRow]]] = [
        ("task_method", ("task", "method"), "Success rate by task and method", main)]
    clean = demonstration_rows(clean_rows(rows))
    if len({r.fraction for r in clean if r.method == "attention_tuner"}) > 1:
        tables.append(("fraction", ("task", "fraction"), "Success rate by annotated fraction (0: vanilla)",
                       [r for r in clean if any(r.task == o.task and 0 < o.fraction < 1 for o in clean)]))
    if len({r.heads for r in heads_rows(rows)}) > 1:
        tables.append(("heads", ("task", "heads"), "Success rate by supervised (layer, head)", heads_rows(rows)))
    if len({r.noise for r in rows}) > 1:
        tables.append(("noise", ("task", "method", "noise"),
                       "Success rate under annotation noise (vanilla, and AttentionTuner fully annotated on its main "
                       "heads)", noise_rows(rows)))
    if len({r.memory for r in memory_rows(rows)}) > 1:
        tables.append(("memory", ("task", "memory"), "Success rate by memory-loss setting (AttentionTuner fully "
                       "annotated on its main heads)", memory_rows(rows)))
    written = set()
    for name, keys, title, subset in tables:
        groups = aggregate(subset, keys)
        sections += [markdown_table(groups, keys, title), ""]
        write_csv(groups, keys, folder / f"{name}.csv")
        written.add(folder / f"{name}.csv")
    if any(r.method == "ppo_lstm" for r in rows):
        sections += [rl_table(rows), ""]
    for title, png in report_plots.all_plots(uri, rows, folder):
        sections += [f"### {title}", "", f"![{title}]({(link / png.name).as_posix()})", ""]
        written.add(png)
    sections += ["### Trials", "", "| trial | task | method | fraction | seed | status | success rate "
                 "| decision-step accuracy |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r.metrics.get("val/decision_accuracy")
        fraction = "" if r.method == "ppo_lstm" else f"{r.fraction:g}"
        method = f"{r.method} ({r.memory})" if r.memory else r.method
        sections.append(f"| {r.name} | {r.task} | {method} | {fraction} | {r.seed} | {r.status.lower()} | "
                        f"{rate(r.success)} | {rate(d)} |")
    sections.append("")
    md.parent.mkdir(parents=True, exist_ok=True)
    from attention_tuner.demos import atomic_write_bytes

    atomic_write_bytes(md, "\n".join(sections).encode())
    written.add(md)
    remove_stale(folder, written)
    return md


# The files a report wrote in its folder, listed there: the next report into the same folder removes those it
# does not write again (so that none is taken for current), and never a file of the user's.
WRITTEN = ".report-files.json"


def remove_stale(folder: Path, written: set[Path]) -> None:
    from attention_tuner.demos import atomic_write_bytes

    names = sorted(p.name for p in written if p.resolve().parent == folder.resolve())
    listing = folder / WRITTEN
    try:
        before = json.loads(listing.read_text()) if listing.is_file() else []
    except (OSError, json.JSONDecodeError):
        before = []
    for name in before if isinstance(before, list) else []:
        path = folder / str(name)
        if name not in names and "/" not in str(name) and path.is_file():
            path.unlink()
    atomic_write_bytes(listing, (json.dumps(names, indent=1) + "\n").encode())


def not_counted(superseded: list[tuple[TrialRow, TrialRow]], no_params: list[TrialRow]) -> list[str]:
    """Lines naming the runs the tables leave out: re-runs of a trial counted once, runs without parameters."""
    lines = []
    if superseded:
        lines += [f"Not counted, {len(superseded)} runs of a trial that ran again (each trial counts once: its latest "
                  "finished run): " + ", ".join(f"{old.name} ({old.status.lower()}, MLflow run {old.run_id[:8]}: "
                                               f"superseded by {new.run_id[:8]})" for old, new in superseded) + ".", ""]
    if no_params:
        lines += [f"Not counted, {len(no_params)} runs without parameters (stopped before logging them): "
                  + ", ".join(f"{r.name} ({r.status.lower()})" for r in no_params) + ".", ""]
    return lines


def commits_note(rows: list[TrialRow]) -> list[str]:
    """Warnings when the trials counted come from more than one commit of the code, or from a checkout with
    uncommitted changes (its commit alone does not reproduce them)."""
    commits = sorted({r.commit.removesuffix(UNCOMMITTED)[:12] for r in rows})
    lines = []
    if len(commits) >= 2:
        lines += [f"**The trials come from {len(commits)} commits of the code** ({', '.join(commits)}): results of "
                  "different code are pooled.", ""]
    changed = sorted(r.name for r in rows if r.commit.endswith(UNCOMMITTED))
    if changed:
        lines += [f"**{len(changed)} of the trials ran code with uncommitted changes** ({', '.join(changed[:10])}"
                  f"{', ...' if len(changed) > 10 else ''}): their commit alone does not reproduce them.", ""]
    return lines


def copy_artifact(uri: str, run_id: str, name: str, dest: Path) -> Path | None:
    """Download one artifact of a run (e.g. attention.png) to ``dest``; None if it is not there."""
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name, tracking_uri=uri)
    except Exception:
        return None
    shutil.copyfile(local, dest)
    return dest
