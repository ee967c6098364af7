"""Trial configuration: frozen, typed, nested dataclasses, loaded from YAML or dicts, changed by dotted keys.

Everything a result depends on is in :class:`TrialConfig` and is logged. Overrides name fields with
dotted keys (``optim.lr=1e-3``); an unknown key or a value of the wrong type is a :class:`ConfigError`
with a one-line message, so a sweep can only name real fields.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from memory_tasks.core import short_repr

# What a trial trains: the Transformer on demonstrations, or the RL baseline (rl.py) on reward alone.
ALGORITHMS = ("transformer", "ppo_lstm")
PRECISIONS = ("auto", "fp32", "bf16")  # optim.precision
MEMORY_VARIANTS = ("reference", "decision_rows")  # memory.variant: the rows the memory loss covers (losses.py)
MEMORY_SPLITS = ("copy", "even")  # memory.split: how the pairs reach several heads (losses.py)

# Environment seeds at or above this are reserved for evaluation; training data never uses them.
EVAL_SEED_BASE = 1_000_000_000


# Room for one more shard of seeds when checking a request (demos.SHARD_EPISODES, the shard size, is this).
SEED_ROOM = 250


def demonstration_seeds_fit(seed: int, episodes: int) -> bool:
    """Whether a dataset of ``episodes`` from ``seed`` stays clear of the evaluation seeds with room for failed
    episodes (twice the episodes, and SEED_ROOM more). The generator stops with a one-line error should an
    expert fail so often that it needs more."""
    return seed + 2 * episodes + SEED_ROOM < EVAL_SEED_BASE


class ConfigError(ValueError):
    """A user mistake in a configuration: one line, naming the key."""


@dataclass(frozen=True)
class TaskConfig:
    name: str = "Hallway"
    """Task: a name in memory_tasks.TASKS (Hallway, Ordering, Counting, MortarMayhem, MysteryPath, and any task
    registered since), or its gymnasium id."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Size parameters of the task (e.g. {length: 30}); defaults are the paper's."""
    obs_mode: str = "symbolic"
    """Observation mode the model sees: symbolic (7x7x3 codes) or pixels (84x84 RGB)."""


@dataclass(frozen=True)
class NoiseConfig:
    drop: float = 0.0
    """Share of the non-self pairs dropped when loading."""
    shift: int = 0
    """Each non-self pair's recalled step is moved by a uniform offset in [-shift, shift] (kept causal)."""
    spurious: float = 0.0
    """Spurious pairs added per real non-self pair, pointing at random earlier steps."""


@dataclass(frozen=True)
class DataConfig:
    episodes: int = 4000
    """Number of successful expert episodes in the dataset."""
    seed: int = 0
    """First environment seed of the dataset's seed range."""
    annotation_fraction: float = 1.0
    """Share of training episodes whose memory pairs are kept (nested subsets across fractions)."""
    val_fraction: float = 0.1
    """Share of episodes held out to measure action accuracy on unseen demonstrations."""
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    """Annotation noise applied when loading (never changes the stored data)."""


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 512
    """Width of the Transformer."""
    n_layers: int = 4
    """Number of Transformer layers."""
    n_heads: int = 2
    """Attention heads per layer."""
    d_ff: int = 2048
    """Hidden width of the feed-forward blocks."""
    dropout: float = 0.1
    """Dropout after the embeddings and at the end of each feed-forward block (none on attention, as the paper's code)."""


@dataclass(frozen=True)
class MemoryConfig:
    weight: float = 10.0
    """Weight of the memory loss; 0 gives the vanilla Transformer."""
    heads: tuple[tuple[int, int], ...] | str = ((0, 0),)
    """Supervised heads as 0-based (layer, head) pairs, or "all"."""
    variant: str = "reference"
    """reference: the paper's mask over the whole real-token block; decision_rows: observation rows only."""
    split: str = "copy"
    """copy: every supervised head gets the expert matrix; even: the pairs are spread over the heads."""


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    """Adam learning rate."""
    batch_size: int = 64
    """Episodes per batch."""
    bucket_by_length: bool = True
    """Put episodes of similar length in one batch (shuffled runs of 8 batches, each sorted by length), so little
    compute goes to padding. Each loss is one mean per batch, so this also gives the steps of short episodes
    more weight than random batches would (Hallway-30: the shortest third of the episodes carry 32% of the
    action loss instead of 14%, see bench/batch_weighting.py). False: random batches, as the paper's code."""
    epochs: int = 300
    """Passes over the training episodes."""
    grad_clip: float = 0.0
    """Clip the gradient norm to this value; 0 disables clipping."""
    time_budget_s: float = 0.0
    """Stop after the first epoch that ends past this many seconds of training (0: no limit)."""
    precision: str = "auto"
    """Training arithmetic: auto (bfloat16 mixed precision on GPUs that have it, Ampere and later; float32 on
    older GPUs and on the CPU), fp32, or bf16
    (bfloat16 mixed precision on either: on CPUs with AMX, e.g. Intel Xeon 4th generation and later, about 3x
    faster at the paper's size, see docs/performance.md; slower on CPUs without bfloat16 units). Evaluation
    decodes in float32."""


