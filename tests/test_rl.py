"""The RL baseline (attention_tuner.rl): PPO with an LSTM on RLlib, in the same sweeps, MLflow and reports.

The tests that run RLlib are skipped, with the reason, when the optional extra is not installed
(``pip install '.[rllib]'``; ``.ci/run`` installs it, so they run in CI). The rest check what must hold
without it: the core install imports and validates everything, and asking for the baseline without RLlib is
a one-line error before anything starts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attention_tuner import rl
from attention_tuner.config import EVAL_SEED_BASE, ConfigError, TrialConfig, apply_overrides, build
from attention_tuner.model import SymbolicEncoder

ROOT = Path(__file__).resolve().parents[1]


def _has_rllib() -> bool:
    try:
        rl.require_rllib()
    except rl.RLlibMissing:
        return False
    return True


HAS_RLLIB = _has_rllib()
needs_rllib = pytest.mark.skipif(not HAS_RLLIB, reason="the RLlib extra is not installed (pip install '.[rllib]')")

TINY = {"algorithm": "ppo_lstm", "task.name": "Ordering", "task.kwargs": {"length": 2}, "device": "cpu",
        "rl.env_steps": 512, "rl.rollout_steps": 256, "rl.num_envs": 4, "rl.minibatch_size": 128,
        "rl.num_epochs": 2, "rl.lstm_cell_size": 32, "rl.max_seq_len": 32, "eval.episodes": 8, "eval.every": 1,
        "checkpoint_every": 1}


def config(**overrides) -> TrialConfig:
    return apply_overrides(build(TrialConfig, {}), {**TINY, **overrides})


# ---------------------------------------------------------------------------------- without RLlib


def test_the_policy_sees_the_transformers_one_hot():
    """The symbolic observation encoding is the Transformer encoder's one-hot, codes out of range clamped."""
    codes = np.random.default_rng(0).integers(0, 14, (5, 7, 7, 3), dtype=np.uint8)
    enc = SymbolicEncoder(8)
    idx = torch.minimum(torch.from_numpy(codes).permute(0, 3, 1, 2).long(), enc.hi) + enc.offset
    want = torch.zeros(5, 20, 7, 7).scatter_(1, idx, 1.0).permute(0, 2, 3, 1).numpy()  # as forward does
    np.testing.assert_array_equal(rl.one_hot_symbolic(codes), want)
    flat = rl.policy_obs(codes, "symbolic", flat=True)
    assert flat.shape == (5, 980) and flat.dtype == np.float32
    pixels = np.full((2, 84, 84, 3), 255, np.uint8)
    assert rl.policy_obs(pixels, "pixels").max() == 1.0


