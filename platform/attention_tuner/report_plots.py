"""The report's plots: success by task and method, against annotated fraction, the layer x head grid,
learning curves, and the expert-vs-learned attention of each task and method's median seed."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullLocator  # noqa: E402

from attention_tuner import tracking  # noqa: E402
from attention_tuner.demos import atomic_target  # noqa: E402
from attention_tuner.outcomes import (  # noqa: E402
    METRIC,
    TrialRow,
    clean_rows,
    demonstration_rows,
    heads_rows,
    main_rows,
)
from attention_tuner.plots import save_png  # noqa: E402
from attention_tuner.report import aggregate, copy_artifact  # noqa: E402

COLOURS = {"vanilla": "#888888", "attention_tuner": "#d62728", "ppo_lstm": "#1f77b4"}
# a marker per method too: two methods' equal curves still show both (an open circle around a dot)
MARKERS: dict[str, dict[str, Any]] = {"vanilla": {"marker": "o", "markerfacecolor": "none", "markersize": 6},
                                      "attention_tuner": {"marker": "."}, "ppo_lstm": {"marker": "^", "markersize": 4}}
MAX_COLUMNS = 3  # panels per row of a figure with one panel per task
FINISHED = "FINISHED"


def method_label(method: str) -> str:
    return method.replace("_", " ")


def task_label(task: str) -> str:
    """A panel's or a row's name for a task; "?": the trial logged no params (stopped before it could)."""
    return "unknown task (no params logged)" if task == "?" else task


def methods_of(rows_or_groups) -> list[str]:
    """The methods present, in COLOURS' order (vanilla, AttentionTuner, PPO), any other after them."""
    present = {x["method"] if isinstance(x, dict) else x.method for x in rows_or_groups}
    return [m for m in COLOURS if m in present] + sorted(present - COLOURS.keys())


def has_error_bar(g: dict) -> bool:
    """A standard error is drawn from two finished seeds on; one seed has none (not a zero one)."""
    return g["n"] >= 2


