"""Reports: MLflow runs -> the paper's tables and plots (Markdown, CSV, PNG).

Reads the child runs (one per trial) of an experiment, or of one sweep's parent run, takes each trial's
final metrics, and aggregates over seeds: mean ± standard error and the number of seeds, per task x method
(x annotation fraction, x supervised heads). Failed or unfinished trials are listed, never silently dropped.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attention_tuner import tracking

METRIC = "eval/success_rate"


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

    @property
    def success(self) -> float | None:
        return self.metrics.get(METRIC)


def method_of(params: dict[str, str]) -> str:
    """vanilla, attention_tuner or ppo_lstm, from a trial run's params (as TrialConfig.method)."""
    if params.get("algorithm") == "ppo_lstm":
        return "ppo_lstm"
    weight = float(params.get("memory.weight", "0"))
    fraction = float(params.get("data.annotation_fraction", "1"))
    return "attention_tuner" if weight > 0 and fraction > 0 else "vanilla"


def annotated_fraction(params: dict[str, str]) -> float:
    """The fraction of demonstrations whose pairs reach the memory loss: 0 for the vanilla Transformer."""
    return float(params.get("data.annotation_fraction", "1")) if method_of(params) == "attention_tuner" else 0.0


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


def clean_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The trials without an ablation of the annotations or of the supervised heads: no annotation noise, and
    AttentionTuner on its task's main heads (`main_heads`); any annotated fraction."""
    heads = {task: main_heads(rows, task) for task in {r.task for r in rows}}
    return [r for r in rows if r.noise == "none" and (r.method != "attention_tuner" or r.heads == heads[r.task])]


def main_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The trials of the main comparison: vanilla, fully annotated AttentionTuner and the RL baseline; not the
    fraction, noise or (layer, head) arms, which get tables of their own."""
    return [r for r in clean_rows(rows) if r.fraction in (0.0, 1.0)]


def heads_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The (layer, head) ablation: fully annotated AttentionTuner without annotation noise, any heads."""
    return [r for r in rows if r.method == "attention_tuner" and r.fraction == 1.0 and r.noise == "none"]


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
                     f"{'' if s is None else f'{s:.2f}'} |")
    return "\n".join(lines)


def verdicts(rows: list[TrialRow]) -> list[dict[str, Any]]:
    """Per task: AttentionTuner minus vanilla, and whether the gap exceeds twice its standard error."""
    groups = {(g["task"], g["method"]): g for g in aggregate(main_rows(rows), ("task", "method"))}
    out = []
    for task in sorted({t for t, _ in groups}):
        at, van = groups.get((task, "attention_tuner")), groups.get((task, "vanilla"))
        if not at or not van or not at["n"] or not van["n"]:
            continue
        diff, se = at["mean"] - van["mean"], math.hypot(at["se"], van["se"])
        if at["n"] < 2 or van["n"] < 2:
            verdict = "too few seeds to tell"
        elif diff > 2 * se:
            verdict = "AttentionTuner ahead"
        elif diff < -2 * se:
            verdict = "vanilla ahead"
        else:
            verdict = "no clear difference"
        out.append({"task": task, "attention_tuner": at, "vanilla": van, "diff": diff, "se": se, "verdict": verdict})
    return out


def verdict_table(rows: list[TrialRow]) -> str:
    lines = ["### AttentionTuner against the vanilla Transformer", "",
             "A gap counts when it exceeds twice its standard error (the two groups' s.e. combined).", "",
             "| task | AttentionTuner | vanilla | difference (± s.e.) | verdict |", "|---|---|---|---|---|"]
    for v in verdicts(rows):
        at, van = v["attention_tuner"], v["vanilla"]
        lines.append(f"| {v['task']} | {at['mean']:.2f} ± {at['se']:.2f} (n={at['n']}) | {van['mean']:.2f} ± "
                     f"{van['se']:.2f} (n={van['n']}) | {v['diff']:+.2f} ± {v['se']:.2f} | {v['verdict']} |")
    return "\n".join(lines)


