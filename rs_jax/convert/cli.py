"""`rs-jax convert ...`: the parser imports nothing heavy, so the CLI can set devices first."""

from __future__ import annotations

import argparse


def add_convert_parser(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser("convert", help="Hugging Face checkpoint conversion.")
    actions = convert.add_subparsers(dest="convert_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="Load a Hugging Face folder in rs-jax and transformers; print the largest "
        "output difference on random inputs (exit code 1 above 1e-4).",
    )
    check.add_argument("--hf", required=True, metavar="DIR", help="config.json + *.safetensors")

    def with_run(name: str, help_text: str, workdir: str, trained: bool) -> argparse.ArgumentParser:
        action = actions.add_parser(name, help=help_text)
        action.add_argument(
            "--config",
            required=not trained,
            metavar="FILE.py[:ARG]",
            help="(default: the config stored with --workdir's newest checkpoint)"
            if trained
            else None,
        )
        action.add_argument("--workdir", required=True, help=workdir)
        return action

    with_run(
        "hf-to-orbax",
        "Write the full model with the towers of config.init.vision / config.init.llm as "
        "step 0 of a new workdir (to evaluate, or start from with config.init.from_checkpoint).",
        "a new folder",
        trained=False,
    )
    export = with_run(
        "orbax-to-hf",
        "Write the latest checkpoint's decoder (OUT/llm, with the tokenizer) and vision tower "
        "(OUT/vision) as folders transformers loads, with the config the run was trained "
        "with (stored with its checkpoints) unless --config is given.",
        "the training run's folder",
        trained=True,
    )
    export.add_argument("--out", required=True, help="a new or empty folder")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.convert_command == "check":
        from rs_jax.convert import check

        return check.run(args.hf)
    from rs_jax.train import export, run_config

    trained = args.workdir if args.convert_command == "orbax-to-hf" else None  # else: new
    config = run_config.for_command(args.config, trained, overrides)
    if args.convert_command == "hf-to-orbax":
        export.hf_to_orbax(config, args.workdir)
    else:
        export.orbax_to_hf(config, args.workdir, args.out)
    return 0
