"""TFDS rs_synth builder: array_record build, read-back, idempotence, size separation,
shards, and the stored objects read back as box questions."""

import os
import pickle

import numpy as np
from tensorflow_datasets.core import shuffle as tfds_shuffle

from rs_jax.data import boxes, records, rs_synth, scenes, tasks


def test_build_and_read_back(tmp_path):
    builder = rs_synth.prepare_rs_synth(
        str(tmp_path), image_size=32, num_train=24, num_test=6, seed=3
    )
    train, test = builder.as_data_source("train"), builder.as_data_source("test")
    assert (len(train), len(test)) == (24, 6)
    ex = train[0]
    assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
    assert ex["counts"].shape == (len(scenes.OBJECTS),)
    assert ex["landcover"].shape == (len(scenes.LANDCOVERS),)
    qa = ex["qa"]
    assert len(qa["question"]) == len(qa["answer"]) == len(qa["task"]) >= 5
    # The stored example is exactly the renderer's output for its seed.
    ref = rs_synth.render_example(int(ex["seed"]), 32)
    np.testing.assert_array_equal(ex["image"], ref["image"])
    np.testing.assert_array_equal(ex["counts"], ref["counts"])
    assert int(ex["scene"]) == ref["scene"]
    assert [q.decode() for q in qa["question"]] == ref["qa"]["question"]
    # Every index of the split is present exactly once.
    seeds = {int(train[i]["seed"]) for i in range(len(train))}
    assert seeds == {scenes.example_seed(3, "train", i) for i in range(24)}


def test_idempotent_and_sizes_separate(tmp_path):
    b1 = rs_synth.prepare_rs_synth(str(tmp_path), image_size=32, num_train=8, num_test=4)
    files = sorted(os.listdir(b1.data_dir))
    mtimes = [os.path.getmtime(os.path.join(b1.data_dir, f)) for f in files]
    b2 = rs_synth.prepare_rs_synth(str(tmp_path), image_size=32, num_train=8, num_test=4)
    assert b2.data_dir == b1.data_dir
    assert [os.path.getmtime(os.path.join(b2.data_dir, f)) for f in files] == mtimes
    b3 = rs_synth.prepare_rs_synth(str(tmp_path), image_size=64, num_train=8, num_test=4)
    assert b3.data_dir != b1.data_dir
    assert b3.as_data_source("test")[0]["image"].shape == (64, 64, 3)


def test_objects_are_stored_and_read_as_box_questions(tmp_path):
    builder = rs_synth.prepare_rs_synth(str(tmp_path), image_size=32, num_train=4, num_test=6)
    assert str(builder.version) == "1.1.0"  # the version that stores objects
    source = builder.as_data_source("test")
    by_format = {f: records.SynthRecords(builder, "test", f) for f in boxes.FORMATS}
    asked = 0
    for i in range(len(source)):
        ex = source[i]
        sample = scenes.render_scene(int(ex["seed"]), 32)
        names = [scenes.OBJECTS[int(n)] for n in ex["objects"]["name"]]
        assert names == [name for name, _, _ in sample.objects]
        want = [(b.x1, b.y1, b.x2, b.y2) for b in sample.boxes]
        stored = np.reshape(ex["objects"]["box"], (-1, 4))  # an empty sequence reads as []
        np.testing.assert_allclose(stored, np.reshape(want, (-1, 4)))
        for box_format, recs in by_format.items():
            qas = recs[i]["qas"]
            kept = len(ex["qa"]["question"])
            assert [q.task for q in qas[:kept]] == [t.decode() for t in ex["qa"]["task"]]
            extra = qas[kept:]
            assert {q.task for q in extra} <= set(tasks.GROUNDING_TASKS)
            classes_drawn = sum(count > 0 for count in sample.counts.values())
            assert sum(q.task == "region_caption" for q in extra) == classes_drawn
            for q in extra:
                if q.task in ("grounding", "region_caption"):
                    text = q.answer if q.task == "grounding" else q.question
                    assert len(boxes.parse(text, box_format)) == 1, text
                else:  # count_boxes, grounded_description: the class's, or every, box
                    assert 1 <= len(boxes.parse(q.answer, box_format)) <= len(names), q
            asked += len(extra)
    assert asked > 0
    # Grain workers get the records pickled: the box format comes along.
    again = pickle.loads(pickle.dumps(by_format["qwen"]))
    assert again.box_format == "qwen" and again[0]["qas"] == by_format["qwen"][0]["qas"]


def test_box_tasks_alone_keep_only_images_with_such_questions(tmp_path):
    builder = rs_synth.prepare_rs_synth(str(tmp_path), image_size=32, num_train=40, num_test=2)
    every = records.SynthRecords(builder, "train")
    assert len(records.SynthRecords(builder, "train", only_with=("scene", "grounding"))) == 40
    kept = records.SynthRecords(builder, "train", only_with=("grounding",))
    with_box = [i for i in range(40) if any(q.task == "grounding" for q in every.qas(i))]
    assert 0 < len(kept) == len(with_box) < 40  # some scenes have no object to ask about
    assert [kept[i]["qas"] for i in range(len(kept))] == [every.qas(i) for i in with_box]
    again = pickle.loads(pickle.dumps(kept))  # as Grain workers get it, without re-reading
    assert len(again) == len(kept) and again[3]["qas"] == kept[3]["qas"]


def test_a_split_over_many_shards_reads_as_one_and_never_spills_to_tensorflow(
    tmp_path, monkeypatch
):
    one = rs_synth.prepare_rs_synth(str(tmp_path / "one"), image_size=32, num_train=23, num_test=2)
    # TFDS's shuffling writer spills past this buffer with tf.io (no TensorFlow here).
    monkeypatch.setattr(tfds_shuffle, "MAX_MEM_BUFFER_SIZE", 0)
    monkeypatch.setattr(rs_synth, "_SHARD_BYTES", 3 * 32 * 32 * 5)
    many = rs_synth.prepare_rs_synth(
        str(tmp_path / "many"), image_size=32, num_train=23, num_test=2
    )
    assert (one.info.splits["train"].num_shards, many.info.splits["train"].num_shards) == (1, 5)
    a, b = one.as_data_source("train"), many.as_data_source("train")
    assert [int(a[i]["seed"]) for i in range(23)] == [int(b[i]["seed"]) for i in range(23)]
    np.testing.assert_array_equal(a[22]["image"], b[22]["image"])
