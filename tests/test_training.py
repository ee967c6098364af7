"""The training loop, checkpoints, evaluation and the pixel path (attention_tuner.training & co)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import memory_tasks
from attention_tuner import checkpoint, datasets, demos, training
from attention_tuner.config import TrialConfig, apply_overrides, build
from attention_tuner.evaluation import EncodingMemo, TransformerPolicy, closed_loop, evaluate
from attention_tuner.observations import ObservationEncoder
from conftest import torch_threads

TINY = {
    "task.name": "Ordering", "task.kwargs.length": 2, "data.episodes": 24, "model.d_model": 32,
    "model.n_layers": 2, "model.n_heads": 2, "model.d_ff": 64, "model.dropout": 0.1, "optim.lr": 3e-3,
    "optim.batch_size": 8, "optim.epochs": 4, "eval.episodes": 4, "eval.every": 2, "checkpoint_every": 2,
    "device": "cpu",
}


def config(**overrides) -> TrialConfig:
    return apply_overrides(build(TrialConfig, {}), {**TINY, **overrides})


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    return datasets.load(demos.generate("Ordering", {"length": 2}, 24, 0, root=root, actors=0, progress=False))


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resumed_run_equals_uninterrupted_run(demo, tmp_path):
    full = training.train(config(), demo, tmp_path / "full")
    # The same trial, stopped after 2 epochs (its checkpoint), then resumed to 4.
    training.train(config(**{"optim.epochs": 2}), demo, tmp_path / "split")
    resumed = training.train(config(), demo, tmp_path / "split")
    a = checkpoint.load(tmp_path / "full" / "checkpoint")
    b = checkpoint.load(tmp_path / "split" / "checkpoint")
    assert a["epoch"] == b["epoch"] == 4
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    for key in ("train/action_loss", "train/memory_loss", "val/accuracy"):
        assert full[key] == resumed[key]


def test_a_run_on_two_threads_repeats_exactly(tmp_path):
    """Seeded end to end on more than one thread too: the same trial twice gives the same weights, bit for bit
    (the observations repeat a lot in Ordering's batches, whose gradients the encoder's deduplication sums)."""
    data = datasets.load(demos.generate("Ordering", {"length": 10}, 48, 0, root=tmp_path, actors=0, progress=False))
    cfg = config(**{"task.kwargs": {"length": 10}, "data.episodes": 48, "optim.batch_size": 40,
                    "optim.epochs": 2, "eval.episodes": 0})
    with torch_threads(2):
        runs = [training.train(cfg, data, tmp_path / name) for name in ("a", "b")]
    a, b = (checkpoint.load(tmp_path / name / "checkpoint")["model"] for name in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0]["train/action_loss"] == runs[1]["train/action_loss"]


def test_checkpoint_of_another_configuration_is_refused(demo, tmp_path):
    training.train(config(**{"optim.epochs": 2}), demo, tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="another configuration .*model.d_model"):
        training.train(config(**{"model.d_model": 64}), demo, tmp_path)


def test_corrupted_checkpoint_is_named(demo, tmp_path):
    training.train(config(**{"optim.epochs": 2}), demo, tmp_path)
    path = tmp_path / "checkpoint" / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint.pt: checksum mismatch"):
        checkpoint.load(path)
    (tmp_path / "checkpoint" / "checkpoint.pt.sha256").unlink()  # no checksum: a truncated file still fails cleanly
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint.pt"):
        checkpoint.load(path)


def test_tiny_dataset_is_fitted_to_full_training_accuracy(demo, tmp_path):
    cfg = config(**{"optim.epochs": 250, "eval.episodes": 0, "data.val_fraction": 0.0, "model.dropout": 0.0,
                    "model.d_model": 64, "model.d_ff": 128})
    training.train(cfg, demo, tmp_path)
    model, cfg, _ = training.load_policy(tmp_path / "checkpoint")
    # measured on the whole training set in eval mode, not as a running mean over the epoch
    fitted = training.measure(training.Stepper(cfg, model, torch.device("cpu")), demo, np.arange(len(demo)), 8)
    assert fitted["accuracy"] == 1.0


@pytest.mark.parametrize("fraction", [0.01, 0.25, 0.5, 1.0])
def test_the_annotated_fraction_is_of_the_training_episodes(demo, fraction):
    """The subset is drawn among the training episodes only: no held-out episode can take an annotation from
    them, so any fraction > 0 annotates max(1, round(f * n_train)) of them (at 0.01 one of 21, for every seed)."""
    for seed in range(20):
        cfg = config(**{"data.annotation_fraction": fraction, "seed": seed, "data.val_fraction": 0.1})
        train_idx, val_idx, pairs = training.trial_data(cfg, demo)
        annotated = {i for i, p in enumerate(pairs) if p is not None}
        assert annotated <= set(train_idx.tolist()) and len(val_idx) > 0
        assert len(annotated) == max(1, round(fraction * len(train_idx)))


def test_a_run_stopped_by_its_time_budget_stays_stopped_when_run_again(demo, tmp_path):
    cfg = config(**{"optim.time_budget_s": 1e-6, "optim.epochs": 10, "eval.episodes": 0})
    first = training.train(cfg, demo, tmp_path)
    again = training.train(cfg, demo, tmp_path)
    state = checkpoint.load(tmp_path / "checkpoint")
    assert first["epoch"] == again["epoch"] == state["epoch"] == 1 and len(state["history"]) == 1
    more = training.train(config(**{"optim.time_budget_s": 1e6, "optim.epochs": 2, "eval.episodes": 0}), demo,
                          tmp_path)  # a larger budget continues
    assert more["epoch"] == 2


def test_training_metrics_are_per_real_step(demo, monkeypatch):
    """train/accuracy and train/action_loss average over real steps as the held-out ones do, not over batches
    (the last batch is smaller). With the optimiser stopped and no dropout they equal `measure` on the same
    episodes."""
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, closure=None: None)
    cfg = config(**{"optim.epochs": 1, "eval.episodes": 0, "model.dropout": 0.0, "data.val_fraction": 0.1})
    got = training.train(cfg, demo)
    torch.manual_seed(cfg.seed)
    model = training.build_model(cfg, 7)
    train_idx, _, _ = training.trial_data(cfg, demo)
    assert len(train_idx) % cfg.optim.batch_size != 0
    want = training.measure(training.Stepper(cfg, model, torch.device("cpu")), demo, train_idx, 64)
    assert got["train/accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
    assert got["train/action_loss"] == pytest.approx(want["action_loss"], rel=1e-5)


def test_held_out_attention_mass_does_not_depend_on_the_batch_size(tmp_path):
    """Pooled over decision rows: episodes of different lengths hold different numbers of them."""
    hallway = datasets.load(demos.generate("Hallway", {"length": 3}, 12, 0, root=tmp_path, actors=0,
                                           progress=False))
    assert len(set(hallway.lengths.tolist())) > 1
    cfg = config(**{"task.name": "Hallway", "task.kwargs": {"length": 3}})
    torch.manual_seed(0)
    model = training.build_model(cfg, training.n_actions_of("Hallway", {"length": 3}))
    step = training.Stepper(cfg, model, torch.device("cpu"))
    index = np.arange(len(hallway))
    one_batch = training.measure(step, hallway, index, len(index))
    for size in (1, 5):
        for key in ("expert_attention_mass", "recall_attention_mass"):
            assert training.measure(step, hallway, index, size)[key] == pytest.approx(one_batch[key], abs=1e-6)


@pytest.mark.parametrize("fraction", [1.0, 0.0])
def test_the_vanilla_transformers_heads_are_measured_too(tmp_path, fraction):
    """With memory.weight 0 no head is supervised, yet the held-out metrics say where memory.heads look, as
    for a model that supervises them with the same weights; training itself computes no attention."""
    hallway = datasets.load(demos.generate("Hallway", {"length": 3}, 12, 0, root=tmp_path, actors=0,
                                           progress=False))
    kw = {"task.name": "Hallway", "task.kwargs": {"length": 3}, "memory.heads": [[1, 0], [0, 1]]}
    vanilla = config(**kw, **{"memory.weight": 0.0})
    tuned = config(**kw, **{"data.annotation_fraction": fraction})
    torch.manual_seed(0)
    model = training.build_model(vanilla, training.n_actions_of("Hallway", {"length": 3}))
    assert not model.supervised
    same = training.build_model(tuned, model.n_actions)
    same.load_state_dict(model.state_dict())
    index = np.arange(len(hallway))
    got = training.measure(training.Stepper(vanilla, model, torch.device("cpu")), hallway, index, 4)
    want = training.measure(training.Stepper(tuned, same, torch.device("cpu")), hallway, index, 4)
    assert {"expert_attention_mass", "recall_attention_mass"} <= set(got)
    assert got == pytest.approx(want, abs=1e-6)
    assert 0 < got["recall_attention_mass"] < got["expert_attention_mass"] < 1
    batch = next(datasets.batches(hallway, index, list(hallway.pairs), 4))
    assert "expert_attention_mass" not in training.Stepper(vanilla, model.train(), torch.device("cpu"))(batch)


def test_no_head_is_supervised_without_an_annotated_demonstration():
    """At annotation fraction 0 the memory loss trains nothing, as at weight 0: the vanilla Transformer, every head
    fused, none marked "(supervised)" in its attention picture (`trial.write_pictures`)."""
    from attention_tuner.config import memory_heads, supervised_heads

    for vanilla in (config(**{"data.annotation_fraction": 0.0}), config(**{"memory.weight": 0.0})):
        assert vanilla.method == "vanilla" and supervised_heads(vanilla) == ()
        assert not training.build_model(vanilla, 7).supervised
    tuned = config(**{"data.annotation_fraction": 0.01})
    assert supervised_heads(tuned) == memory_heads(tuned) == ((0, 0),)


def test_fraction_zero_gives_the_vanilla_gradients(demo):
    def grads(cfg):
        torch.manual_seed(cfg.seed)
        model = training.build_model(cfg, 7)
        model.eval()  # no dropout: compare the math only
        step = training.Stepper(cfg, model, torch.device("cpu"))
        pairs = datasets.annotated_pairs(demo, cfg.data.annotation_fraction, cfg.seed, cfg.data.noise)
        batch = datasets.make_batch(demo, np.arange(8), pairs)
        out = step(batch)
        out["loss"].backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    out0, g0 = grads(config(**{"data.annotation_fraction": 0.0}))
    outv, gv = grads(config(**{"memory.weight": 0.0}))
    out1, g1 = grads(config())
    assert "memory_loss" not in out0 and "memory_loss" in out1
    for name in gv:
        torch.testing.assert_close(g0[name], gv[name], rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(g1[n], gv[n]) for n in gv)


@pytest.mark.parametrize("precision, dtype", [("auto", torch.float32), ("fp32", torch.float32),
                                              ("bf16", torch.bfloat16)])
def test_precision_sets_the_cpu_training_arithmetic(demo, precision, dtype, tmp_path):
    """auto and fp32 train in float32 on the CPU; bf16 autocasts the forward pass to bfloat16 there (AMX CPUs),
    gradients float32 like the weights (the supervised attention stays float32: test_model's autocast test).
    A bf16 run trains: finite losses, falling over the epochs, and evaluation (float32) runs."""
    cfg = config(**{"optim.precision": precision})
    torch.manual_seed(0)
    model = training.build_model(cfg, 7)
    step = training.Stepper(cfg, model, torch.device("cpu"))
    pairs = datasets.annotated_pairs(demo, 1.0, 0, cfg.data.noise)
    out = step(datasets.make_batch(demo, np.arange(8), pairs))
    assert out["logits"].dtype == dtype
    assert torch.isfinite(out["loss"]) and "memory_loss" in out
    out["loss"].backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    if precision == "bf16":
        losses = []
        training.train(config(**{"optim.precision": "bf16", "optim.epochs": 6, "model.dropout": 0.0}), demo,
                       tmp_path, report=lambda m, epoch, path: losses.append(m["train/loss"]))
        assert len(losses) == 6 and all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0]


def test_evaluation_is_deterministic_and_counts_episodes(demo):
    cfg = config()
    torch.manual_seed(0)
    model = training.build_model(cfg, 7)
    a = evaluate(model, "Ordering", {"length": 2}, episodes=10, num_envs=4)
    b = evaluate(model, "Ordering", {"length": 2}, episodes=10, num_envs=10)
    assert a["episodes"] == 10 and a["success_rate"] == b["success_rate"] and a["mean_length"] == b["mean_length"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluation_decodes_where_the_model_is():
    """A model on the GPU is evaluated there without naming the device (the default was the CPU: a device
    mismatch), with the same greedy actions as on the CPU up to float rounding of near ties."""
    torch.manual_seed(0)
    model = training.build_model(config(), 7)
    on_cpu = evaluate(model, "Ordering", {"length": 2}, episodes=10, num_envs=4)
    on_gpu = evaluate(model.cuda(), "Ordering", {"length": 2}, episodes=10, num_envs=4)
    assert on_gpu["episodes"] == 10 and abs(on_gpu["success_rate"] - on_cpu["success_rate"]) <= 0.2


SMALL_KWARGS = {"Hallway": {"length": 2}, "Ordering": {"length": 2}, "Counting": {"length": 2},
                "MortarMayhem": {"commands": 2}, "MysteryPath": {"size": 5, "max_steps": 32}}


@pytest.mark.parametrize("task", list(memory_tasks.TASKS))
@pytest.mark.parametrize("obs_mode", ["symbolic", "pixels"])
def test_closed_loop_evaluation_runs_on_every_task(task, obs_mode):
    """The batched evaluation plays every task in both observation modes (it once read an observation
    before the first reset, which only some environments have)."""
    kwargs = SMALL_KWARGS[task]
    cfg = config(**{"task.name": task, "task.obs_mode": obs_mode, "task.kwargs": kwargs})
    torch.manual_seed(0)
    model = training.build_model(cfg, training.n_actions_of(task, kwargs))
    result = evaluate(model, task, kwargs, episodes=3, num_envs=2)
    assert result["episodes"] == 3 and 0.0 <= result["success_rate"] <= 1.0 and result["mean_length"] >= 1


@pytest.mark.parametrize("task", list(memory_tasks.TASKS))
def test_pixel_batches_are_the_environment_pixels(task):
    kwargs = SMALL_KWARGS[task]
    ep = memory_tasks.rollout(memory_tasks.make(task, obs_mode="pixels", **kwargs), seed=4)
    encode = ObservationEncoder(task, "pixels")
    np.testing.assert_array_equal(encode(ep.symbolic[None]).numpy()[0], ep.observations)


@pytest.mark.parametrize("task", list(memory_tasks.TASKS))
def test_incremental_decoding_equals_the_full_pass_on_every_task(task):
    """Real expert episodes of every task, in the task's default observation mode, through a small model."""
    env = memory_tasks.make(task)
    obs_mode = "pixels" if env.observation_space.shape == (84, 84, 3) else "symbolic"
    ep = memory_tasks.rollout(memory_tasks.make(task, obs_mode="symbolic"), seed=2)
    cfg = config(**{"task.name": task, "task.obs_mode": obs_mode, "task.kwargs": {}})
    torch.manual_seed(0)
    model = training.build_model(cfg, int(env.action_space.n)).eval()
    encode = ObservationEncoder(task, obs_mode)
    obs = encode(ep.symbolic[None])  # (1, T, ...)
    actions = torch.from_numpy(ep.actions[None])
    with torch.no_grad():
        full, _ = model(obs, actions)  # (1, T, A)
    cache, prev = model.new_cache(1), None
    for t in range(ep.length):
        step = model.step(cache, obs[:, t], prev)
        torch.testing.assert_close(step, full[:, t], rtol=0, atol=1e-5)
        prev = actions[:, t]


def test_encoding_memo_encodes_each_distinct_observation_once_and_restarts_past_its_limit():
    seen: list[int] = []

    def encode(codes):
        seen.append(len(codes))
        return torch.from_numpy(codes.reshape(len(codes), -1)[:, :4].astype(np.float32))

    memo = EncodingMemo(encode, limit=4)
    rng = np.random.default_rng(0)
    views = rng.integers(0, 5, size=(3, 7, 7, 3), dtype=np.uint8)
    batch = views[[0, 1, 0, 2, 1]]
    np.testing.assert_array_equal(memo(batch).numpy(), encode(batch).numpy())
    assert seen[0] == 3 and memo.hit_rate == pytest.approx(2 / 5)  # 0, 1, 2 encoded once each
    np.testing.assert_array_equal(memo(views[[2]]).numpy(), views[2].reshape(-1)[None, :4])
    assert len(seen) == 2 and memo.misses == 3  # a repeated view costs no encoding
    other = rng.integers(5, 9, size=(2, 7, 7, 3), dtype=np.uint8)  # 3 + 2 > limit: the memo starts again
    np.testing.assert_array_equal(memo(np.concatenate([other, views[:1]])).numpy(),
                                  np.concatenate([other, views[:1]]).reshape(3, -1)[:, :4])
    assert seen[-1] == 3 and len(memo.index) == 3


@pytest.mark.parametrize("task", ["MortarMayhem", "Hallway"])
@pytest.mark.parametrize("obs_mode", ["symbolic", "pixels"])
def test_reusing_encodings_plays_exactly_the_episodes_of_encoding_every_step(task, obs_mode, monkeypatch):
    """The memo changes how often the encoder runs, not what the policy does: same logits, same episodes."""
    kwargs = SMALL_KWARGS[task]
    cfg = config(**{"task.name": task, "task.obs_mode": obs_mode, "task.kwargs": kwargs})
    torch.manual_seed(0)
    model = training.build_model(cfg, training.n_actions_of(task, kwargs)).eval()
    logits: list[torch.Tensor] = []
    decode = model.step_embedded

    def recorded(*args):
        logits.append(decode(*args))
        return logits[-1]

    monkeypatch.setattr(model, "step_embedded", recorded)

    runs = []
    for reuse in (False, True):
        policy = TransformerPolicy(model, task, reuse_encodings=reuse)
        with torch.inference_mode():
            runs.append((closed_loop(policy, task, kwargs, episodes=6, num_envs=3), list(logits)))
        logits.clear()
    (plain, a), (memo, b) = runs
    assert policy.memo is not None and policy.memo.hit_rate > 0 and len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5)
    assert {k: plain[k] for k in ("success_rate", "mean_return", "mean_length")} == \
        {k: memo[k] for k in ("success_rate", "mean_return", "mean_length")}


