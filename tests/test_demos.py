"""Generation and storage of expert datasets (attention_tuner.demos)."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pyarrow.parquet as pq
import pytest

from attention_tuner import datasets, demos
from attention_tuner.config import EVAL_SEED_BASE

REQ = {"task": "Ordering", "kwargs": {"length": 3}, "episodes": 10, "seed": 0}


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(demos, "SHARD_EPISODES", 3)


def shard_hashes(path):
    return [s["sha256"] for s in json.loads((path / "manifest.json").read_text())["shards"]]


def test_same_request_identical_content_and_reused(tmp_path, small_shards):
    a = demos.generate(**REQ, root=tmp_path / "a", actors=0, progress=False)
    b = demos.generate(**REQ, root=tmp_path / "b", actors=0, progress=False)
    assert a.name == b.name  # content-addressed
    assert shard_hashes(a) == shard_hashes(b)
    before = (a / "manifest.json").stat().st_mtime_ns
    again = demos.generate(**REQ, root=tmp_path / "a", actors=0, progress=False)
    assert again == a and (a / "manifest.json").stat().st_mtime_ns == before  # found, not regenerated
    other = demos.generate(**{**REQ, "seed": 50}, root=tmp_path / "a", actors=0, progress=False)
    assert other != a


def test_a_parameter_named_at_its_default_is_the_same_dataset(tmp_path, small_shards):
    default = demos.generate("Ordering", {}, 4, 0, root=tmp_path, actors=0, progress=False)
    before = (default / "manifest.json").stat().st_mtime_ns
    named = demos.generate("Ordering", {"length": 50}, 4, 0, root=tmp_path, actors=0, progress=False)
    assert named == default and (default / "manifest.json").stat().st_mtime_ns == before  # found, not made again
    assert demos.read_manifest(default)["kwargs"] == {}
    assert demos.Request("Ordering", {"length": 49}, 4).key != demos.Request("Ordering", {}, 4).key
    # only the same value of the same type is the default (the environment would reject a float length)
    assert demos.Request("Ordering", {"length": 50.0}, 4).key != demos.Request("Ordering", {}, 4).key


def test_a_change_to_the_task_code_makes_a_new_dataset(tmp_path, small_shards, monkeypatch):
    import memory_tasks

    a = demos.generate(**REQ, root=tmp_path, actors=0, progress=False)
    assert json.loads((a / "manifest.json").read_text())["task_code"] == memory_tasks.source_digest("Ordering")
    monkeypatch.setattr(memory_tasks, "source_digest", lambda name: "edited-expert")
    b = demos.generate(**REQ, root=tmp_path, actors=0, progress=False)
    assert b != a and (a / "manifest.json").is_file()  # regenerated beside the old one, which is kept


def test_the_task_code_digest_covers_the_task_and_shared_modules_only(tmp_path):
    """Editing Ordering's module changes Ordering's digest only; editing a module every task imports changes
    every task's; adding a task (its module, a helper of its own, its registry entry) changes none."""
    import importlib.util
    import shutil

    import memory_tasks

    src = tmp_path / "memory_tasks"
    shutil.copytree(os.path.dirname(memory_tasks.__file__), src, ignore=shutil.ignore_patterns("__pycache__"))

    def digests(tasks=("Hallway", "Ordering", "Counting", "MortarMayhem")):  # the copy's __init__ hashes its files
        spec = importlib.util.spec_from_file_location("memory_tasks_copy", src / "__init__.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return {t: mod.source_digest(t) for t in tasks}

    before = digests()
    assert before == {t: memory_tasks.source_digest(t) for t in before}
    with open(src / "ordering.py", "a") as f:
        f.write("\n# an edit to the Ordering expert\n")
    after = digests()
    assert after["Ordering"] != before["Ordering"]
    assert after["Hallway"] == before["Hallway"] and after["Counting"] == before["Counting"]
    with open(src / "core.py", "a") as f:
        f.write("\n# an edit to the shared code\n")
    shared = digests()
    assert all(shared[t] != after[t] for t in shared)
    with open(src / "gridworld.py", "a") as f:  # imported by every task module
        f.write("\n# an edit to the grid helpers\n")
    grid = digests()
    assert all(grid[t] != shared[t] for t in grid)
    # a new task: its module, its registry entry and a new helper module of its own leave the others' digests
    (src / "flash_helpers.py").write_text("DELAY = 5\n")
    (src / "flash.py").write_text("from memory_tasks import core\nfrom memory_tasks.flash_helpers import DELAY\n")
    init = (src / "__init__.py").read_text()
    for table_entry, entry in (('"Hallway": (', '"Flash": ("memory_tasks/Flash-v0", "memory_tasks.flash:FlashEnv"),'),
                               ('"memory_tasks/Hallway-v0": "ltmb",', '"memory_tasks/Flash-v0": "ltmb",'),
                               ('"memory_tasks/Hallway-v0": _MINI', '"memory_tasks/Flash-v0": _MINIGRID_ACTIONS,')):
        assert table_entry in init
        init = init.replace(table_entry, f"{entry}\n    {table_entry}", 1)
    (src / "__init__.py").write_text(init)
    assert digests() == grid
    flash = digests(["Flash"])
    with open(src / "flash_helpers.py", "a") as f:
        f.write("# its helper edited\n")
    assert digests() == grid and digests(["Flash"]) != flash
    import gymnasium as gym

    gym.registry.pop("memory_tasks/Flash-v0", None)  # the copy registered it: not a task of this package


def test_manifest_and_loaded_episodes_match_the_expert(tmp_path, small_shards):
    import memory_tasks

    path = demos.generate(**REQ, root=tmp_path, actors=0, progress=False)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["task"] == "memory_tasks/Ordering-v0" and manifest["kwargs"] == {"length": 3}
    assert manifest["episodes"] == 10 and manifest["failed"] == 0 and manifest["expert_success_rate"] == 1.0
    assert manifest["schema_version"] == demos.SCHEMA_VERSION and manifest["package_version"]
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    d = datasets.load(path)
    assert len(d) == 10 and list(d.seeds) == list(range(10))
    env = memory_tasks.make("Ordering", length=3)
    for i in (0, 7):
        ep = memory_tasks.rollout(env, int(d.seeds[i]))
        np.testing.assert_array_equal(d.episode_obs(i), ep.symbolic)  # lossless
        np.testing.assert_array_equal(d.episode_actions(i), ep.actions)
        np.testing.assert_array_equal(d.pairs[i], ep.pairs)


def test_failed_episodes_are_counted_and_left_out(tmp_path, small_shards, monkeypatch):
    import memory_tasks

    real = memory_tasks.rollout

    def flaky(env, seed, max_steps=None):  # every third seed "fails"
        ep = real(env, seed, max_steps)
        return ep if seed % 3 else ep.__class__(**{**ep.__dict__, "success": False})

    monkeypatch.setattr(memory_tasks, "rollout", flaky)
    path = demos.generate(**REQ, root=tmp_path, actors=0, progress=False)
    m = json.loads((path / "manifest.json").read_text())
    d = datasets.load(path)
    assert len(d) == 10 and not (d.seeds % 3 == 0).any()
    assert m["failed"] >= 4 and m["expert_success_rate"] < 1.0
    # found again by a resumed generation (no manifest yet), the shards keep their steps, failed rollouts' too
    (path / "manifest.json").unlink()
    demos.generate(**REQ, root=tmp_path, actors=0, progress=False)
    again = json.loads((path / "manifest.json").read_text())
    assert [s["steps"] for s in again["shards"]] == [s["steps"] for s in m["shards"]]
    assert sum(s["steps"] for s in m["shards"]) > int(d.lengths.sum())  # failed rollouts' steps counted


def test_interrupted_generation_resumes_only_missing_shards(tmp_path, small_shards):
    full = demos.generate(**REQ, root=tmp_path / "full", actors=0, progress=False)
    part = demos.generate(**REQ, root=tmp_path / "part", actors=0, progress=False)
    # Simulate a crash: no manifest yet, one shard never written, a half-written temporary left behind.
    (part / "manifest.json").unlink()
    (part / "shard-00001.parquet").unlink()
    (part / ".shard-00002.parquet.999.tmp").write_bytes(b"PAR1 half")
    survivors = {p.name: p.stat().st_mtime_ns for p in part.glob("shard-*.parquet")}
    written = []
    demos.generate(**REQ, root=tmp_path / "part", actors=0, progress=False, on_shard=written.append)
    assert shard_hashes(part) == shard_hashes(full)
    for name, mtime in survivors.items():
        assert (part / name).stat().st_mtime_ns == mtime, f"{name} was rewritten"


def test_generating_again_writes_a_deleted_or_cut_shard_anew(tmp_path, small_shards):
    path = demos.generate(**REQ, root=tmp_path, actors=0, progress=False)
    hashes = shard_hashes(path)
    (path / "shard-00001.parquet").unlink()
    cut = path / "shard-00002.parquet"
    cut.write_bytes(cut.read_bytes()[:100])
    kept = {p.name: p.stat().st_mtime_ns for p in path.glob("shard-*.parquet") if p != cut}
    with pytest.raises(demos.DatasetError, match="shard-00001.parquet: .*missing"):
        datasets.load(path)
    assert demos.generate(**REQ, root=tmp_path, actors=0, progress=False) == path
    assert shard_hashes(path) == hashes and len(datasets.load(path).seeds) == REQ["episodes"]
    for name, mtime in kept.items():
        assert (path / name).stat().st_mtime_ns == mtime, f"{name} was rewritten"


def test_a_repair_rewrites_a_shard_that_no_longer_matches_its_recorded_checksum(tmp_path, small_shards):
    """The user deletes the shard `load` named; another shard damaged too (same size, still readable Parquet)
    must not be taken into the repaired dataset with a fresh checksum."""
    path = demos.generate(**REQ, root=tmp_path, actors=0, progress=False)
    hashes = shard_hashes(path)
    damaged = path / "shard-00002.parquet"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (path / "shard-00001.parquet").unlink()
    interrupted = []

    def stop(entry):  # the repair is interrupted once the deleted shard is written again, the damaged one not
        if entry["file"] == "shard-00001.parquet" and not interrupted:
            interrupted.append(entry)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        demos.generate(**REQ, root=tmp_path, actors=0, progress=False, on_shard=stop)
    assert (path / demos.REPAIRING).exists() and damaged.read_bytes() == bytes(data)  # sizes all right again
    demos.generate(**REQ, root=tmp_path, actors=0, progress=False)
    assert shard_hashes(path) == hashes and not (path / demos.REPAIRING).exists()
    assert len(datasets.load(path, verify=True).seeds) == REQ["episodes"]


def test_a_task_the_expert_never_solves_stops_with_one_line(tmp_path, small_shards, monkeypatch):
    monkeypatch.setattr(demos, "NO_SUCCESS_SEEDS", 12)
    written = []
    with pytest.raises(demos.DatasetError, match=r"expert failed on all 12 seeds tried .*step limit"):
        demos.generate("MysteryPath", {"max_steps": 3}, 5, 0, root=tmp_path, actors=0, progress=False,
                       on_shard=written.append)
    assert len(written) == 4  # the 2 shards 5 episodes need, then one at a time (before: 5 more shards a round)


def test_an_expert_that_fails_too_often_never_reaches_the_evaluation_seeds(tmp_path, small_shards, monkeypatch):
    monkeypatch.setattr(demos, "NO_SUCCESS_SEEDS", 10**6)
    monkeypatch.setattr(demos, "EVAL_SEED_BASE", 20)  # as if the data's seeds began just below it
    written = []
    with pytest.raises(demos.DatasetError, match="succeeds too rarely .* reach 20, where the evaluation seeds"):
        demos.generate("MysteryPath", {"max_steps": 3}, 5, 0, root=tmp_path, actors=0, progress=False,
                       on_shard=written.append)
    assert max(e["seeds"][1] for e in written) <= 20


def test_a_workers_error_reaches_the_caller_as_itself(tmp_path, small_shards, ray_local):
    """A shard a Ray worker cannot write (here a folder in its place; a full disk alike) raises the worker's
    OSError, whose one line the CLI prints, not Ray's wrapper with the actor's header."""
    from attention_tuner.console import user_error_message

    out = demos.Request(REQ["task"], REQ["kwargs"], REQ["episodes"], REQ["seed"]).directory(tmp_path)
    (out / "shard-00000.parquet" / "x").mkdir(parents=True)
    with pytest.raises(OSError) as e:
        demos.generate(**REQ, root=tmp_path, actors=1, progress=False)
    assert not isinstance(e.value, ray_local.exceptions.RayTaskError)
    message = user_error_message(e.value)
    assert message is not None and "shard-00000.parquet" in message and "ray::" not in message


def test_a_manifest_of_the_wrong_shape_is_named(tmp_path, small_shards):
    path = demos.generate(**REQ, root=tmp_path, actors=0, progress=False)
    m = json.loads((path / "manifest.json").read_text())
    for bad, message in (([1, 2], "not a JSON object"), ({"schema_version": 1}, "manifest lacks task, kwargs"),
                         ({**m, "shards": [{"file": "x"}]}, "shards must be a list of entries")):
        (path / "manifest.json").write_text(json.dumps(bad))
        for attempt in (lambda: datasets.load(path), lambda: demos.generate(**REQ, root=tmp_path, actors=0)):
            with pytest.raises(demos.DatasetError, match=message):
                attempt()


def test_ray_actors_with_a_killed_actor_give_the_same_dataset(tmp_path, small_shards, ray_local):
    reference = demos.generate(**REQ, root=tmp_path / "ref", actors=0, progress=False)
    killed, pool = [], {}

    def on_shard(_entry):  # after the first shard, SIGKILL a worker process: Ray restarts it, retries its range
        if not killed:
            pid = ray_local.get(pool["actors"][0].pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    path = demos.generate(**REQ, root=tmp_path / "ray", actors=2, progress=False, on_shard=on_shard,
                          on_actors=lambda actors: pool.update(actors=actors))
    assert killed, "no actor was killed"
    assert shard_hashes(path) == shard_hashes(reference)


def test_a_worker_that_keeps_dying_ends_the_generation_with_one_line(tmp_path, small_shards, ray_local, monkeypatch):
    """Restarts are bounded (demos.WORKER_RESTARTS): a worker killed every time, e.g. for memory, must not
    make the generation retry forever."""
    demos.release_workers()  # a fresh pool, made with the patched bound
    monkeypatch.setattr(demos, "WORKER_RESTARTS", 0)
    pool = {}

    def kill(_entry):  # after the first shard: the only worker dies, and may not be restarted
        os.kill(ray_local.get(pool["actors"][0].pid.remote()), signal.SIGKILL)

    try:
        with pytest.raises(demos.DatasetError, match=r"shard-0000\d.parquet: its generation worker died, after 0 restarts"):
            demos.generate(**REQ, root=tmp_path, actors=1, progress=False, on_shard=kill,
                           on_actors=lambda actors: pool.update(actors=actors))
    finally:
        demos.release_workers()


def test_corrupted_missing_and_foreign_shards_are_named(tmp_path, small_shards):
    path = demos.generate(**REQ, root=tmp_path, actors=0, progress=False)
    shard = path / "shard-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(demos.DatasetError, match="shard-00001.parquet: checksum mismatch"):
        datasets.load(path)
    shard.unlink()
    with pytest.raises(demos.DatasetError, match="shard-00001.parquet: .*missing"):
        datasets.load(path)
    with pytest.raises(demos.DatasetError, match="missing manifest"):
        datasets.load(tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**m, "schema_version": 99}))
    with pytest.raises(demos.DatasetError, match="schema version 99"):
        datasets.load(path)


