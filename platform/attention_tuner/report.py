"""Reports: MLflow runs -> the paper's tables and plots (Markdown, CSV, PNG).

Reads the child runs (one per trial) of an experiment, or of one sweep's parent run, takes each trial's
final metrics, and aggregates over seeds: mean ± standard error and the number of seeds, per task x method
(x annotation fraction, x supervised heads). Failed or unfinished trials are listed, never silently dropped.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import memory_tasks
from attention_tuner import tracking
from attention_tuner.outcomes import (
    METRIC,
    TrialRow,
    clean_rows,
    demonstration_rows,
    heads_rows,
    main_rows,
    mean_cell,
    mean_se,
    memory_rows,
    noise_rows,
    rate,
    row_from_params,
    trial_identity,
    with_arm_settings,
)
from memory_tasks.core import short_repr

UNCOMMITTED = " + uncommitted changes"  # after a trial's commit, when its checkout had some (tracking.commit_tags)


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
            ahead = "AttentionTuner" if entry["diff"] > 0 else "vanilla"
            entry["verdict"] = ("no difference: every seed of both the same" if abs(entry["diff"]) < SAME else
                                f"every {ahead} seed ahead, no spread within either method: no t-test")
        elif not math.isfinite(p):
            entry["verdict"] = "cannot test"
        elif p >= ALPHA:
            entry["verdict"] = "no clear difference"
        else:
            entry["verdict"] = "AttentionTuner ahead" if entry["diff"] > 0 else "vanilla ahead"
    return out


def verdict_caption(vs: list[dict[str, Any]]) -> str:
    """How to read the verdicts: the test, the seeds they rest on, how many tasks were tested, and what the
    standard errors leave out."""
    compared = [v for v in vs if all(g and g["n"] >= 2 for g in (v["attention_tuner"], v["vanilla"]))]
    seeds = sorted({g["n"] for v in compared for g in (v["attention_tuner"], v["vanilla"])})
    tested = sum(v["p"] is not None for v in vs)
    span = "" if not seeds else f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    text = (f"A difference counts when Welch's t-test (two-sided, unequal variances, over the seeds) gives p < "
            f"{ALPHA:g}.")
    if span:
        text += (f" With {span} seeds a side the test has little power, and it "
                 f"leans on the success rates being normal across seeds: \"no clear difference\" is not \"no "
                 f"difference\".")
    if tested > 1:
        text += (f" Each task is tested on its own: {tested} tests, p not corrected for their number (Holm's "
                 f"correction would multiply the smallest p by {tested}).")
    return text + (" Standard errors are over training seeds; every trial is evaluated on the same held-out "
                   "seeds, so the evaluation's own sampling error is not in them.")


def verdict_cell(g: dict[str, Any]) -> str:
    """A method's cell in the verdict table: mean ± s.e. and its seeds, e.g. "0.825 ± 0.020 (n=2)", "(n=2 of 3)"
    when a seed did not finish, "0.700 (one seed) (1 of 2)"."""
    of = f" of {g['n'] + len(g['missing'])}" if g["missing"] else ""
    if g["n"] == 1:
        return mean_cell(g) + (f" (1{of})" if of else "")
    return f"{mean_cell(g)} (n={g['n']}{of})"


def verdict_table(rows: list[TrialRow]) -> str:
    vs = verdicts(rows)
    lines = ["### AttentionTuner against the vanilla Transformer", "", verdict_caption(vs), "",
             "| task | AttentionTuner | vanilla | difference (± s.e.) | Welch p | verdict |", "|---|---|---|---|---|---|"]
    for v in vs:
        at, van = v["attention_tuner"], v["vanilla"]
        cells = ["none" if not g else verdict_cell(g) for g in (at, van)]
        one_seed = at is not None and van is not None and min(at["n"], van["n"]) < 2
        diff = ("" if v["diff"] is None else f"{v['diff']:+.3f} (no s.e.: one seed)" if one_seed
                else f"{v['diff']:+.3f} ± {v['se']:.3f}")
        p = "" if v["p"] is None else f"{v['p']:.3f}"
        lines.append(f"| {v['task']} | {cells[0]} | {cells[1]} | {diff} | {p} | {v['verdict']} |")
    return "\n".join(lines)


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


def trial_row(r) -> TrialRow:
    """The row of an MLflow trial run."""
    p = dict(r.data.params)
    if "task.name" in p:  # one spelling per task, also for runs logged before names were made canonical
        with contextlib.suppress(ValueError):
            p["task.name"] = memory_tasks.short_name(p["task.name"])
    return row_from_params(
        p, run_id=r.info.run_id, name=r.data.tags.get("mlflow.runName", r.info.run_id), status=r.info.status,
        metrics=dict(r.data.metrics), start_time=r.info.start_time or 0,
        commit=r.data.tags.get("git_commit", "?") + (UNCOMMITTED if r.data.tags.get("git_uncommitted") else ""),
        trial=trial_identity(p) if p else r.info.run_id)


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


def aggregate(rows: list[TrialRow], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Group finished trials by ``keys``; each group: mean, s.e., seeds, and the trials left out."""
    groups: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        k = tuple(getattr(r, key) for key in keys)
        g = groups.setdefault(k, {**dict(zip(keys, k, strict=True)), "values": [], "missing": []})
        if r.counted:
            g["values"].append(r.success)
        else:
            why = r.status.lower() + (", success not a number" if r.status == "FINISHED" and r.success is not None
                                      else "")
            g["missing"].append(f"{r.name} ({why})")
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
        se = round(g["se"], 12) if g["n"] >= 2 else ""  # no standard error from fewer than two seeds
        mean = round(g["mean"], 12) if g["n"] else ""  # no finished seed: no mean (rounded: no 0.0325000000003)
        w.writerow([*(g[k] for k in keys), mean, se, g["n"], ";".join(g["missing"])])
    atomic_write_bytes(path, buf.getvalue().encode())


def report(uri: str, out: str | Path, experiment: str | None = None, sweep: str | None = None,
           markdown: str | Path | None = None, notes: str | Path | None = None,
           on_removed: Callable[[Path], None] | None = None) -> Path:
    """Write the Markdown report (``out``/report.md, or ``markdown``), CSVs and PNG plots under ``out``.

    ``notes``: a Markdown file included after the summary (the reader's interpretation, the machine).
    ``on_removed``: told of each file an earlier report wrote into ``out`` that this one removed (see
    `remove_stale`), e.g. ``out``/report.md when this report's Markdown goes elsewhere.
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
    for path in remove_stale(folder, written):
        if on_removed:
            on_removed(path)
    return md


# The files a report wrote in its folder, listed there: the next report into the same folder removes those it
# does not write again (so that none is taken for current), and never a file of the user's.
WRITTEN = ".report-files.json"


def remove_stale(folder: Path, written: set[Path]) -> list[Path]:
    """Remove the files the previous report listed in ``folder`` that this one did not write; returns them."""
    from attention_tuner.demos import atomic_write_bytes

    names = sorted(p.name for p in written if p.resolve().parent == folder.resolve())
    listing = folder / WRITTEN
    try:
        before = json.loads(listing.read_text()) if listing.is_file() else []
    except (OSError, json.JSONDecodeError):
        before = []
    removed = []
    for name in before if isinstance(before, list) else []:
        path = folder / str(name)
        if name not in names and "/" not in str(name) and path.is_file():
            path.unlink()
            removed.append(path)
    atomic_write_bytes(listing, (json.dumps(names, indent=1) + "\n").encode())
    return removed


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