def test_a_checkpoint_whose_annotated_subset_was_drawn_the_old_way_is_refused_below_fraction_one(demo, tmp_path):
    """Before 2026-12-03 evening the subset was drawn among all episodes; resuming such a run (fraction below 1)
    would switch its annotated episodes mid-run. Fraction 1 annotates every training episode either way."""
    for fraction, refused in ((0.5, True), (1.0, False)):
        run = tmp_path / f"f{fraction}"
        cfg = config(**{"data.annotation_fraction": fraction, "optim.epochs": 2, "eval.episodes": 0})
        training.train(cfg, demo, run)
        state = checkpoint.load(run / "checkpoint")
        del state["annotated_among"]  # as older versions saved it
        checkpoint.save(run / "checkpoint", state)
        longer = config(**{"data.annotation_fraction": fraction, "optim.epochs": 3, "eval.episodes": 0})
        if refused:
            with pytest.raises(checkpoint.CheckpointError, match="older version, which drew the annotated 0.5"):
                training.train(longer, demo, run)
        else:
            assert training.train(longer, demo, run)["epoch"] == 3


def test_a_run_moves_between_devices(demo, tmp_path):
    """The device is where a run trains, not what it is: a checkpoint of a `device: cuda` run (here: its saved
    configuration says so) resumes under `device: cpu` (a GPU run continued on a laptop), and back."""
    training.train(config(**{"optim.epochs": 2}), demo, tmp_path)
    state = checkpoint.load(tmp_path / "checkpoint")
    state["config"]["device"] = "cuda"
    checkpoint.save(tmp_path / "checkpoint", state)
    final = training.train(config(**{"device": "cpu"}), demo, tmp_path)
    assert checkpoint.load(tmp_path / "checkpoint")["epoch"] == 4 and 0.0 <= final["val/accuracy"] <= 1.0


