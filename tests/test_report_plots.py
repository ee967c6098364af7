"""The report's plots (attention_tuner.report_plots) from hand-made trial rows, and the attention picture's
episode and ticks (attention_tuner.plots): what each figure draws, not only that a PNG is written."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex

from attention_tuner import report_plots as rp
from attention_tuner.outcomes import TrialRow


def row(task="Hallway", method="attention_tuner", seed=0, success=0.5, status="FINISHED", fraction=None,
        heads="[[0, 0]]") -> TrialRow:
    metrics = {} if success is None else {"eval/success_rate": success}
    fraction = (1.0 if method == "attention_tuner" else 0.0) if fraction is None else fraction
    return TrialRow(run_id=f"{task}-{method}-{fraction}-{heads}-{seed}", name=f"{task}-{method}-{seed}",
                    status=status, task=task, method=method, fraction=fraction, heads=heads, noise="none",
                    seed=seed, metrics=metrics)


@pytest.fixture(autouse=True)
def no_open_figures():
    yield
    plt.close("all")


@pytest.fixture
def strict_warnings():
    """Any matplotlib warning (an empty legend: "No artists with labels") fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def error_bars(ax) -> int:
    """Error bar segments drawn on ax (errorbar containers' vertical lines)."""
    return sum(len(c.lines[2][0].get_segments()) for c in ax.containers if type(c).__name__ == "ErrorbarContainer")


# ----------------------------------------------------------------------------------- 1-3 learning curves


def curves(rows, points=None):
    points = points if points is not None else {r.run_id: [(1, 0.1), (2, r.success or 0.2)] for r in rows}
    return rp.learning_curves_figure(rows, points, "epoch", "curves")


def test_unfinished_trials_are_dashed_light_and_named_by_status(strict_warnings):
    rows = [row(seed=0, success=0.9), row(seed=1, success=0.8), row(seed=2, success=None, status="FAILED"),
            row(method="vanilla", seed=0, success=0.3), row(method="vanilla", seed=1, status="RUNNING")]
    ax = curves(rows).axes[0]
    by_label = {}
    for line in ax.get_lines():
        by_label.setdefault(line.get_label(), []).append(line)
    assert legend_labels(ax) == ["vanilla", "attention tuner", "vanilla (running)", "attention tuner (failed)"]
    finished = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    others = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(finished) == 3 and len(others) == 2
    assert all(ln.get_alpha() < min(f.get_alpha() for f in finished) for ln in others)
    assert {to_hex(ln.get_color()) for ln in others} == {rp.COLOURS["attention_tuner"], rp.COLOURS["vanilla"]}


def test_panels_wrap_to_three_columns_and_blank_panels_have_no_legend(strict_warnings):
    tasks = ["A", "B", "C", "D", "E"]
    rows = [row(task=t, seed=s) for t in tasks for s in (0, 1)] + [row(task="?", method="?", status="FAILED")]
    fig = curves(rows, points={r.run_id: [(1, 0.2), (2, 0.4)] for r in rows if r.task != "E"})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 6 and len(fig.axes) == 6
    assert {ax.get_subplotspec().colspan.start for ax in fig.axes} == {0, 1, 2}  # 2 rows of 3, not 1 of 6
    assert rp.grid_shape(5) == (2, 3) and rp.grid_shape(2) == (1, 2) and rp.grid_shape(7) == (3, 3)
    panels = {ax.get_title(): ax for ax in visible}
    assert list(panels)[-1] == "unknown task (no params logged)"
    assert "unknown task (no params logged)" in panels and "?" not in panels
    assert panels["E"].get_legend() is None and "no success rate logged" in texts(panels["E"])
    assert panels["A"].get_legend() is not None
    hidden = curves([row(task=t) for t in "ABCD"])
    assert sum(ax.get_visible() for ax in hidden.axes) == 4 and len(hidden.axes) == 6  # 2 x 3, the spare 2 hidden


