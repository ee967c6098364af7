"""The command line's own logic (attention_tuner.cli): how flags become a trial configuration.
Bad input at every entry point: test_bad_input.py."""

from __future__ import annotations

from attention_tuner import cli


def test_kw_adds_to_the_config_files_task_parameters_instead_of_replacing_them(tmp_path):
    (tmp_path / "count.yaml").write_text("task:\n  name: Counting\n  kwargs: {length: 3, test_freq: 0.5}\n")
    args = cli.build_parser().parse_args(["train", "Counting", "--config", str(tmp_path / "count.yaml"),
                                          "--kw", "length=4"])
    assert cli.trial_config(args).task.kwargs == {"length": 4, "test_freq": 0.5}


def test_task_parameters_read_numbers_in_exponent_notation():
    assert cli.parse_kwargs(["test_freq=1e-1", "length=10", "name=abc", "flag=true", "x=2.5E3"]) == {
        "test_freq": 0.1, "length": 10, "name": "abc", "flag": True, "x": 2500.0}
    args = cli.build_parser().parse_args(["train", "Counting", "--set", "task.kwargs.test_freq=1e-1"])
    assert cli.trial_config(args).task.kwargs["test_freq"] == 0.1


def test_kw_values_are_read_once_as_for_every_command():
    """A quoted value stays text (then the task refuses it, as play and generate do), never re-read as a number."""
    import pytest

    from attention_tuner.config import ConfigError

    args = cli.build_parser().parse_args(["train", "Hallway", "--kw", "length='10'"])
    with pytest.raises(ConfigError, match="length must be an integer, got '10'"):
        cli.trial_config(args)