def wall_time(span_min: float, sessions: int, running_s: float | None, timed: int) -> str:
    """A sweep's wall time from its parent run: start to end, and for a sweep run in several sessions (resumed)
    the time it was running, without the time between: ``running_s`` summed over the ``timed`` sessions that
    logged theirs (`tracking.add_running_time`; a killed session could not)."""
    if sessions <= 1 or running_s is None:
        return f"wall time {span_min:.0f} min (datasets, trials and results)"
    running = f"{running_s / 60:.0f} min" if timed >= sessions else f"at least {running_s / 60:.0f} min"
    n = sessions - timed
    untimed = "" if n <= 0 else f"; {n} of them killed or cut off from MLflow before logging {'its' if n == 1 else 'their'} time"
    return (f"{span_min:.0f} min from start to end, of which {running} running in {sessions} sessions (datasets, "
            f"trials and results; the time between sessions not counted{untimed})")


def run_summary(uri: str, experiment: str | None, sweep: str | None) -> list[str]:
    """Start, end, wall time and commit of the sweep's latest parent run (nothing for a bare experiment)."""
    import datetime

    if not sweep:
        return []
    c = tracking.client(uri)
    exp = tracking.retry(lambda: c.get_experiment_by_name(sweep))
    runs = tracking.retry(lambda: c.search_runs([exp.experiment_id], max_results=5000))
    parents = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    if not parents:
        return []
    p = max(parents, key=lambda r: r.info.start_time)

    def stamp(ms: int) -> str:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")

    line = (f"Sweep run `{p.data.tags.get('mlflow.runName', p.info.run_id)}` (MLflow run {p.info.run_id}, "
            f"commit {p.data.tags.get('git_commit', '?')[:12]}): started {stamp(p.info.start_time)}")
    if p.info.end_time:
        minutes = (p.info.end_time - p.info.start_time) / 60000
        timed = len(tracking.retry(lambda: c.get_metric_history(p.info.run_id, "sweep/running_s")))
        line += f", ended {stamp(p.info.end_time)}, " + wall_time(
            minutes, int(p.data.metrics.get("sweep/sessions", 1)), p.data.metrics.get("sweep/running_s"), timed)
    else:
        line += f", not finished (status {p.info.status.lower()})"
    return [line + ".", ""]


def load_rows(uri: str, experiment: str | None = None, sweep: str | None = None) -> list[TrialRow]:
    """One row per trial run of the experiment (or of the latest run of ``sweep``)."""
    c = tracking.client(uri)
    name = experiment or sweep
    exp = tracking.retry(lambda: c.get_experiment_by_name(name)) if name else None
    if exp is None:
        raise ValueError(f"no MLflow experiment named {name!r} at {tracking.display_uri(uri)}")
    runs = tracking.retry(lambda: c.search_runs([exp.experiment_id], max_results=5000))
    parents = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    children = [r for r in runs if tracking.PARENT_TAG in r.data.tags]
    if sweep and parents:  # the latest run of the sweep
        latest = max(parents, key=lambda r: r.info.start_time)
        children = [r for r in children if r.data.tags[tracking.PARENT_TAG] == latest.info.run_id]
    rows = []
    for r in children:
        p = r.data.params
        noise = ",".join(f"{k.split('.')[-1]}={p[k]}" for k in ("data.noise.drop", "data.noise.shift",
                                                                 "data.noise.spurious") if p.get(k) not in (None, "0", "0.0"))
        rows.append(TrialRow(
            run_id=r.info.run_id, name=r.data.tags.get("mlflow.runName", r.info.run_id), status=r.info.status,
            task=p.get("task.name", "?"), method=method_of(p), fraction=annotated_fraction(p),
            heads=p.get("memory.heads", "?"), noise=noise or "none", seed=int(p.get("seed", 0)),
            metrics=dict(r.data.metrics)))
    return sorted(rows, key=lambda r: r.name)


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
        if r.status == "FINISHED" and r.success is not None:
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


