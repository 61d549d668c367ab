"""``rs-jax`` command line: train and evaluate from a config file.

  rs-jax train --config configs/demo.py[:arg] --workdir runs/demo [--config.KEY=VALUE ...]
  rs-jax eval  --workdir runs/demo [--config C]   # C: default, the run's stored config
  rs-jax config --config configs/demo.py --config.train.steps=10   # print the result
  rs-jax compile --config C --topology v5p:4x4x4 [--step train|eval|generate] [--json]
  rs-jax predict --workdir W --image FILE [--question "..."] [--json]
  rs-jax predict --workdir W --images DIR --out FILE.jsonl [--question "..."]
  rs-jax chat --workdir W --image FILE   # questions from stdin, one a line
  rs-jax score --protocol classification|rsvqa|captions|grounding --pred P.jsonl --ref R.jsonl
               [--json] [--allow-missing] [--box-format geochat|qwen]   # any model's answers
  rs-jax data pack --config C --out DIR [--split train|test] [--shards N] [--workers N]
  rs-jax kb validate|build|search ...   # knowledge base; see `rs-jax kb --help`
  rs-jax convert check --hf DIR          # a Hugging Face folder in rs-jax vs transformers
  rs-jax convert hf-to-orbax --config C --workdir W [--config.KEY=VALUE ...]
  rs-jax convert orbax-to-hf --workdir W --out DIR [--config C] [--config.KEY=VALUE ...]

Overrides use the type of the value they replace: ``--config.train.steps=10``,
``--config.model.baseline=true``, ``--config.data.tasks=scene,count``,
``--config.mesh.data=2`` (``--config.KEY VALUE`` works too). eval, predict, chat and
orbax-to-hf without --config use the config stored in the run folder by training.

Simulating N devices on a CPU: set ``RS_JAX_CPU_DEVICES=N`` (e.g. 8). The CLI reads it
before jax is imported and sets ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
and, unless already set, ``JAX_PLATFORMS=cpu`` and ``NPROC`` (XLA's CPU thread pool;
see `simulate_cpu_devices`); then ``--config.mesh.*`` can describe
any mesh of N devices. Set ``RS_JAX_TRACEBACK=1`` to see full tracebacks of errors
that are otherwise reported in one line.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import MutableMapping, Sequence
from typing import NoReturn

CONFIG_PREFIX = "--config."


def quiet_libtpu_without_tpu() -> None:
    """libtpu (the tpu and test extras) looks for a TPU when jax starts and, on a host with
    none, prints many lines of errors before jax falls back to the other backends. Naming
    an accelerator type and this host as the only worker quiets it; `rs-jax compile` then
    still compiles for any --topology. A TPU VM (its /dev/accel* or /dev/vfio devices, or
    its own TPU_* variables) is left as it is. With no TPU to share, several processes (test
    workers, a benchmark beside a compile) may load libtpu at once."""
    if glob.glob("/dev/accel*") or os.path.isdir("/dev/vfio"):
        return
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5p-8")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def _simulate_cpu_devices() -> None:
    count = os.environ.get("RS_JAX_CPU_DEVICES", "").strip()
    if not count:
        return
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"RS_JAX_CPU_DEVICES must be a positive integer, got {count!r}")
    if "jax" in sys.modules:
        # The device count is fixed when jax's backend starts; too late to change it.
        print("rs-jax: warning: jax already imported; RS_JAX_CPU_DEVICES ignored", file=sys.stderr)
        return
    simulate_cpu_devices(int(count))


def simulate_cpu_devices(count: int, env: MutableMapping[str, str] = os.environ) -> None:
    """Makes jax (imported after this, or in a process started with `env`) see `count` CPU
    devices.

    XLA:CPU runs every simulated device's collectives on one intra-op thread pool sized
    to the cores; a device waiting in one collective holds a thread while its peers may
    need threads for another, so on a 2-core machine 8 devices can deadlock until XLA
    aborts. XLA sizes that pool from NPROC: four threads per device avoid the stall.
    """
    flag = f"--xla_force_host_platform_device_count={count}"
    flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags.strip()} {flag}".strip()
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("NPROC", str(max(4 * count, os.cpu_count() or 1)))


def _initialize_distributed() -> None:
    """Multi-host runs set RS_JAX_DISTRIBUTED=1. On SLURM and TPU pods jax finds the
    coordinator, process count and id itself; elsewhere (several processes on one machine,
    launch/multiprocess.sh) JAX_COORDINATOR_ADDRESS, RS_JAX_NUM_PROCESSES and
    RS_JAX_PROCESS_ID give them."""
    if os.environ.get("RS_JAX_DISTRIBUTED", "") in ("", "0"):
        return
    import jax

    given = {}
    for key, name in (
        ("num_processes", "RS_JAX_NUM_PROCESSES"),
        ("process_id", "RS_JAX_PROCESS_ID"),
    ):
        value = os.environ.get(name, "").strip()
        if value:
            if not value.isdigit():
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
            given[key] = int(value)
    jax.distributed.initialize(**given)
    if jax.process_index() > 0:
        # Every process computes the same global metrics: one copy of the report and
        # progress lines (process 0's) is enough; warnings and errors still reach stderr.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)


def _split_overrides(extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """Pull ``--config.k=v`` / ``--config.k v`` out of argparse's leftovers."""
    overrides, unknown = [], []
    i = 0
    while i < len(extra):
        arg = extra[i]
        if arg.startswith(CONFIG_PREFIX):
            body = arg[len(CONFIG_PREFIX) :]
            if "=" not in body:
                if i + 1 >= len(extra):
                    raise ValueError(f"{arg} needs a value: {arg}=VALUE")
                body = f"{body}={extra[i + 1]}"
                i += 1
            overrides.append(body)
        else:
            unknown.append(arg)
        i += 1
    return overrides, unknown


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are reported like every other error: one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        # argparse would print the whole usage first; the line points to --help instead.
        self.exit(2, f"rs-jax: error: {message} (see `{self.prog} --help`)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rs-jax",
        description="Semantic-augmented multi-level remote-sensing VLMs in JAX.",
        epilog="Config overrides: --config.KEY.PATH=VALUE (any number, after the subcommand). "
        "--debug (anywhere): a failure prints its traceback instead of one line.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_commands(commands)
    _add_score_command(commands)

    from rs_jax.convert.cli import add_convert_parser
    from rs_jax.data.cli import add_data_parser
    from rs_jax.kb.cli import add_kb_parser

    add_data_parser(commands)
    add_kb_parser(commands)
    add_convert_parser(commands)
    return parser


def _add_command(
    commands: argparse._SubParsersAction,
    name: str,
    help_text: str,
    workdir: bool = True,
    reads_run: bool = False,
) -> argparse.ArgumentParser:
    """A command that takes --config; reads_run: a command on a trained run, whose --config
    defaults to the config stored with the run's newest checkpoint."""
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.add_argument(
        "--config",
        required=not reads_run,
        metavar="FILE.py[:ARG]",
        help="config file, e.g. configs/demo.py"
        + (" (default: the one stored with --workdir's newest checkpoint)" if reads_run else ""),
    )
    if workdir:
        sub.add_argument(
            "--workdir", required=True, help="checkpoints, logs and data cache go here"
        )
    return sub


def _add_run_commands(commands: argparse._SubParsersAction) -> None:
    """The commands that read a config: train, eval, config, compile, predict, chat."""
    train = _add_command(
        commands, "train", "Train (resumes from the latest checkpoint in --workdir)."
    )
    train.add_argument(
        "--allow_config_change",
        action="store_true",
        help="resume even if the config changes the model, data or optimizer (logged)",
    )
    train.add_argument(
        "--allow_data_change",
        action="store_true",
        help="resume even if training files were added, removed or edited (logged)",
    )
    _add_command(commands, "eval", "Evaluate the latest checkpoint in --workdir.", reads_run=True)
    _add_command(commands, "config", "Print the resolved config and exit.", workdir=False)
    compile_ = _add_command(
        commands,
        "compile",
        "Compile a step ahead of time for a TPU slice with libtpu (no TPU needed): "
        "per-chip memory, whether it fits, kernels, FLOPs. Exits 1 if it does not fit.",
        workdir=False,
        reads_run=True,
    )
    compile_.add_argument(
        "--workdir", help="a trained run: its stored config, when --config is not given"
    )
    compile_.add_argument(
        "--topology",
        required=True,
        help="a chip topology (v5p:4x4x4, v5e:2x2, v6e:4x4) or a Cloud TPU type (v5p-128, "
        "v5litepod-16, v6e-256; v4 and v5p types count TensorCores, two a chip)",
    )
    compile_.add_argument("--slices", type=int, default=1, help="slices joined by DCN")
    compile_.add_argument("--batch", type=int, help="global batch (default data.batch_size)")
    compile_.add_argument("--step", default="train", choices=("train", "eval", "generate"))
    compile_.add_argument("--dump", metavar="DIR", help="write the optimized HLO there")
    compile_.add_argument("--json", action="store_true", help="print the report as JSON")

    from rs_jax.eval import predict

    predict.add_predict_arguments(
        _add_command(
            commands,
            "predict",
            "Answer a question about an image, or about every image in a folder.",
            reads_run=True,
        )
    )
    predict.add_chat_arguments(
        _add_command(
            commands,
            "chat",
            "Talk about an image: questions from stdin, each after the earlier rounds.",
            reads_run=True,
        )
    )


def _add_score_command(commands: argparse._SubParsersAction) -> None:
    from rs_jax.data import boxes

    score = commands.add_parser(
        "score",
        help="Score answers of any model (JSONL) with the evaluator's protocol code.",
        description='Score answers ({"id", "answer"} a line) against references ({"id", '
        '"answer", "task" or "question_type", "references" (captions), "class"}) with the '
        "protocols of `rs-jax eval` (docs/evaluation.md).",
    )
    score.add_argument(
        "--protocol", required=True, choices=("classification", "rsvqa", "captions", "grounding")
    )
    score.add_argument("--pred", required=True, metavar="P.jsonl", help="the answers")
    score.add_argument("--ref", required=True, metavar="R.jsonl", help="the references")
    score.add_argument("--json", action="store_true", help="print the results as JSON")
    score.add_argument(
        "--allow-missing",
        action="store_true",
        help="score the ids found on both sides and count the others (default: an error)",
    )
    score.add_argument(
        "--box-format",
        default="geochat",
        choices=boxes.FORMATS,
        help="grounding: how boxes are written (as config.data.box_format)",
    )


def _cmd_train(config: object, args: argparse.Namespace) -> int:
    from rs_jax.train import preemption, trainer

    summary = trainer.train(
        config, args.workdir, args.allow_config_change, allow_data_change=args.allow_data_change
    )
    return preemption.PREEMPTED_EXIT_CODE if summary.get("preempted") else 0


def _cmd_eval(config: object, workdir: str) -> None:
    from rs_jax.eval import evaluate

    evaluate.evaluate(config, workdir)


def _cmd_predict(config: object, args: argparse.Namespace) -> int:
    from rs_jax.eval import predict

    return predict.run_predict(config, args)


def _cmd_chat(config: object, args: argparse.Namespace) -> int:
    from rs_jax.eval import predict

    return predict.run_chat(config, args)


def _cmd_score(args: argparse.Namespace) -> None:
    import json

    from rs_jax.eval import protocols, score

    results = score.score(args.protocol, args.pred, args.ref, args.allow_missing, args.box_format)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(protocols.markdown(results, f"{args.protocol}: {args.pred} against {args.ref}"), end="")
    missing = results["missing"]
    if missing["no_answer"] or missing["no_reference"]:
        print(
            f"\nLeft out (--allow-missing): {missing['no_answer']} references without an answer, "
            f"{missing['no_reference']} answers without a reference"
        )


def _cmd_compile(config: object, args: argparse.Namespace) -> int:
    import json

    from rs_jax.plan import aot

    if args.batch is not None and args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    topology = aot.parse_topology(args.topology, args.slices)
    result, compiled = aot.compile_step(
        config, topology, step=args.step, batch_size=args.batch, dump=args.dump
    )
    print(json.dumps(result, indent=2) if args.json else aot.format_result(result, compiled))
    if not result["fits"]:
        print(f"rs-jax: {aot.not_fitting_message(result, compiled)}", file=sys.stderr)
        return 1
    return 0


class Interrupted(BaseException):
    """SIGTERM or SIGINT outside the training loop (which finishes its step and saves).

    A BaseException, as KeyboardInterrupt: no `except Exception` on the way swallows it, and
    every `finally` and `with` (the workdir lock) runs as it propagates."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise Interrupted(signum)


def _stop_signals_raise() -> dict[int, object]:
    """From the command's start, SIGTERM and SIGINT raise `Interrupted` (during data
    preparation, compilation or model loading alike); the previous handlers, to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}