def legend_if_labelled(ax, **kwargs) -> None:
    """A legend only when some artist has a label (an empty one is a warning and a blank box)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def grid_shape(panels: int, max_columns: int = MAX_COLUMNS) -> tuple[int, int]:
    """(rows, columns) of a figure with ``panels`` panels wrapped to at most ``max_columns`` columns."""
    columns = max(1, min(panels, max_columns))
    return max(1, -(-panels // columns)), columns


def success_by_task(rows: list[TrialRow], path: Path) -> Path:
    return save_png(success_by_task_figure(rows), path)


def success_by_task_figure(rows: list[TrialRow]):
    """One bar per task x method: mean success over its finished seeds, s.e. from two seeds on, n above it; a
    group none of whose trials finished is marked n=0 at the baseline, a method not run on a task "not run"."""
    groups = {(g["task"], g["method"]): g for g in aggregate(rows, ("task", "method"))}
    tasks = sorted({t for t, _ in groups})
    methods = methods_of(groups.values())
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tasks), 4))
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        for j, t in enumerate(tasks):
            x, g = j + (i - (len(methods) - 1) / 2) * width, groups.get((t, m))
            if g is None or not g["n"]:
                ax.text(x, 0.01, "n=0" if g else "not run", ha="center", va="bottom", fontsize=7, rotation=90,
                        color=COLOURS.get(m, "k"))
                continue
            ax.bar(x, g["mean"], width, color=COLOURS.get(m))
            top = g["mean"]
            if has_error_bar(g):
                ax.errorbar(x, g["mean"], yerr=g["se"], fmt="none", ecolor="k", capsize=4)
                top += g["se"]
            ax.text(x, top + 0.015, f"n={g['n']}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(tasks)), [task_label(t) for t in tasks])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("success rate (held-out seeds)")
    ax.set_title("Success rate by task and method (mean ± s.e. over seeds; one seed: no s.e.)")
    if methods:
        ax.legend(handles=[Patch(color=COLOURS.get(m), label=method_label(m)) for m in methods])
    return fig


def percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def success_by_fraction(rows: list[TrialRow], path: Path) -> Path:
    return save_png(success_by_fraction_figure(rows), path)


def success_by_fraction_figure(rows: list[TrialRow]):
    """Per task, AttentionTuner's success against its annotated fraction (> 0, log axis, a tick at each fraction
    run, n beside each point) and vanilla (fraction 0, no annotations) as a dashed horizontal reference in the
    same colour, with its s.e. as a band: not a point of the line, whose trend it would fake."""
    groups = [g for g in aggregate(rows, ("task", "fraction")) if g["n"]]
    tasks = sorted({g["task"] for g in groups})
    fractions = sorted({g["fraction"] for g in groups if g["fraction"] > 0})
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, task in enumerate(tasks):
        colour = plt.get_cmap("tab10")(k % 10)
        for g in (g for g in groups if g["task"] == task and g["fraction"] == 0):
            ax.axhline(g["mean"], color=colour, linestyle="--", alpha=0.8,
                       label=f"{task_label(task)}: vanilla, no annotations (n={g['n']})")
            if has_error_bar(g):
                ax.axhspan(g["mean"] - g["se"], g["mean"] + g["se"], color=colour, alpha=0.12, linewidth=0)
        gs = sorted((g for g in groups if g["task"] == task and g["fraction"] > 0), key=lambda g: g["fraction"])
        if not gs:
            continue
        ax.plot([g["fraction"] for g in gs], [g["mean"] for g in gs], marker="o", color=colour,
                label=f"{task_label(task)}: AttentionTuner")
        for g in gs:
            if has_error_bar(g):
                ax.errorbar(g["fraction"], g["mean"], yerr=g["se"], fmt="none", ecolor=colour, capsize=3)
            ax.annotate(f"n={g['n']}", (g["fraction"], g["mean"]), textcoords="offset points", xytext=(6, -12 - 9 * k),
                        fontsize=7, color=colour, bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none"})
    if fractions:
        ax.set_xscale("log")
        ax.set_xlim(fractions[0] / 2, fractions[-1] * 2)
        ax.set_xticks(fractions, [percent(f) for f in fractions])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("fraction of demonstrations annotated with memory pairs")
    ax.set_ylabel("success rate (held-out seeds)")
    ax.set_title("Success against annotated fraction (mean ± s.e.; dashed: vanilla)")
    legend_if_labelled(ax, fontsize=7)
    return fig


def single_head(heads: str) -> tuple[int, int] | None:
    """The (layer, head) of a trial that supervised exactly one head (its logged memory.heads), else None."""
    if not heads.startswith("[["):
        return None
    parsed = json.loads(heads)
    return (int(parsed[0][0]), int(parsed[0][1])) if len(parsed) == 1 else None


def grid_size(rows: list[TrialRow]) -> tuple[int, int]:
    """(layers, heads) of the heads grid: the largest layer and head any trial supervised (the rows do not hold
    the model's size), at least 1 x 1."""
    seen = [tuple(h) for r in rows if r.heads.startswith("[[") for h in json.loads(r.heads)]
    return max([layer for layer, _ in seen], default=0) + 1, max([head for _, head in seen], default=0) + 1


def head_cells(rows: list[TrialRow], task: str) -> dict[tuple[int, int], list[TrialRow]]:
    """``task``'s single-head trials by their (layer, head), finished or not."""
    cells: dict[tuple[int, int], list[TrialRow]] = defaultdict(list)
    for r in rows:
        cell = single_head(r.heads) if r.task == task else None
        if cell is not None:
            cells[cell].append(r)
    return dict(cells)


def heads_grid(rows: list[TrialRow], path: Path) -> Path:
    return save_png(heads_grid_figure(rows), path)


def heads_grid_figure(rows: list[TrialRow]):
    """Per task, the layer x head grid of the memory loss on one head: the mean success of each cell's finished
    seeds and their number n; a cell no trial supervised is hatched "not run", one without a finished trial
    hatched "n=0". The grid spans the largest layer and head seen in any trial (the model may have more)."""
    tasks = sorted({r.task for r in rows})
    L, H = grid_size(rows)
    side = 0.75
    fig, axes = plt.subplots(1, len(tasks), squeeze=False, layout="compressed", sharey=True,
                             figsize=(max(2.6, 1.2 + side * H) * len(tasks) + 1.2, max(2.6, 1.4 + side * L)))
    im = None
    for ax, task in zip(axes[0], tasks, strict=True):
        cells = head_cells(rows, task)
        grid = np.full((L, H), np.nan)
        for layer in range(L):
            for head in range(H):
                values = [r.success for r in cells.get((layer, head), []) if r.counted and r.success is not None]
                if values:
                    grid[layer, head] = np.mean(values)
                    text = f"{np.mean(values):.2f}\nn={len(values)}"
                else:
                    ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, hatch="//",
                                           edgecolor="#bbbbbb", linewidth=0))
                    text = "n=0" if (layer, head) in cells else "not run"
                colour = "w" if values and np.mean(values) < 0.6 else "k"
                ax.text(head, layer, text, ha="center", va="center", color=colour, fontsize=7)
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(H))
        ax.set_yticks(range(L))
        ax.set_xlabel("head")
        ax.set_title(task_label(task))
    axes[0][0].set_ylabel("layer")
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), label="success rate", shrink=0.9)
    fig.suptitle("Memory loss on one (layer, head): success rate")
    return fig


