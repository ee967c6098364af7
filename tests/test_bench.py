"""Every benchmark in bench/ still runs against the current code, at a toy size (its numbers are not checked:
speed is measured and written down in docs/, never asserted). A change to the platform that breaks a benchmark
(a renamed function, a new keyword of forward) fails here instead of in the next measuring session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHES = sorted(p.name for p in (ROOT / "bench").glob("*.py"))
NOT_RUN = {"naive_reference.py"}  # a module the others import (checked by training_speed.py's run)

# name -> (arguments at a toy size, text the output must hold); "{data}" is a dataset root, "{gen}" a scratch one
SMOKE = {
    "training_speed.py": (["--quick", "--data-root", "{data}"], "| ours | longest in batch |"),
    "training_alternatives.py": (["--sizes", "cpu", "--variants", "now,relu-inplace,int-dropout", "--batches", "2",
                                  "--rounds", "1", "--threads", "1", "--episodes", "64", "--data-root", "{data}"],
                                 "| relu-inplace |"),
    "training_variants.py": (["--sizes", "cpu", "--batches", "2", "--rounds", "1", "--threads", "1", "--episodes",
                              "64", "--data-root", "{data}", "--variants", "default-on,keep-off"], "| cpu |"),
    "memory_trend.py": (["--size", "cpu", "--epochs", "1", "--every", "2", "--episodes", "24", "--data-root",
                         "{data}"], "default:"),
    "padding.py": (["--task", "Hallway", "--kw", "length=5", "--episodes", "24", "--batch-sizes", "8", "--runs", "1",
                    "--data-root", "{data}"], "| 8 |"),
    "distinct_views.py": (["--tasks", "Hallway:length=5", "--episodes", "16", "--batch-size", "8", "--data-root",
                           "{data}"], "| Hallway length=5 |"),
    "batch_weighting.py": (["--kw", "length=5", "--episodes", "24", "--batch-size", "8", "--epochs", "2",
                            "--data-root", "{data}"], "| shortest third"),
    "unique_rows.py": (["--batch-size", "8", "--repeats", "1", "--data-root", "{data}"], "same result"),
    "decode_kernels.py": (["--loops", "0.005"], "| 32 | 145 | 2 |"),
    "generation.py": (["speed", "--episodes", "8", "--repeats", "1", "--root", "{gen}", "--actors", "0"],
                      "| MysteryPath |"),
    "task_stats.py": (["--seeds", "2", "--out", "{gen}/tasks_table.md"], "| MysteryPath |"),
}
NEEDS_A_SWEEP = {"attention_mass.py", "encoding_memo.py"}  # run below on the tiny sweep's store


def run_bench(name: str, args: list[str]) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / name), *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_every_benchmark_has_a_smoke_run():
    assert set(BENCHES) == set(SMOKE) | NEEDS_A_SWEEP | NOT_RUN


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("bench_data")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMOKE))
def test_benchmark_runs_at_a_toy_size(name, data_root, tmp_path):
    args, expected = SMOKE[name]
    out = run_bench(name, [a.format(data=data_root, gen=tmp_path) for a in args])
    assert expected in out, out[-3000:]


@pytest.mark.slow
def test_benchmarks_of_a_finished_sweep_run_on_the_tiny_sweep(tiny_sweep):
    from mlflow.tracking import MlflowClient

    uri, _, folder = tiny_sweep
    out = run_bench("attention_mass.py", ["--tracking-uri", uri, "--experiment", "tiny", "--data-root",
                                          str(folder / "store" / "datasets")])
    assert out.count("| Ordering |") >= 2, out  # a row per Transformer trial of sweeps/tiny.py

    client = MlflowClient(tracking_uri=uri)
    child = next(r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
                 if r.data.tags.get("mlflow.parentRunId"))
    local = Path(client.download_artifacts(child.info.run_id, "checkpoint"))
    ckpt = next(local.rglob("*.pt"))
    out = run_bench("encoding_memo.py", [str(ckpt), "--episodes", "2", "--num-envs", "2", "--single-episodes", "1",
                                         "--repeats", "1", "--threads", "1"])
    assert "| Ordering |" in out, out


def test_the_benches_flop_count_is_what_torch_counts_for_a_training_step(monkeypatch):
    """bench/training_speed.py's analytic count of training FLOPs equals torch's own count (FlopCounterMode) of
    the naive reference's forward + backward on one unpadded episode of distinct observations: the first
    convolution's input gradient (a one-hot input) is not computed, so not counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from attention_tuner.training import build_model
    from naive_reference import NaiveAttentionTuner
    from training_speed import bench_config, training_flops

    torch.manual_seed(0)
    model = build_model(bench_config("cpu"), 4)
    naive = NaiveAttentionTuner.like(model)  # every product explicit, every observation through the encoder
    T = 6
    codes = [torch.randint(0, n, (1, T, 7, 7)) for n in (11, 6, 3)]  # object, colour, state: distinct views
    obs, actions = torch.stack(codes, -1).to(torch.uint8), torch.randint(0, 4, (1, T))
    with FlopCounterMode(display=False) as counter:
        logits, _ = naive(obs, actions)
        logits.sum().backward()
    assert counter.get_total_flops() == training_flops(T, model, causal=False, head_all=True)
