"""TFDS builder "rs_synth": synthetic aerial scenes with labels and RSVQA-style questions.

Written as array_record shard by shard (random access for Grain, no TensorFlow needed at
any size). The config name encodes image size, split sizes and seed, so datasets of
different sizes never share a directory: <data_dir>/rs_synth/<config name>/<version>/.
Questions of the box tasks are not stored: they are made from the stored objects
when read (records.py), in the run's config.data.box_format.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import hashing

from rs_jax.data import scenes, tasks

# Shards of about this many image bytes, rendered and held one at a time.
_SHARD_BYTES = 128 << 20
_DESCRIPTION = "Procedural synthetic aerial scenes (rs_jax.data.scenes) with RSVQA-style QA."


@dataclasses.dataclass(eq=False)
class RsSynthConfig(tfds.core.BuilderConfig):
    image_size: int = 32
    num_train: int = 6000
    num_test: int = 300
    seed: int = 0


def config_name(image_size: int, num_train: int, num_test: int, seed: int) -> str:
    return f"s{image_size}_train{num_train}_test{num_test}_seed{seed}"


def make_config(image_size: int, num_train: int, num_test: int, seed: int) -> RsSynthConfig:
    return RsSynthConfig(
        name=config_name(image_size, num_train, num_test, seed),
        description=f"{image_size}px, {num_train} train / {num_test} test images, seed {seed}",
        image_size=image_size,
        num_train=num_train,
        num_test=num_test,
        seed=seed,
    )


def render_example(seed: int, image_size: int) -> dict:
    """One TFDS example (numpy) from a per-example seed."""
    sample = scenes.render_scene(seed, image_size)
    # Questions get their own random stream so QA changes never alter the images.
    qa_rng = np.random.default_rng([seed, 1])
    qas = tasks.generate_qas(sample, qa_rng)
    return {
        "image": sample.image,
        "scene": scenes.SCENES.index(sample.scene),
        "landcover": np.array([n in sample.landcovers for n in scenes.LANDCOVERS], dtype=np.uint8),
        "landcover_fractions": np.array(
            [sample.landcover_fractions[n] for n in scenes.LANDCOVERS], dtype=np.float32
        ),
        "counts": np.array([sample.counts[n] for n in scenes.OBJECTS], dtype=np.int32),
        "rural_urban": scenes.RURAL_URBAN.index(sample.rural_urban),
        "objects": {
            "name": [scenes.OBJECTS.index(name) for name, _, _ in sample.objects],
            "box": np.array(
                [(b.x1, b.y1, b.x2, b.y2) for b in sample.boxes], dtype=np.float32
            ).reshape(-1, 4),
        },
        "qa": {
            "question": [q.question for q in qas],
            "answer": [q.answer for q in qas],
            "task": [q.task for q in qas],
        },
        "seed": np.int64(seed),
    }


class RsSynth(tfds.core.ShardBasedBuilder):
    """Synthetic RS scenes; see rs_jax.data.scenes for the renderer."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial renderer and question templates.",
        "1.1.0": "Every object's class and box (images and questions as in 1.0.0).",
    }

    # TFDS derives this from the top-level package, which fails while rs_jax is a
    # namespace package (no importlib_resources); the module file is the right answer.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.builder_config.image_size
        features = tfds.features.FeaturesDict(
            {
                # Tensor + zlib: tfds.features.Image needs TensorFlow to encode PNGs.
                "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8, encoding="zlib"),
                "scene": tfds.features.ClassLabel(names=scenes.SCENES),
                "landcover": tfds.features.Tensor(shape=(len(scenes.LANDCOVERS),), dtype=np.uint8),
                "landcover_fractions": tfds.features.Tensor(
                    shape=(len(scenes.LANDCOVERS),), dtype=np.float32
                ),
                "counts": tfds.features.Tensor(shape=(len(scenes.OBJECTS),), dtype=np.int32),
                "rural_urban": tfds.features.ClassLabel(names=scenes.RURAL_URBAN),
                # Per object, in drawing order: its class and (x1, y1, x2, y2) in the unit
                # square (scenes.SceneSample.boxes).
                "objects": tfds.features.Sequence(
                    {
                        "name": tfds.features.ClassLabel(names=scenes.OBJECTS),
                        "box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
                    }
                ),
                "qa": tfds.features.Sequence(
                    {
                        "question": tfds.features.Text(),
                        "answer": tfds.features.Text(),
                        "task": tfds.features.Text(),
                    }
                ),
                "seed": tfds.features.Scalar(dtype=np.int64),
            }
        )
        # Built directly: dataset_info_from_configs needs the builder to live in a package dir.
        return tfds.core.DatasetInfo(builder=self, description=_DESCRIPTION, features=features)

    def _shard_iterators_per_split(self, dl_manager):
        cfg = self.builder_config
        # Shard by shard, never through TFDS's shuffling writer: it spills a split over
        # 1 GB to disk with tf.io, which needs TensorFlow.
        per_shard = max(_SHARD_BYTES // (3 * cfg.image_size**2), 1)
        shards = {}
        for split, num in (("train", cfg.num_train), ("test", cfg.num_test)):
            order = _written_order(split, num)
            chunks = [order[start : start + per_shard] for start in range(0, num, per_shard)]
            shards[split] = [
                functools.partial(self._generate_examples, split, chunk, f"{k + 1}/{len(chunks)}")
                for k, chunk in enumerate(chunks)
            ]
        return shards

    def _generate_examples(self, split: str, indices: list[int], shard: str):
        cfg = self.builder_config
        for i in tfds.core.utils.tqdm(
            indices,
            desc=f"Rendering rs_synth {split} shard {shard}",
            unit=" examples",
            leave=False,
            mininterval=1.0,
        ):
            yield i, render_example(scenes.example_seed(cfg.seed, split, i), cfg.image_size)


def _written_order(split: str, num: int) -> list[int]:
    """The order TFDS's shuffling writer gave (md5 of the index, salted with the split):
    data written before and after the builder wrote shard by shard reads the same."""
    hasher = hashing.Hasher(split)
    return sorted(range(num), key=hasher.hash_key)


def prepare_rs_synth(
    data_dir: str, image_size: int = 32, num_train: int = 6000, num_test: int = 300, seed: int = 0
) -> RsSynth:
    """Build (once) and return the rs_synth builder; a second call reuses the files.

    Progress bars come from TFDS (tqdm). Read with ``builder.as_data_source(split)``.
    """
    config = make_config(image_size, num_train, num_test, seed)
    # TFDS warns about configs not listed in BUILDER_CONFIGS; ours are parametric by design.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        builder = RsSynth(config=config, data_dir=os.fspath(data_dir), file_format="array_record")
    finally:
        absl_logger.setLevel(level)
    if not builder.is_prepared():
        builder.download_and_prepare()
    return builder
