"""Fault suite: what a new user or a hostile tester tries, and what rs-jax does about it.

Each case runs `rs-jax` in-process (`cli.main`) and expects either an error of exactly one
line, `rs-jax: error: ...`, that names the config key, file or value at fault (exit code 2;
`kb validate` problems: exit code 1 with the problems on stdout), or the right handling
(exit code 0). Where data could be lost, the files are checked to be byte-for-byte intact.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rs_jax import cli
from rs_jax.config import load_config
from rs_jax.data.pipeline import build_data
from rs_jax.kb import store
from rs_jax.sharding import SHARDING_RULES
from rs_jax.train.lock import LOCK_FILE

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.py")
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# Placeholders in a case's arguments: {case} is the case's own folder, {data} the dataset
# folder all cases share (generated once), {run} a copy of a workdir trained for 2 steps.
# A case whose data_dir is {case}/data must stop before preparing any data: that folder
# must not exist afterwards.


@dataclasses.dataclass(frozen=True)
class Fault:
    id: str
    argv: tuple[str, ...]
    message: str  # regex searched in the single stderr line (exit 0: in stdout)
    setup: Callable[[Path], None] | None = None  # writes the case's files under {case}
    code: int = 2
    stdout: str = ""  # regex searched in stdout
    keep: tuple[str, ...] = ()  # paths under {case} that must be byte-identical afterwards
    read_only: tuple[str, ...] = ()  # paths under {case} made read-only (skipped as root)
    env: tuple[tuple[str, str], ...] = ()
    check: Callable[[Path], None] | None = None  # further checks on {case} afterwards


def command(
    name: str, *extra: str, config: str = TINY, workdir: str = "{case}/w", data: str = "{case}/data"
) -> tuple:
    """`rs-jax NAME` (train, eval) on a workdir with a data folder and overrides."""
    return (
        name,
        "--config",
        config,
        "--workdir",
        workdir,
        f"--config.data.data_dir={data}",
        *extra,
    )


def train(*extra: str, **kwargs: str) -> tuple:
    return command("train", *extra, **kwargs)


def evaluate(*extra: str, **kwargs: str) -> tuple:
    return command("eval", *extra, **kwargs)


# The trained run: the baseline model (the smallest train step to compile), 2 steps.
RUN_CONFIG = f"{TINY}:baseline"
RUN_ARGS = ("--config.train.steps=2", "--config.train.checkpoint_every=2")


def resume(*extra: str) -> tuple:
    """`rs-jax train` again on (a copy of) the trained run, as it was trained but `extra`."""
    return train(*RUN_ARGS, *extra, config=RUN_CONFIG, workdir="{run}", data="{data}")


# A run trained on a folder dataset, with paths relative to the case's folder (its cwd), so
# that every case resumes its own copy of the data with the config that trained it.
FOLDER_RUN_ARGS = ("--config.data.name=folder", "--config.data.root=root")


def resume_folder_run(*extra: str) -> tuple:
    """`rs-jax train` again on a copy of the folder-trained run and of its data."""
    return train(
        *RUN_ARGS, *FOLDER_RUN_ARGS, *extra, config=RUN_CONFIG, workdir="{folder_run}", data="data"
    )


def bad(key: str, value: str, message: str, name: str = "") -> Fault:
    """`--config.KEY=VALUE` stops before any data is prepared, naming the key."""
    return Fault(name or f"{key}={value}", train(f"--config.{key}={value}"), message)


# ---------------------------------------------------------------------------- case files


def write(path: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        target = case / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)

    return setup


def mkdirs(*paths: str) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        for path in paths:
            (case / path).mkdir(parents=True, exist_ok=True)

    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        for step in setups:
            step(case)

    return setup


def image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(path)


def folders(**splits: dict[str, list[str]]) -> Callable[[Path], None]:
    """A folder dataset under {case}/root: split -> class -> file names. Names ending in
    .png are images; `bad.png` holds no image, `gone.png` is a dangling link, others are
    text files."""

    def setup(case: Path) -> None:
        for split, classes in splits.items():
            for name, files in classes.items():
                folder = case / "root" / split / name
                folder.mkdir(parents=True, exist_ok=True)
                for file in files:
                    if file == "bad.png":
                        (folder / file).write_bytes(b"not an image at all")
                    elif file == "gone.png":
                        os.symlink(folder / "missing.png", folder / file)
                    elif file.endswith(".png"):
                        image(folder / file)
                    else:
                        (folder / file).write_text("notes")

    return setup


GOOD = {"forest": ["a.png", "b.png"], "river": ["c.png", "d.png"]}


def _png_of_another_image() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(out, format="PNG")
    return out.getvalue()


PNG_OF_ANOTHER_IMAGE = _png_of_another_image()


def folder_train(*extra: str) -> tuple:
    return train(
        "--config.data.name=folder", "--config.data.root={case}/root", *extra, data="{data}"
    )


def entry(eid: str = "scene/airport", **fields) -> str:
    level, name = eid.split("/", 1)
    row = {"id": eid, "level": level, "name": name, "description": f"a {name}"} | fields
    return json.dumps({k: v for k, v in row.items() if v is not None})


def kb_file(*lines: str) -> Callable[[Path], None]:
    return write("kb.jsonl", "\n".join(lines) + "\n")


def validate(*lines: str, stdout: str, name: str) -> Fault:
    """`kb validate` on a file with problems: exit 1, each problem on stdout by line."""
    return Fault(
        f"kb-validate-{name}",
        ("kb", "validate", "{case}/kb.jsonl"),
        r"kb\.jsonl: \d+ problem\(s\)$",
        setup=kb_file(*lines),
        code=1,
        stdout=stdout,
    )


def built_kb(path: str, metadata: str | None = None) -> Callable[[Path], None]:
    """A folder shaped like `rs-jax kb build` output (no real index: enough for the checks
    that run before one is read)."""
    fields = ("format_version", "encoder", "dim", "count", "levels", "kb_sha256", "index")
    text = metadata if metadata is not None else json.dumps(dict.fromkeys(fields, 1))
    return both(
        write(f"{path}/{store.METADATA_FILE}", text),
        write(f"{path}/{store.ENTRIES_FILE}", entry() + "\n"),
        write(f"{path}/{store.EMBEDDINGS_FILE}", b""),
        mkdirs(f"{path}/{store.INDEX_DIR}"),
    )


def config_file(body: str) -> Callable[[Path], None]:
    return write("cfg.py", "import ml_collections\n\n" + body)


def hf_folder(path: str, **config) -> Callable[[Path], None]:
    return write(f"{path}/config.json", json.dumps(config))


def lock(host: str | None, pid: int) -> Callable[[Path], None]:
    text = json.dumps({"host": host or socket.gethostname(), "pid": pid})
    return write(f"run/{LOCK_FILE}", text)


def dead_pid() -> int:
    # Linux hands out pids below pid_max only: this one belongs to no process.
    return int(Path("/proc/sys/kernel/pid_max").read_text())


def lock_released(case: Path) -> None:
    assert not (case / "run" / LOCK_FILE).exists()


def old_record_kept(case: Path) -> None:
    """--allow_config_change replaced config.json; the record of the run that wrote the
    checkpoints is kept beside it."""

    def capacity(path: Path) -> float:
        return json.loads(path.read_text())["model"]["experts"]["capacity_factor"]

    (old,) = (case / "run").glob("config.*.json")
    assert capacity(old) == 1.5 and capacity(case / "run" / "config.json") == 2.0


def nothing_written(case: Path) -> None:
    assert not any(case.iterdir()), sorted(p.name for p in case.iterdir())


def remove(path: str) -> Callable[[Path], None]:
    return lambda case: (case / path).unlink()


def absent(path: str) -> Callable[[Path], None]:
    def check(case: Path) -> None:
        assert not (case / path).exists(), f"{path} was created"

    return check


def rules(**changes: object) -> str:
    """config.sharding_rules as a literal, with some logical axes remapped or dropped."""
    table = [(n, changes.get(n, m)) for n, m in SHARDING_RULES if changes.get(n, m) != "DROP"]
    return repr(tuple(table))


# ---------------------------------------------------------------------------- the cases

FAULTS = [
    # --- 1. Values out of range, named by key; all before any data is prepared.
    bad("train.steps", "0", r"config\.train\.steps must be positive, got 0"),
    bad("train.log_every", "-1", r"config\.train\.log_every must be positive"),
    bad("train.checkpoint_every", "0", r"config\.train\.checkpoint_every must be positive"),
    bad("train.keep_checkpoints", "0", r"config\.train\.keep_checkpoints must be positive"),
    bad("train.on_nonfinite", "ignore", r"config\.train\.on_nonfinite must be 'stop' or 'skip'"),
    bad("train.warmup_steps", "-1", r"config\.train\.warmup_steps must be >= 0"),
    bad("train.grad_accum_steps", "0", r"config\.train\.grad_accum_steps must be >= 1"),
    bad("train.learning_rate", "nan", r"config\.train\.learning_rate must be a finite number"),
    bad("train.learning_rate", "-0.1", r"config\.train\.learning_rate must be .* >= 0, got -0\.1"),
    bad("train.loss_vocab_chunk", "-1", r"config\.train\.loss_vocab_chunk must be >= 0"),
    bad("train.freeze", "visoin", r"config\.train\.freeze: 'visoin' names no parameter"),
    bad("data.batch_size", "0", r"config\.data\.batch_size must be positive"),
    bad("data.image_size", "0", r"config\.data\.image_size must be positive, got 0"),
    bad("data.image_size", "8", r"config\.data\.image_size=8: .*at least 16"),
    bad("data.num_train", "0", r"config\.data\.num_train must be positive"),
    bad("data.num_test", "-3", r"config\.data\.num_test must be positive"),
    bad("data.worker_count", "-1", r"config\.data\.worker_count must be >= 0"),
    bad("data.seed", "-1", r"config\.data\.seed must be in \[0, 2\*\*32\), got -1"),
    bad("seed", "-1", r"config\.seed must be in \[0, 2\*\*32\), got -1"),
    bad("data.tasks", "", r"config\.data\.tasks is empty; choose from \('scene'"),
    bad("data.tasks", "scene,weather", r"config\.data\.tasks: unknown task\(s\) \['weather'\]"),
    bad(
        "data.name",
        "imagenet",
        r"config\.data\.name='imagenet'; choose 'rs_synth', 'folder' or 'sources'",
    ),
    bad("eval.batch_size", "0", r"config\.eval\.batch_size must be positive"),
    bad("eval.max_new_tokens", "0", r"config\.eval\.max_new_tokens must be positive"),
    bad("eval.num_examples", "0", r"config\.eval\.num_examples must be positive, or -1"),
    bad("model.dtype", "float16", r"config\.model\.dtype='float16': expected one of"),
    bad("model.param_dtype", "int8", r"config\.model\.param_dtype='int8'"),
    bad("model.remat_policy", "everything", r"config\.model\.remat_policy='everything'"),
    bad("model.vision.patch_size", "5", r"vision\.patch_size=5: must divide config\.data\.image"),
    bad("model.vision.patch_size", "0", r"config\.model\.vision\.patch_size=0: must be >= 1"),
    bad("model.vision.num_heads", "3", r"vision\.num_heads=3: must divide vision\.width=32"),
    bad("model.vision.activation", "relu", r"config\.model\.vision\.activation='relu'"),
    bad("model.vision.norm_eps", "0", r"config\.model\.vision\.norm_eps=0\.0: must be > 0"),
    bad("model.vision.pixel_mean", "0.5,0.5", r"vision\.pixel_mean=\(0\.5, 0\.5\): expected 3"),
    bad("model.vision.pixel_std", "0.5,0,0.5", r"config\.model\.vision\.pixel_std=.*must be > 0"),
    bad("model.levels", "()", r"config\.model\.levels=\(\): a tuple of \(name, block, grid"),
    bad("model.levels", "(('scene', 7, 1),)", r"levels\[0\].*block 7 is outside the ViT's 3"),
    bad("model.levels", "(('scene', 2, 3),)", r"levels\[0\].*grid must be >= 1 and divide"),
    bad("model.levels", "(('scene', 2, 1), ('scene', 1, 2))", r"level names must be unique"),
    bad("model.levels", "scene", r"config\.model\.levels expects a Python tuple literal"),
    bad("model.kb.dim", "0", r"config\.model\.kb\.dim=0: must be >= 1"),
    bad("model.kb.top_k", "0", r"config\.model\.kb\.top_k=0: must be >= 1"),
    bad("model.kb.recall_target", "1.5", r"config\.model\.kb\.recall_target=1\.5"),
    bad("model.kb.retrieval_loss_weight", "-0.1", r"kb\.retrieval_loss_weight=-0\.1"),
    bad("model.kb.retrieval", "cloud", r"config\.model\.kb\.retrieval must be 'device' or"),
    bad("model.kb.retrieval", "host", r"retrieval='host'.*set config\.model\.kb\.source"),
    bad(
        "model.kb.source",
        "{case}/nowhere",
        r"config\.model\.kb\.source='.*nowhere': no such folder",
        name="model.kb.source-missing",
    ),
    bad("model.augment.num_heads", "3", r"config\.model\.augment\.num_heads=3: must divide"),
    bad("model.experts.experts_per_level", "0", r"experts\.experts_per_level=0: must be >= 1"),
    bad("model.experts.top_k", "3", r"experts\.top_k=3: exceeds experts_per_level=2"),
    bad("model.experts.capacity_factor", "0", r"experts\.capacity_factor=0\.0: must be > 0"),
    bad("model.experts.dispatch", "magic", r"config\.model\.experts\.dispatch='magic'"),
    bad("model.experts.router_jitter", "1", r"experts\.router_jitter=1\.0: must be in \[0, 1\)"),
    bad("model.experts.shared_experts", "-1", r"experts\.shared_experts=-1: must be >= 0"),
    bad("model.experts.z_loss_weight", "-1", r"config\.model\.experts\.z_loss_weight=-1\.0"),
    bad("model.llm.width", "0", r"config\.model\.llm\.width=0: must be >= 1"),
    bad("model.llm.num_heads", "3", r"llm\.num_heads=3: must divide llm\.width=32"),
    bad("model.llm.num_kv_heads", "3", r"llm\.num_kv_heads=3: must divide llm\.num_heads=4"),
    bad("model.llm.vocab_size", "-1", r"config\.model\.llm\.vocab_size=-1: must be >= 0"),
    bad("model.llm.rope_theta", "0", r"config\.model\.llm\.rope_theta=0\.0: must be > 0"),
    bad("model.llm.norm_eps", "-1", r"config\.model\.llm\.norm_eps=-1\.0: must be > 0"),
    bad("model.llm.sliding_window", "-1", r"llm\.sliding_window=-1: must be >= 0"),
    bad("model.llm.moe_every", "3", r"llm\.moe_every=3: must be 0 or divide llm\.depth=2"),
    bad("model.llm.lora.rank", "-1", r"config\.model\.llm\.lora\.rank=-1: must be >= 0"),
    bad("model.llm.lora.alpha", "0", r"config\.model\.llm\.lora\.alpha=0\.0: must be > 0"),
    bad("model.llm.lora.targets", "query,bogus", r"config\.model\.llm\.lora\.targets=.*bogus"),
    bad("model.llm.rope_scaling.type", "ntk", r"llm\.rope_scaling\.type='ntk'"),
    bad("model.llm.rope_scaling.factor", "0.5", r"llm\.rope_scaling\.factor=0\.5: must be >= 1"),
    bad("model.llm.rope_scaling.low_freq_factor", "5", r"rope_scaling\.low_freq_factor=5\.0"),
    bad("model.llm.rope_scaling.original_max_positions", "0", r"original_max_positions=0"),
    # ... and those only the prepared data can tell (the shared data folder).
    Fault(
        "data.template=alpaca",
        train("--config.data.template=alpaca", data="{data}"),
        r"config\.data\.template='alpaca' is not a template",
    ),
    Fault(
        "data.template=chatml-with-wordpiece",
        train("--config.data.template=chatml", data="{data}"),
        r"config\.data\.template='chatml' needs the token '<\|im_end\|>'",
    ),
    Fault(
        "data.max_prompt_len=0",
        train("--config.data.max_prompt_len=0", data="{data}"),
        r"config\.data\.max_prompt_len is 0; raise the limit",
    ),
    Fault(
        "data.max_answer_len=1",
        train("--config.data.max_answer_len=1", data="{data}"),
        r"config\.data\.max_answer_len is 1; raise the limit",
    ),
    Fault(
        "model.llm.vocab_size-below-tokenizer",
        train("--config.model.llm.vocab_size=10", data="{data}"),
        r"config\.model\.llm\.vocab_size=10: smaller than the tokenizer's \d+ tokens",
    ),
    Fault(
        "model.levels-kb-level-unknown",
        train("--config.model.levels=(('scene', 2, 1), ('object', 0, 4, 'parcel'))", data="{data}"),
        r"config\.model\.levels\[1\] retrieves from knowledge-base level 'parcel'",
    ),
    Fault(
        "data.batch_size-above-the-train-split",
        # The run's model: its initialisation is compiled once for all cases.
        train("--config.data.batch_size=128", config=RUN_CONFIG, data="{data}"),
        r"Train split has 64 images.* fewer than one batch.*config\.data\.batch_size=128",
    ),
    # --- Values of the wrong type: the override's own key and the type it expects.
    bad("train.steps", "abc", r"config\.train\.steps expects int, got 'abc'"),
    bad("train.steps", "1.5", r"config\.train\.steps expects int, got '1\.5'"),
    bad("train.learning_rate", "fast", r"config\.train\.learning_rate expects float"),
    bad("model.baseline", "maybe", r"config\.model\.baseline expects bool \(true/false/1/0\)"),
    bad("mesh.data", "two", r"config\.mesh\.data expects int, got 'two'"),
    bad("model.vision.pixel_mean", "a,b,c", r"vision\.pixel_mean expects a comma-separated list"),
    bad("sharding_rules", "garbage", r"config\.sharding_rules expects a Python tuple literal"),
    bad("train", "5", r"config\.train is a group; set one of its fields, e\.g\. 'train\.\w+="),
    bad("train.steps.max", "5", r"config\.train\.steps is a value, not a group"),
    Fault("empty-key", train("--config.=5"), r"Config override '=5' is not of the form key"),
    # --- 2. Unknown keys (with the nearest known one), variants and config files.
    bad("train.stpes", "10", r"Unknown config key 'train\.stpes'; did you mean 'train\.steps'"),
    bad("trian.steps", "10", r"Unknown config key 'trian\.steps'; did you mean 'train\.steps'"),
    bad("model.llm.widht", "8", r"did you mean 'model\.llm\.width'\?"),
    bad("data.bach_size", "8", r"did you mean 'data\.batch_size'\?"),
    bad("mesh.pipeline", "2", r"Unknown config key 'mesh\.pipeline'"),
    bad("frobnicate", "1", r"Unknown config key 'frobnicate'$"),
    Fault(
        "unknown-variant",
        ("config", "--config", f"{TINY}:huge"),
        r"get_config\('huge'\) in '.*tiny\.py' failed: Unknown config variant\(s\) \['huge'\]",
    ),
    Fault(
        "unknown-variant-among-good",
        ("config", "--config", f"{TINY}:baseline,levels9"),
        r"Unknown config variant\(s\) \['levels9'\]; allowed: baseline, levels2, levels4",
    ),
    Fault(
        "variant-value-of-the-wrong-type",
        ("config", "--config", f"{TINY}:baseline=maybe"),
        r"failed: config variant baseline expects bool \(true/false/1/0\), got 'maybe'",
    ),
    Fault(
        "missing-config-file",
        ("config", "--config", "{case}/nope.py"),
        r"Config file '.*nope\.py' not found",
    ),
    Fault(
        "config-file-is-a-folder",
        ("config", "--config", "{case}"),
        r"Config file '.*' not found",
    ),
    Fault(
        "config-file-syntax-error",
        ("config", "--config", "{case}/cfg.py"),
        r"Importing config file '.*cfg\.py' failed: SyntaxError",
        setup=config_file("def get_config(:\n"),
    ),
    Fault(
        "config-file-import-error",
        ("config", "--config", "{case}/cfg.py"),
        r"Importing config file '.*cfg\.py' failed: ModuleNotFoundError: .*no_such_module",
        setup=config_file("import no_such_module\n"),
    ),
    Fault(
        "config-file-without-get_config",
        ("config", "--config", "{case}/cfg.py"),
        r"'.*cfg\.py' does not define get_config\(arg\)",
        setup=config_file("CONFIG = 1\n"),
    ),
    Fault(
        "get_config-returns-a-dict",
        ("config", "--config", "{case}/cfg.py"),
        r"get_config\(None\) in '.*cfg\.py' returned dict, expected a ConfigDict",
        setup=config_file("def get_config(arg=None):\n    return {'a': 1}\n"),
    ),
    Fault(
        "get_config-raises",
        ("config", "--config", "{case}/cfg.py"),
        r"get_config\(None\) in '.*cfg\.py' failed: 'broken on purpose'",
        setup=config_file("def get_config(arg=None):\n    raise KeyError('broken on purpose')\n"),
    ),
    Fault(
        "predict-a-workdir-alone-without-a-checkpoint",
        ("predict", "--workdir", "{case}/w", "--image", "{case}/x.png"),
        r"No checkpoint in .*/w; run `rs-jax train` with this workdir first",
        check=absent("w"),
    ),
    Fault(
        "compile-without-config-or-workdir",
        ("compile", "--topology", "v5p-8"),
        r"--config is required \(or --workdir of a trained run\)",
    ),
    Fault(
        "get_config-calls-sys-exit",
        ("train", "--config", "{case}/cfg.py", "--workdir", "{case}/w"),
        r"get_config\(None\) in '.*cfg\.py' called sys\.exit\(0\)",
        setup=config_file("import sys\n\ndef get_config(arg=None):\n    sys.exit(0)\n"),
        check=absent("w"),
    ),
    Fault(
        "config-file-exits-on-import",
        ("config", "--config", "{case}/cfg.py"),
        r"Importing config file '.*cfg\.py' failed: SystemExit: 3",
        setup=config_file("raise SystemExit(3)\n"),
    ),
    Fault(
        "get_config-returns-an-empty-configdict",
        ("config", "--config", "{case}/cfg.py"),
        r"'.*cfg\.py' gives no seed, mesh, .*: start from configs/common\.py's base_config",
        setup=config_file("def get_config(arg=None):\n    return ml_collections.ConfigDict()\n"),
    ),
    Fault(
        "get_config-returns-a-frozen-configdict",
        ("config", "--config", "{case}/cfg.py", "--config.seed=7"),
        r"seed: 7",
        setup=config_file(
            "from configs import tiny\n\ndef get_config(arg=None):\n"
            "    return ml_collections.FrozenConfigDict(tiny.get_config(arg))\n"
        ),
        code=0,
    ),
    bad("seed", str(2**64), r"config\.seed must be in \[0, 2\*\*32\), got 18446744073709551616"),
    Fault(
        "variant-for-a-config-without-argument",
        ("config", "--config", "{case}/cfg.py:big"),
        r"'.*cfg\.py' takes no argument but got ':big'",
        setup=config_file("def get_config():\n    return ml_collections.ConfigDict()\n"),
    ),
    Fault(
        "config-file-not-python",
        ("config", "--config", "{case}/cfg.json"),
        r"'.*cfg\.json' cannot be imported as a Python module",
        setup=write("cfg.json", "{}"),
    ),
    # --- The command line itself.
    Fault(
        "RS_JAX_CPU_DEVICES-not-a-number",
        ("config", "--config", TINY),
        r"RS_JAX_CPU_DEVICES must be a positive integer, got 'eight'",
        env=(("RS_JAX_CPU_DEVICES", "eight"),),
    ),
    Fault(
        "RS_JAX_CPU_DEVICES-zero",
        ("config", "--config", TINY),
        r"RS_JAX_CPU_DEVICES must be a positive integer, got '0'",
        env=(("RS_JAX_CPU_DEVICES", "0"),),
    ),
    Fault(
        "RS_JAX_NUM_PROCESSES-not-a-number",
        ("config", "--config", TINY),
        r"RS_JAX_NUM_PROCESSES must be a non-negative integer, got 'two'",
        env=(("RS_JAX_DISTRIBUTED", "1"), ("RS_JAX_NUM_PROCESSES", "two")),
    ),
    Fault("unknown-argument", (*train(), "--bogus"), r"unrecognized arguments: --bogus"),
    Fault(
        "override-without-value",
        train("--config.train.steps"),
        r"--config\.train\.steps needs a value: --config\.train\.steps=VALUE",
    ),
    Fault(
        "missing-workdir",
        ("train", "--config", TINY),
        r"the following arguments are required: --workdir.*rs-jax train --help",
    ),
    Fault("no-command", (), r"the following arguments are required: COMMAND"),
    Fault("unknown-command", ("fit",), r"invalid choice: 'fit'"),
    Fault("kb-without-action", ("kb",), r"the following arguments are required: KB_COMMAND"),
    # --- 3. Meshes the 8 devices or the model cannot have.
    bad("mesh.data", "3", r"mesh \{data: 3, .*\} needs 3 devices but 8 are available"),
    bad("mesh.data", "0", r"axis 'data' must be a positive size or -1"),
    bad("mesh.fsdp", "-2", r"axis 'fsdp' must be a positive size or -1"),
    bad("mesh.fsdp", "-1", r"only one axis may be -1 \(fill\), got \['data', 'fsdp'\]"),
    bad("mesh.fsdp", "3", r"cannot fill 'data', 8 devices are not divisible by .* 3"),
    Fault(
        "mesh.tensor=8-vs-2-kv-heads",
        train("--config.mesh.data=1", "--config.mesh.tensor=8"),
        r"Parameter .*\('kv_heads', size 2\) cannot be split over config\.mesh\.tensor=8",
    ),
    Fault(
        "mesh.expert=8-vs-6-experts",
        train("--config.mesh.data=1", "--config.mesh.expert=8"),
        r"6 experts is not divisible by the mesh expert axis size 8.*config\.mesh\.expert",
    ),
    bad("data.batch_size", "4", r"config\.data\.batch_size=4 must be divisible by the 8 batch"),
    bad("eval.batch_size", "12", r"config\.eval\.batch_size=12 must be divisible by the 8"),
    bad("train.grad_accum_steps", "3", r"config\.data\.batch_size=8 .*grad_accum_steps=3"),
    bad(
        "sharding_rules",
        rules(embed="DROP"),
        r"config\.sharding_rules has no rule for logical axis 'embed'",
        name="sharding_rules-without-embed",
    ),
    bad(
        "sharding_rules",
        rules(mlp="pipeline"),
        r"config\.sharding_rules: .*'pipeline'",
        name="sharding_rules-unknown-mesh-axis",
    ),
    bad(
        "sharding_rules",
        "(('batch',),)",
        r"config\.sharding_rules: .*\('batch',\)",
        name="sharding_rules-rule-without-axes",
    ),
    # --- 4. Paths that are not what they should be.
    Fault(
        "workdir-is-a-file",
        train(),
        r"--workdir .*/w: cannot create it \(File exists\)",
        setup=write("w", "my notes"),
        keep=("w",),
    ),
    Fault(
        "workdir-empty",
        train(workdir=""),
        r"--workdir is empty; name a folder for the run",
        check=nothing_written,
    ),
    Fault(
        "workdir-under-a-file",
        train(workdir="{case}/notes/w"),
        r"--workdir .*/notes/w: cannot create it \(Not a directory\)",
        setup=write("notes", "my notes"),
        keep=("notes",),
    ),
    Fault(
        "workdir-in-read-only-folder",
        train(workdir="{case}/ro/w"),
        r"--workdir .*/ro/w: cannot create it \(Permission denied\)",
        setup=mkdirs("ro"),
        read_only=("ro",),
    ),
    Fault(
        "workdir-read-only",
        train(),
        r"--workdir .*/w is not writable",
        setup=mkdirs("w"),
        read_only=("w",),
    ),
    Fault(
        "data_dir-under-a-file",
        train(data="{case}/notes/data"),
        r"notes/data",
        setup=write("notes", "my notes"),
        keep=("notes",),
    ),
    Fault(
        "tokenizer-folder-missing",
        train("--config.data.tokenizer={case}/tok", data="{data}"),
        r"config\.data\.tokenizer='.*/tok': .*does not exist",
    ),
    Fault(
        "tokenizer-folder-not-a-tokenizer",
        train("--config.data.tokenizer={case}/tok", data="{data}"),
        r"config\.data\.tokenizer='.*/tok': .*holds no tokenizer transformers can load",
        setup=write("tok/readme.txt", "nothing here"),
    ),
    bad(
        "init.vision",
        "{case}/nowhere",
        r"config\.init\.vision='.*nowhere': no config\.json there",
        name="init.vision-missing",
    ),
    bad(
        "init.llm",
        "{case}/nowhere",
        r"config\.init\.llm='.*nowhere': no config\.json there",
        name="init.llm-missing",
    ),
    Fault(
        "init.vision-is-a-decoder",
        train("--config.init.vision={case}/hf"),
        r"hf/config\.json: model_type='llama' is not supported",
        setup=hf_folder("hf", model_type="llama"),
    ),
    Fault(
        "init.vision-of-another-preset-type",
        train("--config.init.vision={case}/hf", "--config.init.vision_types=clip_vision_model"),
        r"config\.init\.vision='.*hf' holds a siglip_vision_model; .*init\.vision_types",
        setup=hf_folder("hf", model_type="siglip_vision_model"),
    ),
    Fault(
        "init.llm-config-not-json",
        train("--config.init.llm={case}/hf"),
        r"hf/config\.json",
        setup=write("hf/config.json", "{not json"),
    ),
    Fault(
        "init.from_checkpoint-missing",
        # The run's model: its initialisation is compiled once for all cases.
        train("--config.init.from_checkpoint={case}/nowhere", config=RUN_CONFIG, data="{data}"),
        r"config\.init\.from_checkpoint='.*nowhere': no checkpoint there",
    ),
    Fault(
        "model.kb.source-not-a-built-kb",
        train("--config.model.kb.source={case}/kb", data="{data}"),
        r".*/kb is not a complete built KB: missing metadata\.json",
        setup=write("kb/notes.txt", "mine"),
        keep=("kb",),
    ),
    # --- 5. Workdir state: what a run finds there, and what it must not destroy.
    Fault("eval-no-workdir", evaluate(), r"No checkpoint in .*/w; run `rs-jax train`"),
    Fault(
        "eval-no-checkpoint",
        evaluate(),
        r"No checkpoint in .*/w/checkpoints; run `rs-jax train`",
        setup=mkdirs("w/checkpoints"),
    ),
    Fault(
        "eval-workdir-is-a-file",
        evaluate(),
        r"No checkpoint in .*/w;",
        setup=write("w", "my notes"),
        keep=("w",),
    ),
    Fault(
        "eval-read-only-workdir",
        evaluate(config=RUN_CONFIG, workdir="{run}"),
        r"--workdir .*/run is not writable; eval writes eval\.json",
        keep=("run",),
        read_only=("run",),
    ),
    Fault(
        "lock-held-by-a-live-process",
        resume(),
        rf"Another run \({re.escape(socket.gethostname())} pid {os.getpid()}\) is using",
        setup=lock(None, os.getpid()),
        keep=("run",),
    ),
    Fault(
        "lock-held-on-another-host",
        resume(),
        r"Another run \(gpu-node-7 pid 1\) is using .*remove .*\.rs_jax\.lock",
        setup=lock("gpu-node-7", 1),
        keep=("run",),
    ),
    Fault(
        "lock-file-garbage",
        resume(),
        r"Another run \(\?\) is using",
        setup=write(f"run/{LOCK_FILE}", "\x00\x01"),
        keep=("run",),
    ),
    Fault(
        "stale-lock-is-taken-over",
        resume(),
        r"Already trained: step 2",
        setup=lock(None, dead_pid()),
        code=0,
        stdout=rf"removing the stale lock of pid {dead_pid()}",
        keep=("run/checkpoints", "run/config.json"),
        check=lock_released,
    ),
    Fault(
        "resume-with-changed-experts",
        resume("--config.model.experts.capacity_factor=2"),
        r"changes the model, data or optimizer: model\.experts\.capacity_factor: 1\.5 -> 2\.0",
        keep=("run",),
    ),
    Fault(
        "resume-with-changed-shapes",
        resume("--config.model.llm.mlp_dim=48"),
        r"changes the model, data or optimizer: model\.llm\.mlp_dim: 64 -> 48\..*config",
        keep=("run",),
    ),
    Fault(
        "resume-with-changed-optimizer",
        resume("--config.train.learning_rate=0.01"),
        r"train\.learning_rate: 0\.001 -> 0\.01\..*--allow_config_change",
        keep=("run",),
    ),
    Fault(
        "keep_checkpoints=0-on-a-run",
        resume("--config.train.keep_checkpoints=0"),
        r"config\.train\.keep_checkpoints must be positive, got 0",
        keep=("run",),
    ),
    Fault(
        "allow_config_change-keeps-the-old-record",
        (*resume("--config.model.experts.capacity_factor=2"), "--allow_config_change"),
        r"Already trained: step 2",
        code=0,
        stdout=r"warning: resuming .* model\.experts\.capacity_factor: 1\.5 -> 2\.0",
        keep=("run/checkpoints",),
        check=old_record_kept,
    ),
    # --- Training files changed under a run: named, and the run left as it was.
    Fault(
        "resume-on-an-edited-image",
        resume_folder_run(),
        r"the training data changed since it was saved: 1 file edited \(root:train/forest/a\.png\)"
        r".*--allow_data_change",
        setup=write("root/train/forest/a.png", PNG_OF_ANOTHER_IMAGE),
        keep=("run",),
    ),
    Fault(
        "resume-on-an-added-and-a-removed-image",
        resume_folder_run(),
        r"1 file added \(root:train/river/x\.png\); 1 file removed \(root:train/forest/b\.png\)\.",
        setup=both(
            remove("root/train/forest/b.png"), write("root/train/river/x.png", PNG_OF_ANOTHER_IMAGE)
        ),
        keep=("run",),
    ),
    Fault(
        "allow_data_change-resumes-and-says-what-changed",
        (*resume_folder_run(), "--allow_data_change"),
        r"Already trained: step 2",
        setup=write("root/train/forest/a.png", PNG_OF_ANOTHER_IMAGE),
        code=0,
        stdout=r"warning: resuming .* on changed training data: 1 file edited \(root:train/forest",
        keep=("run/checkpoints",),
    ),
    # --- 6. Folder datasets with bad files.
    Fault(
        "folder-without-root",
        train("--config.data.name=folder"),
        r"config\.data\.root is not set",
    ),
    Fault(
        "folder-root-missing",
        folder_train(),
        r"config\.data\.root='.*/root' does not exist",
    ),
    Fault(
        "folder-root-is-a-file",
        folder_train(),
        r"config\.data\.root='.*/root' does not exist",
        setup=write("root", "not a folder"),
    ),
    Fault(
        "folder-split-missing",
        folder_train(),
        r"Split folder '.*/root/test' does not exist \(folders in root: \['train'\]\)",
        setup=folders(train=GOOD),
    ),
    Fault(
        "folder-split-without-classes",
        folder_train(),
        r"Split folder '.*/root/train' has no class folders",
        setup=both(folders(test=GOOD), mkdirs("root/train")),
    ),
    Fault(
        "folder-class-without-images",
        folder_train(),
        r"Class folder '.*/root/train/river' contains no images",
        setup=folders(train={"forest": ["a.png"], "river": ["notes.txt"]}, test=GOOD),
    ),
    Fault(
        "folder-eval-split-unknown-class",
        folder_train(),
        r"'.*/root/test' has class folders \['lake'\] that are not among the known classes",
        setup=folders(train=GOOD, test={"forest": ["e.png"], "lake": ["f.png"]}),
    ),
    Fault(
        "folder-corrupt-image",
        folder_train(),
        r"1 unreadable image\(s\) in .*/train, first .*/forest/bad\.png: .*allow_skips",
        setup=folders(train={"forest": ["a.png", "bad.png"], "river": ["c.png"]}, test=GOOD),
        keep=("root",),
    ),
    Fault(
        "folder-dangling-link",
        folder_train(),
        r"first .*/river/gone\.png: missing \(a dangling link\)",
        setup=folders(train={"forest": ["a.png"], "river": ["c.png", "gone.png"]}, test=GOOD),
    ),
    # --- 7. Knowledge-base files and folders.
    validate(
        entry(),
        "{not json",
        name="bad-json",
        stdout=r"kb\.jsonl: line 2: bad JSON: Expecting property name",
    ),
    validate(
        entry(),
        "[1, 2]",
        name="not-an-object",
        stdout=r"line 2: line is not a JSON object",
    ),
    validate(
        json.dumps({"id": "scene/port", "level": "scene", "name": "port"}),
        name="missing-field",
        stdout=r"line 1, field 'description': missing required field",
    ),
    validate(
        entry("city/port"),
        name="unknown-level",
        stdout=r"line 1, field 'level': unknown level 'city'",
    ),
    validate(
        entry(), entry(), name="duplicate-id", stdout=r"line 2, field 'id': duplicate id 'scene/"
    ),
    validate(
        entry(parent="scene/nowhere"),
        name="unknown-parent",
        stdout=r"line 1, field 'parent': unknown parent id 'scene/nowhere'",
    ),
    validate(
        entry("scene/a", parent="scene/b"),
        entry("scene/b", parent="scene/a"),
        name="parent-cycle",
        stdout=r"field 'parent': parent cycle: scene/a -> scene/b -> scene/a",
    ),
    validate(
        entry(colour="red"), name="unknown-field", stdout=r"line 1, field 'colour': unknown field"
    ),
    validate(
        entry(name="Airport"),
        name="upper-case-name",
        stdout=r"line 1, field 'name': name must be lower case",
    ),
    validate(
        entry(level="object"),
        name="id-of-another-level",
        stdout=r"line 1, field 'id': id must start with 'object/'",
    ),
    validate("", name="empty-file", stdout=r"line 0: file has no entries"),
    Fault(
        "kb-validate-missing-file",
        ("kb", "validate", "{case}/kb.jsonl"),
        r"No such file or directory: '.*kb\.jsonl'",
    ),
    Fault(
        "kb-validate-a-folder",
        ("kb", "validate", "{case}/kb.jsonl"),
        r"Is a directory: '.*kb\.jsonl'",
        setup=mkdirs("kb.jsonl"),
    ),
    Fault(
        "kb-validate-not-utf8",
        ("kb", "validate", "{case}/kb.jsonl"),
        r".*kb\.jsonl: not UTF-8 text",
        setup=write("kb.jsonl", b"\xff\xfe\x00binary"),
    ),
    Fault(
        "kb-build-out-is-a-file",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out"),
        r"--out .*/out is a file; choose a new folder",
        setup=both(kb_file(entry()), write("out", "precious")),
        keep=("out",),
    ),
    Fault(
        "kb-build-out-is-a-dataset",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out"),
        r"--out .*/out exists and is not a knowledge base built by rs-jax; nothing was changed",
        setup=both(kb_file(entry()), write("out/metadata.json", "{}"), write("out/a.png", b"x")),
        keep=("out",),
    ),
    Fault(
        "kb-build-over-a-kb-without-overwrite",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out"),
        r"--out .*/out holds a built knowledge base; pass --overwrite to replace it",
        setup=both(kb_file(entry()), built_kb("out")),
        keep=("out",),
    ),
    Fault(
        "kb-build-batch-size-0",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out", "--batch-size", "0"),
        r"--batch-size must be >= 1, got 0",
        setup=kb_file(entry()),
    ),
    Fault(
        "kb-build-invalid-kb",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out"),
        r"refusing to build .*kb\.jsonl: fix the problems above",
        setup=kb_file(entry(), entry()),
        code=1,
        stdout=r"line 2, field 'id': duplicate id",
        check=absent("out"),
    ),
    Fault(
        "kb-build-missing-kb",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out"),
        r"No such file or directory: '.*kb\.jsonl'",
    ),
    Fault(
        "kb-search-missing-folder",
        ("kb", "search", "{case}/built", "airport"),
        r"built KB directory not found: .*/built",
    ),
    Fault(
        "kb-search-not-a-built-kb",
        ("kb", "search", "{case}/built", "airport"),
        r".*/built is not a complete built KB: missing metadata\.json",
        setup=write("built/notes.txt", "mine"),
    ),
    Fault(
        "kb-search-metadata-not-json",
        ("kb", "search", "{case}/built", "airport"),
        r"built/metadata\.json: not valid JSON",
        setup=built_kb("built", metadata="{"),
    ),
    Fault(
        "kb-search-k-0",
        ("kb", "search", "{case}/built", "airport", "-k", "0"),
        r"-k must be >= 1, got 0",
    ),
    Fault(
        "kb-search-unknown-level",
        ("kb", "search", "{case}/built", "airport", "--level", "city"),
        r"argument --level: invalid choice: 'city'",
    ),
    # --- 8. Converting to and from Hugging Face folders.
    Fault(
        "convert-check-missing-folder",
        ("convert", "check", "--hf", "{case}/hf"),
        r".*/hf: no config\.json \(expected a Hugging Face model folder\)",
    ),
    Fault(
        "convert-check-unsupported-model",
        ("convert", "check", "--hf", "{case}/hf"),
        r"hf/config\.json: model_type='bert': convert check compares",
        setup=hf_folder("hf", model_type="bert"),
    ),
    Fault(
        "convert-check-unknown-model-type",
        ("convert", "check", "--hf", "{case}/hf"),
        r"hf/config\.json: transformers cannot read it \(.*model type `nonsense`",
        setup=hf_folder("hf", model_type="nonsense"),
    ),
    Fault(
        "convert-check-config-not-json",
        ("convert", "check", "--hf", "{case}/hf"),
        r"hf/config\.json",
        setup=write("hf/config.json", "{not json"),
    ),
    Fault(
        "hf-to-orbax-without-towers",
        ("convert", "hf-to-orbax", "--config", TINY, "--workdir", "{case}/w"),
        r"hf-to-orbax needs config\.init\.vision and/or config\.init\.llm",
        check=absent("w"),
    ),
    Fault(
        "hf-to-orbax-over-a-run",
        (
            *("convert", "hf-to-orbax", "--config", TINY, "--workdir", "{run}"),
            "--config.init.vision={case}/hf",
        ),
        r"--workdir .*/run already holds a run \(checkpoints or config\.json\)",
        keep=("run",),
    ),
    Fault(
        "hf-to-orbax-tower-missing",
        (
            *("convert", "hf-to-orbax", "--config", TINY, "--workdir", "{case}/w"),
            "--config.init.llm={case}/hf",
        ),
        r"config\.init\.llm='.*/hf': no config\.json there",
    ),
    Fault(
        "orbax-to-hf-out-not-empty",
        (
            *("convert", "orbax-to-hf", "--config", TINY, "--workdir", "{case}/w"),
            *("--out", "{case}/out"),
        ),
        r"--out .*/out exists and is not an empty folder",
        setup=write("out/model.safetensors", b"weights"),
        keep=("out",),
    ),
    Fault(
        "orbax-to-hf-out-is-a-file",
        (
            *("convert", "orbax-to-hf", "--config", TINY, "--workdir", "{case}/w"),
            *("--out", "{case}/out"),
        ),
        r"--out .*/out exists and is not an empty folder",
        setup=write("out", "precious"),
        keep=("out",),
    ),
    Fault(
        "orbax-to-hf-without-checkpoint",
        (
            *("convert", "orbax-to-hf", "--config", TINY, "--workdir", "{case}/w"),
            *("--out", "{case}/out", "--config.data.data_dir={case}/data"),
        ),
        r"No checkpoint in .*/w; run `rs-jax train`",
        check=absent("w"),
    ),
]


# ---------------------------------------------------------------------------- the runner


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory) -> Path:
    """The tiny config's dataset and tokenizer, prepared before any case uses them (the
    generator's progress bars would be on the case's stderr)."""
    folder = tmp_path_factory.mktemp("shared_data")
    build_data(load_config(TINY, [f"data.data_dir={folder}"]), str(folder))
    return folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, shared_data) -> Path:
    workdir = tmp_path_factory.mktemp("trained") / "run"
    argv = train(*RUN_ARGS, config=RUN_CONFIG, workdir=str(workdir), data=str(shared_data))
    assert cli.main(argv) == 0
    return workdir


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    """A folder holding a folder dataset (root/), its data_dir (data/) and a run trained on
    it for 2 steps (run/); the paths in its config are relative to this folder."""
    base = tmp_path_factory.mktemp("folder_run")
    eight = {
        "forest": ["a.png", "b.png", "e.png", "f.png"],
        "river": ["c.png", "d.png", "g.png", "h.png"],
    }
    folders(train=eight, test=GOOD)(base)
    argv = train(*RUN_ARGS, *FOLDER_RUN_ARGS, config=RUN_CONFIG, workdir="run", data="data")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        assert cli.main(list(argv)) == 0
    finally:
        os.chdir(cwd)
    return base


def _fill(argv: tuple[str, ...], values: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


def _contents(path: Path) -> dict[str, bytes] | None:
    """Every file under `path` (or `path` itself) by relative name; None if it is gone."""
    if path.is_file():
        return {".": path.read_bytes()}
    if not path.is_dir():
        return None
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.id)
def test_fault(fault: Fault, tmp_path, request, capsys, monkeypatch):
    if fault.read_only and AS_ROOT:
        pytest.skip("root ignores file permissions")
    values = {"case": str(tmp_path), "data": str(request.getfixturevalue("shared_data"))}
    if any("{run}" in arg for arg in fault.argv):
        shutil.copytree(request.getfixturevalue("trained_run"), tmp_path / "run", symlinks=True)
        values["run"] = str(tmp_path / "run")
    if any("{folder_run}" in arg for arg in fault.argv):
        shutil.copytree(request.getfixturevalue("folder_run"), tmp_path, dirs_exist_ok=True)
        values["folder_run"] = str(tmp_path / "run")
    if fault.setup:
        fault.setup(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative and empty paths then point into the case's folder
    monkeypatch.delenv("RS_JAX_TRACEBACK", raising=False)
    for name, value in fault.env:
        monkeypatch.setenv(name, value)
    before = {path: _contents(tmp_path / path) for path in fault.keep}
    for path in fault.read_only:
        (tmp_path / path).chmod(0o555)
        request.addfinalizer(lambda p=tmp_path / path: p.chmod(0o755))
    capsys.readouterr()

    try:
        code = cli.main(_fill(fault.argv, values))
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()

    assert "Traceback" not in out + err, err
    assert code == fault.code, f"exit code {code}\nstdout: {out[-2000:]}\nstderr: {err}"
    if fault.code == 0:
        assert "error" not in err.lower(), err
        assert re.search(fault.message, out), out[-2000:]
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        if fault.code == 2:
            assert lines[0].startswith("rs-jax: error: "), lines[0]
        assert re.search(fault.message, lines[0]), lines[0]
    if fault.stdout:
        assert re.search(fault.stdout, out), out[-2000:]
    if "{case}/data" in " ".join(fault.argv):
        assert not (tmp_path / "data").exists(), "data was prepared before the error"
    for path, contents in before.items():
        assert _contents(tmp_path / path) == contents, f"{path} changed"
    if fault.check:
        fault.check(tmp_path)


@pytest.mark.parametrize(
    "command, signum, code",
    [("train", "SIGTERM", 75), ("train", "SIGINT", 75), ("eval", "SIGINT", 130)],
)
def test_a_signal_before_training_stops_cleanly(
    command, signum, code, tmp_path, shared_data, request, capsys, monkeypatch
):
    """SIGTERM or SIGINT while the data are prepared: one line, exit 75 for a run that can
    start again (130 for another command: eval of the trained run), and the workdir lock
    released."""
    import signal

    from rs_jax.train import experiment

    config = TINY
    if command == "eval":  # (the trained run is built before build_data is replaced)
        shutil.copytree(request.getfixturevalue("trained_run"), tmp_path / "w", symlinks=True)
        config = RUN_CONFIG

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), getattr(signal, signum))
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setattr(experiment, "build_data", interrupted)
    argv = [command, "--config", config, "--workdir", str(tmp_path / "w")]
    argv.append(f"--config.data.data_dir={shared_data}")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    assert cli.main(argv) == code
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert "Traceback" not in out + err and signum in line
    assert not (tmp_path / "w" / LOCK_FILE).exists()
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # restored


def test_a_step_larger_than_the_memory_stops_before_step_1(
    tmp_path, shared_data, capsys, monkeypatch
):
    """The compiled step's peak set against what a device has (host RAM on CPU, here made
    1 MiB): one line naming the knobs, before any step runs or anything is saved."""
    from rs_jax.train import report

    monkeypatch.setattr(report, "device_memory_bytes", lambda device: (2**20, "a test limit"))
    argv = train(config=RUN_CONFIG, workdir=str(tmp_path / "w"), data=str(shared_data))
    assert cli.main(list(argv)) == 2
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert re.search(r"needs .* a device at its peak, more than 1\.0 MiB \(a test limit\)", line)
    assert "config.data.batch_size" in line and "config.model.remat_policy=full" in line
    assert "step 1/" not in out and not list((tmp_path / "w").glob("checkpoints/*"))


def test_an_unexpected_exception_is_one_line_and_debug_shows_it(capsys, monkeypatch):
    from rs_jax import config as config_lib

    def broken(*args, **kwargs):
        raise RuntimeError("something deep\nand more")

    monkeypatch.setattr(config_lib, "validate_config", broken)
    assert cli.main(["config", "--config", TINY]) == 1
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert line == (
        "rs-jax: error: config failed: RuntimeError: something deep "
        "(run again with --debug for the traceback)"
    )
    with pytest.raises(RuntimeError, match="something deep"):
        cli.main(["config", "--config", TINY, "--debug"])


def test_there_are_enough_distinct_cases():
    ids = [fault.id for fault in FAULTS]
    assert len(ids) == len(set(ids)) and len(ids) >= 100


def test_allow_skips_leaves_bad_images_out(tmp_path):
    """With config.data.allow_skips the corrupt and dangling files are left out and listed,
    the good images are kept, and the files themselves are not touched."""
    bad_files = {"forest": ["a.png", "bad.png"], "river": ["c.png", "gone.png"]}
    folders(train=bad_files, test=GOOD)(tmp_path)
    before = _contents(tmp_path / "root")
    overrides = [
        "data.name=folder",
        f"data.root={tmp_path / 'root'}",
        f"data.data_dir={tmp_path / 'data'}",
        "data.allow_skips=true",
    ]
    data = build_data(load_config(TINY, overrides), str(tmp_path / "w"))
    skipped = data.skips["train"]["skipped"]
    assert sorted(Path(p).name for p in skipped) == ["bad.png", "gone.png"]
    assert data.num_train_images == 2 and data.num_eval_examples == 4
    assert _contents(tmp_path / "root") == before
