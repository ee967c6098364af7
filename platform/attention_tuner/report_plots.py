"""The report's plots: success by task and method, against annotated fraction, the layer x head grid,
learning curves, and the expert-vs-learned attention of the best and worst trial of each task."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from attention_tuner import tracking  # noqa: E402
from attention_tuner.demos import atomic_target  # noqa: E402
from attention_tuner.plots import save_png  # noqa: E402
from attention_tuner.report import (  # noqa: E402
    METRIC,
    TrialRow,
    aggregate,
    clean_rows,
    copy_artifact,
    demonstration_rows,
    heads_rows,
    main_rows,
)

COLOURS = {"vanilla": "#888888", "attention_tuner": "#d62728", "ppo_lstm": "#1f77b4"}


def success_by_task(rows: list[TrialRow], path: Path) -> Path:
    groups = aggregate(rows, ("task", "method"))
    tasks = sorted({g["task"] for g in groups})
    methods = [m for m in COLOURS if any(g["method"] == m for g in groups)]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tasks), 4))
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        xs, ys, es, ns = [], [], [], []
        for j, t in enumerate(tasks):
            g = next((g for g in groups if g["task"] == t and g["method"] == m), None)
            if g and g["n"]:
                xs.append(j + (i - (len(methods) - 1) / 2) * width)
                ys.append(g["mean"])
                es.append(g["se"])
                ns.append(g["n"])
        ax.bar(xs, ys, width, yerr=es, capsize=4, color=COLOURS.get(m), label=m.replace("_", " "))
        for x, y, e, n in zip(xs, ys, es, ns, strict=True):
            ax.text(x, y + e + 0.015, f"n={n}", ha="center", va="bottom", fontsize=7)  # above the error bar
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("success rate (held-out seeds)")
    ax.set_title("Success rate by task and method (mean ± s.e. over seeds)")
    ax.legend()
    return save_png(fig, path)


def success_by_fraction(rows: list[TrialRow], path: Path) -> Path:
    groups = aggregate(rows, ("task", "fraction"))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for task in sorted({g["task"] for g in groups}):
        gs = sorted((g for g in groups if g["task"] == task and g["n"]), key=lambda g: g["fraction"])
        # fraction 0 (vanilla) drawn at the left edge of the log axis
        xs = [g["fraction"] if g["fraction"] > 0 else 3e-4 for g in gs]
        ax.errorbar(xs, [g["mean"] for g in gs], yerr=[g["se"] for g in gs], marker="o", capsize=3, label=task)
    ax.set_xscale("log")
    ax.set_xticks([3e-4, 1e-3, 1e-2, 1e-1, 1], ["0 (vanilla)", "0.1%", "1%", "10%", "100%"])
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("fraction of demonstrations annotated with memory pairs")
    ax.set_ylabel("success rate (held-out seeds)")
    ax.set_title("Success against annotated fraction (mean ± s.e.)")
    ax.legend()
    return save_png(fig, path)


def heads_grid(rows: list[TrialRow], path: Path) -> Path:
    tasks = sorted({r.task for r in rows})
    im = None
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        cells: dict[tuple[int, int], list[float]] = defaultdict(list)
        for r in rows:
            if r.task == task and r.status == "FINISHED" and r.success is not None and r.heads.startswith("[["):
                heads = json.loads(r.heads)
                if len(heads) == 1:
                    cells[tuple(heads[0])].append(r.success)
        if not cells:
            continue
        L = max(k[0] for k in cells) + 1
        H = max(k[1] for k in cells) + 1
        grid = np.full((L, H), np.nan)
        for (layer, head), v in cells.items():
            grid[layer, head] = np.mean(v)
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        for (layer, head), v in cells.items():
            ax.text(head, layer, f"{np.mean(v):.2f}", ha="center", va="center", color="w")
        ax.set_xticks(range(H))
        ax.set_yticks(range(L))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(task)
    if im is not None:  # some task had a single-head arm
        fig.colorbar(im, ax=axes[0].tolist(), label="success rate")
    fig.suptitle("Memory loss on one (layer, head): success rate")
    return save_png(fig, path)


def learning_curves(uri: str, rows: list[TrialRow], path: Path, x_metric: str | None = None,
                    title: str = "Learning curves: closed-loop success on held-out seeds") -> Path:
    """Success against the epoch (the metrics' step), or against ``x_metric`` logged at the same steps
    (the RL baseline: perf/env_steps); one line per trial in its method's colour, one panel per task."""
    c = tracking.client(uri)
    tasks = sorted({r.task for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False, layout="constrained")
    for ax, task in zip(axes[0], tasks, strict=True):
        named: set[str] = set()  # one legend entry per method; its seeds share the colour
        for r in (r for r in rows if r.task == task):
            hist = tracking.retry(lambda r=r: c.get_metric_history(r.run_id, METRIC))
            x = {m.step: m.step for m in hist}
            if x_metric:
                x = {m.step: m.value for m in tracking.retry(lambda r=r: c.get_metric_history(r.run_id, x_metric))}
            pts = sorted((x[m.step], m.value) for m in hist if m.step in x)
            if pts:
                label = r.method.replace("_", " ") if r.method not in named else "_nolegend_"
                named.add(r.method)
                ax.plot(*zip(*pts, strict=True), color=COLOURS.get(r.method), alpha=0.8, marker=".", label=label)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(x_metric.split("/")[-1].replace("_", " ") if x_metric else "epoch")
        ax.set_ylabel("success rate")
        ax.set_title(task)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return save_png(fig, path)


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
    for task in sorted({r.task for r in transformer}):
        done = sorted((r for r in transformer if r.task == task and r.status == "FINISHED" and r.success is not None),
                      key=lambda r: r.success)
        for label, r in (("worst", done[0]), ("best", done[-1])) if done else ():
            dest = folder / f"attention_{task}_{label}.png"
            if copy_atomically(uri, r.run_id, "attention.png", dest):
                out.append((f"{task}, {label} trial ({r.name}, success {r.success:.2f}): expert vs learned "
                            "attention", dest))
    return out
