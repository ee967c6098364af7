"""Where the heads of a finished sweep's trials look, measured after the fact from their checkpoints.

    .venv/bin/python bench/attention_mass.py --tracking-uri sqlite:////tmp/repro/mlruns.db \
        --experiment cpu_reproduction --data-root /tmp/repro/runs/sweeps/datasets --tasks Hallway,Counting

For each finished Transformer trial of the experiment (a trial run again: its latest finished run): its checkpoint (the
MLflow artifact `checkpoint`), its dataset (found under --data-root by its manifest's task, keyword arguments,
episode count and first seed, whatever the folder's key), and `training.measure` on its held-out episodes. That
gives, for AttentionTuner's supervised heads and for the vanilla Transformer's `memory.heads` alike:
`expert_attention_mass` (every step, the expert's keys including the current frame's self-pair) and
`recall_attention_mass` (decision steps only, the recalled earlier frames only). For sweeps run before
2026-12-04, whose runs logged the first for AttentionTuner only. Prints a Markdown table, one row per trial.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mlflow
import numpy as np
import torch

from attention_tuner import checkpoint, datasets, outcomes, report, training
from attention_tuner.config import TrialConfig, build


def find_dataset(root: Path, cfg: TrialConfig) -> Path:
    """The dataset under ``root`` generated for ``cfg`` (its manifest's request), whatever its folder's key."""
    import memory_tasks

    want = (memory_tasks.resolve_task(cfg.task.name), cfg.task.kwargs, cfg.data.episodes, cfg.data.seed)
    for manifest in sorted(root.glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        if (m["task"], m["kwargs"], m["episodes"], m["request"]["seed"]) == want:
            return manifest.parent
    raise SystemExit(f"no dataset for {want} under {root}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--data-root", required=True, type=Path)
    ap.add_argument("--tasks", default="", help="comma-separated task names (default: every task)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tasks = {t for t in args.tasks.split(",") if t}
    latest, _ = report.latest_runs(report.load_rows(args.tracking_uri, experiment=args.experiment))
    rows = [r for r in latest
            if r.counted and r.method in ("attention_tuner", "vanilla") and (not tasks or r.task in tasks)]
    print("| trial | task | method | fraction | seed | success | decision-step accuracy | attention on expert keys, "
          "every step | attention on recalled frames, decision steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r.task, r.method, r.fraction, r.seed)):
        local = mlflow.artifacts.download_artifacts(run_id=r.run_id, artifact_path="checkpoint",
                                                    tracking_uri=args.tracking_uri)
        state = checkpoint.load(Path(local))
        cfg = build(TrialConfig, state["config"])
        demos = datasets.load(find_dataset(args.data_root, cfg))
        model = training.build_model(cfg, training.n_actions_of(cfg.task.name, cfg.task.kwargs))
        model.load_state_dict(state["model"])
        _, val_idx, _ = training.trial_data(cfg, demos)
        m = training.measure(training.Stepper(cfg, model, torch.device("cpu")), demos, np.asarray(val_idx),
                             cfg.optim.batch_size)
        cells = [outcomes.rate(m.get(k)) or "n/a" for k in ("decision_accuracy", "expert_attention_mass",
                                                            "recall_attention_mass")]  # n/a: no such step
        print(f"| {r.name} | {r.task} | {r.method} | {r.fraction:g} | {r.seed} | {outcomes.rate(r.success)} | "
              + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
