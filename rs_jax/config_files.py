"""Load experiment configs: ``path/to/file.py[:arg]`` plus ``key.path=value`` overrides.

A config file defines ``get_config(arg)`` returning an ``ml_collections.ConfigDict``
(the same convention as ``ml_collections.config_flags``). Overrides are parsed with the
type of the value they replace, so ``train.steps=10`` stays an int and
``data.tasks=scene,count`` stays a tuple. The returned config is locked: a later typo
in code (``config.trian``) raises instead of silently adding a field.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib.util
import inspect
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import ml_collections

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


class ConfigError(ValueError):
    """A config file, override or value is wrong; the message says which and why."""


# What every command reads (configs/common.py's base_config() has them all).
SECTIONS = ("seed", "mesh", "sharding_rules", "data", "model", "train", "eval", "init")


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load ``file.py[:arg]``, apply ``key.path=value`` overrides, validate and lock."""
    path, arg = split_spec(spec)
    config = _call_get_config(path, arg)
    missing = [section for section in SECTIONS if section not in config]
    if missing:
        raise ConfigError(
            f"Config file '{path}' gives no {', '.join(missing)}: start from "
            f"configs/common.py's base_config() and change what differs"
        )
    apply_overrides(config, overrides)
    validate_config(config)
    config.lock()
    return config


def config_from_dict(
    values: dict[str, Any], overrides: Sequence[str] = (), source: str = "stored config"
) -> ml_collections.ConfigDict:
    """A config stored as JSON (a run's own record), with overrides applied, validated and
    locked as `load_config` does. JSON has no tuples: lists become tuples again."""

    def tuples(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: tuples(v) for k, v in value.items()}
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    config = ml_collections.ConfigDict(tuples(values))
    missing = [section for section in SECTIONS if section not in config]
    if missing:
        raise ConfigError(f"The {source} gives no {', '.join(missing)}")
    apply_overrides(config, overrides)
    validate_config(config)
    config.lock()
    return config


def split_spec(spec: str) -> tuple[Path, str | None]:
    """``configs/demo.py:baseline`` -> (Path('configs/demo.py'), 'baseline')."""
    # Split on the last ':' that follows '.py' so Windows drive letters and args
    # containing ':' both survive.
    idx = spec.find(".py:")
    if idx >= 0:
        return Path(spec[: idx + 3]), spec[idx + 4 :]
    return Path(spec), None


def _import_config_module(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"Config file '{path}' not found")
    path = path.resolve()
    # Config files import shared defaults as `from configs import common`: make the
    # directory that contains `configs/` importable, then the repo root as a fallback.
    if str(path.parent.parent) not in sys.path:
        sys.path.insert(0, str(path.parent.parent))
    repo_root = str(Path(__file__).resolve().parent.parent)
    if repo_root not in sys.path:
        sys.path.append(repo_root)
    module_name = f"_rs_jax_config_{abs(hash(str(path)))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"Config file '{path}' cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # a config file's sys.exit() is no success
        raise ConfigError(f"Importing config file '{path}' failed: {type(e).__name__}: {e}") from e
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"Config file '{path}' does not define get_config(arg)")
    return module


def _call_get_config(path: Path, arg: str | None) -> ml_collections.ConfigDict:
    get_config = _import_config_module(path).get_config
    takes_arg = bool(inspect.signature(get_config).parameters)
    if arg is not None and not takes_arg:
        raise ConfigError(f"Config file '{path}' takes no argument but got ':{arg}'")
    call = f"get_config({arg!r})"
    try:
        config = get_config(arg) if takes_arg else get_config()
    except SystemExit as e:
        raise ConfigError(f"{call} in '{path}' called sys.exit({e.code!r})") from e
    except Exception as e:
        raise ConfigError(f"{call} in '{path}' failed: {e}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            f"{call} in '{path}' returned {type(config).__name__}, expected a ConfigDict"
        )
    if isinstance(config, ml_collections.FrozenConfigDict):  # would refuse the overrides
        config = ml_collections.ConfigDict(config)
    if config.is_locked:
        config.unlock()
    return config


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        full = f"{prefix}{key}"
        keys.append(full)
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(_all_keys(value, f"{full}."))
    return keys


def _unknown_key(config: ml_collections.ConfigDict, key: str) -> ConfigError:
    close = difflib.get_close_matches(key, _all_keys(config), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"Unknown config key '{key}'{hint}")


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
    """Apply ``key.path=value`` strings in place, typed by the value they replace."""
    for override in overrides:
        key, sep, raw = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"Config override '{override}' is not of the form key.path=value")
        *parents, leaf = key.split(".")
        node = config
        for i, part in enumerate(parents):
            child = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
            if not isinstance(child, ml_collections.ConfigDict):
                if part in node:
                    raise ConfigError(
                        f"config.{'.'.join(parents[: i + 1])} is a value, not a group; "
                        f"cannot set '{key}'"
                    )
                raise _unknown_key(config, key)
            node = child
        if leaf not in node:
            raise _unknown_key(config, key)
        old = node[leaf]
        if isinstance(old, ml_collections.ConfigDict):
            raise ConfigError(
                f"config.{key} is a group; set one of its fields, e.g. "
                f"'{key}.{next(iter(old.keys()), '...')}=...'"
            )
        new = parse_value(raw, old, name=f"config.{key}")
        with node.unlocked():
            # Replace the field rather than assign: ConfigDict refuses type changes
            # such as None -> str, which an override of an unset field needs.
            if old is None:
                del node[leaf]
            node[leaf] = new


