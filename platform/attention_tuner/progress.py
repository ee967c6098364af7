"""A sweep's progress on the terminal: one line per trial event, instead of Ray Tune's tables.

Tune's own output at its default verbosity prints every trial's whole configuration (about 60 rows) when it
starts and a table of every metric when it ends, and a status table every few seconds: `make run` printed
1,200 lines for 8 trials. This callback prints when a trial starts, each evaluation it reports, and how it
ends (with the error file when it fails); the sweep's final table follows as before. ``sweep.run(verbose=2)``
brings Tune's tables back.
"""

from __future__ import annotations

import time
from typing import Any

from ray import tune


def _key(trial: Any) -> str:
    return str(trial.config.get("trial", {}).get("key", trial))


def _number(value: Any, fmt: str) -> str | None:
    return format(value, fmt) if isinstance(value, int | float) else None


def describe(result: dict[str, Any]) -> str:
    """The few numbers of a result worth a line: epoch (PPO: iteration), success, accuracy; e.g.
    'epoch 5: success 0.42, held-out accuracy 0.91'."""
    step, unit = (result.get("epoch"), "epoch") if "epoch" in result else (result.get("training_iteration"),
                                                                             "iteration")
    parts = [(label, _number(result.get(key), ".2f")) for label, key in (
        ("success", "eval/success_rate"), ("held-out accuracy", "val/accuracy"), ("return", "eval/mean_return"))]
    shown = ", ".join(f"{label} {value}" for label, value in parts if value is not None)
    head = f"{unit} {_number(step, '.0f')}" if _number(step, ".0f") else "result"
    return f"{head}: {shown}" if shown else head


class Progress(tune.Callback):
    """Prints '[mm:ss] KEY started / epoch E: success S, ... / finished / FAILED' lines, flushed at once."""

    def __init__(self, n_trials: int, clock=time.monotonic, out=print):
        self.n_trials, self.clock, self.out = n_trials, clock, out
        self.start = clock()
        self.finished = 0

    def setup(self, *args: Any, **info: Any) -> None:  # each run, a resumed one included: its clock starts now
        self.start = self.clock()

    def _say(self, text: str) -> None:
        minutes, seconds = divmod(int(self.clock() - self.start), 60)
        self.out(f"[{minutes:02d}:{seconds:02d}] {text}", flush=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(f"{_key(trial)} started")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any) -> None:
        # evaluations only (every epoch would be hundreds of lines), not the trial's completion mark, which repeats
        # its last result (`sweep.trainable`): the "finished" line follows
        if "eval/success_rate" in result and not result.get("trial_complete"):
            self._say(f"{_key(trial)} {describe(result)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        last = describe(trial.last_result or {})
        self._say(f"{_key(trial)} finished ({self.finished}/{self.n_trials} done), {last}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        self._say(f"{_key(trial)} FAILED ({self.finished}/{self.n_trials} done); error file: "
                  f"{getattr(trial, 'error_file', None)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(f"{_key(trial)} failed and is retried from its last checkpoint; error file: "
                  f"{getattr(trial, 'error_file', None)}")
