"""Demonstrations: Ray actors roll out the task experts and store annotated episodes as Parquet datasets.

A dataset is a directory::

    <root>/<Task>-<key>/manifest.json         what was asked, what came out, a sha256 per shard
    <root>/<Task>-<key>/shard-00000.parquet   one row per successful episode (symbolic observations)

``key`` is a hash of the request (task id, its keyword arguments, episode count, first seed, schema) and of
the task's code (``memory_tasks.source_digest``: a change to the task or its expert makes a new dataset), so
the same request finds the same directory: a finished dataset is returned as it is, and an interrupted
generation resumes by writing only the shards that are missing. Each shard covers a fixed range of
environment seeds, is written to a temporary name and renamed when complete, so a shard on disk is
always whole. Failed expert episodes are counted in the manifest and left out; shards are added until
the dataset holds the requested number of successful episodes (the last one is cut when loading).

Observations are stored in the symbolic encoding only: in pixel mode they are a pure function of it
(``memory_tasks`` renders them), so a pixel dataset costs what a symbolic one does. Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import memory_tasks
from attention_tuner import __version__
from attention_tuner.config import EVAL_SEED_BASE, SEED_ROOM, demonstration_seeds_fit

SCHEMA_VERSION = 1
# In a dataset folder while a repair (a shard missing or damaged) is under way.
REPAIRING = ".repairing"
# Restarts of a generation worker that dies (killed, its node lost), over the worker's life (the pool is kept
# for the next dataset of the process), before a generation gives up.
WORKER_RESTARTS = 4
# Seeds an expert may fail on, every one, before a generation gives up on the task's parameters.
NO_SUCCESS_SEEDS = 1000
SHARD_EPISODES = SEED_ROOM  # episodes (seeds) per shard: small enough to resume cheaply, large enough to compress well
MANIFEST = "manifest.json"
STEPS_KEY = "rolled_out_steps"  # a shard's Parquet metadata: environment steps of all its seeds' rollouts

SCHEMA = pa.schema(
    [
        ("seed", pa.int64()),
        ("length", pa.int32()),
        ("success", pa.bool_()),
        ("return", pa.float32()),
        ("obs", pa.binary()),  # (length, 7, 7, 3) uint8, C order
        ("actions", pa.list_(pa.int8())),
        ("rewards", pa.list_(pa.float32())),
        ("pair_p", pa.list_(pa.int32())),  # memory dependency pairs (p, q) in timestep space
        ("pair_q", pa.list_(pa.int32())),
    ]
)


class DatasetError(ValueError):
    """A problem with a dataset on disk: one line naming the file."""


@dataclass(frozen=True)
class Request:
    """What to generate: ``episodes`` successful expert episodes from seeds ``seed, seed + 1, ...``."""

    task: str
    kwargs: dict[str, Any]
    episodes: int
    seed: int = 0

    @property
    def env_id(self) -> str:
        return memory_tasks.resolve_task(self.task)

    @property
    def plain_kwargs(self) -> dict[str, Any]:
        """The parameters without those set to the task's default: ``Hallway {}`` and ``Hallway {length: 30}``
        are one task, so one dataset (one key, one manifest)."""
        defaults = memory_tasks.parameters(self.env_id)
        return {k: v for k, v in self.kwargs.items()
                if not (k in defaults and type(v) is type(defaults[k]) and v == defaults[k])}

    @property
    def key(self) -> str:
        body = json.dumps(
            {"env_id": self.env_id, "kwargs": self.plain_kwargs, "episodes": self.episodes, "seed": self.seed,
             "schema": SCHEMA_VERSION, "code": memory_tasks.source_digest(self.env_id)},
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def directory(self, root: str | Path) -> Path:
        return dataset_directory(root, self.env_id, self.key)


def dataset_directory(root: str | Path, task: str, key: str) -> Path:
    """Where the dataset of ``task`` with request key ``key`` lives under ``root``."""
    short = memory_tasks.resolve_task(task).removeprefix("memory_tasks/").removesuffix("-v0")
    return Path(root).resolve() / f"{short}-{key}"


def check_request(req: Request) -> Request:
    """Reject bad requests before anything starts (one-line ValueErrors naming the field)."""
    req.env_id  # noqa: B018 - raises ValueError for an unknown task
    if isinstance(req.episodes, bool) or not isinstance(req.episodes, int) or req.episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {req.episodes!r}")
    if isinstance(req.seed, bool) or not isinstance(req.seed, int) or req.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {req.seed!r}")
    # Room for failed episodes (a shard at a time) must stay clear of the evaluation seeds.
    if not demonstration_seeds_fit(req.seed, req.episodes):
        raise ValueError(f"seed + 2 x episodes + {SEED_ROOM} (room for failed episodes) must stay below "
                         f"{EVAL_SEED_BASE}, where the evaluation seeds start; got seed {req.seed} and episodes "
                         f"{req.episodes}")
    try:
        memory_tasks.make(req.task, **req.kwargs).close()  # unknown or bad task parameters raise here
    except MemoryError:
        raise ValueError(f"{req.task} with {req.kwargs} does not fit in memory (a size too large?)") from None
    return req


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def shard_seeds(req: Request, index: int) -> tuple[int, int]:
    start = req.seed + index * SHARD_EPISODES
    return start, start + SHARD_EPISODES


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_file(path: Path) -> None:
    """Force a written file's bytes to disk (before it is renamed into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path: Path) -> None:
    """Force a folder's entries (a rename into it) to disk; best effort: some file systems refuse it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_target(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer to fill; renamed to ``path`` once the block succeeds.

    Readers see the previous file or the new one, never a part of one. If the block (or the rename) fails
    (a full disk, an exception in the writer), the temporary is removed and ``path`` is left as it was.
    A process killed half-way leaves only its hidden temporary (``.<name>.<host>.<pid>.<token><suffix>``), which no reader
    takes for the file.
    """
    final = Path(path)
    # host, process and a random token: writers on two machines sharing the folder (same pid) never collide
    tmp = final.with_name(f".{final.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, final)
        fsync_folder(final.parent)  # the rename itself survives a crash
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_target(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


# ----------------------------------------------------------------------------------- one shard, anywhere


def episodes_table(episodes: Iterable[memory_tasks.Episode]) -> pa.Table:
    rows: dict[str, list] = {name: [] for name in SCHEMA.names}
    for ep in episodes:
        rows["seed"].append(ep.seed)
        rows["length"].append(ep.length)
        rows["success"].append(ep.success)
        rows["return"].append(ep.total_return)
        rows["obs"].append(np.ascontiguousarray(ep.symbolic, dtype=np.uint8).tobytes())
        rows["actions"].append(ep.actions.astype(np.int8))
        rows["rewards"].append(ep.rewards.astype(np.float32))
        rows["pair_p"].append(ep.pairs[:, 0].astype(np.int32))
        rows["pair_q"].append(ep.pairs[:, 1].astype(np.int32))
    return pa.Table.from_pydict(rows, schema=SCHEMA)


def write_shard(env_id: str, kwargs: dict[str, Any], seeds: tuple[int, int], path: str) -> dict[str, Any]:
    """Roll out the expert on ``range(*seeds)``, write the successful episodes to ``path`` atomically."""
    env = memory_tasks.make(env_id, obs_mode="symbolic", **kwargs)
    kept, failed, steps = [], 0, 0
    for seed in range(*seeds):
        ep = memory_tasks.rollout(env, seed)
        steps += ep.length
        if ep.success:
            kept.append(ep)
        else:
            failed += 1
    env.close()
    final = Path(path)
    # the steps of every rollout, failed ones included, for a shard found again by a resumed generation
    table = episodes_table(kept).replace_schema_metadata({STEPS_KEY: str(steps)})
    del kept  # the episodes' arrays are freed before writing: only the Arrow columns stay until the shard is done
    with atomic_target(final) as tmp:
        pq.write_table(table, tmp, compression="zstd", compression_level=3)
    return shard_entry(final, seeds, table.num_rows, failed, steps)


def shard_entry(path: Path, seeds: tuple[int, int], episodes: int, failed: int, steps: int) -> dict[str, Any]:
    return {"file": path.name, "seeds": list(seeds), "episodes": episodes, "failed": failed, "steps": steps,
            "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def existing_shard(path: Path, seeds: tuple[int, int], sha256: str | None = None) -> dict[str, Any] | None:
    """The entry of a shard a previous (interrupted) run finished, or None if it must be (re)written: also when
    a manifest recorded its checksum (``sha256``) and the file no longer matches it."""
    if not path.is_file():
        return None
    if sha256 is not None and sha256_of(path) != sha256:  # damaged since it was written
        return None
    try:
        table = pq.read_table(path, columns=["length", "seed"])
    except Exception:  # a damaged leftover: regenerate it
        return None
    seeds_in = table.column("seed").to_numpy()
    if table.num_rows and (seeds_in.min() < seeds[0] or seeds_in.max() >= seeds[1]):
        return None
    kept = table.num_rows
    recorded = (table.schema.metadata or {}).get(STEPS_KEY.encode())
    steps = int(recorded) if recorded is not None else int(table.column("length").to_numpy().sum())  # older shards
    return shard_entry(path, seeds, kept, (seeds[1] - seeds[0]) - kept, steps)


# -------------------------------------------------------------------------------------- the Ray actors


def _shard_worker_class():
    import ray

    @ray.remote(num_cpus=0.5, max_restarts=WORKER_RESTARTS, max_task_retries=WORKER_RESTARTS)
    class ShardWorker:
        """Rolls out the expert on one seed range at a time; a killed worker is restarted and its range redone
        (WORKER_RESTARTS times: a worker that dies every time, e.g. out of memory, ends the generation)."""

        def write(self, env_id: str, kwargs: dict[str, Any], seeds: tuple[int, int], path: str) -> dict[str, Any]:
            return write_shard(env_id, kwargs, seeds, path)

        def pid(self) -> int:
            return os.getpid()

    return ShardWorker


def default_actors() -> int:
    import ray

    return max(1, int(ray.available_resources().get("CPU", 1.0)))  # one actor per free CPU (each asks for 0.5)


class Progress:
    """A one-line progress bar on stderr: episodes done, rate, time left."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.done, self.start, self.last = 0, time.perf_counter(), 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self.last > 0.5 or self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            end = "\n" if self.done >= self.total else ""
            print(f"\r{self.label}: {self.done}/{self.total} episodes  {rate:6.1f} ep/s  ~{left:4.0f}s left ",
                  end=end, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- generation


def generate(
    task: str,
    kwargs: dict[str, Any] | None = None,
    episodes: int = 1000,
    seed: int = 0,
    root: str | Path = "datasets",
    actors: int | None = None,
    progress: bool = True,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
    on_actors: Callable[[list[Any]], None] | None = None,
) -> Path:
    """Generate (or find) a dataset and return its directory.

    ``actors=0`` rolls out in this process (no Ray); otherwise a pool of Ray actors (``None``: sized to the
    CPUs Ray has) writes shards in parallel. Ray is started locally if it is not running. ``on_shard`` is
    called with each finished shard's entry, ``on_actors`` with the actor handles once they exist.
    """
    req = check_request(Request(task, dict(kwargs or {}), episodes, seed))
    out = req.directory(root)
    recorded: dict[str, str] = {}  # shard file -> the sha256 its manifest recorded
    if (out / MANIFEST).is_file():
        manifest = read_manifest(out)  # a manifest that cannot be read is a DatasetError
        if not (out / REPAIRING).exists() and shards_in_place(out, manifest):
            return out
        # a shard deleted or cut short: write it again (the same seeds give the same shard), reusing the others
        # that still match their recorded checksum; the manifest stays until the new one replaces it, and the
        # REPAIRING mark until then too, so an interrupted repair is finished (checksums checked) next time
        recorded = {str(e["file"]): str(e["sha256"]) for e in manifest["shards"]}
        (out / REPAIRING).touch()
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[int, dict[str, Any]] = {}
    bar = Progress(req.episodes, f"generate {req.env_id}", progress)

    def collected() -> int:
        return sum(e["episodes"] for e in entries.values())

    def tried_so_far() -> int:
        return sum(e["episodes"] + e["failed"] for e in entries.values())

    def record(index: int, entry: dict[str, Any]) -> None:
        entries[index] = entry
        bar.update(min(entry["episodes"], max(req.episodes - (collected() - entry["episodes"]), 0)))
        if on_shard:
            on_shard(entry)

    planned = math.ceil(req.episodes / SHARD_EPISODES)
    next_index = 0
    pool = _Pool.get(actors) if actors != 0 else None
    if pool is not None and on_actors is not None:
        on_actors(pool.actors)
    while collected() < req.episodes:
        # Plan enough shards for what is missing, assuming the failure rate seen so far.
        todo = list(range(next_index, max(planned, next_index + 1)))
        next_index = todo[-1] + 1
        missing = []
        for i in todo:
            if shard_seeds(req, i)[1] > EVAL_SEED_BASE:
                raise DatasetError(
                    f"the {req.env_id} expert succeeds too rarely ({collected()} of {tried_so_far()} seeds) for "
                    f"{req.episodes} episodes from seed {req.seed}: the seeds needed reach {EVAL_SEED_BASE}, where "
                    f"the evaluation seeds start; ask for fewer episodes or a lower seed")
            path = out / shard_name(i)
            entry = existing_shard(path, shard_seeds(req, i), recorded.get(path.name))
            if entry is not None:
                record(i, entry)
            else:
                missing.append(i)
        jobs = [(req.env_id, req.kwargs, shard_seeds(req, i), str(out / shard_name(i))) for i in missing]
        if pool is None:
            for i, job in zip(missing, jobs, strict=True):
                record(i, write_shard(*job))
        else:
            for i, entry in pool.run(missing, jobs):
                record(i, entry)
        ok, tried = collected(), tried_so_far()
        if ok == 0 and tried >= NO_SUCCESS_SEEDS:
            raise DatasetError(f"the {req.env_id} expert failed on all {tried} seeds tried with "
                               f"{req.kwargs or 'the default parameters'}: "
                               "no demonstration can be recorded (a step limit too tight for the task?)")
        rate = ok / max(tried, 1)
        # no success yet: one shard more at a time, so a task the expert cannot solve stops after NO_SUCCESS_SEEDS
        planned = next_index + (math.ceil((req.episodes - ok) / max(rate * SHARD_EPISODES, 1)) if ok else 1)
    write_manifest(out, req, [entries[i] for i in sorted(entries)])
    (out / REPAIRING).unlink(missing_ok=True)
    return out


class _Pool:
    """Shard workers on the local or connected Ray cluster, kept for the next generation in this process.

    Starting a worker costs about a second (imports); a sweep generates several datasets in a row, so the
    workers are reused while the Ray session and the requested size stay the same.
    """

    _cached: _Pool | None = None

    def __init__(self, n: int, job: str):
        worker = _shard_worker_class()
        self.job = job
        self.actors = [worker.remote() for _ in range(max(1, n))]

    @classmethod
    def get(cls, actors: int | None) -> _Pool:
        import ray

        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        n = actors if actors is not None else default_actors()
        job = ray.get_runtime_context().get_job_id()
        cached = cls._cached
        if cached is None or cached.job != job or len(cached.actors) != max(1, n):
            if cached is not None and cached.job == job:
                cached.close()
            cls._cached = cls(n, job)
        return cls._cached  # type: ignore[return-value]

    def run(self, indices: list[int], jobs: list[tuple]) -> Iterable[tuple[int, dict[str, Any]]]:
        import ray

        queue = list(zip(indices, jobs, strict=True))
        paths = {i: job[3] for i, job in queue}
        running: dict[Any, tuple[int, Any]] = {}
        idle = list(self.actors)
        while queue or running:
            while queue and idle:
                i, job = queue.pop(0)
                actor = idle.pop()
                running[actor.write.remote(*job)] = (i, actor)
            done, _ = ray.wait(list(running), num_returns=1)
            i, actor = running.pop(done[0])
            idle.append(actor)
            try:
                entry = ray.get(done[0])
            except ray.exceptions.RayActorError as e:  # died more than WORKER_RESTARTS times
                self.close()  # a dead worker must not serve the next generation
                raise DatasetError(f"{paths[i]}: its generation worker died, after {WORKER_RESTARTS} restarts "
                                   f"already (out of memory? nodes lost?): {str(e).strip().splitlines()[0][:200]}"
                                   ) from None
            except ray.exceptions.RayTaskError as e:  # a worker's own exception (a full disk, a bad path):
                cause = e.cause if isinstance(e.cause, BaseException) else None  # raised as itself, so the
                if cause is None:  # user sees its one line, not Ray's header
                    raise
                raise cause from None
            yield i, entry

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        if _Pool._cached is self:
            _Pool._cached = None


def release_workers() -> None:
    """Stop the kept generation workers (they hold CPUs that training trials need)."""
    if _Pool._cached is not None:
        _Pool._cached.close()


def write_manifest(out: Path, req: Request, shards: list[dict[str, Any]]) -> None:
    kept = sum(s["episodes"] for s in shards)
    failed = sum(s["failed"] for s in shards)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "package_version": __version__,
        "task": req.env_id,
        "kwargs": req.plain_kwargs,
        "request": {"episodes": req.episodes, "seed": req.seed, "key": req.key},
        "task_code": memory_tasks.source_digest(req.env_id),
        "observations": "symbolic (7, 7, 3) uint8; pixels are rendered from them when loading",
        "episodes": req.episodes,
        "episodes_on_disk": kept,
        "failed": failed,
        "expert_success_rate": kept / max(kept + failed, 1),
        "seed_range": [req.seed, shards[-1]["seeds"][1] if shards else req.seed],
        "shards": shards,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


MANIFEST_KEYS = ("task", "kwargs", "episodes", "failed", "expert_success_rate", "shards")
SHARD_KEYS = {"file", "seeds", "episodes", "failed", "bytes", "sha256"}


def read_manifest(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    m = p / MANIFEST
    if not m.is_file():
        raise DatasetError(f"{m}: missing manifest (not a dataset, or its generation did not finish)")
    try:
        manifest = json.loads(m.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{m}: manifest is not valid JSON ({e.msg}; delete {p} to generate it again)") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{m}: manifest is not a JSON object (delete {p} to generate it again)")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{m}: schema version {manifest.get('schema_version')!r}, this version reads {SCHEMA_VERSION}")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise DatasetError(f"{m}: manifest lacks {', '.join(missing)}")
    shards = manifest["shards"]
    if not isinstance(shards, list) or not all(isinstance(e, dict) and SHARD_KEYS <= set(e) for e in shards):
        raise DatasetError(f"{m}: manifest's shards must be a list of entries with {', '.join(sorted(SHARD_KEYS))}")
    return manifest


def shards_in_place(path: str | Path, manifest: dict[str, Any]) -> bool:
    """Whether every shard a dataset's manifest lists is there at its recorded size (cheap: no checksums,
    which `datasets.load` verifies)."""
    for entry in manifest["shards"]:
        file = Path(path) / str(entry["file"])
        if not file.is_file() or file.stat().st_size != entry["bytes"]:
            return False
    return True


def list_datasets(root: str | Path) -> list[dict[str, Any]]:
    """What each dataset folder under ``root`` holds (its folder names only a digest): task, parameters,
    episodes, seeds, size, and a state: ready; "stale" when its task's code changed since (`train` and `sweep`
    generate a new one; a resumed run keeps the old); "unfinished" (no manifest yet, or a repair under way);
    "damaged" (a shard missing or cut short); "unreadable" (a manifest this version cannot read)."""
    import memory_tasks

    out = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []:
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        entry: dict[str, Any] = {"folder": folder.name, "task": "?", "kwargs": None, "episodes": None, "seeds": "?",
                                 "mb": size / 1e6, "state": "unfinished"}
        if not (folder / MANIFEST).is_file():
            if any(folder.glob("shard-*.parquet")):  # a generation that did not finish: its folder names the task
                prefix = folder.name.rsplit("-", 1)[0]
                out.append({**entry, "task": prefix if prefix in memory_tasks.TASKS else "?"})
            continue
        try:
            m = read_manifest(folder)
        except DatasetError as e:
            out.append({**entry, "state": f"unreadable ({str(e).rsplit(': ', 1)[-1]})"})
            continue
        task = str(m["task"])
        with contextlib.suppress(ValueError):  # a task this version does not know keeps its id
            task = memory_tasks.short_name(task)
        state = "unfinished" if (folder / REPAIRING).exists() else "ready"
        if state == "ready" and not shards_in_place(folder, m):
            state = "damaged (a shard missing or cut short: generate or train writes it again)"
        if state == "ready" and task in memory_tasks.TASKS and m.get("task_code") != memory_tasks.source_digest(task):
            state = "stale"
        lo, hi = m.get("seed_range", ["?", "?"])  # the end not included
        seeds = f"{lo}-{hi - 1}" if isinstance(lo, int) and isinstance(hi, int) and hi > lo else f"{lo}-{hi}"
        out.append({**entry, "task": task, "kwargs": m.get("kwargs", {}), "episodes": m.get("episodes", 0),
                    "seeds": seeds, "state": state})
    return out