def parse_value(raw: str, old: Any, name: str = "value") -> Any:
    """Parse ``raw`` into the type of ``old``; ``name`` is used in error messages."""
    text = raw.strip()

    def bad(kind: str) -> ConfigError:
        return ConfigError(f"{name} expects {kind}, got {raw!r}")

    if isinstance(old, bool):  # before int: bool is an int subclass
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise bad("bool (true/false/1/0)")
    if isinstance(old, int):
        try:
            return int(text)
        except ValueError:
            raise bad("int") from None
    if isinstance(old, float):
        try:
            return float(text)
        except ValueError:
            raise bad("float") from None
    if isinstance(old, str):
        return raw
    if isinstance(old, (tuple, list)):
        return _parse_sequence(text, old, bad)
    if old is None:
        # No type to go by: a Python literal if it is one, else the string itself.
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return raw
    raise ConfigError(f"{name} has type {type(old).__name__}, which cannot be set from the CLI")


def _parse_sequence(text: str, old: Sequence[Any], bad: Any) -> Any:
    nested = any(isinstance(x, (tuple, list)) for x in old)
    if nested or text[:1] in "([":
        # Nested structures (e.g. sharding_rules) and explicit literals go through
        # literal_eval; `(a,b)` with bare words is not a literal, so fall back.
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            if nested:
                raise bad("a Python tuple literal") from None
            value = None
        if value is not None:
            if not isinstance(value, (tuple, list)):
                value = (value,)
            return type(old)(value)
        text = text[1:-1] if text[-1:] in ")]" else text[1:]
    items = [t.strip() for t in text.split(",")]
    items = [t for t in items if t]
    element = next((x for x in old if x is not None), "")
    try:
        values = [parse_value(t, element) for t in items]
    except ConfigError:
        raise bad(f"a comma-separated list of {type(element).__name__}") from None
    return type(old)(values)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Cheap sanity checks that need no devices; mesh/device checks live in rs_jax.sharding,
    config.model's in rs_jax/models/config.py (where each key is defined)."""
    # Seeds feed numpy and grain, which refuse negative ones with a message naming no key.
    # Seeds become uint32 words (jax.random.key, numpy, grain): larger ones overflow there.
    if not 0 <= config.get("seed", 0) < 2**32:
        raise ConfigError(f"config.seed must be in [0, 2**32), got {config.seed}")
    for section, check in (("train", _check_train), ("data", _check_data), ("eval", _check_eval)):
        if config.get(section) is not None:
            check(config[section])


def _check_train(train: ml_collections.ConfigDict) -> None:
    # keep_checkpoints >= 1: rotation keeps the newest; 0 would delete every checkpoint.
    for key in ("steps", "log_every", "checkpoint_every", "keep_checkpoints"):
        if key in train and train[key] <= 0:
            raise ConfigError(f"config.train.{key} must be positive, got {train[key]}")
    if train.get("objective", "answer") not in ("answer", "align"):
        raise ConfigError(
            f"config.train.objective must be 'answer' or 'align', got {train.objective!r}"
        )
    if train.get("objective") == "align" and train.get("grad_accum_steps", 1) > 1:
        raise ConfigError(
            "config.train.objective='align' scores every image against the whole batch's "
            "texts: set config.train.grad_accum_steps=1 (micro-batches would see fewer)"
        )
    if train.get("on_nonfinite", "stop") not in ("stop", "skip"):
        raise ConfigError(
            f"config.train.on_nonfinite must be 'stop' or 'skip', got {train.on_nonfinite!r}"
        )
    # NaN passes every comparison: it would reach the first step and stop the run there.
    if "learning_rate" in train and not 0 <= train.learning_rate < math.inf:
        raise ConfigError(
            f"config.train.learning_rate must be a finite number >= 0, got {train.learning_rate}"
        )
    # AdamW's own ranges (optax takes any float: a b1 of 1 never moves, an eps of 0
    # divides by zero on a zero gradient, a negative decay grows the weights).
    for key, low, high, what in (
        ("weight_decay", 0, math.inf, "a finite number >= 0"),
        ("b1", 0, 1, "in [0, 1)"),
        ("b2", 0, 1, "in [0, 1)"),
        ("grad_clip", 0, math.inf, "a finite number >= 0 (0 = no clipping)"),
    ):
        if key in train and not low <= train[key] < high:
            raise ConfigError(f"config.train.{key} must be {what}, got {train[key]}")
    if "eps" in train and not 0 < train.eps < math.inf:
        raise ConfigError(f"config.train.eps must be a finite number > 0, got {train.eps}")
    if "warmup_steps" in train and train.warmup_steps < 0:
        raise ConfigError(f"config.train.warmup_steps must be >= 0, got {train.warmup_steps}")
    if "grad_accum_steps" in train and train.grad_accum_steps < 1:
        raise ConfigError(
            f"config.train.grad_accum_steps must be >= 1, got {train.grad_accum_steps}"
        )
    if "loss_vocab_chunk" in train and train.loss_vocab_chunk < 0:
        raise ConfigError(
            f"config.train.loss_vocab_chunk must be >= 0 (0 = whole vocabulary), got "
            f"{train.loss_vocab_chunk}"
        )


