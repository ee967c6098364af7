"""Reports from synthetic MLflow runs in a temporary store: aggregation, failed trials, outputs."""

from __future__ import annotations

import csv
import math

import pytest

from attention_tuner import tracking
from attention_tuner.cli import main as cli
from attention_tuner.outcomes import mean_se
from attention_tuner.report import aggregate, load_rows, report, verdicts


def make_store(tmp_path, trials):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    exp = tracking.ensure_experiment(uri, "synthetic")
    parent = tracking.start_parent(uri, exp, "synthetic", "sweep-1", {})
    for i, (task, weight, fraction, seed, success, status, *extra) in enumerate(trials):
        run = tracking.child_run(uri, exp, parent, f"{i:03d}", "synthetic", {
            "task.name": task, "memory.weight": weight, "data.annotation_fraction": fraction, "seed": seed,
            "memory.heads": "[[0, 0]]", **(extra[0] if extra else {})})
        if success is not None:
            tracking.log_metrics(uri, run, {"eval/success_rate": 0.0}, 1)
            tracking.log_metrics(uri, run, {"eval/success_rate": success}, 2)  # the final value counts
        tracking.finish(uri, run, status)
    tracking.finish(uri, parent)
    return uri


TRIALS = [
    ("Hallway", 10, 1.0, 0, 0.9, "FINISHED"), ("Hallway", 10, 1.0, 1, 0.7, "FINISHED"),
    ("Hallway", 10, 1.0, 2, 0.8, "FINISHED"), ("Hallway", 0, 1.0, 0, 0.2, "FINISHED"),
    ("Hallway", 0, 1.0, 1, None, "FAILED"),
    ("Ordering", 10, 0.1, 0, 0.5, "FINISHED"), ("Ordering", 10, 0.0, 0, 0.1, "FINISHED"),
]


def test_mean_and_standard_error_by_hand():
    mean, se = mean_se([0.9, 0.7, 0.8])
    assert mean == pytest.approx(0.8)
    assert se == pytest.approx(math.sqrt(((0.1**2) + (0.1**2) + 0) / 2 / 3))  # sample sd / sqrt(n)
    assert mean_se([0.4]) == (0.4, 0.0)


def test_aggregation_of_runs_counts_seeds_and_reports_failures(tmp_path):
    uri = make_store(tmp_path, TRIALS)
    rows = load_rows(uri, experiment="synthetic")
    assert len(rows) == 7
    groups = {(g["task"], g["method"]): g for g in aggregate(rows, ("task", "method"))}
    at = groups["Hallway", "attention_tuner"]
    assert at["n"] == 3 and at["mean"] == pytest.approx(0.8) and at["se"] == pytest.approx(0.0577, abs=1e-4)
    van = groups["Hallway", "vanilla"]
    assert van["n"] == 1 and van["mean"] == pytest.approx(0.2) and van["missing"] == ["004 (failed)"]
    # fraction 0 is the vanilla baseline even with the memory loss weight set
    assert groups["Ordering", "vanilla"]["mean"] == pytest.approx(0.1)


