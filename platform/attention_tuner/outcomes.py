"""Outcomes: a trial's result as one row, which arm of its task it belongs to, and how a cell sums up seeds.

One implementation for the two places that group trials: the report (rows from MLflow runs, `report.trial_row`)
and the table a sweep prints at its end (rows from the trials' configurations, `sweep.results_rows`). A row's
params are the trial's settings as MLflow logs them (`sweep.trial_params`, as strings); everything else here is
read from them, so both places split the same trials into the same arms.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import memory_tasks

METRIC = "eval/success_rate"
NOISE_KEYS = ("data.noise.drop", "data.noise.shift", "data.noise.spurious")



@dataclass
class TrialRow:
    """One trial's outcome: where it ran (run_id: its MLflow run, name, status), which arm it is in (task,
    method, fraction, heads, noise, memory; read from ``params``) and its final ``metrics``."""

    run_id: str
    name: str
    status: str
    task: str
    method: str
    fraction: float
    heads: str
    noise: str
    seed: int
    metrics: dict[str, float]
    start_time: int = 0  # ms since the epoch
    commit: str = "?"
    trial: str = ""  # the trial's identity: a digest of its parameters (equal for a re-run of the same trial)
    memory: str = ""  # AttentionTuner's memory-loss settings where its trials differ in them (`arm_settings`)
    params: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def success(self) -> float | None:
        return self.metrics.get(METRIC)

    @property
    def counted(self) -> bool:
        """Finished, with a final success rate that is a number (a NaN, hand-logged or corrupted, is not)."""
        return self.status == "FINISHED" and self.success is not None and math.isfinite(self.success)


def method_of(params: dict[str, str]) -> str:
    """vanilla, attention_tuner or ppo_lstm, from a trial run's params (as TrialConfig.method); "?" for a run
    without params (killed before it logged them)."""
    if not params:
        return "?"
    if params.get("algorithm") == "ppo_lstm":
        return "ppo_lstm"
    weight = float(params.get("memory.weight", "0"))
    fraction = float(params.get("data.annotation_fraction", "1"))
    return "attention_tuner" if weight > 0 and fraction > 0 else "vanilla"


def annotated_fraction(params: dict[str, str]) -> float:
    """The fraction of demonstrations whose pairs reach the memory loss: 0 for the vanilla Transformer."""
    return float(params.get("data.annotation_fraction", "1")) if method_of(params) == "attention_tuner" else 0.0


# Params that never set a trial's arm apart: the seed (what a cell averages over), where and how it ran, how
# often it was evaluated on the way (the final evaluation is the one counted).
NOT_AN_ARM = frozenset({"seed", "device", "checkpoint_every", "eval.num_envs", "eval.every"})
# Params with columns of their own: the method (algorithm, annotated fraction), the heads, the noise. (The memory
# loss's weight, zero for the vanilla method, sets AttentionTuner's arms apart as its other settings do.)
OWN_COLUMNS = frozenset({"algorithm", "data.annotation_fraction", "memory.heads", *NOISE_KEYS})


def _setting_kind(key: str, method: str) -> str | None:
    """Which of a run's settings ``key`` is: "shared" (any method's: the task's parameters, the model, the
    training), "memory" (AttentionTuner's memory loss) or None (no arm of this method, or never an arm)."""
    if key.startswith("label.") or key in NOT_AN_ARM or key in OWN_COLUMNS:
        return None
    if method == "ppo_lstm":  # learns from reward: the Transformer's and the dataset's settings do not apply
        return "shared" if key.startswith(("task.", "eval.", "rl.")) else None
    if key.startswith("rl."):
        return None
    if key.startswith("memory."):
        return "memory" if method == "attention_tuner" else None
    return "shared"


def identity_params(params: dict[str, str]) -> dict[str, str]:
    """The params that make a run the trial it is (two runs with the same are one trial run twice): its method,
    its seed, the settings that apply to its method (`_setting_kind`), AttentionTuner's fraction and heads, and
    the annotation noise of both Transformer methods (a row's noise column, so a vanilla run at another noise
    level sits in another cell of the noise table); not the grid labels (names), not where and how it ran or how
    often it was evaluated on the way (`NOT_AN_ARM`), not the settings its method does not use (a vanilla run's
    memory.heads)."""
    method = method_of(params)
    own = OWN_COLUMNS if method == "attention_tuner" else set(NOISE_KEYS) if method == "vanilla" else set()
    return {"method": method, **{k: v for k, v in params.items()
                                 if k == "seed" or _setting_kind(k, method) is not None or k in own}}


def trial_identity(params: dict[str, str]) -> str:
    """What makes two runs the same trial: a digest of the params that make it that trial (`identity_params`),
    less those at today's default value, so that a field added to the configuration since (logged at its
    default by the newer run, absent from the older) does not make a re-run of a trial another trial, and
    neither does a re-run on another device or with another evaluation schedule. A task parameter left at
    its default is that default (`setting_defaults`), as the arms take it."""
    defaults = setting_defaults(params.get("task.name", "?"))
    settings = sorted((k, v) for k, v in identity_params(params).items() if defaults.get(k) != v)
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]