def markdown_table(groups: list[dict[str, Any]], keys: tuple[str, ...], title: str) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(keys) + " | success rate (mean ± s.e.) | seeds | not counted |",
             "|" + "---|" * (len(keys) + 3)]
    for g in groups:
        cell = "n/a" if g["n"] == 0 else f"{g['mean']:.2f} ± {g['se']:.2f}"
        lines.append("| " + " | ".join(str(g[k]) for k in keys) + f" | {cell} | {g['n']} | "
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
        w.writerow([*(g[k] for k in keys), g["mean"], g["se"], g["n"], ";".join(g["missing"])])
    atomic_write_bytes(path, buf.getvalue().encode())


def report(uri: str, out: str | Path, experiment: str | None = None, sweep: str | None = None,
           markdown: str | Path | None = None, notes: str | Path | None = None) -> Path:
    """Write the Markdown report (``out``/report.md, or ``markdown``), CSVs and PNG plots under ``out``.

    ``notes``: a Markdown file included after the summary (the reader's interpretation, the machine).
    """
    from attention_tuner import report_plots

    rows = load_rows(uri, experiment, sweep)
    if not rows:
        raise ValueError(f"no trial runs found in experiment {experiment or sweep!r} at {tracking.display_uri(uri)}")
    preface = Path(notes).read_text() if notes else ""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    md = Path(markdown) if markdown else folder / "report.md"
    link = Path(os.path.relpath(folder.resolve(), md.resolve().parent))
    sections = [f"# Report: {experiment or sweep}", "",
                f"{len(rows)} trials from `{tracking.display_uri(uri)}`; the final `{METRIC}` of each trial "
                "(closed-loop, held-out seeds), aggregated over seeds: mean ± standard error of the mean.", "",
                *run_summary(uri, experiment, sweep)]
    if preface:
        sections += [preface.rstrip(), ""]
    sections += [verdict_table(rows), ""]
    main = main_rows(rows)
    tables = [("task_method", ("task", "method"), "Success rate by task and method", main)]
    clean = demonstration_rows(clean_rows(rows))
    if len({r.fraction for r in clean if r.method == "attention_tuner"}) > 1:
        tables.append(("fraction", ("task", "fraction"), "Success rate by annotated fraction (0: vanilla)",
                       [r for r in clean if any(r.task == o.task and 0 < o.fraction < 1 for o in clean)]))
    if len({r.heads for r in heads_rows(rows)}) > 1:
        tables.append(("heads", ("task", "heads"), "Success rate by supervised (layer, head)", heads_rows(rows)))
    if len({r.noise for r in rows}) > 1:
        tables.append(("noise", ("task", "method", "noise"), "Success rate under annotation noise", rows))
    for name, keys, title, subset in tables:
        groups = aggregate(subset, keys)
        sections += [markdown_table(groups, keys, title), ""]
        write_csv(groups, keys, folder / f"{name}.csv")
    if any(r.method == "ppo_lstm" for r in rows):
        sections += [rl_table(rows), ""]
    for title, png in report_plots.all_plots(uri, rows, folder):
        sections += [f"### {title}", "", f"![{title}]({(link / png.name).as_posix()})", ""]
    sections += ["### Trials", "", "| trial | task | method | fraction | seed | status | success rate "
                 "| decision-step accuracy |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, d = r.success, r.metrics.get("val/decision_accuracy")
        sections.append(f"| {r.name} | {r.task} | {r.method} | {r.fraction:g} | {r.seed} | {r.status.lower()} | "
                        f"{'' if s is None else f'{s:.2f}'} | {'' if d is None else f'{d:.2f}'} |")
    sections.append("")
    md.parent.mkdir(parents=True, exist_ok=True)
    from attention_tuner.demos import atomic_write_bytes

    atomic_write_bytes(md, "\n".join(sections).encode())
    return md


def copy_artifact(uri: str, run_id: str, name: str, dest: Path) -> Path | None:
    """Download one artifact of a run (e.g. attention.png) to ``dest``; None if it is not there."""
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name, tracking_uri=uri)
    except Exception:
        return None
    shutil.copyfile(local, dest)
    return dest