def test_learning_curves_read_the_success_history_from_mlflow(tmp_path):
    from attention_tuner import tracking

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    exp = tracking.ensure_experiment(uri, "plots")
    parent = tracking.start_parent(uri, exp, "plots", "sweep-1", {})
    run = tracking.child_run(uri, exp, parent, "000", "plots", {"task.name": "Hallway"})
    for step, (success, env_steps) in enumerate([(0.1, 100.0), (0.4, 250.0)], start=1):
        tracking.log_metrics(uri, run, {"eval/success_rate": success, "perf/env_steps": env_steps}, step)
    r = TrialRow(run_id=run, name="000", status="FINISHED", task="Hallway", method="ppo_lstm", fraction=0.0,
                 heads="?", noise="none", seed=0, metrics={"eval/success_rate": 0.4})
    assert rp.curve_points(uri, [r]) == {run: [(1, 0.1), (2, 0.4)]}
    assert rp.curve_points(uri, [r], "perf/env_steps") == {run: [(100.0, 0.1), (250.0, 0.4)]}
    png = rp.learning_curves(uri, [r], tmp_path / "curves.png", x_metric="perf/env_steps")
    assert png.read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------- 4 success by task


def test_one_seed_has_no_error_bar_and_a_group_without_finished_seeds_is_marked(strict_warnings):
    rows = [row(seed=0, success=0.9), row(seed=1, success=0.7),  # AttentionTuner on Hallway: 2 seeds, s.e.
            row(method="vanilla", seed=0, success=0.2),  # vanilla on Hallway: one seed, no s.e.
            row(task="Ordering", method="vanilla", seed=0, success=None, status="FAILED"),  # n=0
            row(task="Ordering", method="vanilla", seed=1, success=None, status="KILLED")]
    ax = rp.success_by_task_figure(rows).axes[0]
    assert error_bars(ax) == 1  # AttentionTuner on Hallway only
    assert len(ax.patches) == 2  # two bars: nothing drawn for the groups without a finished seed
    assert sorted(texts(ax)) == ["n=0", "n=1", "n=2", "not run"]  # Ordering: vanilla failed, AttentionTuner absent
    assert legend_labels(ax) == ["vanilla", "attention tuner"]
    n0 = next(t for t in ax.texts if t.get_text() == "n=0")
    assert n0.get_position()[1] < 0.05  # at the baseline, where the bar would start


# --------------------------------------------------------------------------------- 5 success by fraction


