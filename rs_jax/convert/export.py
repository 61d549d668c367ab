"""`rs-jax convert orbax-to-hf`: a training run's latest checkpoint -> transformers folders
for its decoder (`OUT/llm`, with the run's tokenizer) and its vision tower (`OUT/vision`)."""

from __future__ import annotations

from pathlib import Path

import ml_collections
from flax import nnx

from rs_jax.convert import hf_decoder, hf_vision


def orbax_to_hf(config: ml_collections.ConfigDict, workdir: str, out: str | Path) -> list[Path]:
    """Exports the towers of the latest checkpoint in `workdir`; returns the folders
    written. `out` must be new or empty: nothing in it is overwritten."""
    from rs_jax.train import experiment as experiment_lib
    from rs_jax.train.checkpointing import Checkpointer

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} exists and is not an empty folder; choose another")
    exp = experiment_lib.setup(config, workdir)
    checkpointer = Checkpointer(workdir)
    step = checkpointer.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}")
    params = checkpointer.restore(step, exp.abstract_state())["params"]
    checkpointer.close()
    model = nnx.merge(exp.graphdef, params)
    written = []
    if model.llm.group_size == 1:
        hf_decoder.export_decoder(model.llm, out / "llm")
        exp.data.tokenizer.save_pretrained(str(out / "llm"))
        written.append(out / "llm")
    else:
        print("rs-jax: the decoder has visual-token MoE blocks (llm.moe_every): not exported")
    # A ViT trained from scratch with the default settings has SigLIP's shape.
    hf_vision.export_vision_tower(model.vision, out / "vision")
    written.append(out / "vision")
    for folder in written:
        print(f"Wrote {folder} (step {step} of {workdir}).")
    return written