@dataclass(frozen=True)
class EvalConfig:
    episodes: int = 100
    """Closed-loop evaluation episodes on held-out seeds."""
    every: int = 10
    """Evaluate every this many epochs (and always after the last)."""
    num_envs: int = 32
    """Environments stepped together in one batch."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Task parameters to override at evaluation only (length generalisation, e.g. {length: 60})."""


@dataclass(frozen=True)
class RLConfig:
    """PPO with an LSTM (RLlib's new API stack) for trials with ``algorithm: ppo_lstm``: no demonstrations,
    reward only. ``eval.every`` and ``checkpoint_every`` count PPO iterations for these trials."""

    env_steps: int = 1_000_000
    """Environment-step budget: training stops after the first iteration that reaches it."""
    num_envs: int = 16
    """Environments the in-process env runner steps together."""
    rollout_steps: int = 2048
    """Environment steps collected per PPO iteration (the train batch)."""
    minibatch_size: int = 256
    """Steps per SGD minibatch (cut into sequences of at most max_seq_len)."""
    num_epochs: int = 4
    """SGD passes over each train batch."""
    lr: float = 3e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """Lambda of generalised advantage estimation."""
    clip: float = 0.2
    """PPO's clip range of the probability ratio."""
    entropy_coeff: float = 0.01
    """Weight of the entropy bonus."""
    vf_coeff: float = 0.5
    """Weight of the value-function loss."""
    grad_clip: float = 0.5
    """Clip the gradient norm to this value; 0 disables clipping."""
    encoder: str = "auto"
    """Observation encoder before the LSTM: mlp (the flattened symbolic one-hot through a hidden layer of
    lstm_cell_size * 2 units; symbolic only), cnn (the Transformer's encoder convolutions), or auto (mlp for
    symbolic observations, cnn for pixels)."""
    lstm_cell_size: int = 128
    """Hidden size of the LSTM."""
    max_seq_len: int = 64
    """Truncated backpropagation through time: sequence length (steps) of the train batch."""


@dataclass(frozen=True)
class TrialConfig:
    algorithm: str = "transformer"
    """transformer: behavioural cloning of the demonstrations (the vanilla Transformer when memory.weight is 0,
    else AttentionTuner); ppo_lstm: PPO with an LSTM from reward alone (RLlib: .venv/bin/pip install -e '.[rllib]')."""
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    """Settings of algorithm ppo_lstm (unused by the Transformer)."""
    seed: int = 0
    """Seed of model initialisation, data order, annotation subset and noise."""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    checkpoint_every: int = 5
    """Save a checkpoint every this many epochs (and after the last)."""

    @property
    def method(self) -> str:
        """vanilla, attention_tuner or ppo_lstm: what the reports compare."""
        if self.algorithm == "ppo_lstm":
            return "ppo_lstm"
        return "attention_tuner" if self.memory.weight > 0 and self.data.annotation_fraction > 0 else "vanilla"

    @property
    def eval_task_kwargs(self) -> dict[str, Any]:
        """The task parameters the closed-loop evaluation plays: task.kwargs, then eval.kwargs over them."""
        return {**self.task.kwargs, **self.eval.kwargs}


# ---------------------------------------------------------------------------------------------- building


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# a number in exponent notation ('1e-3', '2.5e3'), which YAML 1.1 reads as text unless it has a dot and a sign
_EXPONENT_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+")