def _check_data(data: ml_collections.ConfigDict) -> None:
    for key in ("batch_size", "image_size"):
        if key in data and data[key] <= 0:
            raise ConfigError(f"config.data.{key} must be positive, got {data[key]}")
    if data.get("worker_count", 0) < -1:
        raise ConfigError(
            f"config.data.worker_count must be >= -1 (-1 = chosen from the cores, 0 = read "
            f"in this process), got {data.worker_count}"
        )
    # Checked before the data are prepared, which they would otherwise stop half-way.
    for key in ("max_prompt_len", "max_answer_len"):
        if key in data and data[key] < 1:
            raise ConfigError(f"config.data.{key} must be positive, got {data[key]}")
    packing = data.get("packing") or {}
    for key, what in (("slots", "0 = off"), ("length", "0 = none")):
        if packing.get(key, 0) < 0:
            raise ConfigError(
                f"config.data.packing.{key} must be >= 0 ({what}), got {packing[key]}"
            )
    for key in ("train_split", "eval_split"):
        if key in data and not str(data[key]).strip():
            raise ConfigError(f"config.data.{key} is empty; name a split, e.g. 'train'")
    bands = tuple(data.get("bands", ()))
    with contextlib.suppress(TypeError, ValueError):  # an override of () gives strings
        bands = tuple(int(b) for b in bands)
    if bands and (len(bands) != 3 or any(not isinstance(b, int) or b < 0 for b in bands)):
        raise ConfigError(
            f"config.data.bands={bands}: give three band indices >= 0 (R, G, B), e.g. "
            "(3, 2, 1) for Sentinel-2's B4, B3, B2, or () for the file's RGB"
        )
    if not 0 <= data.get("band_max", 0.0) < math.inf:
        raise ConfigError(
            f"config.data.band_max must be a finite number >= 0 (0 = the dtype's maximum), "
            f"got {data.band_max}"
        )
    tasks = tuple(data.get("tasks", ()))
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:
        raise ConfigError(f"config.data.tasks lists {repeated} more than once: {tasks}")
    if not 0 <= data.get("seed", 0) < 2**32:
        raise ConfigError(f"config.data.seed must be in [0, 2**32), got {data.seed}")
    if data.get("name", "rs_synth") not in ("rs_synth", "folder", "sources"):
        raise ConfigError(
            f"config.data.name={data.name!r}; choose 'rs_synth', 'folder' or 'sources'"
        )
    if data.get("name") == "rs_synth":
        # Checked here, not by the generator once it has started writing the dataset.
        for key in ("num_train", "num_test"):
            if key in data and data[key] <= 0:
                raise ConfigError(f"config.data.{key} must be positive, got {data[key]}")
        if data.get("image_size", 16) < 16:  # data.scenes.render_scene's smallest scene
            raise ConfigError(
                f"config.data.image_size={data.image_size}: rs_synth renders scenes of at "
                f"least 16 px"
            )


def _check_eval(evaluation: ml_collections.ConfigDict) -> None:
    for key in ("batch_size", "max_new_tokens"):
        if key in evaluation and evaluation[key] <= 0:
            raise ConfigError(f"config.eval.{key} must be positive, got {evaluation[key]}")
    if evaluation.get("cues", "retrieved") not in ("retrieved", "random"):
        raise ConfigError(
            f"config.eval.cues must be 'retrieved' or 'random', got {evaluation.cues!r}"
        )
    if evaluation.get("num_examples", -1) != -1 and evaluation.num_examples < 1:
        raise ConfigError(
            f"config.eval.num_examples must be positive, or -1 for all, got "
            f"{evaluation.num_examples}"
        )


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1} (lists and values kept whole)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old value, new value) for every key that differs (None where absent);
    tuples and lists compare equal (JSON has only lists)."""
    before, after = flatten(old), flatten(new)

    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, tuple | list) else value

    return {
        key: (before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        if plain(before.get(key)) != plain(after.get(key))
    }