def test_vanilla_is_a_reference_line_not_a_point_of_the_fraction_line(strict_warnings):
    rows = [row(method="vanilla", seed=0, success=0.2), row(method="vanilla", seed=1, success=0.3),
            row(fraction=0.01, seed=0, success=0.5), row(fraction=0.01, seed=1, success=0.7),
            row(fraction=1.0, seed=0, success=0.9)]
    ax = rp.success_by_fraction_figure(rows).axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    fraction_line = lines["Hallway: AttentionTuner"]
    assert list(fraction_line.get_xdata()) == [0.01, 1.0]  # no point at 0 (or at a stand-in for it)
    assert list(fraction_line.get_ydata()) == pytest.approx([0.6, 0.9])
    vanilla = lines["Hallway: vanilla, no annotations (n=2)"]
    assert vanilla.get_linestyle() == "--" and list(vanilla.get_ydata()) == pytest.approx([0.25, 0.25])
    assert list(ax.get_xticks()) == [0.01, 1.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1%", "100%"]
    assert ax.xaxis.get_minorticklocs().size == 0  # no unlabelled ticks between
    assert sorted(texts(ax)) == ["n=1", "n=2"]  # n beside each fraction point
    assert error_bars(ax) == 1  # the fraction 1 point has one seed: no error bar


def test_only_the_fractions_run_get_ticks():
    rows = [row(fraction=f, seed=0, success=0.5) for f in (0.001, 0.1)] + [row(method="vanilla", success=0.1)]
    ax = rp.success_by_fraction_figure(rows).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1%", "10%"]
    left, right = ax.get_xlim()
    assert left < 0.001 and right > 0.1


# ------------------------------------------------------------------------------------------ 6 heads grid


def test_heads_grid_marks_cells_not_run_and_shows_n():
    rows = [row(heads="[[0, 0]]", seed=0, success=0.8), row(heads="[[0, 0]]", seed=1, success=0.6),
            row(heads="[[1, 1]]", seed=0, success=None, status="FAILED"),
            row(heads="[[0, 1], [1, 0]]", seed=0, success=0.3),  # two heads: not a cell
            row(task="Ordering", heads="[[1, 0]]", seed=0, success=0.1)]
    assert rp.grid_size(rows) == (2, 2)
    fig = rp.heads_grid_figure(rows)
    hallway, ordering = (ax for ax in fig.axes if ax.get_title() in ("Hallway", "Ordering"))
    assert sorted(texts(hallway)) == ["0.70\nn=2", "n=0", "not run", "not run"]
    assert sorted(texts(ordering)) == ["0.10\nn=1", "not run", "not run", "not run"]
    assert sum(p.get_hatch() == "//" for p in hallway.patches) == 3
    assert hallway.get_ylabel() == "layer" and ordering.get_ylabel() == ""  # one y label: none over a neighbour
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    label = hallway.yaxis.label.get_window_extent(renderer)
    assert not label.overlaps(ordering.get_window_extent(renderer))
    assert hallway.get_window_extent(renderer).x1 < ordering.get_tightbbox(renderer).x0


def test_the_heads_grid_title_clears_the_panel_titles():
    fig = rp.heads_grid_figure([row(task=t, heads=h, success=0.5) for t in "ABC" for h in ("[[0, 0]]", "[[2, 3]]")])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    suptitle = next(t for t in fig.texts if t.get_text() == fig.get_suptitle()).get_window_extent(renderer)
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    assert len(titles) == 3 and not any(suptitle.overlaps(t) for t in titles)


def test_a_grid_from_one_head_is_drawn_with_its_cell():
    fig = rp.heads_grid_figure([row(heads="[[0, 0]]", success=0.4)])
    assert texts(fig.axes[0]) == ["0.40\nn=1"]


# -------------------------------------------------------------------------- 7 attention picture per method


def test_the_median_seed_of_each_method_is_picked_ties_by_seed():
    at = [row(seed=s, success=v) for s, v in ((0, 0.9), (1, 0.5), (2, 0.5), (3, 0.1), (4, None))]
    assert rp.median_trial(at).seed == 1  # (0.1, 3) (0.5, 1) (0.5, 2) (0.9, 0): the 2nd of 4, lower median
    assert rp.median_trial(at[:3]).seed == 2  # (0.5, 1) (0.5, 2) (0.9, 0): the tie ordered by seed
    assert rp.median_trial(at[2::-1]).seed == 2  # whatever order the runs come in
    assert rp.median_trial([row(success=None, status="FAILED")]) is None
    van = [row(method="vanilla", seed=s, success=v) for s, v in ((0, 0.2), (1, 0.4), (2, 0.3))]
    failed = [row(task="Ordering", seed=0, success=None, status="FAILED")]
    picks = rp.attention_picks(at + van + failed)
    assert [(t, m, r.seed, n) for t, m, r, n in picks] == [("Hallway", "vanilla", 2, 3),
                                                         ("Hallway", "attention_tuner", 1, 4)]


def test_all_plots_copies_one_attention_picture_per_task_and_method(tmp_path):
    from attention_tuner import tracking
    from attention_tuner.plots import save_png

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    exp = tracking.ensure_experiment(uri, "plots")
    parent = tracking.start_parent(uri, exp, "plots", "sweep-1", {})
    rows = []
    for i, (weight, seed, success) in enumerate([(0, 0, 0.1), (0, 1, 0.3), (0, 2, 0.2), (10, 0, 0.9), (10, 1, 0.8)]):
        run = tracking.child_run(uri, exp, parent, f"{i:03d}", "plots", {"task.name": "Ordering", "seed": seed})
        tracking.log_metrics(uri, run, {"eval/success_rate": success}, 1)
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.set_title(f"run {i}")
        folder = tmp_path / f"pic{i}"
        folder.mkdir()
        tracking.log_artifact(uri, run, save_png(fig, folder / "attention.png"))
        tracking.finish(uri, run)
        rows.append(TrialRow(run_id=run, name=f"{i:03d}", status="FINISHED", task="Ordering",
                             method="attention_tuner" if weight else "vanilla", fraction=1.0 if weight else 0.0,
                             heads="[[0, 0]]", noise="none", seed=seed, metrics={"eval/success_rate": success}))
    out = tmp_path / "out"
    out.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        written = dict(rp.all_plots(uri, rows, out))
    attention = {title: png for title, png in written.items() if png.name.startswith("attention_")}
    assert sorted(png.name for png in attention.values()) == ["attention_Ordering_attention_tuner.png",
                                                              "attention_Ordering_vanilla.png"]
    assert set(attention) == {
        "Ordering, vanilla: seed 2, the median of 3 finished seeds (success 0.200): expert vs learned attention",
        "Ordering, attention tuner: seed 1, the lower of its 2 finished seeds (success 0.800): expert vs learned "
        "attention"}
    source = tmp_path / "pic2" / "attention.png"  # vanilla seed 2 (run 002)
    assert (out / "attention_Ordering_vanilla.png").read_bytes() == source.read_bytes()
    assert all(png.read_bytes()[:4] == b"\x89PNG" for png in written.values())


# ------------------------------------------------------------------------ 8-9 the trial's attention picture


def test_the_attention_episode_is_the_first_that_recalls_an_earlier_step():
    from attention_tuner.plots import has_recall, recall_episode

    only_self = np.array([[0, 0], [1, 1], [2, 2], [3, 3]])
    recall = np.array([[0, 0], [1, 1], [0, 2]])
    pairs = [recall, only_self, np.zeros((0, 2), dtype=np.int64), recall, only_self]
    assert not has_recall(only_self) and has_recall(recall) and not has_recall(pairs[2])
    assert recall_episode(pairs, np.array([1, 2, 3, 0])) == 3  # the held-out order, not the lowest index
    assert recall_episode(pairs, [4, 1, 2]) == 4  # none recalls: the first candidate


def test_a_trial_pictures_the_first_held_out_episode_with_a_recall_on_integer_ticks(tmp_path, monkeypatch):
    """write_pictures skips a held-out episode of self-pairs only (here the first, its recalls removed), says
    which episode it drew, and the heat maps' ticks are whole time steps even on a view of two steps."""
    import dataclasses

    from attention_tuner import datasets, plots, trial
    from attention_tuner.config import TrialConfig, apply_overrides, build

    cfg = apply_overrides(build(TrialConfig, {}), {
        "task.name": "Ordering", "task.kwargs.length": 2, "data.episodes": 16, "model.d_model": 32,
        "model.n_layers": 1, "model.n_heads": 2, "model.d_ff": 64, "optim.batch_size": 8, "optim.epochs": 1,
        "eval.episodes": 0, "device": "cpu"})
    run = tmp_path / "run"
    trial.run_trial(cfg, run, tmp_path / "data")
    data = datasets.load(trial.dataset_for(cfg, tmp_path / "data", progress=False))
    _, val = datasets.split(data, cfg.data.val_fraction)
    assert len(val) >= 2 and all(plots.has_recall(data.pairs[i]) for i in val[:2])
    first, second = int(val[0]), int(val[1])
    pairs = list(data.pairs)
    pairs[first] = pairs[first][pairs[first][:, 0] == pairs[first][:, 1]]  # self-pairs only
    data = dataclasses.replace(data, pairs=pairs)
    drawn, real_figure, real_save = [], plots.attention_figure, plots.save_png

    def attention_figure(model, encode, demos, episode, path, title="", supervised=()):
        drawn.append((episode, title))
        return real_figure(model, encode, demos, episode, path, title, supervised)

    def save_png(fig, path):
        if path.name == "attention.png":
            for ax in (ax for ax in fig.axes if ax.get_images()):
                ax.set_xlim(-0.5, 1.5)  # a 2-step episode's view: a plain locator would tick at 0.5 steps
                ax.set_ylim(1.5, -0.5)
                drawn.append([*ax.get_xticks(), *ax.get_yticks()])
        return real_save(fig, path)

    monkeypatch.setattr(plots, "attention_figure", attention_figure)
    monkeypatch.setattr(plots, "save_png", save_png)
    trial.write_pictures(run, data)
    (episode, title), *ticks = drawn
    assert episode == second
    assert f"validation episode {second} (episode seed {int(data.seeds[second])})" in title
    assert len(ticks) == 3  # expert pairs and the model's 2 heads
    assert all(float(t).is_integer() for t in sum(ticks, []))