def curve_points(uri: str, rows: list[TrialRow], x_metric: str | None = None) -> dict[str, list[tuple[float, float]]]:
    """Per run id: (x, success) at each step that logged the success: x the step (epoch), or ``x_metric``
    logged at the same step (the RL baseline: perf/env_steps)."""
    c = tracking.client(uri)
    out = {}
    for r in rows:
        hist = tracking.retry(partial(c.get_metric_history, r.run_id, METRIC))
        x = {m.step: m.step for m in hist}
        if x_metric:
            x = {m.step: m.value for m in tracking.retry(partial(c.get_metric_history, r.run_id, x_metric))}
        out[r.run_id] = sorted((x[m.step], m.value) for m in hist if m.step in x)
    return out


def curve_label(r: TrialRow) -> str:
    """The legend entry of a trial's curve: its method, and its status unless it finished."""
    return method_label(r.method) if r.status == FINISHED else f"{method_label(r.method)} ({r.status.lower()})"


def curve_style(r: TrialRow) -> dict:
    """A finished trial's curve solid; a failed, killed or still running one dashed and light."""
    if r.status == FINISHED:
        return {"linestyle": "-", "alpha": 0.8, "linewidth": 1.5}
    return {"linestyle": "--", "alpha": 0.35, "linewidth": 1.0}


def learning_curves(uri: str, rows: list[TrialRow], path: Path, x_metric: str | None = None,
                    title: str = "Learning curves: closed-loop success on held-out seeds") -> Path:
    """Success against the epoch (the metrics' step), or against ``x_metric`` logged at the same steps
    (the RL baseline: perf/env_steps); see `learning_curves_figure`."""
    x_label = x_metric.split("/")[-1].replace("_", " ") if x_metric else "epoch"
    return save_png(learning_curves_figure(rows, curve_points(uri, rows, x_metric), x_label, title), path)