def _failure_line(command: str, e: Exception) -> str:
    """An unexpected exception as one line: what failed, the exception's first line."""
    detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return (
        f"rs-jax: error: {command} failed: {type(e).__name__}"
        + (f": {detail}" if detail else "")
        + " (run again with --debug for the traceback)"
    )


class _OrbaxBackgroundTracebacks(logging.Filter):
    """Drops the tracebacks Orbax's background save threads log when a save fails: Orbax
    keeps that exception and raises it in the main thread, where it becomes the one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_orbax = f"{os.sep}orbax{os.sep}checkpoint{os.sep}" in record.pathname
        return not (from_orbax and record.exc_info and record.levelno >= logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("RS_JAX_TRACEBACK"))
    argv = [a for a in argv if a != "--debug"]
    absl_logger = logging.getLogger("absl")
    if not debug and not any(
        isinstance(f, _OrbaxBackgroundTracebacks) for f in absl_logger.filters
    ):
        absl_logger.addFilter(_OrbaxBackgroundTracebacks())
    args, overrides = _parse_args(argv)
    previous_handlers = _stop_signals_raise()
    try:
        quiet_libtpu_without_tpu()
        _simulate_cpu_devices()
        return _run(args, overrides)
    except Interrupted as e:
        if args.command == "train":  # whatever it saved resumes with the same command
            print(f"rs-jax: stopped by {e} before training started; the same command "
                  f"starts again", file=sys.stderr)  # fmt: skip
            return 75  # EX_TEMPFAIL: a scheduler may retry
        print(f"rs-jax: {args.command} interrupted by {e}", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        if debug:
            raise
        # Config, mesh and checkpoint problems are the user's to fix: one line, no stack.
        # So are the files it names (OSError: missing, a folder, not a folder, no access).
        # A library's message may span lines (TFDS's split errors): one line all the same.
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"rs-jax: error: {message}", file=sys.stderr)
        return 2
    except Exception as e:
        if debug:
            raise
        print(_failure_line(args.command, e), file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


def _parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The command's arguments and its --config.KEY=VALUE overrides; a usage mistake exits."""
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    takes_config = args.command not in ("kb", "convert", "score") or (
        getattr(args, "convert_command", None) in ("orbax-to-hf", "hf-to-orbax")
    )
    try:
        overrides, unknown = _split_overrides(extra) if takes_config else ([], extra)
    except ValueError as e:
        parser.error(str(e))
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "workdir", None) is not None and not args.workdir.strip():
        # Path("") is the current directory: a run would scatter its files there.
        parser.error("--workdir is empty; name a folder for the run")
    return args, overrides


def _run(args: argparse.Namespace, overrides: list[str]) -> int:
    """Runs the command; its exit code."""
    if args.command == "kb":
        from rs_jax.kb.cli import run

        return run(args)
    if args.command == "convert":
        from rs_jax.convert.cli import run

        return run(args, overrides)
    if args.command == "score":
        _cmd_score(args)
        return 0
    from rs_jax.train import run_config

    # train checks a changed config itself, at resume.
    workdir = None if args.command == "train" else getattr(args, "workdir", None)
    config = run_config.for_command(args.config, workdir, overrides)
    _initialize_distributed()
    if args.command == "config":
        print(config)
    elif args.command == "compile":
        return _cmd_compile(config, args)
    elif args.command == "train":
        return _cmd_train(config, args)
    elif args.command == "eval":
        _cmd_eval(config, args.workdir)
    elif args.command == "predict":
        return _cmd_predict(config, args)
    elif args.command == "chat":
        return _cmd_chat(config, args)
    elif args.command == "data":
        from rs_jax.data.cli import run

        return run(config, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