def test_bad_requests_fail_before_anything_is_written(tmp_path):
    cases = [
        ({**REQ, "task": "Maze"}, "unknown task"),
        ({**REQ, "episodes": 0}, "episodes"),
        ({**REQ, "seed": -1}, "seed"),
        ({**REQ, "seed": EVAL_SEED_BASE - 5}, "evaluation"),
        ({**REQ, "kwargs": {"lenght": 3}}, "lenght"),
        ({**REQ, "kwargs": {"length": 0}}, "length"),
    ]
    for request, message in cases:
        with pytest.raises(ValueError, match=message):
            demos.generate(**request, root=tmp_path, actors=0, progress=False)
    assert not any(tmp_path.iterdir())


def test_storage_is_compact_and_not_pickled(tmp_path):
    path = demos.generate(**{**REQ, "episodes": 250}, root=tmp_path, actors=0, progress=False)
    m = json.loads((path / "manifest.json").read_text())
    steps = sum(s["steps"] for s in m["shards"])
    assert sum(s["bytes"] for s in m["shards"]) / steps < 210  # the reference's pickles: ~210 B/step
    for shard in path.glob("shard-*.parquet"):
        assert shard.read_bytes()[:4] == b"PAR1"
        assert pq.read_schema(shard).names == demos.SCHEMA.names


def test_a_task_registered_in_tasks_alone_is_refused_at_import(tmp_path):
    """Every task needs its pixel style and action names beside its registry entry; one without them is named
    when the package loads, not met as a KeyError deep in rendering a GIF or a pixel batch."""
    import importlib.util
    import shutil

    import memory_tasks

    src = tmp_path / "memory_tasks"
    shutil.copytree(os.path.dirname(memory_tasks.__file__), src, ignore=shutil.ignore_patterns("__pycache__"))
    init = (src / "__init__.py").read_text()
    (src / "__init__.py").write_text(init.replace('"Hallway": (', '"Flash": ("memory_tasks/Flash-v0", '
                                                  '"memory_tasks.flash:FlashEnv"),\n    "Hallway": (', 1))
    spec = importlib.util.spec_from_file_location("memory_tasks_copy", src / "__init__.py")
    with pytest.raises(ImportError, match=r"task Flash \(memory_tasks/Flash-v0\) has no entry in PIXEL_STYLE and "
                                          r"ACTION_NAMES"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