def learning_curves_figure(rows: list[TrialRow], points: dict[str, list[tuple[float, float]]], x_label: str,
                           title: str):
    """One panel per task (at most MAX_COLUMNS a row), one line per trial in its method's colour: finished trials
    solid, the others dashed and light with their status in the legend (one entry per method and status)."""
    tasks = sorted({r.task for r in rows}, key=lambda t: (t == "?", t))  # the unknown task last
    order = {m: i for i, m in enumerate(methods_of(rows))}
    n_rows, n_cols = grid_shape(len(tasks))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.4 * n_cols, 3.4 * n_rows), squeeze=False,
                             layout="constrained")
    flat = axes.ravel()
    for ax, task in zip(flat, tasks, strict=False):
        named: set[str] = set()  # one legend entry per method and status; its seeds share the colour
        for r in sorted((r for r in rows if r.task == task),
                        key=lambda r: (r.status != FINISHED, order[r.method], r.status, r.seed)):
            pts = points.get(r.run_id)
            if not pts:
                continue
            label = curve_label(r)
            ax.plot(*zip(*pts, strict=True), color=COLOURS.get(r.method), **MARKERS.get(r.method, {"marker": "."}),
                    label=label if label not in named else "_nolegend_", **curve_style(r))
            named.add(label)
        if not named:
            ax.text(0.5, 0.5, "no success rate logged", ha="center", va="center", transform=ax.transAxes,
                    color="#777777")
        ax.set_ylim(-0.02, 1.02)
        if x_label == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel(x_label)
        ax.set_ylabel("success rate")
        ax.set_title(task_label(task))
        legend_if_labelled(ax, fontsize=7)
    for ax in flat[len(tasks):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def median_trial(rows: list[TrialRow]) -> TrialRow | None:
    """The median-success trial of ``rows``' finished ones (the lower median for an even number), ties broken by
    seed; None when none finished."""
    finished = sorted((r for r in rows if r.counted), key=lambda r: (r.success, r.seed))
    return finished[(len(finished) - 1) // 2] if finished else None


def median_words(n: int) -> str:
    """Which of n finished seeds `median_trial` picked, in words."""
    if n <= 2:
        return "its only finished seed" if n == 1 else "the lower of its 2 finished seeds"
    return f"the {'lower ' if n % 2 == 0 else ''}median of {n} finished seeds"


def attention_picks(rows: list[TrialRow]) -> list[tuple[str, str, TrialRow, int]]:
    """(task, method, its median trial, the number of finished trials it is the median of) for each task and
    method with a finished trial: the attention pictures compare methods on typical seeds, not extremes."""
    picks = []
    for task in sorted({r.task for r in rows}):
        for method in methods_of([r for r in rows if r.task == task]):
            arm = [r for r in rows if r.task == task and r.method == method]
            r = median_trial(arm)
            if r is not None:
                picks.append((task, method, r, sum(x.counted for x in arm)))
    return picks


class _NoArtifact(Exception):
    pass


def copy_atomically(uri: str, run_id: str, name: str, dest: Path) -> Path | None:
    """A run's artifact copied to ``dest`` through a temporary: an interrupted copy never replaces a good file."""
    try:
        with atomic_target(dest, ".tmp.png") as tmp:
            if copy_artifact(uri, run_id, name, tmp) is None:
                raise _NoArtifact
    except _NoArtifact:  # the run has no such artifact: nothing copied, nothing replaced
        return None
    return dest


def all_plots(uri: str, rows: list[TrialRow], folder: Path) -> list[tuple[str, Path]]:
    main = main_rows(rows)  # vanilla, fully annotated AttentionTuner and PPO; the fraction arms get their own plot
    transformer = demonstration_rows(main)  # their curves count epochs; PPO's count environment steps
    out = [("Success by task and method", success_by_task(main, folder / "success_by_task.png")),
           ("Learning curves", learning_curves(uri, transformer, folder / "learning_curves.png"))]
    ppo = [r for r in main if r.method == "ppo_lstm"]
    if ppo:
        out.append(("RL baseline: learning curves", learning_curves(
            uri, ppo, folder / "rl_curves.png", x_metric="perf/env_steps",
            title="RL baseline (PPO with an LSTM): closed-loop success on held-out seeds")))
    clean = demonstration_rows(clean_rows(rows))
    partial = {r.task for r in clean if 0 < r.fraction < 1}
    if partial:
        out.append(("Success against annotated fraction",
                    success_by_fraction([r for r in clean if r.task in partial], folder / "fraction.png")))
    if len({r.heads for r in heads_rows(rows)}) > 2:
        out.append(("Layer x head ablation", heads_grid(heads_rows(rows), folder / "heads_grid.png")))
    for task, method, r, n in attention_picks(transformer):
        dest = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", f"attention_{task}_{method}").strip("_") + ".png")
        if copy_atomically(uri, r.run_id, "attention.png", dest):
            out.append((f"{task_label(task)}, {method_label(method)}: seed {r.seed}, {median_words(n)} (success "
                        f"{r.success:.3f}): expert vs learned attention", dest))
    return out