def arm_settings(params: list[dict[str, str]]) -> list[tuple[str, str]]:
    """Per run (its params as logged; the runs of one report): what sets its arm apart beyond the task, the
    method and the fraction, heads and noise columns, as ("key=value; ...", "key=value; ..."): the settings
    every method has (the task's parameters, the model, the training) and AttentionTuner's memory-loss
    settings, each listing only the keys whose values differ among one method's runs of the task ("" when none
    do: settings that differ between methods alone, such as the RL baseline's own evaluation schedule, are
    each method's configuration). Without it a sweep over, say, Hallway lengths or memory.variant would pool
    its arms into one cell."""
    out = [("", "")] * len(params)
    by_task: dict[str, list[int]] = {}
    for i, p in enumerate(params):
        by_task.setdefault(p.get("task.name", "?"), []).append(i)
    for task, runs in by_task.items():
        defaults = setting_defaults(task)
        keys = set(defaults).union(*(params[i] for i in runs))
        seen: dict[tuple[str, str, str], set[str | None]] = {}
        for i in runs:
            p = params[i]
            method = method_of(p)
            for key in keys:
                kind = _setting_kind(key, method)
                if kind is not None:
                    seen.setdefault((kind, key, method), set()).add(p.get(key, defaults.get(key)))
        varying = sorted({(kind, key) for (kind, key, _), values in seen.items() if len(values) > 1})
        for i in runs:
            p, method = params[i], method_of(params[i])
            parts: dict[str, list[str]] = {"shared": [], "memory": []}
            for kind, key in varying:
                if _setting_kind(key, method) == kind:
                    parts[kind].append(f"{key.removeprefix('task.kwargs.')}={p.get(key, defaults.get(key))}")
            out[i] = ("; ".join(parts["shared"]), "; ".join(parts["memory"]))
    return out


def setting_defaults(task: str) -> dict[str, str]:
    """What a run of ``task`` that does not log a param had it at: the default configuration's params, and the
    task's own parameters at their defaults (``task.kwargs.length``: a run that left Hallway's length at its
    default logs no such param, and is the same arm as one that set it to 30)."""
    try:
        own = {f"task.kwargs.{k}": str(v) for k, v in memory_tasks.parameters(task).items()}
    except (ValueError, KeyError):  # a task this checkout does not have (a run from another version)
        own = {}
    return {**logged_defaults(), **own}


def with_arm_settings(rows: list[TrialRow]) -> list[TrialRow]:
    """The rows with their arms apart (`arm_settings`): the shared settings added to the task's name, e.g.
    "Hallway (length=10)", the memory-loss ones in ``memory``."""
    settings = arm_settings([r.params for r in rows])
    return [dataclasses.replace(r, task=f"{r.task} ({shared})" if shared else r.task, memory=memory)
            for r, (shared, memory) in zip(rows, settings, strict=True)]


def main_memory(rows: list[TrialRow], task: str) -> str:
    """The memory-loss setting of ``task``'s main AttentionTuner arm, among its AttentionTuner rows' (`arm_settings`):
    the default configuration's when some trial used it, else the most common ("" when they do not differ)."""
    used = [r.memory for r in rows if r.task == task and r.method == "attention_tuner"]
    if not used:
        return ""
    defaults = logged_defaults()
    default = [m for m in used if all(defaults.get(k) == v for k, _, v in
                                      (part.partition("=") for part in m.split("; ")))]
    return default[0] if default else max(sorted(set(used)), key=used.count)


def main_heads(rows: list[TrialRow], task: str) -> str | None:
    """The supervised heads of AttentionTuner in ``task``'s main comparison, among its trials without annotation
    noise: of the fully annotated ones (else all), the default configuration's heads when some used them, else
    the most common (None: no such trial)."""
    clean = [r for r in rows if r.task == task and r.method == "attention_tuner" and r.noise == "none"]
    used = [r.heads for r in clean if r.fraction == 1.0] or [r.heads for r in clean]
    if not used:
        return None
    default = logged_defaults()["memory.heads"]
    return default if default in used else max(sorted(set(used)), key=used.count)


def main_arm(rows: list[TrialRow]) -> dict[str, tuple[str | None, str]]:
    """Per task: the supervised heads and the memory-loss setting of its main AttentionTuner arm (`main_heads`,
    `main_memory`)."""
    return {t: (main_heads(rows, t), main_memory(rows, t)) for t in {r.task for r in rows}}


def clean_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The trials without an ablation of the annotations or of the supervised heads: no annotation noise, and
    AttentionTuner on its task's main heads and memory-loss setting (`main_arm`); any annotated fraction."""
    main = main_arm(rows)
    return [r for r in rows if r.noise == "none" and (r.method != "attention_tuner"
                                                      or (r.heads, r.memory) == main[r.task])]


