"""Between training runs (Orbax) and Hugging Face folders.

`rs-jax convert hf-to-orbax`: the full model with the towers of config.init.vision /
config.init.llm, as a step-0 checkpoint of a new workdir (to evaluate, serve or start
from). `rs-jax convert orbax-to-hf`: a run's latest checkpoint -> transformers folders for
its decoder (`OUT/llm`, with the run's tokenizer) and its vision tower (`OUT/vision`)."""

from __future__ import annotations

import json

import ml_collections
from etils import epath
from flax import nnx

from rs_jax.convert import hf_decoder, hf_vision
from rs_jax.files import local_path, staged_folder


def hf_to_orbax(config: ml_collections.ConfigDict, workdir: epath.PathLike) -> epath.Path:
    """Writes the initial train state (imported towers, the other parts initialised from
    config.seed) as step 0 of `workdir`, with the resolved config.json; returns the step's
    folder. A workdir that holds a run (a checkpoint or a config.json) is left untouched."""
    from rs_jax.train import experiment as experiment_lib
    from rs_jax.train.checkpointing import Checkpointer

    workdir = epath.Path(workdir)
    if not (config.init.vision or config.init.llm):
        raise ValueError("hf-to-orbax needs config.init.vision and/or config.init.llm (folders)")
    checkpointer = Checkpointer(workdir)
    if checkpointer.all_steps() or (workdir / "config.json").exists():
        checkpointer.close()
        raise FileExistsError(
            f"--workdir {workdir} already holds a run (checkpoints or config.json); "
            f"choose a new folder"
        )
    exp = experiment_lib.setup(config, str(workdir))
    resolved = exp.config.to_json_best_effort(indent=2)
    (workdir / "config.json").write_text(resolved)
    checkpointer.save(0, exp.state, config=json.loads(resolved))
    checkpointer.wait()
    checkpointer.close()
    print(f"Wrote {checkpointer.step_dir(0)} from {config.init.vision} and {config.init.llm}.")
    return checkpointer.step_dir(0)


def orbax_to_hf(
    config: ml_collections.ConfigDict, workdir: str, out: epath.PathLike
) -> list[epath.Path]:
    """Exports the towers of the latest checkpoint in `workdir`; returns the folders
    written. `out` must be new or empty: nothing in it is overwritten. It is on this host
    (safetensors and transformers write only local files)."""
    from rs_jax.train import experiment as experiment_lib
    from rs_jax.train.checkpointing import open_latest

    out = local_path(out, "--out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} exists and is not an empty folder; choose another")
    # Before preparing data, and without creating anything in a mistyped --workdir.
    checkpointer, step = open_latest(workdir)
    try:
        exp = experiment_lib.setup(config, workdir, abstract=True)
        params = checkpointer.restore_params(step, exp.state["params"])
    finally:
        checkpointer.close()
    model = nnx.merge(exp.graphdef, params)
    exported = []
    with staged_folder(out) as staging:  # a failed export leaves `out` as it was
        if model.llm.group_size == 1:
            hf_decoder.export_decoder(model.llm, staging / "llm")
            exp.data.tokenizer.save_pretrained(str(staging / "llm"))
            exported.append("llm")
        else:
            print("rs-jax: the decoder has visual-token MoE blocks (llm.moe_every): not exported")
        # A ViT trained from scratch with the default settings has SigLIP's shape.
        hf_vision.export_vision_tower(model.vision, staging / "vision")
        exported.append("vision")
    written = [out / name for name in exported]
    for folder in written:
        print(f"Wrote {folder} (step {step} of {workdir}).")
    return written