def parse_scalar(text: str) -> Any:
    """A command-line value without a type to go by (a task parameter): YAML's reading of it (numbers,
    booleans, text), with '1e-3' a number too."""
    if _EXPONENT_NUMBER.fullmatch(text.strip()):
        return float(text)
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def _parse_text(text: str, hint: Any) -> Any:
    """A command-line string -> a value: numbers as numbers (YAML alone reads '1e-3' as text), else YAML."""
    if hint in (int, float):
        try:
            return int(text) if hint is int else float(text)
        except ValueError:
            return text
    return parse_scalar(text)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type hint ``hint``; convert YAML-ish strings; raise ConfigError."""
    origin = typing.get_origin(hint)
    value = _plain_scalar(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {short_repr(value)}")
        return build(hint, value, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _coerce(key, value, option)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {short_repr(value)} is not a valid value ({'; '.join(errors)})")
    if isinstance(value, str) and hint is not str:
        value = _parse_text(value, hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is dict:
        if isinstance(value, dict):
            return {k: _plain_scalar(v) for k, v in value.items()}
    elif origin is tuple:
        if isinstance(value, list | tuple):
            args = typing.get_args(hint)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
            if len(args) == len(value):
                return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    elif hint is Any:
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{key}: expected {name}, got {short_repr(value)}")


def _plain_scalar(value: Any) -> Any:
    """A NumPy scalar (a sweep axis made with np.arange, say) as the Python number it holds: configs are saved
    as JSON and YAML."""
    return value.item() if isinstance(value, np.generic) else value


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (nested) mapping; unknown keys and wrong types are ConfigErrors."""
    hints = _hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        known = ", ".join(hints)
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known: {known})")
    kwargs = {k: _coerce(f"{prefix}{k}", v, hints[k]) for k, v in values.items()}
    return validate(cls(**kwargs)) if cls is TrialConfig else cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict (tuples as lists) that ``build`` turns back into the same config."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def flatten(cfg: Any) -> dict[str, Any]:
    """Dotted keys -> leaf values, for MLflow params (task kwargs flattened too)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(f"{prefix}{k}.", x)
        else:
            out[prefix[:-1]] = v

    walk("", to_dict(cfg))
    return out


def field_docs() -> dict[str, str]:
    """Dotted key -> the docstring under its field in this file ('optim.lr' -> 'Adam learning rate.')."""
    import ast
    import inspect

    classes = {node.name: node for node in ast.parse(inspect.getsource(sys.modules[__name__])).body
               if isinstance(node, ast.ClassDef)}

    def docs(cls: type, prefix: str) -> dict[str, str]:
        body, out = classes[cls.__name__].body, {}
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        for node, after in zip(body, body[1:] + [None], strict=True):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            name = node.target.id
            sub = getattr(sys.modules[__name__], str(kinds.get(name)), None)  # a section: a config class here
            if dataclasses.is_dataclass(sub) and isinstance(sub, type):
                out.update(docs(sub, f"{prefix}{name}."))
            elif isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                out[prefix + name] = " ".join(str(after.value.value).split())
        return out

    return docs(TrialConfig, "")


def yaml_value(value: Any) -> str:
    """One value as YAML flow text that reads back as the same value (1e-05 as 1.0e-05, which YAML reads as a
    number, not as the text JSON's 1e-05 would be)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=sys.maxsize).strip()
    return text[: -len("...")].strip() if text.endswith("\n...") else text


def commented_yaml(cfg: TrialConfig) -> str:
    """The configuration as YAML that `load_yaml` reads back to ``cfg``, each key with its docstring."""
    docs, lines = field_docs(), []

    def walk(values: dict[str, Any], prefix: str, indent: str) -> None:
        for key, value in values.items():
            doc = docs.get(prefix + key, "")
            comment = f"  # {doc}" if doc else ""
            if isinstance(value, dict) and key != "kwargs":
                lines.append(f"{indent}{key}:")
                walk(value, f"{prefix}{key}.", indent + "  ")
            else:
                lines.append(f"{indent}{key}: {yaml_value(value)}{comment}")

    walk(to_dict(cfg), "", "")
    return "\n".join(lines) + "\n"


def set_dotted(values: dict[str, Any], key: str, value: Any, _full: str = "") -> dict[str, Any]:
    """Return a copy of the nested mapping with ``key`` (dotted) set to ``value``."""
    full = _full or key
    head, _, rest = key.partition(".")
    out = dict(values)
    inner = out.get(head)
    if rest and inner is not None and not isinstance(inner, dict):
        shown = full[: len(full) - len(rest) - 1]
        raise ConfigError(f"{full}: {shown} is a value ({inner!r}), not a section with keys")
    if rest and head != "kwargs":
        out[head] = set_dotted(dict(inner or {}), rest, value, full)
    elif rest:  # task.kwargs.length=10: free-form mapping, the task itself validates names
        parsed = _parse_text(value, Any) if isinstance(value, str) else value
        out[head] = {**dict(inner or {}), rest: parsed}
    else:
        out[head] = value
    return out


def apply_overrides(cfg: TrialConfig, overrides: dict[str, Any]) -> TrialConfig:
    values = to_dict(cfg)
    for key, value in overrides.items():
        values = set_dotted(values, key, value)
    return build(TrialConfig, values)


def parse_assignments(items: list[str], what: str = "--set") -> dict[str, Any]:
    """['optim.lr=1e-3', ...] -> {'optim.lr': '1e-3'}; a missing '=' is a ConfigError."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r}: expected key=value")
        out[key.strip()] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML trial configuration file (not yet checked against the configuration's fields)."""
    if not str(path).strip():
        raise ConfigError("config file: empty path")
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {p}: is a folder, not a YAML file")
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (expected a YAML trial configuration)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return values


def load_yaml(path: str | Path) -> TrialConfig:
    """The trial configuration of a YAML file: its keys over the defaults."""
    return build(TrialConfig, read_yaml(path))


# ------------------------------------------------------------------------------------------- validation


def supervised_heads(cfg: TrialConfig) -> tuple[tuple[int, int], ...]:
    """The (layer, head) pairs the memory loss trains; empty for the vanilla Transformer (memory.weight 0, or no
    demonstration annotated: data.annotation_fraction 0), whose heads all run fused."""
    return memory_heads(cfg) if cfg.method == "attention_tuner" else ()


def memory_heads(cfg: TrialConfig) -> tuple[tuple[int, int], ...]:
    """The (layer, head) pairs of ``memory.heads``, whether or not a loss trains them (the vanilla
    Transformer's are measured: where they look)."""
    if cfg.memory.heads == "all":
        return tuple((layer, h) for layer in range(cfg.model.n_layers) for h in range(cfg.model.n_heads))
    return tuple(cfg.memory.heads)  # type: ignore[arg-type]


# Keyword arguments of every task that the platform sets itself (never a task parameter of a dataset or trial).
RESERVED_TASK_KWARGS = ("obs_mode", "render_mode")


def check_task_kwargs(task: str, kwargs: dict[str, Any], what: str) -> None:
    """Build the task once with ``kwargs`` (milliseconds): an unknown name, a wrong type or a value out of range
    is a one-line ConfigError naming ``what`` (e.g. ``task.kwargs`` or ``--kw``) before anything starts."""
    import memory_tasks

    reserved = [k for k in kwargs if k in RESERVED_TASK_KWARGS]
    if reserved:
        raise ConfigError(f"{what}.{reserved[0]}: not a task parameter (the observation mode is task.obs_mode)")
    try:
        memory_tasks.make(task, **kwargs).close()
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    except MemoryError:  # e.g. a Hallway a million cells long
        raise ConfigError(f"{what}: {task} with {kwargs} does not fit in memory (a size too large?)") from None


# ------------------------------------------------------------------------------------------ output paths


def check_output_folder(path: str | Path, what: str) -> Path:
    """A folder a command creates or fills: refuse a file in the way and a place nobody can write, before
    anything starts (``what`` names the option, e.g. ``--out``). Creates nothing."""
    if not str(path).strip():
        raise ConfigError(f"{what}: empty path")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {p}: exists and is not a folder")
    _check_writable(p, what)
    return p


def check_output_file(path: str | Path, what: str) -> Path:
    """A file a command writes: its folder must exist and be writable, and it must not be a folder."""
    if not str(path).strip():
        raise ConfigError(f"{what}: empty path")
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {p}: is a folder, not a file")
    if p.parent.exists() and not p.parent.is_dir():
        raise ConfigError(f"{what} {p}: {p.parent} is a file, not a folder")
    if not p.parent.is_dir():
        raise ConfigError(f"{what} {p}: output folder does not exist: {p.parent}")
    _check_writable(p.parent, what, shown=p)
    return p


def _check_writable(p: Path, what: str, shown: Path | None = None) -> None:
    """Try to create a file in ``p`` or, if it is not there yet, in its nearest existing parent (as root,
    permission bits say nothing, so this really writes and removes an anonymous temporary file)."""
    import tempfile

    folder = p
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{what} {shown or p}: {folder} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(f"{what} {shown or p}: cannot write in {folder} ({e.strerror or type(e).__name__})") from None


# Upper bounds: beyond them a value only overflows or exhausts memory somewhere deep inside (torch, numpy).
INT_MAX = 2**31 - 1
SEED_MAX = 2**63 - 1  # what torch.manual_seed takes (seeds above INT_MAX were valid before the bound: kept)
MAX_PARAMETERS = 2e9  # 8 GB of float32 weights, 32 GB with Adam's state and gradients; the paper's model is 14.7M
MAX_SPURIOUS = 100.0


def held_out_count(n: int, val_fraction: float) -> int:
    """How many of a dataset's ``n`` episodes `datasets.split` holds out: at least one, never all (n >= 2)."""
    return min(max(1, round(val_fraction * n)), n - 1)


def approx_parameters(m: ModelConfig) -> float:
    """Parameters of the Transformer layers and the symbolic encoder's linear layer (the bulk of the model)."""
    return m.n_layers * (4 * m.d_model**2 + 2 * m.d_model * m.d_ff) + 3920 * m.d_model


def validate(cfg: TrialConfig) -> TrialConfig:
    """Check values (not only types); every message names the key."""
    from memory_tasks import OBS_MODES, short_name

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    try:
        name = short_name(cfg.task.name)
    except ValueError as e:
        raise ConfigError(f"task.name: {e}") from None
    if name != cfg.task.name:  # one spelling per task: run folders, trial keys and reports agree
        cfg = dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, name=name))
    check_task_kwargs(cfg.task.name, cfg.task.kwargs, "task.kwargs")
    if cfg.eval.kwargs:
        check_task_kwargs(cfg.task.name, cfg.eval_task_kwargs, "eval.kwargs")
    for key, value in flatten(cfg).items():  # inf or nan passes every range check below
        need(not isinstance(value, float) or math.isfinite(value), f"{key} must be a finite number, got {value}")
        top = SEED_MAX if key == "seed" else INT_MAX
        need(not isinstance(value, int) or key.startswith(("task.kwargs.", "eval.kwargs.")) or abs(value) <= top,
             f"{key} must be at most {top:,}, got {value}")
    need(cfg.task.obs_mode in OBS_MODES, f"task.obs_mode must be one of {OBS_MODES}, got {cfg.task.obs_mode!r}")
    need(cfg.data.episodes >= 1, f"data.episodes must be >= 1, got {cfg.data.episodes}")
    need(0 <= cfg.data.seed, f"data.seed must be >= 0, got {cfg.data.seed}")
    need(
        demonstration_seeds_fit(cfg.data.seed, cfg.data.episodes),
        f"data.seed + 2 x data.episodes + {SEED_ROOM} (room for failed episodes) must stay below {EVAL_SEED_BASE} (seeds "
        f"from there on are kept for evaluation), got data.seed {cfg.data.seed} and data.episodes {cfg.data.episodes}",
    )
    need(0.0 <= cfg.data.annotation_fraction <= 1.0,
         f"data.annotation_fraction must be in [0, 1], got {cfg.data.annotation_fraction}")
    need(0.0 <= cfg.data.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}")
    need(0.0 <= cfg.data.noise.drop <= 1.0, f"data.noise.drop must be in [0, 1], got {cfg.data.noise.drop}")
    need(cfg.data.noise.shift >= 0, f"data.noise.shift must be >= 0, got {cfg.data.noise.shift}")
    need(0 <= cfg.data.noise.spurious <= MAX_SPURIOUS,
         f"data.noise.spurious must be in [0, {MAX_SPURIOUS}], got {cfg.data.noise.spurious}")
    m = cfg.model
    for name in ("d_model", "n_layers", "n_heads", "d_ff"):
        need(getattr(m, name) >= 1, f"model.{name} must be >= 1, got {getattr(m, name)}")
    need(m.d_model % m.n_heads == 0, f"model.d_model ({m.d_model}) must be divisible by model.n_heads ({m.n_heads})")
    need(m.d_model % 2 == 0, f"model.d_model must be even (sinusoidal position encoding), got {m.d_model}")
    size = approx_parameters(m)
    need(size <= MAX_PARAMETERS, f"model: about {size:.2g} parameters (model.d_model {m.d_model}, model.n_layers "
                                 f"{m.n_layers}, model.d_ff {m.d_ff}), more than the {MAX_PARAMETERS:.0e} accepted")
    need(0.0 <= m.dropout < 1.0, f"model.dropout must be in [0, 1), got {m.dropout}")
    need(cfg.memory.weight >= 0, f"memory.weight must be >= 0, got {cfg.memory.weight}")
    if isinstance(cfg.memory.heads, str):
        need(cfg.memory.heads == "all", f"memory.heads must be a list of [layer, head] or 'all', got {cfg.memory.heads!r}")
    else:
        need(len(cfg.memory.heads) > 0, "memory.heads must name at least one (layer, head) or be 'all'")
        for layer, head in cfg.memory.heads:
            need(0 <= layer < m.n_layers and 0 <= head < m.n_heads,
                 f"memory.heads: ({layer}, {head}) is out of range for {m.n_layers} layers x {m.n_heads} heads "
                 "(0-based)")
        dup = sorted({tuple(h) for h in cfg.memory.heads if list(cfg.memory.heads).count(h) > 1})
        need(not dup, f"memory.heads names {', '.join(map(str, dup))} more than once")
    need(cfg.memory.variant in MEMORY_VARIANTS,
         f"memory.variant must be one of {', '.join(MEMORY_VARIANTS)}, got {cfg.memory.variant!r}")
    need(cfg.memory.split in MEMORY_SPLITS,
         f"memory.split must be one of {', '.join(MEMORY_SPLITS)}, got {cfg.memory.split!r}")
    need(cfg.optim.lr > 0, f"optim.lr must be > 0, got {cfg.optim.lr}")
    need(cfg.optim.batch_size >= 1, f"optim.batch_size must be >= 1, got {cfg.optim.batch_size}")
    need(cfg.optim.epochs >= 1, f"optim.epochs must be >= 1, got {cfg.optim.epochs}")
    need(cfg.optim.time_budget_s >= 0, f"optim.time_budget_s must be >= 0, got {cfg.optim.time_budget_s}")
    need(cfg.optim.grad_clip >= 0, f"optim.grad_clip must be >= 0, got {cfg.optim.grad_clip}")
    need(cfg.optim.precision in PRECISIONS,
         f"optim.precision must be one of {', '.join(PRECISIONS)}, got {cfg.optim.precision!r}")
    need(cfg.eval.episodes >= 0, f"eval.episodes must be >= 0, got {cfg.eval.episodes}")
    need(cfg.eval.every >= 1, f"eval.every must be >= 1, got {cfg.eval.every}")
    need(cfg.eval.num_envs >= 1, f"eval.num_envs must be >= 1, got {cfg.eval.num_envs}")
    need(cfg.algorithm in ALGORITHMS, f"algorithm must be one of {', '.join(ALGORITHMS)}, got {cfg.algorithm!r}")
    rl = cfg.rl
    for name in ("env_steps", "num_envs", "rollout_steps", "minibatch_size", "num_epochs", "lstm_cell_size",
                 "max_seq_len"):
        need(getattr(rl, name) >= 1, f"rl.{name} must be >= 1, got {getattr(rl, name)}")
    need(rl.minibatch_size <= rl.rollout_steps,
         f"rl.minibatch_size ({rl.minibatch_size}) must be at most rl.rollout_steps ({rl.rollout_steps})")
    need(rl.encoder in ("auto", "mlp", "cnn"), f"rl.encoder must be auto, mlp or cnn, got {rl.encoder!r}")
    need(not (rl.encoder == "mlp" and cfg.task.obs_mode == "pixels"),
         "rl.encoder mlp needs task.obs_mode symbolic (use cnn or auto for pixels)")
    need(rl.lr > 0, f"rl.lr must be > 0, got {rl.lr}")
    need(0 < rl.gamma <= 1, f"rl.gamma must be in (0, 1], got {rl.gamma}")
    need(0 <= rl.gae_lambda <= 1, f"rl.gae_lambda must be in [0, 1], got {rl.gae_lambda}")
    need(rl.clip > 0, f"rl.clip must be > 0, got {rl.clip}")
    for name in ("entropy_coeff", "vf_coeff", "grad_clip"):
        need(getattr(rl, name) >= 0, f"rl.{name} must be >= 0, got {getattr(rl, name)}")
    need(cfg.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {cfg.device!r}")
    need(cfg.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {cfg.checkpoint_every}")
    need(cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed}")
    need(cfg.algorithm != "ppo_lstm" or cfg.seed + rl.num_envs < EVAL_SEED_BASE,
         f"seed + rl.num_envs must stay below {EVAL_SEED_BASE} for the RL baseline (its environments' first "
         f"episodes take seeds from seed on; the evaluation seeds start there), got seed {cfg.seed}")
    return cfg