def test_report_writes_tables_csv_and_plots(tmp_path):
    uri = make_store(tmp_path, TRIALS)
    md = report(uri, tmp_path / "out", experiment="synthetic")
    text = md.read_text()
    assert "| Hallway | attention_tuner | 0.800 ± 0.058 | 3 |  |" in text
    assert "| Hallway | vanilla | 0.200 (one seed) | 1 | 004 (failed) |" in text
    assert "annotated fraction" in text  # fractions differ, so the fraction table is there
    with open(tmp_path / "out" / "task_method.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["task"] for r in rows} == {"Hallway", "Ordering"}
    for png in ("success_by_task.png", "learning_curves.png", "fraction.png"):
        assert (tmp_path / "out" / png).read_bytes()[:4] == b"\x89PNG"


def test_report_goes_beside_the_runs_without_out(tmp_path, monkeypatch):
    uri = make_store(tmp_path, TRIALS[:1])
    monkeypatch.chdir(tmp_path)
    assert cli(["report", "--experiment", "synthetic", "--tracking-uri", uri]) == 0
    assert (tmp_path / "runs" / "reports" / "synthetic" / "report.md").is_file()


def test_report_cli_errors_are_one_line(tmp_path, capsys):
    uri = make_store(tmp_path, TRIALS[:1])
    capsys.readouterr()
    assert cli(["report", "--experiment", "nope", "--tracking-uri", uri, "--out", str(tmp_path / "o")]) == 2
    assert cli(["report", "--tracking-uri", uri]) == 2
    assert cli(["report", "--experiment", "synthetic", "--tracking-uri", "mysql-ish", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("attention-tuner: error:") for e in err)


def test_verdicts_fraction_arms_and_a_report_written_elsewhere_with_notes(tmp_path):
    uri = make_store(tmp_path, [
        ("Hallway", 10, 1.0, 0, 0.9, "FINISHED"), ("Hallway", 10, 1.0, 1, 0.8, "FINISHED"),
        ("Hallway", 0, 1.0, 0, 0.1, "FINISHED"), ("Hallway", 0, 1.0, 1, 0.2, "FINISHED"),
        ("Hallway", 10, 0.1, 0, 0.5, "FINISHED"), ("Hallway", 10, 0.1, 1, 0.7, "FINISHED"),
        ("Counting", 10, 1.0, 0, 0.5, "FINISHED"), ("Counting", 10, 1.0, 1, 0.6, "FINISHED"),
        ("Counting", 0, 1.0, 0, 0.6, "FINISHED"), ("Counting", 0, 1.0, 1, 0.5, "FINISHED"),
    ])
    rows = load_rows(uri, experiment="synthetic")
    assert sorted({r.fraction for r in rows if r.method == "vanilla"}) == [0.0]  # vanilla annotates nothing
    v = {x["task"]: x for x in verdicts(rows)}
    assert v["Hallway"]["verdict"] == "AttentionTuner ahead"  # the 0.1 arm is not part of the comparison
    assert v["Hallway"]["attention_tuner"]["mean"] == pytest.approx(0.85)
    assert v["Counting"]["verdict"] == "no clear difference"
    notes = tmp_path / "notes.md"
    notes.write_text("Machine: a test.\n")
    md = report(uri, tmp_path / "docs" / "results", experiment="synthetic", markdown=tmp_path / "docs" / "results.md",
                notes=notes)
    text = md.read_text()
    assert md == tmp_path / "docs" / "results.md" and "Machine: a test." in text
    assert "![Success by task and method](results/success_by_task.png)" in text
    assert "| Hallway | 0.1 | 0.600 ± 0.100 | 2 |  |" in text and "| Hallway | 0.0 | 0.150 ± 0.050 | 2 |  |" in text
    assert "| Hallway | attention_tuner | 0.850 ± 0.050 | 2 |  |" in text  # task x method: fraction 1 only


def test_the_rl_baseline_is_its_own_method_outside_the_fraction_table(tmp_path):
    """PPO trials (params algorithm=ppo_lstm) are a third method in the task x method table and in their own
    budget table; they are not vanilla (annotated fraction 0) in the fraction table or its plot."""
    uri = make_store(tmp_path, [
        ("Hallway", 10, 1.0, 0, 0.9, "FINISHED"), ("Hallway", 0, 1.0, 0, 0.1, "FINISHED"),
        ("Hallway", 10, 0.1, 0, 0.5, "FINISHED"),
    ])
    exp = tracking.ensure_experiment(uri, "synthetic")
    parent = tracking.find_run(uri, exp, {"sweep_id": "sweep-1"})
    for seed, success in ((0, 0.3), (1, 0.5)):
        run = tracking.child_run(uri, exp, parent, f"ppo-{seed}", "synthetic", {
            "task.name": "Hallway", "algorithm": "ppo_lstm", "memory.weight": 10, "data.annotation_fraction": 1.0,
            "seed": seed, "memory.heads": "[[0, 0]]"})
        tracking.log_metrics(uri, run, {"eval/success_rate": success, "perf/env_steps": 2048.0 * 500,
                                        "perf/train_s": 600.0}, 500)
        tracking.finish(uri, run)
    rows = load_rows(uri, experiment="synthetic")
    assert sorted(r.method for r in rows) == ["attention_tuner", "attention_tuner", "ppo_lstm", "ppo_lstm", "vanilla"]
    text = report(uri, tmp_path / "out", experiment="synthetic").read_text()
    assert "| Hallway | ppo_lstm | 0.400 ± 0.100 | 2 |  |" in text
    assert "| Hallway | 0.0 | 0.100 (one seed) | 1 |  |" in text  # vanilla alone at fraction 0
    assert "| ppo-1 | Hallway | 1 | finished | 1,024,000 | 10.0 | 0.500 |" in text
    assert (tmp_path / "out" / "rl_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_noise_and_head_arms_are_not_pooled_into_the_main_comparison(tmp_path):
    """Arms with annotation noise or other supervised heads have fraction 1 too: they get their own tables and
    stay out of AttentionTuner's row in the verdict and the task x method table (vanilla stays out of the heads
    table, whose (0, 0) cell its default params would otherwise join)."""
    drop, other = {"data.noise.drop": "0.5"}, {"memory.heads": "[[1, 1]]"}
    uri = make_store(tmp_path, [
        ("Hallway", 10, 1.0, 0, 0.9, "FINISHED"), ("Hallway", 10, 1.0, 1, 0.8, "FINISHED"),
        ("Hallway", 0, 1.0, 0, 0.1, "FINISHED"), ("Hallway", 0, 1.0, 1, 0.2, "FINISHED"),
        ("Hallway", 10, 1.0, 0, 0.1, "FINISHED", drop), ("Hallway", 10, 1.0, 1, 0.1, "FINISHED", drop),
        ("Hallway", 10, 1.0, 0, 0.3, "FINISHED", other), ("Hallway", 10, 1.0, 1, 0.3, "FINISHED", other),
    ])
    rows = load_rows(uri, experiment="synthetic")
    v = verdicts(rows)[0]
    assert v["attention_tuner"]["n"] == 2 and v["attention_tuner"]["mean"] == pytest.approx(0.85)
    assert v["verdict"] == "AttentionTuner ahead"
    text = report(uri, tmp_path / "out", experiment="synthetic").read_text()
    assert "| Hallway | attention_tuner | 0.850 ± 0.050 | 2 |  |" in text
    assert "| Hallway | [[0, 0]] | 0.850 ± 0.050 | 2 |  |" in text  # the clean arm of head (0, 0): no noise, no vanilla
    assert "| Hallway | [[1, 1]] | 0.300 ± 0.000 | 2 |  |" in text
    assert "| Hallway | attention_tuner | drop=0.5 | 0.100 ± 0.000 | 2 |  |" in text


def test_a_sweep_of_partial_fractions_only_still_gets_its_fraction_table(tmp_path, capsys):
    """No fully annotated arm: the fraction arms' heads are the main heads all the same. And --markdown may name
    a file in a folder the report creates."""
    uri = make_store(tmp_path, [
        ("Hallway", 0, 1.0, 0, 0.1, "FINISHED"), ("Hallway", 10, 0.1, 0, 0.5, "FINISHED"),
        ("Hallway", 10, 0.5, 0, 0.7, "FINISHED"),
    ])
    md = tmp_path / "rep" / "summary.md"
    assert cli(["report", "--experiment", "synthetic", "--tracking-uri", uri, "--out", str(tmp_path / "rep"),
                "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "| Hallway | 0.1 | 0.500 (one seed) | 1 |  |" in text and "| Hallway | 0.5 | 0.700 (one seed) | 1 |  |" in text
    assert (tmp_path / "rep" / "fraction.png").is_file()


def test_a_report_written_elsewhere_says_where_its_plots_are_and_what_it_removed(tmp_path, capsys):
    uri = make_store(tmp_path, [("Hallway", 0, 1.0, 0, 0.1, "FINISHED"), ("Hallway", 10, 1.0, 0, 0.5, "FINISHED")])
    out = tmp_path / "rep"
    assert cli(["report", "--experiment", "synthetic", "--tracking-uri", uri, "--out", str(out)]) == 0
    assert "(tables as Markdown; the CSVs and PNG plots beside it)" in capsys.readouterr().out
    other = tmp_path / "other.md"
    assert cli(["report", "--experiment", "synthetic", "--tracking-uri", uri, "--out", str(out),
                "--markdown", str(other)]) == 0
    said = capsys.readouterr().out
    assert f"the CSVs and PNG plots in {out}" in said
    assert f"removed {out / 'report.md'}: an earlier report's" in said and not (out / "report.md").exists()
    assert other.is_file() and (out / "task_method.csv").is_file()


def test_the_wall_time_of_a_resumed_sweep_leaves_out_the_time_between_sessions():
    from attention_tuner.report import wall_time

    assert wall_time(45.0, 1, 2700.0, 1) == "wall time 45 min (datasets, trials and results)"
    assert wall_time(45.0, 1, None, 0) == "wall time 45 min (datasets, trials and results)"  # older runs
    assert wall_time(0.23, 1, 14.0, 1) == "wall time 14 s (datasets, trials and results)"  # not "0 min"
    two = wall_time(600.0, 2, 1800.0, 2)
    assert two.startswith("600 min from start to end, of which 30 min running in 2 sessions")
    killed = wall_time(600.0, 3, 1800.0, 2)
    assert "of which at least 30 min running in 3 sessions" in killed
    assert "1 of them killed or cut off from MLflow before logging its time" in killed


def test_a_sweep_run_twice_into_its_experiment_counts_each_trial_once(tmp_path):
    """--experiment: a re-run of the same trials (same params) is counted once, its latest finished run; the
    superseded runs are named. A later run that failed does not replace a finished one."""
    first = [("Hallway", 10, 1.0, s, 0.9 - 0.1 * s, "FINISHED") for s in range(3)]
    uri = make_store(tmp_path, first)
    again = [("Hallway", 10, 1.0, 0, 0.5, "FINISHED"), ("Hallway", 10, 1.0, 1, None, "FAILED"),
             ("Hallway", 10, 1.0, 2, 0.7, "FINISHED")]
    exp = tracking.ensure_experiment(uri, "synthetic")
    parent = tracking.start_parent(uri, exp, "synthetic", "sweep-2", {})
    for i, (task, weight, fraction, seed, success, status) in enumerate(again):
        # the re-run, at a later commit, also logs a field added since at its default, and its arms are named
        # otherwise: still the same trials
        run = tracking.child_run(uri, exp, parent, f"{i:03d}", "synthetic", {
            "task.name": task, "memory.weight": weight, "data.annotation_fraction": fraction, "seed": seed,
            "memory.heads": "[[0, 0]]", "optim.grad_clip": "0.0", "label.method": "renamed"})
        if success is not None:
            tracking.log_metrics(uri, run, {"eval/success_rate": success}, 1)
        tracking.finish(uri, run, status)
    tracking.finish(uri, parent)
    assert len(load_rows(uri, experiment="synthetic")) == 6
    text = report(uri, tmp_path / "out", experiment="synthetic").read_text()
    assert "| Hallway | attention_tuner | 0.667 ± 0.088 | 3 |  |" in text  # 0.5 (re-run), 0.8 (first), 0.7 (re-run)
    assert "Not counted, 3 runs of a trial that ran again" in text and "001 (failed, MLflow run" in text
    # --sweep: the latest run only, and a pointer to the earlier one
    text = report(uri, tmp_path / "out2", sweep="synthetic").read_text()
    assert "| Hallway | attention_tuner | 0.600 ± 0.100 | 2 | 001 (failed) |" in text
    assert "1 earlier run of the sweep with 3 trial runs" in text


def test_the_latest_sweep_run_without_trials_is_named_in_the_error(tmp_path, capsys):
    uri = make_store(tmp_path, TRIALS[:2])
    exp = tracking.ensure_experiment(uri, "synthetic")
    tracking.start_parent(uri, exp, "synthetic", "sweep-2", {})
    assert cli(["report", "--sweep", "synthetic", "--tracking-uri", uri, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no trial runs; 1 earlier runs have some: --experiment synthetic" in err


def test_verdicts_use_welchs_test_and_every_task_gets_a_row(tmp_path):
    """Three seeds each, a gap of 2.07 standard errors (the old rule's 'ahead') is Welch p = 0.17: no clear
    difference. A task with no finished vanilla seed still gets its row, saying why it is not compared."""
    uri = make_store(tmp_path, [
        ("MysteryPath", 10, 1.0, 0, 0.85, "FINISHED"), ("MysteryPath", 10, 1.0, 1, 0.845, "FINISHED"),
        ("MysteryPath", 10, 1.0, 2, 0.86, "FINISHED"), ("MysteryPath", 0, 1.0, 0, 0.68, "FINISHED"),
        ("MysteryPath", 0, 1.0, 1, 0.84, "FINISHED"), ("MysteryPath", 0, 1.0, 2, 0.745, "FINISHED"),
        ("Ordering", 10, 1.0, 0, 0.5, "FINISHED"), ("Ordering", 0, 1.0, 0, None, "FAILED"),
        ("Counting", 10, 1.0, 0, 0.6, "FINISHED"), ("Counting", 10, 1.0, 1, 0.6, "FINISHED"),
        ("Counting", 0, 1.0, 0, 0.6, "FINISHED"), ("Counting", 0, 1.0, 1, 0.6, "FINISHED"),
        ("Hallway", 10, 1.0, 0, 0.7, "FINISHED"), ("Hallway", 0, 1.0, 0, 0.2, "FINISHED"),
    ])
    v = {x["task"]: x for x in verdicts(load_rows(uri, experiment="synthetic"))}
    mp = v["MysteryPath"]
    assert mp["diff"] / mp["se"] == pytest.approx(2.07, abs=0.01) and mp["p"] == pytest.approx(0.172, abs=0.002)
    assert mp["verdict"] == "no clear difference"
    assert v["Ordering"]["verdict"] == "cannot compare: AttentionTuner 1 finished of 1, vanilla 0 finished of 1"
    assert v["Counting"]["p"] is None and v["Counting"]["verdict"] == "no difference: every seed of both the same"
    # no spread on either side and different means: Welch's test is undefined, and the report says so
    from attention_tuner.report import welch_p

    assert welch_p([1.0, 1.0], [0.995, 0.995]) is None
    assert welch_p([0.3, 0.1 + 0.2], [0.5, 0.5]) is None  # equal up to the last bit of a float sum
    assert 0 < welch_p([0.9, 0.8], [0.1, 0.2]) < 0.05
    text = report(uri, tmp_path / "out", experiment="synthetic").read_text()
    assert "| Ordering | 0.500 (one seed) | n/a (n=0 of 1) |  |  | cannot compare:" in text
    # what the verdicts rest on: the seeds a side, the number of tests, what the standard errors leave out
    assert ("With 2-3 seeds a side the test has little power, and it leans on the success rates being normal "
            "across seeds") in text
    assert "p not corrected" not in text  # one task tested (Mystery Path): nothing to correct for
    from attention_tuner.report import verdict_caption

    g = {"n": 5}
    two = [{"attention_tuner": g, "vanilla": g, "p": 0.01}, {"attention_tuner": g, "vanilla": g, "p": 0.2}]
    assert ("With 5 seeds a side" in verdict_caption(two)
            and "Each task is tested on its own: 2 tests, p not corrected for their number (Holm's correction "
                "would multiply the smallest p by 2)" in verdict_caption(two))
    assert "every trial is evaluated on the same held-out seeds" in text
    # one seed a side: a difference, but no standard error to give it
    assert "| Hallway | 0.700 (one seed) | 0.200 (one seed) | +0.500 (no s.e.: one seed) |  | too few seeds" in text


def test_the_noise_table_keeps_fraction_and_head_arms_apart(tmp_path):
    drop = {"data.noise.drop": "0.2"}
    uri = make_store(tmp_path, [
        ("Hallway", 10, 1.0, 0, 0.9, "FINISHED"), ("Hallway", 10, 0.1, 0, 0.1, "FINISHED"),
        ("Hallway", 10, 1.0, 0, 0.5, "FINISHED", {"memory.heads": "[[1, 1]]"}),
        ("Hallway", 10, 1.0, 0, 0.6, "FINISHED", drop), ("Hallway", 0, 1.0, 0, 0.2, "FINISHED"),
    ])
    text = report(uri, tmp_path / "out", experiment="synthetic").read_text()
    noise = text[text.index("under annotation noise"):].split("\n\n")[1]
    assert "| Hallway | attention_tuner | none | 0.900 (one seed) | 1 |  |" in noise  # not pooled with 0.1 or [[1, 1]]
    assert "| Hallway | attention_tuner | drop=0.2 | 0.600 (one seed) | 1 |  |" in noise
    assert "| Hallway | vanilla | none | 0.200 (one seed) | 1 |  |" in noise
    with open(tmp_path / "out" / "noise.csv") as f:
        assert all(r["se"] == "" for r in csv.DictReader(f))  # no standard error from one seed


def test_a_report_into_an_old_reports_folder_leaves_no_stale_output(tmp_path):
    uri = make_store(tmp_path, TRIALS)
    out = tmp_path / "out"
    report(uri, out, experiment="synthetic")
    assert (out / "fraction.csv").is_file() and (out / "fraction.png").is_file()
    (out / "my_notes.txt").write_text("mine")
    (out / "diagram.png").write_bytes(b"mine too")  # a picture of the user's: not the report's to remove
    (tmp_path / "b").mkdir()
    uri2 = make_store(tmp_path / "b", TRIALS[:4])  # no fraction arm
    report(uri2, out, experiment="synthetic")
    assert not (out / "fraction.csv").exists() and not (out / "fraction.png").exists()
    assert (out / "task_method.csv").is_file() and (out / "my_notes.txt").read_text() == "mine"
    assert (out / "diagram.png").read_bytes() == b"mine too"


def test_runs_without_params_and_several_commits_are_said(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "uncommitted_code", lambda: False)  # whatever this checkout holds now
    uri = make_store(tmp_path, TRIALS[:4])
    exp = tracking.ensure_experiment(uri, "synthetic")
    parent = tracking.find_run(uri, exp, {"sweep_id": "sweep-1"})
    run = tracking.child_run(uri, exp, parent, "killed-early", "synthetic", {})
    tracking.set_tags(uri, run, {"git_commit": "0123456789abcdef"})
    text = report(uri, tmp_path / "out", experiment="synthetic").read_text()
    assert "Not counted, 1 runs without parameters (stopped before logging them): killed-early (running)." in text
    assert "| ? |" not in text
    assert "**The trials come from 2 commits of the code**" not in text  # the run without params is not counted
    first = next(r.run_id for r in load_rows(uri, experiment="synthetic") if r.name == "000")
    tracking.set_tags(uri, first, {"git_commit": "fedcba9876543210"})
    assert "**The trials come from 2 commits of the code**" in report(uri, tmp_path / "o2",
                                                                      experiment="synthetic").read_text()
    tracking.set_tags(uri, first, {"git_uncommitted": "true"})  # its checkout had changes beyond its commit
    assert ("**1 of the trials ran code with uncommitted changes** (000): their commit alone does not reproduce "
            "them.") in report(uri, tmp_path / "o3", experiment="synthetic").read_text()


def test_runs_say_when_their_checkout_had_uncommitted_code(tmp_path, monkeypatch):
    """A new task module not yet committed, or an edited sweep file: the run's commit alone would not say what
    ran (an extension walkthrough's runs were tagged with a commit without its task)."""
    import subprocess

    repo = tmp_path / "repo"
    (repo / "platform" / "attention_tuner").mkdir(parents=True)
    (repo / "tasks").mkdir()
    for cmd in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    (repo / "tasks" / "a.py").write_text("A = 1\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "a"], cwd=repo, check=True)
    monkeypatch.setattr(tracking, "__file__", str(repo / "platform" / "attention_tuner" / "tracking.py"))
    assert not tracking.uncommitted_code()
    (repo / "notes.txt").write_text("not code\n")  # outside the code's paths
    assert not tracking.uncommitted_code()
    (repo / "tasks" / "flash.py").write_text("B = 2\n")  # a new, untracked module
    assert tracking.uncommitted_code()
    monkeypatch.setattr(tracking, "__file__", str(tmp_path / "elsewhere" / "x" / "tracking.py"))
    assert not tracking.uncommitted_code()  # not a checkout: nothing to say


@pytest.mark.parametrize("content, message", [(b"", "is empty, not an MLflow store"),
                                              (None, "an SQLite database without MLflow's tables")])
def test_a_report_reads_only_mlflow_stores_and_writes_nothing_into_others(tmp_path, capsys, content, message):
    import sqlite3

    db = tmp_path / "other.db"
    if content is None:
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE foo (x)")
    else:
        db.write_bytes(content)
    before = db.read_bytes()
    assert cli(["report", "--sweep", "x", "--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert db.read_bytes() == before


def test_a_deleted_experiment_is_refused(tmp_path, capsys):
    uri = make_store(tmp_path, TRIALS[:2])
    c = tracking.client(uri)
    c.delete_experiment(c.get_experiment_by_name("synthetic").experiment_id)
    assert cli(["report", "--experiment", "synthetic", "--tracking-uri", uri, "--out", str(tmp_path / "o")]) == 2
    assert "is deleted (restore it first: mlflow experiments restore" in capsys.readouterr().err


def test_a_gap_without_any_spread_is_not_called_significant():
    from attention_tuner.outcomes import TrialRow

    def row(i, weight_method, success):
        return TrialRow(run_id=f"r{i}", name=f"{i:03d}", status="FINISHED", task="Hallway", method=weight_method,
                        fraction=1.0 if weight_method == "attention_tuner" else 0.0, heads="[[0, 0]]", noise="none",
                        seed=i % 2, metrics={"eval/success_rate": success})

    rows = [row(0, "attention_tuner", 1.0), row(1, "attention_tuner", 1.0), row(2, "vanilla", 0.995),
            row(3, "vanilla", 0.995)]
    (v,) = verdicts(rows)
    assert v["p"] is None and v["verdict"] == "every AttentionTuner seed ahead, no spread within either method: no t-test"


def test_a_success_rate_that_is_not_a_number_is_not_counted():
    from attention_tuner.outcomes import TrialRow

    def row(i, method, success):
        return TrialRow(run_id=f"r{i}", name=f"{i:03d}", status="FINISHED", task="Hallway", method=method,
                        fraction=1.0 if method == "attention_tuner" else 0.0, heads="[[0, 0]]", noise="none",
                        seed=i % 2, metrics={"eval/success_rate": success})

    rows = [row(0, "attention_tuner", float("nan")), row(1, "attention_tuner", 0.9), row(2, "vanilla", 0.1),
            row(3, "vanilla", 0.2)]
    assert not rows[0].counted
    (v,) = verdicts(rows)
    assert v["attention_tuner"]["n"] == 1
    assert v["attention_tuner"]["missing"] == ["000 (finished, success not a number)"]
    assert v["verdict"].startswith("too few seeds to tell: AttentionTuner 1 finished of 2")


def test_re_runs_on_another_device_or_evaluation_schedule_are_the_same_trial(tmp_path):
    """One seed run three times (the default, on CUDA, with more evaluation environments) and a vanilla seed run
    twice with other probed heads: one trial each, not three seeds of a cell (the standard error would shrink)."""
    uri = make_store(tmp_path, [
        ("MortarMayhem", 10, 1.0, 1, 0.8, "FINISHED"),
        ("MortarMayhem", 10, 1.0, 1, 0.9, "FINISHED", {"device": "cuda"}),
        ("MortarMayhem", 10, 1.0, 1, 0.85, "FINISHED", {"eval.num_envs": 64, "eval.every": 5}),
        ("MortarMayhem", 0, 1.0, 0, 0.2, "FINISHED"),
        ("MortarMayhem", 0, 1.0, 0, 0.3, "FINISHED", {"memory.heads": "all"}),
        ("MortarMayhem", 10, 1.0, 2, 0.7, "FINISHED", {"optim.lr": 0.001}),  # another setting: another arm
    ])
    text = report(uri, tmp_path / "out", experiment="synthetic").read_text()
    assert "| MortarMayhem (optim.lr=0.0001) | attention_tuner | 0.850 (one seed) | 1 |  |" in text  # the latest
    assert "| MortarMayhem (optim.lr=0.0001) | vanilla | 0.300 (one seed) | 1 |  |" in text
    assert "Not counted, 3 runs of a trial that ran again" in text


def test_a_cell_without_a_finished_seed_has_no_mean_in_the_csv(tmp_path):
    import csv

    from attention_tuner.report import write_csv

    groups = [{"task": "Hallway", "n": 0, "mean": float("nan"), "se": float("nan"), "missing": ["000 (failed)"]}]
    write_csv(groups, ("task",), tmp_path / "t.csv")
    (row,) = csv.DictReader((tmp_path / "t.csv").open())
    assert (row["mean"], row["se"], row["seeds"], row["not_counted"]) == ("", "", "0", "000 (failed)")
    # two seeds, 0.885 and 0.82: their mean and standard error as a reader writes them, not 0.03250000000000003
    groups = [{"task": "MortarMayhem", "n": 2, "mean": (0.885 + 0.82) / 2, "se": 0.065 / 2 + 3e-17, "missing": []}]
    write_csv(groups, ("task",), tmp_path / "t.csv")
    (row,) = csv.DictReader((tmp_path / "t.csv").open())
    assert (row["mean"], row["se"], row["seeds"], row["not_counted"]) == ("0.8525", "0.0325", "2", "")


def test_durations_read_as_a_person_says_them():
    from attention_tuner.console import duration

    assert [duration(s) for s in (0.2, 14, 89, 420, 3 * 3600 + 1800, 145 * 86400)] == [
        "0.2 s", "14 s", "89 s", "7 min", "3.5 h", "145 days"]


def test_arms_of_any_other_setting_are_kept_apart(tmp_path):
    """A sweep over Hallway lengths and the memory-loss variant: each length is its own row of every table and
    verdict (both methods), the variant its own table with the default variant as the main arm; a setting
    that differs only between methods (the vanilla's own learning rate) splits nothing. Before, all of it was
    pooled into one Hallway cell per method."""
    short, long_ = {"task.kwargs.length": "10"}, {"task.kwargs.length": "30"}
    other = {**short, "memory.variant": "decision_rows"}
    lr = {"optim.lr": "0.001"}
    uri = make_store(tmp_path, [
        ("Hallway", 10, 1.0, 0, 0.9, "FINISHED", short), ("Hallway", 10, 1.0, 1, 0.7, "FINISHED", short),
        ("Hallway", 10, 1.0, 0, 0.3, "FINISHED", other), ("Hallway", 10, 1.0, 1, 0.1, "FINISHED", other),
        ("Hallway", 10, 1.0, 0, 0.5, "FINISHED", long_), ("Hallway", 10, 1.0, 1, 0.5, "FINISHED", long_),
        ("Hallway", 0, 1.0, 0, 0.2, "FINISHED", {**short, **lr}), ("Hallway", 0, 1.0, 1, 0.2, "FINISHED", {**short, **lr}),
        ("Hallway", 0, 1.0, 0, 0.1, "FINISHED", {**long_, **lr}), ("Hallway", 0, 1.0, 1, 0.3, "FINISHED", {**long_, **lr}),
    ])
    text = report(uri, tmp_path / "out", experiment="synthetic").read_text()
    assert "| Hallway (length=10) | attention_tuner | 0.800 ± 0.100 | 2 |  |" in text
    assert "| Hallway (length=10) | vanilla | 0.200 ± 0.000 | 2 |  |" in text
    assert "| Hallway (length=30) | attention_tuner | 0.500 ± 0.000 | 2 |  |" in text
    assert "| Hallway (length=30) | vanilla | 0.200 ± 0.100 | 2 |  |" in text
    assert "| Hallway (length=10) | memory.variant=decision_rows | 0.200 ± 0.100 | 2 |  |" in text
    assert "| Hallway (length=10) | memory.variant=reference | 0.800 ± 0.100 | 2 |  |" in text
    assert "| Hallway (length=10) | 0.800 ± 0.100 (n=2) | 0.200 ± 0.000 (n=2) |" in text  # the verdict's row
    assert "| Hallway (length=30) | 0.500 ± 0.000 (n=2) | 0.200 ± 0.100 (n=2) |" in text
    assert "attention_tuner (memory.variant=decision_rows) |" in text  # its trials, in the list of trials
    assert {p.name for p in (tmp_path / "out").glob("attention_*.png")} <= {
        f"attention_Hallway_length_{n}_{m}.png" for n in (10, 30) for m in ("attention_tuner", "vanilla")}


def test_verdict_cells_count_the_seeds_that_did_not_finish_and_a_gap_without_spread_names_its_side():
    from attention_tuner.outcomes import TrialRow
    from attention_tuner.report import verdict_table

    def row(i, method, success, status="FINISHED", seed=None):
        return TrialRow(run_id=f"r{i}", name=f"{i:03d}", status=status, task="Hallway", method=method,
                        fraction=1.0 if method == "attention_tuner" else 0.0, heads="[[0, 0]]", noise="none",
                        seed=i if seed is None else seed, metrics={} if success is None else {"eval/success_rate": success})

    rows = [row(0, "attention_tuner", 0.9), row(1, "attention_tuner", 0.8), row(2, "attention_tuner", None, "FAILED"),
            row(3, "vanilla", 0.1, seed=0), row(4, "vanilla", 0.2, seed=1)]
    assert "| Hallway | 0.850 ± 0.050 (n=2 of 3) | 0.150 ± 0.050 (n=2) |" in verdict_table(rows)
    flat = [row(0, "attention_tuner", 0.2), row(1, "attention_tuner", 0.2), row(2, "vanilla", 0.5, seed=0),
            row(3, "vanilla", 0.5, seed=1)]
    (v,) = verdicts(flat)
    assert v["verdict"] == "every vanilla seed ahead, no spread within either method: no t-test"