def test_evaluate_plays_the_task_the_trial_was_evaluated_on_unless_told_otherwise(tmp_path, capsys):
    """A trial evaluated at another length (eval.kwargs, length generalisation) is re-evaluated there by
    default, so `evaluate` reproduces its recorded eval/ numbers; --kw still overrides."""
    import json

    from attention_tuner import trial
    from attention_tuner.config import TrialConfig, apply_overrides, build

    cfg = apply_overrides(build(TrialConfig, {}), {
        "task.name": "Ordering", "task.kwargs.length": 2, "eval.kwargs.length": 3, "data.episodes": 16,
        "model.d_model": 16, "model.n_layers": 1, "model.d_ff": 16, "optim.epochs": 1, "eval.episodes": 0,
        "device": "cpu"})
    trial.run_trial(cfg, tmp_path / "run", tmp_path / "data")
    for extra, length in (([], 3), (["--kw", "length=4"], 4)):
        capsys.readouterr()
        assert cli.main(["evaluate", str(tmp_path / "run"), "--episodes", "2", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["kwargs"] == {"length": length} and out["episodes"] == 2
        # what was played, and numbers a reader can read (4 decimals)
        assert out["epoch"] == 1 and out["obs_mode"] == "symbolic" and out["seeds"].startswith("1000000000-1000000001")
        assert out["checkpoint"] == str(tmp_path / "run" / "checkpoint" / "checkpoint.pt")
        assert all(round(v, 4) == v for k, v in out.items() if isinstance(v, float))
    # its reader gone before it writes (as after `| head -1` on longer output): no traceback, no error line
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    piped = subprocess.run([sys.executable, "-m", "attention_tuner.cli", "evaluate", str(tmp_path / "run"),
                            "--episodes", "2"], stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    assert piped.returncode == 141 and piped.stderr == "", piped.stderr


def test_an_expert_that_never_succeeds_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    """Found during generation, not before (the task parameters are valid): still one line, no traceback."""
    from attention_tuner import demos

    monkeypatch.setattr(demos, "NO_SUCCESS_SEEDS", 30)
    monkeypatch.setattr(demos, "SHARD_EPISODES", 10)
    code = cli.main(["generate", "MysteryPath", "--kw", "max_steps=3", "--episodes", "10", "--actors", "0",
                     "--out", str(tmp_path / "d")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert "expert failed on all 30 seeds tried with {'max_steps': 3}: no demonstration can be recorded" in err[0]


def test_every_spelling_of_a_task_becomes_its_short_name():
    """One run folder, trial key and report row per task, whichever spelling the user typed."""
    from attention_tuner.config import TrialConfig, apply_overrides, build

    for name in ("ordering", "Ordering-v0", "memory_tasks/Ordering-v0", "ORDERING"):
        assert apply_overrides(build(TrialConfig, {}), {"task.name": name}).task.name == "Ordering"


def test_numpy_numbers_in_a_sweep_become_plain_numbers():
    import json

    import numpy as np

    from attention_tuner import sweep
    from attention_tuner.config import to_dict

    spec = sweep.SweepSpec(name="np", base={"task.name": "Ordering", "data.episodes": 16},
                           space={"task.kwargs.length": list(np.arange(2, 4)), "seed": [np.int64(1)]})
    ts = sweep.trials(spec)
    assert [t.config.task.kwargs["length"] for t in ts] == [2, 3] and {t.config.seed for t in ts} == {1}
    assert all(type(t.config.seed) is int for t in ts)
    json.dumps([to_dict(t.config) for t in ts])  # saved as JSON and YAML: plain numbers only


def test_train_says_what_it_trains_and_how_long_is_left():
    from attention_tuner.config import TrialConfig, apply_overrides, build

    paper = apply_overrides(build(TrialConfig, {}), {"task.name": "Hallway", "task.kwargs.length": 10})
    line = cli.trial_summary(paper, "cpu")
    assert line.startswith("training Hallway (length=10) (symbolic observations), seed 0: attention_tuner, d_model 512, "
                           "4 layers x 2 heads")
    assert "300 epochs of batch 64, on the CPU" in line and "--preset cpu" in line  # the paper's size on a CPU
    assert "--preset cpu" not in cli.trial_summary(paper, "cuda")
    assert cli.progress_head(paper, 3, {"perf/epoch_s": 2.0}) == "epoch   3/300 (2 s each, ~10 min left)"
    # an epoch that evaluated: its evaluation's time too (100 episodes at 50/s)
    evaluated = {"perf/epoch_s": 2.0, "eval/episodes": 100.0, "eval/episodes_per_s": 50.0}
    assert cli.progress_head(paper, 299, evaluated) == "epoch 299/300 (4 s each, ~4 s left)"
    assert cli.progress_head(paper, 3, {"perf/epoch_s": 2.0}, took=0.25) == "epoch   3/300 (0.2 s each, ~74 s left)"
    assert cli.progress_head(paper, 300, {"perf/epoch_s": 2.0}) == "epoch 300/300"
    rl = apply_overrides(paper, {"algorithm": "ppo_lstm", "rl.env_steps": 5000})
    assert "PPO with an LSTM (RL baseline), 5,000 environment steps" in cli.trial_summary(rl, "cpu")
    assert cli.progress_head(rl, 7, {}) == "iteration    7"


def test_generate_says_when_it_found_the_dataset_already_there(tmp_path, capsys):
    args = ["generate", "Ordering", "--kw", "length=2", "--episodes", "8", "--actors", "0", "--quiet",
            "--out", str(tmp_path)]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert cli.main(args) == 0
    second = capsys.readouterr().out
    assert "Ordering {'length': 2} episodes=8" in first and "reused" not in first
    assert second.strip().endswith("(found: already generated, reused)")


def test_config_prints_every_key_with_its_meaning_as_yaml_that_train_reads_back(tmp_path, capsys):
    from attention_tuner.config import flatten, load_yaml

    args = ["Ordering", "--kw", "length=5", "--preset", "cpu", "--set", "optim.epochs=7", "--set",
            "memory.heads=[[1, 0]]"]
    assert cli.main(["config", *args]) == 0
    text = capsys.readouterr().out
    (tmp_path / "c.yaml").write_text(text)
    cfg = cli.trial_config(cli.build_parser().parse_args(["train", *args]))
    assert load_yaml(tmp_path / "c.yaml") == cfg  # `train --config` of what it printed trains the same trial
    keyed = [line for line in text.splitlines() if ": " in line]
    assert len(keyed) == len(flatten(cfg)) - len(cfg.task.kwargs) + 1  # task.kwargs on one line
    assert all("  # " in line for line in keyed), [line for line in keyed if "  # " not in line]
    assert '  lr: 0.001  # Adam learning rate.' in text
    # free-form task parameters too: a small float stays a number (JSON's 1e-05 is text to YAML)
    counting = ["Counting", "--kw", "empty_freq=1e-5", "--set", "eval.kwargs.test_freq=1e-5", "--set", "memory.heads=all"]
    assert cli.main(["config", *counting]) == 0
    (tmp_path / "d.yaml").write_text(capsys.readouterr().out)
    assert load_yaml(tmp_path / "d.yaml") == cli.trial_config(cli.build_parser().parse_args(["train", *counting]))


def test_a_config_file_that_names_no_task_takes_the_task_given_beside_it(tmp_path):
    """A YAML of a few keys and no task: TASK (or --set task.name) names it; without either it is refused
    (tests/test_bad_input.py) instead of training the default task."""
    (tmp_path / "lr.yaml").write_text("optim:\n  lr: 0.002\ntask:\n  kwargs: {commands: 3}\n")
    for args in (["MortarMayhem"], ["--set", "task.name=MortarMayhem"]):  # its task parameters are that task's
        cfg = cli.trial_config(cli.build_parser().parse_args(["train", *args, "--config", str(tmp_path / "lr.yaml")]))
        assert (cfg.task.name, cfg.task.kwargs, cfg.optim.lr) == ("MortarMayhem", {"commands": 3}, 0.002)


def test_trains_last_line_says_where_the_evaluation_played_other_task_parameters():
    from attention_tuner.config import TrialConfig, apply_overrides, build

    def at(**kw):
        return cli.evaluated_at(apply_overrides(build(TrialConfig, {}), {"task.name": "Hallway", **kw}))

    assert at(**{"task.kwargs.length": 5, "eval.kwargs.length": 7}) == ", at length=7"
    assert at(**{"eval.kwargs.length": 30}) == at() == ""  # Hallway's default length: where it trained


def test_a_broken_pipe_other_than_stdout_is_a_one_line_error(capsys):
    from attention_tuner.console import run_command

    def command() -> int:
        raise BrokenPipeError(32, "Broken pipe")  # a worker's or a socket's, stdout is fine

    assert run_command("attention-tuner", command) == 2
    assert capsys.readouterr().err == "attention-tuner: error: [Errno 32] Broken pipe\n"


def test_datasets_lists_what_each_folder_holds_and_which_are_stale(tmp_path, capsys):
    import json

    assert cli.main(["generate", "Ordering", "--kw", "length=2", "--episodes", "8", "--actors", "0", "--quiet",
                     "--out", str(tmp_path)]) == 0
    assert cli.main(["generate", "Hallway", "--kw", "length=3", "--episodes", "4", "--actors", "0", "--quiet",
                     "--out", str(tmp_path)]) == 0
    hallway = next(tmp_path.glob("Hallway-*"))
    manifest = json.loads((hallway / "manifest.json").read_text())
    (hallway / "manifest.json").write_text(json.dumps({**manifest, "task_code": "0" * 16}))  # the task changed since
    half = tmp_path / "Counting-0123456789abcdef"
    half.mkdir()
    (half / "shard-00000.parquet").write_bytes(b"x")  # a generation that did not finish
    (tmp_path / "not-a-dataset").mkdir()
    assert cli.main(["generate", "Ordering", "--kw", "length=3", "--episodes", "4", "--actors", "0", "--quiet",
                     "--out", str(tmp_path)]) == 0
    damaged = next(p for p in tmp_path.glob("Ordering-*") if '"length": 3' in (p / "manifest.json").read_text())
    next(damaged.glob("shard-*.parquet")).unlink()
    broken = tmp_path / "Hallway-fedcba9876543210"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"schema_version": 1, "task"')  # cut short
    capsys.readouterr()
    assert cli.main(["datasets", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6  # the header and five datasets; the empty folder is none
    assert "damaged (a shard missing or cut short" in next(line for line in lines if line.startswith(damaged.name))
    unreadable = next(line for line in lines if line.startswith(broken.name))
    assert "unreadable (manifest is not valid JSON" in unreadable and "delete" in unreadable
    assert unreadable.split()[1:4] == ["?", "?", "?"]  # task, parameters, episodes: not known
    ordering = next(line for line in lines if line.startswith("Ordering-") and "length=2" in line)
    assert "length=2" in ordering and ordering.split()[-1] == "ready" and " 8  0-" in ordering
    end = json.loads((next(p for p in tmp_path.glob("Ordering-*") if '"length": 2' in (p / "manifest.json").read_text())
                      / "manifest.json").read_text())["seed_range"][1]
    assert f" 0-{end - 1} " in ordering  # the last seed, as `evaluate` gives its seeds
    assert next(line for line in lines if line.startswith("Hallway-")).split()[-1] == "stale"
    assert next(line for line in lines if line.startswith("Counting-")).split()[-1] == "unfinished"
    assert next(line for line in lines if line.startswith("Counting-")).split()[1] == "Counting"  # from its folder


def test_train_takes_the_task_from_config_and_refuses_another(tmp_path, capsys):
    import pytest

    from attention_tuner.config import ConfigError

    assert cli.main(["config", "MortarMayhem", "--kw", "commands=3"]) == 0
    (tmp_path / "mm.yaml").write_text(capsys.readouterr().out)
    parse = cli.build_parser().parse_args
    assert cli.trial_config(parse(["train", "--config", str(tmp_path / "mm.yaml")])).task.kwargs == {"commands": 3}
    assert cli.trial_config(parse(["train", "mortarmayhem", "--config", str(tmp_path / "mm.yaml")])).task.name \
        == "MortarMayhem"
    with pytest.raises(ConfigError, match="TASK Hallway differs from --config's task.name MortarMayhem"):
        cli.trial_config(parse(["train", "Hallway", "--config", str(tmp_path / "mm.yaml")]))
    with pytest.raises(ValueError, match="give the TASK"):
        cli.trial_config(parse(["train"]))