def main_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The trials of the main comparison: vanilla, fully annotated AttentionTuner and the RL baseline; not the
    fraction, noise or (layer, head) arms, which get tables of their own."""
    return [r for r in clean_rows(rows) if r.fraction in (0.0, 1.0)]


def heads_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The (layer, head) ablation: fully annotated AttentionTuner without annotation noise, on its task's main
    memory-loss setting, any heads."""
    main = main_arm(rows)
    return [r for r in rows if r.method == "attention_tuner" and r.fraction == 1.0 and r.noise == "none"
            and r.memory == main[r.task][1]]


def memory_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The memory-loss ablation (its settings other than the heads, e.g. memory.variant or its weight): fully
    annotated AttentionTuner without annotation noise on its task's main heads, any memory-loss setting."""
    main = main_arm(rows)
    return [r for r in rows if r.method == "attention_tuner" and r.fraction == 1.0 and r.noise == "none"
            and r.heads == main[r.task][0]]


def noise_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The annotation-noise ablation: vanilla, and fully annotated AttentionTuner on its task's main heads, at
    every noise level (not the fraction or head arms, which would mix into the same cells)."""
    main = main_arm(rows)
    return [r for r in rows if r.method == "vanilla" or (r.method == "attention_tuner" and r.fraction == 1.0
                                                          and (r.heads, r.memory) == main[r.task])]


def demonstration_rows(rows: list[TrialRow]) -> list[TrialRow]:
    """The Transformer trials (vanilla and AttentionTuner), trained on demonstrations: not the RL baseline."""
    return [r for r in rows if r.method != "ppo_lstm"]


def noise_label(params: dict[str, str]) -> str:
    """The annotation noise of a run's params, e.g. "drop=0.5" or "drop=0.1,shift=2"; "none" without any."""
    noise = ",".join(f"{k.split('.')[-1]}={params[k]}" for k in NOISE_KEYS
                     if params.get(k) not in (None, "0", "0.0"))
    return noise or "none"


def row_from_params(params: dict[str, str], **fields: Any) -> TrialRow:
    """A trial's row from its params as logged (strings); ``fields``: the rest of `TrialRow`, which the params do
    not hold: ``name`` always, then any of run_id, status, metrics, start_time, commit, trial."""
    return TrialRow(task=params.get("task.name", "?"), method=method_of(params),
                    fraction=annotated_fraction(params), heads=params.get("memory.heads", "?"),
                    noise=noise_label(params), seed=int(params.get("seed", 0)), params=params,
                    **{"run_id": "", "status": "", "metrics": {}, **fields})


def heads_text(heads: str) -> str:
    """Supervised heads as logged ("[[1, 0], [1, 1]]", "all") in a table's words: "L1H0 L1H1", "all"."""
    try:
        return " ".join(f"L{a}H{b}" for a, b in ast.literal_eval(heads))
    except (ValueError, TypeError, SyntaxError):  # "all", or not a list of pairs: as logged
        return heads


def arm_label(row: TrialRow, main: tuple[str | None, str]) -> str:
    """What sets an AttentionTuner row apart from its task's main arm (``main``: its heads and memory-loss
    setting, `main_arm`), as the method's suffix in the table a sweep prints, e.g. " (fraction 0.1)",
    " (noise drop=0.5; heads L1H1)", " (memory.weight=1.0)"; "" for the main arm and for the other methods. A
    task with no noise-free AttentionTuner trial has no main heads: the default configuration's stand in."""
    if row.method != "attention_tuner":
        return ""
    heads, memory = main
    parts = []
    if row.fraction < 1:
        parts.append(f"fraction {row.fraction:g}")
    if row.noise != "none":
        parts.append(f"noise {row.noise}")
    if row.heads != (heads if heads is not None else logged_defaults()["memory.heads"]):
        parts.append(f"heads {heads_text(row.heads)}")
    if row.memory != memory:
        parts.append(row.memory)
    return f" ({'; '.join(parts)})" if parts else ""


@functools.cache
def logged_defaults() -> dict[str, str]:
    """Every param of the default configuration as MLflow logs it (built once, not once per run)."""
    from attention_tuner.config import TrialConfig, build, flatten

    return {k: str(v) for k, v in flatten(build(TrialConfig, {})).items()}


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def rate(x: float | None) -> str:
    """A success rate as the tables print it: 3 decimals (200 evaluation episodes move it in steps of 0.005)."""
    return "" if x is None else f"{x:.3f}"


def mean_cell(g: dict[str, Any]) -> str:
    """'mean ± s.e.', 'mean (one seed)' (no standard error to give) or 'n/a' (no finished seed)."""
    if g["n"] == 0:
        return "n/a"
    return f"{rate(g['mean'])} (one seed)" if g["n"] == 1 else f"{rate(g['mean'])} ± {rate(g['se'])}"