def test_auto_precision_is_bfloat16_only_where_the_gpu_has_it(monkeypatch):
    """precision auto: bfloat16 autocast on Ampere and later; float32 on a T4 or V100 (torch emulates bfloat16
    there, slower than float32) and on the CPU; bf16 and fp32 as said."""
    native = {"on": True}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation
                        or native["on"])
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert training.uses_bf16("auto", cuda) and not training.uses_bf16("auto", cpu)
    native["on"] = False  # a V100
    assert not training.uses_bf16("auto", cuda)
    assert training.uses_bf16("bf16", cuda) and training.uses_bf16("bf16", cpu)
    assert not training.uses_bf16("fp32", cuda)


@pytest.mark.parametrize("bucket", [True, False])
def test_batches_are_bucketed_by_length_unless_the_configuration_says_random(demo, monkeypatch, bucket):
    """optim.bucket_by_length reaches the batching; the paper preset draws random batches, as the paper's code."""
    from attention_tuner.presets import PAPER_MODEL

    seen = []
    real = datasets.batches

    def spy(demos, index, pairs, batch_size, rng=None, bucket=True):
        if rng is not None:  # the training epochs (measuring runs over the episodes in order)
            seen.append(bucket)
        return real(demos, index, pairs, batch_size, rng, bucket=bucket)

    monkeypatch.setattr(datasets, "batches", spy)
    training.train(config(**{"optim.epochs": 1, "eval.episodes": 0, "optim.bucket_by_length": bucket}), demo)
    assert seen and set(seen) == {bucket}
    assert PAPER_MODEL["optim.bucket_by_length"] is False
