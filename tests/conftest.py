import contextlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session", autouse=True)
def settled_cpu_math():
    """As training and evaluation do before their first product (`model.settle_cpu_math`): tests that compare
    two computations to 1e-6 would otherwise see the first product of the process summed in another order."""
    from attention_tuner.model import settle_cpu_math

    settle_cpu_math()


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` for the block, then back to what they were."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_local():
    """One small local Ray instance for the tests that need it; only what we started is shut down."""
    import ray

    started = not ray.is_initialized()
    if started:
        # address="local": a new instance, never $RAY_ADDRESS or a cluster `ray start` left on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, ray_local):
    """sweeps/tiny.py run once on the local Ray: (tracking URI, rows, folder)."""
    from pathlib import Path

    from attention_tuner import sweep

    folder = tmp_path_factory.mktemp("tiny_sweep")
    uri = f"sqlite:///{folder}/mlruns.db"
    spec = sweep.load_sweep(Path(__file__).resolve().parents[1] / "sweeps" / "tiny.py")
    rows = sweep.run(spec, tracking_uri=uri, storage=str(folder / "store"), verbose=0)
    return uri, rows, folder


def recorded_checkpoints(store: Path) -> list[Path]:
    """Trial checkpoints Tune has taken in: its experiment state was saved after them (the trial writes the
    folder first; the driver then records it, and saves its state at once, as num_to_keep is set). A retry or
    a resume restores these; a checkpoint folder alone may not be recorded yet."""
    found = []
    for ckpt in store.glob("*/tune/*/checkpoint_*"):
        states = list(ckpt.parent.parent.glob("experiment_state-*.json"))
        if states and max(s.stat().st_mtime for s in states) > ckpt.stat().st_mtime:
            found.append(ckpt)
    return found