def test_the_core_never_imports_rllib():
    """Configuration, sweeps, the CLI, reports and this module itself import without RLlib: it is loaded only
    when a ppo_lstm trial runs."""
    import subprocess

    code = ("import sys; import attention_tuner.rl, attention_tuner.sweep, attention_tuner.cli, "
            "attention_tuner.report, attention_tuner.trial; print('ray.rllib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


def test_method_and_encoder_follow_the_configuration():
    cfg = config()
    assert cfg.method == "ppo_lstm" and rl.encoder_of(cfg) == "mlp"
    assert rl.encoder_of(config(**{"task.obs_mode": "pixels"})) == "cnn"
    assert config(algorithm="transformer").method == "attention_tuner"


@pytest.mark.parametrize("overrides, message", [
    ({"algorithm": "dqn"}, "algorithm must be one of transformer, ppo_lstm"),
    ({"rl.minibatch_size": 512}, r"rl.minibatch_size \(512\) must be at most rl.rollout_steps \(256\)"),
    ({"rl.encoder": "mlp", "task.obs_mode": "pixels"}, "rl.encoder mlp needs task.obs_mode symbolic"),
    ({"rl.encoder": "rnn"}, "rl.encoder must be auto, mlp or cnn"),
    ({"rl.gamma": 1.5}, r"rl.gamma must be in \(0, 1\]"),
    ({"rl.env_steps": 0}, "rl.env_steps must be >= 1"),
    ({"seed": 999_999_999}, r"seed \+ rl.num_envs must stay below 1000000000"),
])
def test_bad_rl_settings_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config(**overrides)


def test_a_resumed_run_seeds_rllib_anew_below_the_evaluation_seeds():
    """From the start the trial seed; resumed at iteration k another seed each k, so the environments play new
    episodes instead of the ones the run began with (RLlib resets them with its seed)."""
    cfg = config(**{"seed": 7})
    seeds = [rl.run_seed(cfg, k) for k in range(6)]
    assert seeds[0] == 7 and len(set(seeds)) == 6
    assert all(0 <= s and s + cfg.rl.num_envs < EVAL_SEED_BASE for s in seeds)
    assert rl.run_seed(cfg, 3) == rl.run_seed(cfg, 3)


@pytest.fixture
def without_rllib(monkeypatch):
    """RLlib's import fails as it does on a core install (its extra dependencies are missing)."""
    monkeypatch.setitem(sys.modules, "ray.rllib.algorithms.ppo", None)


def test_without_rllib_the_cli_refuses_ppo_in_one_line_and_writes_nothing(without_rllib, tmp_path, capsys):
    from attention_tuner.cli import main as cli

    out = tmp_path / "run"
    code = cli(["train", "Ordering", "--kw", "length=2", "--set", "algorithm=ppo_lstm", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "needs RLlib" in err[0] and "pip install -e '.[rllib]'" in err[0]
    assert not out.exists()


def test_without_rllib_a_sweep_with_ppo_fails_before_anything_starts(without_rllib, tmp_path, capsys):
    from attention_tuner.cli import main as cli

    code = cli(["sweep", str(ROOT / "sweeps" / "tiny_rl.py"), "--storage", str(tmp_path / "store"),
                "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs RLlib" in err[0]
    assert not (tmp_path / "store").exists() and not (tmp_path / "m.db").exists()


def test_the_dry_run_shows_the_rl_budget_without_rllib(without_rllib, capsys):
    from attention_tuner.cli import main as cli

    assert cli(["sweep", str(ROOT / "sweeps" / "tiny_rl.py"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "method=ppo_lstm" in out and "env_steps=512" in out and "RL baseline (ppo_lstm): 1 trials" in out


# ------------------------------------------------------------------------------------- with RLlib


@needs_rllib
def test_ppo_trains_checkpoints_and_resumes_where_it_stopped(tmp_path, ray_local):
    """A run with a budget of 2 iterations, then extended to 4: the second run loads the first's weights and
    optimiser state and continues the iteration count, environment steps and history."""
    first = rl.train(config(**{"rl.env_steps": 512}), tmp_path)
    from attention_tuner import checkpoint

    saved = checkpoint.load(tmp_path / "checkpoint")
    assert saved["epoch"] == 2 and saved["env_steps"] >= 512 and len(saved["history"]) == 2
    assert 0.0 <= first["eval/success_rate"] <= 1.0 and first["perf/env_steps"] == saved["env_steps"]
    module, cfg = rl.load_module(tmp_path / "checkpoint")  # the saved weights, loaded into a fresh module
    weights = saved["model"]["learner_group"]["learner"]["rl_module"]["default_policy"]
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0)
    again = rl.evaluate(module, cfg, cfg.task.kwargs, cfg.eval.episodes, num_envs=3)
    assert again["success_rate"] == first["eval/success_rate"]  # the same greedy policy on the same seeds
    saved["config"]["device"] = "cuda"  # a checkpoint of a GPU run loads and plays on this CPU machine
    checkpoint.save(tmp_path / "gpu_run", saved)
    on_gpu, gpu_cfg = rl.load_module(tmp_path / "gpu_run")
    assert gpu_cfg.device == "cuda"
    replay = rl.evaluate(on_gpu, gpu_cfg, cfg.task.kwargs, cfg.eval.episodes, num_envs=3)
    assert (replay["success_rate"], replay["mean_return"]) == (again["success_rate"], again["mean_return"])

    seen = []
    final = rl.train(config(**{"rl.env_steps": 1024}), tmp_path, report=lambda m, it, ck: seen.append(it))
    assert seen == [3, 4] and final["perf/env_steps"] >= 1024
    resumed = checkpoint.load(tmp_path / "checkpoint")
    assert [h["epoch"] for h in resumed["history"]] == [1.0, 2.0, 3.0, 4.0]


@needs_rllib
def test_a_checkpoint_of_another_configuration_is_refused(tmp_path, ray_local):
    from attention_tuner.checkpoint import CheckpointError

    rl.train(config(**{"rl.env_steps": 256}), tmp_path)
    with pytest.raises(CheckpointError, match="saved by another configuration .*rl.lr"):
        rl.train(config(**{"rl.env_steps": 512, "rl.lr": 1e-3}), tmp_path)


@needs_rllib
def test_evaluate_command_plays_a_ppo_checkpoint(tmp_path, capsys, ray_local):
    import json

    from attention_tuner.cli import main as cli

    rl.train(config(**{"rl.env_steps": 256}), tmp_path)
    assert cli(["evaluate", str(tmp_path / "checkpoint"), "--episodes", "6", "--num-envs", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "Ordering" and out["episodes"] == 6.0


@needs_rllib
def test_a_ppo_trial_runs_in_a_tiny_sweep_and_lands_in_mlflow(tmp_path, ray_local):
    """sweeps/tiny_rl.py: one vanilla Transformer trial and one PPO trial under one parent run, with the same
    metric names; the report puts the PPO trial in the task x method table and the RL budget table."""
    from mlflow.tracking import MlflowClient

    from attention_tuner import sweep
    from attention_tuner.report import report

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    spec = sweep.load_sweep(ROOT / "sweeps" / "tiny_rl.py")
    rows = sweep.run(spec, tracking_uri=uri, storage=str(tmp_path / "store"), verbose=0)
    assert [r["status"] for r in rows] == ["ok", "ok"] and {r["method"] for r in rows} == {"vanilla", "ppo_lstm"}
    c = MlflowClient(tracking_uri=uri)
    runs = c.search_runs([c.get_experiment_by_name("tiny_rl").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.params["algorithm"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(parents) == 1 and set(children) == {"transformer", "ppo_lstm"}
    ppo = children["ppo_lstm"]
    assert ppo.info.status == "FINISHED" and ppo.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert ppo.data.params["rl.env_steps"] == "512" and ppo.data.params["label.method"] == "ppo_lstm"
    assert {"eval/success_rate", "perf/env_steps", "perf/train_s", "train/episode_return_mean"} <= set(ppo.data.metrics)
    assert [m.step for m in c.get_metric_history(ppo.info.run_id, "eval/success_rate")] == [1, 2]
    artifacts = {a.path for a in c.list_artifacts(ppo.info.run_id)}
    assert {"curves.png", "checkpoint"} <= artifacts and "dataset_manifest.json" not in artifacts
    md = report(uri, tmp_path / "report", sweep="tiny_rl").read_text()
    assert "| Ordering | ppo_lstm |" in md and "RL baseline: PPO with an LSTM" in md
    assert (tmp_path / "report" / "rl_curves.png").is_file()
