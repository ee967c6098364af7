"""MLflow tracking (attention_tuner.tracking): the store's URI and runs found again."""

from __future__ import annotations

from attention_tuner import tracking


def test_a_relative_sqlite_uri_names_the_same_store_from_any_folder(tmp_path, monkeypatch):
    """Ray Tune runs each trial in a folder of its own: a relative path there would be another, empty store."""
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_uri("sqlite:///mlruns.db") == f"sqlite:///{tmp_path}/mlruns.db"
    assert tracking.resolve_uri(f"sqlite:///{tmp_path}/x.db") == f"sqlite:///{tmp_path}/x.db"


def test_a_run_found_again_gets_the_params_it_lacks(tmp_path):
    """A trial killed between creating its run and logging its params: the retry's run has them."""
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    exp = tracking.ensure_experiment(uri, "x")
    parent = tracking.start_parent(uri, exp, "x", "sweep-1", {"trials": 1})
    bare = tracking.client(uri).create_run(exp, tags={tracking.PARENT_TAG: parent, "parent_run": parent,
                                                      tracking.TRIAL_TAG: "000-0"}).info.run_id
    again = tracking.child_run(uri, exp, parent, "000-0", "x", {"task.name": "Hallway", "seed": 0})
    assert again == bare
    assert tracking.client(uri).get_run(again).data.params == {"task.name": "Hallway", "seed": "0"}
    assert tracking.child_run(uri, exp, parent, "000-0", "x", {"task.name": "Hallway", "seed": 0}) == bare


def test_trials_left_running_are_marked_failed_and_finished_ones_kept(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    exp = tracking.ensure_experiment(uri, "x")
    parent = tracking.start_parent(uri, exp, "x", "sweep-1", {})
    died = tracking.child_run(uri, exp, parent, "000-0", "x", {})  # its worker died: never ended its run
    done = tracking.child_run(uri, exp, parent, "001-1", "x", {})
    tracking.finish(uri, done)
    tracking.end_unfinished_trials(uri, exp, parent, ["000-0", "001-1"], "FAILED")
    status = {r: tracking.client(uri).get_run(r).info.status for r in (died, done)}
    assert status == {died: "FAILED", done: "FINISHED"}



def test_a_sqlite_uri_with_a_driver_is_checked_and_made_absolute_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_uri("sqlite+pysqlite:///m.db") == f"sqlite+pysqlite:///{tmp_path}/m.db"
    (tmp_path / "dir.db").mkdir()
    import pytest

    with pytest.raises(ValueError, match="is a folder"):
        tracking.resolve_uri("sqlite+pysqlite:///dir.db")


def test_a_sweep_counts_its_sessions_and_their_running_time(tmp_path):
    """A resumed sweep is one more session; the running time adds up over the sessions that logged theirs."""
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    exp = tracking.ensure_experiment(uri, "x")
    parent = tracking.start_parent(uri, exp, "x", "sweep-1", {})
    first = tracking.start_session(uri, parent)
    tracking.add_running_time(uri, parent, 60.0, first)
    second = tracking.start_session(uri, parent)
    tracking.add_running_time(uri, parent, 30.0, second)
    third = tracking.start_session(uri, parent)  # killed: never logs its time
    metrics = tracking.client(uri).get_run(parent).data.metrics
    assert (first, second, third) == (1, 2, 3)
    assert metrics["sweep/sessions"] == 3 and metrics["sweep/running_s"] == 90.0
    assert len(tracking.client(uri).get_metric_history(parent, "sweep/running_s")) == 2


def test_a_parent_from_before_sessions_were_counted_counts_its_first_session_when_resumed(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    exp = tracking.ensure_experiment(uri, "x")
    parent = tracking.start_parent(uri, exp, "x", "sweep-1", {})  # no sweep/sessions metric: an older sweep
    assert tracking.start_session(uri, parent, resumed=True) == 2  # its first session was untimed
    fresh = tracking.start_parent(uri, exp, "x", "sweep-2", {})
    assert tracking.start_session(uri, fresh, resumed=False) == 1
