"""Interactive use of a trained model (notebooks): ask about an image, see what was
retrieved at each semantic level and which experts its tokens went to."""

import dataclasses
from pathlib import Path

import jax
import ml_collections
import numpy as np
from PIL import Image

from rs_jax import sharding
from rs_jax.data.images import load_image
from rs_jax.eval.evaluate import make_eval_step
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.checkpointing import open_latest


@dataclasses.dataclass
class Answer:
    text: str
    image: np.ndarray  # uint8 [S, S, 3] as the model saw it
    retrieved: dict[str, list[tuple[str, float]]]  # level -> [(entry name, score)], best first
    expert_usage: dict[str, list[float]]  # level -> share of the level's tokens per expert


class Session:
    """A trained model loaded from `workdir` (the latest checkpoint) for one-off questions."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config = config
        checkpointer, self.step = open_latest(workdir)
        self.exp = experiment_lib.setup(config, workdir)
        checkpointer.check_knowledge(
            self.step, self.exp.knowledge.sha256, self.exp.knowledge.source
        )
        self.params = checkpointer.restore(self.step, self.exp.abstract_state())["params"]
        checkpointer.close()
        self._eval_step = make_eval_step(self.exp)

    def ask(self, image: np.ndarray | str | Path, question: str) -> Answer:
        """image: a path or an array [H, W, 3] (resized to the model's input size)."""
        size = self.config.data.image_size
        if isinstance(image, str | Path):
            pixels = load_image(str(image), size)
        else:
            pixels = np.asarray(Image.fromarray(np.asarray(image, np.uint8)).resize((size, size)))
        prompt_ids, prompt_mask = self.exp.data.encoder.prompt(question)
        # Pad to a batch the mesh can split; row 0 is the question.
        rows = sharding.batch_divisor(self.exp.mesh, self.exp.rules)
        batch = {
            "image": np.repeat(pixels[None], rows, 0),
            "prefix_ids": np.repeat(self.exp.data.encoder.prefix_ids[None], rows, 0),
            "prompt_ids": np.repeat(prompt_ids[None], rows, 0),
            "prompt_mask": np.repeat(prompt_mask[None], rows, 0),
            "kb_labels": np.full((rows, 1), -1, np.int32),
            "valid": np.ones((rows,), np.int32),
            "question_text": np.array([question] * rows, object),
        }
        if self.exp.data.host_retriever is not None:
            batch = self.exp.data.host_retriever.map_batch(batch)
        with jax.set_mesh(self.exp.mesh):
            out = jax.device_get(self._eval_step(self.params, self.exp.shard_batch(batch)))
        text = self.exp.data.tokenizer.decode(out["answers"][0], skip_special_tokens=True)
        retrieved, usage = {}, {}
        level_names = self.exp.model_config.level_names
        if not self.exp.model_config.baseline:
            entries = self.exp.knowledge.entries
            for level, name in enumerate(level_names):
                ids, scores = out[f"ids/{level}"][0], out[f"scores/{level}"][0]
                retrieved[name] = [(entries[i].name, float(s)) for i, s in zip(ids, scores)]
            counts = np.asarray(out["expert_counts"])
            shares = counts / np.maximum(counts.sum(-1, keepdims=True), 1)
            usage = {n: shares[i].tolist() for i, n in enumerate(level_names)}
        return Answer(text, pixels, retrieved, usage)
