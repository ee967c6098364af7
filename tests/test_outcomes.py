"""Outcomes: a trial's row from its logged params, its arm, and the one classification the report and the table a
sweep prints share."""

from __future__ import annotations

from types import SimpleNamespace

from attention_tuner import sweep, tracking
from attention_tuner.config import TrialConfig, apply_overrides, build, to_dict
from attention_tuner.outcomes import (
    arm_label,
    heads_text,
    logged_defaults,
    main_arm,
    main_rows,
    row_from_params,
    with_arm_settings,
)
from attention_tuner.report import load_rows


def params(**overrides) -> dict[str, str]:
    """A Hallway trial's params as MLflow logs them."""
    cfg = apply_overrides(build(TrialConfig, {}), {"task.name": "Hallway", **overrides})
    return {k: str(v) for k, v in sweep.trial_params(sweep.Trial("", {}, cfg)).items()}


def test_a_row_reads_method_fraction_heads_noise_and_seed_from_the_params():
    at = row_from_params(params(seed=3, **{"data.noise.drop": 0.5, "memory.heads": [[1, 1]]}), name="a")
    assert (at.task, at.method, at.fraction, at.heads, at.noise, at.seed) == (
        "Hallway", "attention_tuner", 1.0, "[[1, 1]]", "drop=0.5", 3)
    vanilla = row_from_params(params(**{"memory.weight": 0.0}), name="v")
    assert (vanilla.method, vanilla.fraction, vanilla.noise) == ("vanilla", 0.0, "none")
    # no annotated demonstration: the vanilla Transformer whatever the memory loss's weight
    assert row_from_params(params(**{"data.annotation_fraction": 0.0}), name="f0").method == "vanilla"
    assert row_from_params({}, name="killed").method == "?"


def test_heads_read_as_layer_and_head():
    assert heads_text("[[1, 0], [1, 1]]") == "L1H0 L1H1"
    assert heads_text("all") == "all"
    assert heads_text("[(0, 2)]") == "L0H2"


def test_the_arm_label_names_what_sets_a_trial_apart_from_its_tasks_main_arm():
    rows = with_arm_settings([row_from_params(p, name=str(i)) for i, p in enumerate([
        params(), params(seed=1), params(**{"data.annotation_fraction": 0.1}),
        params(**{"data.noise.drop": 0.5, "memory.heads": [[1, 0]]}), params(**{"memory.weight": 1.0}),
        params(**{"memory.weight": 0.0})])])
    main = main_arm(rows)
    assert main["Hallway"] == (logged_defaults()["memory.heads"], "memory.weight=10.0")
    assert [arm_label(r, main["Hallway"]) for r in rows] == [
        "", "", " (fraction 0.1)", " (noise drop=0.5; heads L1H0)", " (memory.weight=1.0)", ""]
    # no noise-free AttentionTuner trial: the default configuration's heads stand in for the main ones
    noisy = row_from_params(params(**{"data.noise.drop": 0.5}), name="n")
    assert main_arm([noisy])["Hallway"][0] is None
    assert arm_label(noisy, (None, "")) == " (noise drop=0.5)"


def test_the_sweep_table_and_the_report_put_the_same_trials_in_the_same_arms(tmp_path):
    """The sweep's table reads its trials' configurations, the report the params MLflow stored for them: logged
    through the same store, they must come out as the same task and arm."""
    overrides = [{}, {"seed": 1}, {"data.annotation_fraction": 0.1}, {"data.noise.shift": 2},
                 {"memory.heads": "all"}, {"memory.variant": "decision_rows"}, {"memory.weight": 0.0},
                 {"task.kwargs.length": 10}, {"task.kwargs.length": 10, "memory.weight": 0.0}]
    cfgs = [apply_overrides(build(TrialConfig, {}), {"task.name": "Hallway", **o}) for o in overrides]
    trials = [sweep.Trial(f"{i:03d}", {"arm": f"a{i}"}, c) for i, c in enumerate(cfgs)]
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    exp = tracking.ensure_experiment(uri, "agree")
    parent = tracking.start_parent(uri, exp, "agree", "sweep-1", {})
    for t in trials:
        run = tracking.child_run(uri, exp, parent, t.key, "agree", sweep.trial_params(t))
        tracking.log_metrics(uri, run, {"eval/success_rate": 0.5}, 1)
        tracking.finish(uri, run)
    tracking.finish(uri, parent)

    logged = with_arm_settings(load_rows(uri, experiment="agree"))
    main = main_arm(logged)
    from_report = sorted((r.name, r.task, r.method + arm_label(r, main[r.task])) for r in logged)
    grid = [SimpleNamespace(config={"trial": {"key": t.key, "labels": t.labels, "config": to_dict(t.config)}},
                            metrics={"eval/success_rate": 0.5, sweep.COMPLETE: 1}, error=None) for t in trials]
    from_sweep = sorted((r["trial"], r["task"], r["method"]) for r in sweep.results_rows(grid, "eval/success_rate"))
    assert from_sweep == from_report
    # a trial that leaves Hallway's length at its default (30) is the length=30 arm; seeds 0 and 1 share one arm
    assert len({(task, method) for _, task, method in from_sweep}) == 8
    assert {task for _, task, _ in from_sweep} == {"Hallway (length=30)", "Hallway (length=10)"}


def test_a_task_parameter_left_at_its_default_is_the_same_arm_as_one_set_to_it():
    """One Hallway run logs no length (its default, 30), others set 30 or 10: two arms, not three, and the
    default's runs are not pooled with length 10's (they were, when only logged params were compared)."""
    from attention_tuner.outcomes import arm_settings

    settings = arm_settings([params(), params(**{"task.kwargs.length": 30}), params(**{"task.kwargs.length": 10})])
    assert [shared for shared, _ in settings] == ["length=30", "length=30", "length=10"]


def test_a_re_run_that_names_a_task_parameter_at_its_default_is_the_same_trial():
    """Hallway without `length` and Hallway with length=30 (its default) are one arm, so they must be one trial
    too: else the re-run would count as a second seed 0 of that arm."""
    from attention_tuner.outcomes import trial_identity

    assert trial_identity(params()) == trial_identity(params(**{"task.kwargs.length": 30}))
    assert trial_identity(params()) != trial_identity(params(**{"task.kwargs.length": 10}))


def test_vanilla_runs_at_other_noise_levels_are_other_trials():
    """A grid of method x annotation noise x seed: each vanilla run sits in its noise level's cell, so it is a
    trial of its own (were they one trial, the latest, a noisy one, would replace the clean run and the main
    comparison would lose its vanilla seeds)."""
    from attention_tuner.outcomes import trial_identity
    from attention_tuner.report import latest_runs

    grid = [params(seed=s, **{"memory.weight": w, "data.noise.drop": d})
            for w in (0.0, 10.0) for d in (0.0, 0.5) for s in (0, 1)]
    rows = [row_from_params(p, name=str(i), status="FINISHED", metrics={"eval/success_rate": 0.5}, start_time=i,
                            trial=trial_identity(p)) for i, p in enumerate(grid)]
    kept, superseded = latest_runs(rows)
    assert len(kept) == 8 and not superseded
    assert {(r.method, r.noise, r.seed) for r in main_rows(kept)} == {
        ("vanilla", "none", 0), ("vanilla", "none", 1), ("attention_tuner", "none", 0), ("attention_tuner", "none", 1)}
