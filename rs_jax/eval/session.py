"""Interactive use of a trained model (notebooks, `rs-jax predict` / `rs-jax chat`): ask
about an image, optionally after earlier rounds of a conversation, see what was retrieved at
each semantic level and which experts its tokens went to."""

import dataclasses
import os
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx
from PIL import Image

from rs_jax import sharding
from rs_jax.data.images import bands_of, load_image
from rs_jax.data.text import History
from rs_jax.eval.evaluate import make_eval_step
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.checkpointing import open_latest

ImageLike = np.ndarray | str | os.PathLike


@dataclasses.dataclass
class Answer:
    text: str
    image: np.ndarray  # uint8 [S, S, 3] as the model saw it
    retrieved: dict[str, list[tuple[str, float]]]  # level -> [(entry name, score)], best first
    expert_usage: dict[str, list[float]]  # level -> share of the level's tokens per expert
    # Wall time of the model call that answered (a batch's time split evenly over its
    # questions); a Session's first call of each batch size includes compiling the step.
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Question:
    """One row of `Session.ask_batch`: an image (path or array), the question, and the
    earlier (question, answer) rounds of the conversation, oldest first."""

    image: ImageLike
    question: str
    history: History = ()


def _make_row_expert_counts(exp: experiment_lib.Experiment):
    """Jitted (params, batch) -> expert counts per row [B, L, E_l].

    The eval step's counts are summed over the batch; a batch of different images needs
    each row's own. Routing (and capacity) is per row, so each row is encoded as a batch of
    one under vmap. No logical-axis rules are in scope: the model's activation pins, which
    would split a batch of one over the mesh's batch axes, are then no-ops."""
    graphdef = exp.graphdef

    def counts(params, batch):
        model = nnx.merge(graphdef, params)

        def one(image, prompt_ids, prompt_mask, kb_ids):
            kb = None if kb_ids is None else kb_ids[None]
            visual = model.encode(image[None], prompt_ids[None], prompt_mask[None], kb)
            return visual.routing.expert_counts

        args = (batch["image"], batch["prompt_ids"], batch["prompt_mask"], batch.get("kb_ids"))
        return jax.vmap(one)(*args)

    return jax.jit(counts, in_shardings=(exp.state_shardings["params"], None))


class Session:
    """A trained model loaded from `workdir` (the latest checkpoint) for one-off questions.

    `load_seconds`: how long loading (data setup, checkpoint restore) took."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        start = time.perf_counter()
        self.config = config
        checkpointer, self.step = open_latest(workdir)
        try:
            self.exp = experiment_lib.setup(config, workdir, abstract=True)
            checkpointer.check_knowledge(
                self.step, self.exp.knowledge.sha256, self.exp.knowledge.source
            )
            self.params = checkpointer.restore_params(self.step, self.exp.state["params"])
        finally:
            checkpointer.close()
        self._eval_step = make_eval_step(self.exp)
        self._row_counts = None  # compiled on the first batch of different images
        self.bands = bands_of(config.data)
        self.batch_divisor = sharding.batch_divisor(self.exp.mesh, self.exp.rules)
        self.load_seconds = time.perf_counter() - start

    @property
    def batch_size(self) -> int:
        """Rows of a full `ask_batch` batch: config.eval.batch_size, rounded up to a
        multiple of the mesh's batch shards."""
        return _round_up(max(int(self.config.eval.batch_size), 1), self.batch_divisor)

    def load(self, image: ImageLike) -> np.ndarray:
        """A path or an array [H, W, 3] -> uint8 [S, S, 3] as the model sees it. A file that
        cannot be decoded raises UnreadableImageError naming it."""
        size = self.config.data.image_size
        if isinstance(image, str | os.PathLike):
            return load_image(os.fspath(image), size, self.bands)
        return np.asarray(Image.fromarray(np.asarray(image, np.uint8)).resize((size, size)))

    def ask(self, image: ImageLike, question: str, history: History = ()) -> Answer:
        """image: a path or an array [H, W, 3] (resized to the model's input size); history:
        the earlier (question, answer) rounds of the conversation, oldest first."""
        return self.ask_batch([Question(image, question, tuple(history))])[0]

    def ask_batch(self, questions: Sequence[Question], rows: int | None = None) -> list[Answer]:
        """One model call for all `questions` (each row its own image, question and history);
        the batch is padded to `rows` (default: the next multiple of the mesh's batch shards)
        by repeating the last question. Answers come back in order."""
        if not questions:
            return []
        if rows is None:
            rows = _round_up(len(questions), self.batch_divisor)
        if rows < len(questions) or rows % self.batch_divisor:
            raise ValueError(
                f"{len(questions)} questions in a batch of {rows} rows: the batch must hold "
                f"them all and be a multiple of the mesh's {self.batch_divisor} batch shards"
            )
        pixels = [self.load(q.image) for q in questions]  # unreadable files fail before the model
        start = time.perf_counter()
        encoder = self.exp.data.encoder
        prompts = [encoder.prompt(q.question, tuple(q.history)) for q in questions]
        pad = [len(questions) - 1] * (rows - len(questions))
        order = list(range(len(questions))) + pad
        batch = {
            "image": np.stack([pixels[i] for i in order]),
            "prefix_ids": np.repeat(encoder.prefix_ids[None], rows, 0),
            "prompt_ids": np.stack([prompts[i][0] for i in order]),
            "prompt_mask": np.stack([prompts[i][1] for i in order]),
            "kb_labels": np.full((rows, 1), -1, np.int32),
            "valid": np.array([1] * len(questions) + [0] * len(pad), np.int32),
            "question_text": np.array([questions[i].question for i in order], object),
        }
        if self.exp.data.host_retriever is not None:
            batch = self.exp.data.host_retriever.map_batch(batch)
        model_config = self.exp.model_config
        with jax.set_mesh(self.exp.mesh):
            sharded = self.exp.shard_batch(batch)
            out = jax.device_get(self._eval_step(self.params, sharded))
            counts = None
            if model_config.has_semantic_experts:
                if len(questions) == 1:
                    # Every row is the same question: the batch's counts are the row's, scaled.
                    counts = np.asarray(out["expert_counts"])[None]
                else:
                    if self._row_counts is None:
                        self._row_counts = _make_row_expert_counts(self.exp)
                    counts = np.asarray(jax.device_get(self._row_counts(self.params, sharded)))
        seconds = (time.perf_counter() - start) / len(questions)
        answers = []
        level_names = model_config.level_names
        tokenizer = self.exp.data.tokenizer
        for row in range(len(questions)):
            text = tokenizer.decode(out["answers"][row], skip_special_tokens=True)
            retrieved, usage = {}, {}
            if model_config.retrieves:
                entries = self.exp.knowledge.entries
                for level, name in enumerate(level_names):
                    ids, scores = out[f"ids/{level}"][row], out[f"scores/{level}"][row]
                    retrieved[name] = [(entries[i].name, float(s)) for i, s in zip(ids, scores)]
            if counts is not None:
                shares = counts[row] / np.maximum(counts[row].sum(-1, keepdims=True), 1)
                usage = {n: shares[i].tolist() for i, n in enumerate(level_names)}
            answers.append(Answer(text, pixels[row], retrieved, usage, seconds))
        return answers


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
