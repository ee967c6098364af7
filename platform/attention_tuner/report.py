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
    weight = float(params.get("memory.weight", "0"))
    fraction = float(params.get("data.annotation_fraction", "1"))
    return "attention_tuner" if weight > 0 and fraction > 0 else "vanilla"


def load_rows(uri: str, experiment: str | None = None, sweep: str | None = None) -> list[TrialRow]:
    """One row per trial run of the experiment (or of the latest run of ``sweep``)."""
    c = tracking.client(uri)
    name = experiment or sweep
    exp = tracking.retry(lambda: c.get_experiment_by_name(name)) if name else None
    if exp is None:
        raise ValueError(f"no MLflow experiment named {name!r} at {uri}")
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
            task=p.get("task.name", "?"), method=method_of(p), fraction=float(p.get("data.annotation_fraction", 1)),
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

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*keys, "mean", "se", "seeds", "not_counted"])
        for g in groups:
            w.writerow([*(g[k] for k in keys), g["mean"], g["se"], g["n"], ";".join(g["missing"])])
    os.replace(tmp, path)


def report(uri: str, out: str | Path, experiment: str | None = None, sweep: str | None = None) -> Path:
    """Write report.md (tables), CSVs and PNG plots under ``out``; return the Markdown file."""
    from attention_tuner import report_plots

    rows = load_rows(uri, experiment, sweep)
    if not rows:
        raise ValueError(f"no trial runs found in experiment {experiment or sweep!r} at {uri}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    sections = [f"# Report: {experiment or sweep}", "",
                f"{len(rows)} trials from `{uri}`; the final `{METRIC}` of each trial (closed-loop, held-out "
                "seeds), aggregated over seeds: mean ± standard error of the mean.", ""]
    tables = [("task_method", ("task", "method"), "Success rate by task and method")]
    if len({r.fraction for r in rows}) > 1:
        tables.append(("fraction", ("task", "fraction"), "Success rate by annotated fraction"))
    if len({r.heads for r in rows if r.method == "attention_tuner"}) > 1:
        tables.append(("heads", ("task", "heads"), "Success rate by supervised (layer, head)"))
    if len({r.noise for r in rows}) > 1:
        tables.append(("noise", ("task", "method", "noise"), "Success rate under annotation noise"))
    for name, keys, title in tables:
        groups = aggregate(rows, keys)
        sections += [markdown_table(groups, keys, title), ""]
        write_csv(groups, keys, folder / f"{name}.csv")
    sections += ["### Trials", "", "| trial | task | method | fraction | seed | status | success rate "
                 "| decision-step accuracy |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, d = r.success, r.metrics.get("val/decision_accuracy")
        sections.append(f"| {r.name} | {r.task} | {r.method} | {r.fraction:g} | {r.seed} | {r.status.lower()} | "
                        f"{'' if s is None else f'{s:.2f}'} | {'' if d is None else f'{d:.2f}'} |")
    sections.append("")
    for title, png in report_plots.all_plots(uri, rows, folder):
        sections += [f"### {title}", "", f"![{title}]({png.name})", ""]
    md = folder / "report.md"
    tmp = md.with_name(".report.md.tmp")
    tmp.write_text("\n".join(sections))
    os.replace(tmp, md)
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
