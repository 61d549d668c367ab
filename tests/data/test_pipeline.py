"""Grain pipeline: batch contract, checkpointable iterator, eval padding, host slicing."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from configs.common import base_config
from rs_jax.data import boxes, scenes
from rs_jax.data import tasks as tasks_lib
from rs_jax.data.packs import SPLITS, PackWriter
from rs_jax.data.pipeline import build_data
from rs_jax.data.text import TextEncoder
from rs_jax.eval.protocols import Scorer

TP, TA = 24, 8


def _config(data_dir, **data):
    config = base_config()
    config.data.update(dict(num_train=64, num_test=10, batch_size=8, data_dir=str(data_dir)))
    config.data.worker_count = 0  # the worker test sets its own
    config.data.update(data)
    return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def bundle(data_dir):
    return build_data(_config(data_dir), "/nonexistent-workdir")


@pytest.fixture(scope="module")
def packed(bundle, data_dir, tmp_path_factory):
    """The same data read from an ArrayRecord pack of them (rs_jax/data/packs.py)."""
    out = tmp_path_factory.mktemp("pack")
    writer = PackWriter(out, _config(data_dir).data, bundle)
    for split in SPLITS:
        writer.write(split)
    return build_data(_config(data_dir, pack=str(out)), "/nonexistent-workdir")


# The stream's contracts hold for data read from files and from a pack alike.
BOTH = pytest.mark.parametrize("source", ["bundle", "packed"])


def _check_batch(b, bundle, batch_size, size=32, prompt_len=TP):
    assert b["image"].shape == (batch_size, size, size, 3) and b["image"].dtype == np.uint8
    TP = prompt_len
    for key, shape in [
        ("prompt_ids", (batch_size, TP)),
        ("prompt_mask", (batch_size, TP)),
        ("answer_ids", (batch_size, TA)),
        ("answer_mask", (batch_size, TA)),
        ("task_id", (batch_size,)),
        ("valid", (batch_size,)),
        ("kb_labels", (batch_size, 24)),
    ]:
        assert b[key].shape == shape and b[key].dtype == np.int32, key
    pm, am = b["prompt_mask"].astype(bool), b["answer_mask"].astype(bool)
    # Left padding: the mask is 0...0 1...1, the first real token is bos.
    assert (np.diff(b["prompt_mask"], axis=1) >= 0).all()
    first = TP - pm.sum(1)
    bos = bundle.tokenizer.cls_token_id  # "plain": the prompt starts with bos
    assert (b["prompt_ids"][np.arange(batch_size), first] == bos).all()
    assert b["prefix_ids"].shape == (batch_size, 0)  # nothing before the image
    assert (b["prompt_ids"][~pm] == bundle.pad_id).all()
    # Right padding: 1...1 0...0, last real token is eos.
    assert (np.diff(b["answer_mask"], axis=1) <= 0).all()
    last = am.sum(1) - 1
    assert (last >= 1).all()
    assert (b["answer_ids"][np.arange(batch_size), last] == bundle.eos_id).all()
    assert (b["answer_ids"][~am] == bundle.pad_id).all()
    assert ((b["task_id"] >= 0) & (b["task_id"] < len(bundle.tasks))).all()
    kb = b["kb_labels"]
    assert ((kb >= -1) & (kb < len(bundle.kb_entries))).all()
    # Every image has exactly one scene class among its labels, and no label twice.
    for row in kb:
        labels = row[row >= 0]
        assert [bundle.kb_entries[i].level for i in labels].count("scene") == 1
        assert len(set(labels.tolist())) == len(labels)


def _valid_pairs(batches):
    return [
        (q, a)
        for b in batches
        for q, a, v in zip(b["question_text"], b["answer_text"], b["valid"], strict=True)
        if v
    ]


def test_bundle_fields(bundle):
    assert bundle.tasks == ("scene", "presence", "count", "comparison", "rural_urban")
    assert bundle.vocab_size == len(bundle.tokenizer)
    assert (bundle.pad_id, bundle.eos_id) == (0, 3)
    assert bundle.kb_entries == scenes.kb_entries()


def test_train_batches(bundle):
    it = bundle.train_iterator(seed=0)
    batches = [next(it) for _ in range(10)]  # > 1 epoch of 64 images: repeats forever
    for b in batches:
        _check_batch(b, bundle, 8)
        assert (b["valid"] == 1).all() and (b["kb_labels"][:, 0] >= 0).all()
    assert len({int(t) for b in batches for t in b["task_id"]}) == len(bundle.tasks)
    # Answers decode to what the task expects.
    tok = bundle.tokenizer
    b = batches[0]
    for i in range(8):
        ans = tok.decode(b["answer_ids"][i][b["answer_mask"][i] == 1][:-1])
        task = bundle.tasks[b["task_id"][i]]
        if task in ("presence", "comparison"):
            assert ans in ("yes", "no")
        elif task == "count":
            assert ans in {"0", "1", "2", "3", "4"}
        elif task == "scene":
            assert ans in scenes.SCENES


def test_train_iterator_deterministic_and_seeded(bundle):
    a, b, c = (next(bundle.train_iterator(s)) for s in (1, 1, 2))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["image"], c["image"])


@BOTH
def test_iterator_checkpoint_restores_stream(source, request):
    bundle = request.getfixturevalue(source)
    it = bundle.train_iterator(seed=5)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(2)]
    fresh = bundle.train_iterator(seed=5)
    fresh.set_state(state)
    for want, got in zip(expected, [next(fresh) for _ in range(2)], strict=True):
        for k in want:
            np.testing.assert_array_equal(want[k], got[k])


@BOTH
def test_eval_batches_cover_every_pair_in_order(source, request):
    bundle = request.getfixturevalue(source)
    batches = list(bundle.eval_batches(batch_size=16))
    n = bundle.num_eval_examples
    assert len(batches) == -(-n // 16)
    for b in batches:
        _check_batch(b, bundle, 16)
        assert b["question_text"].dtype == object and b["answer_text"].shape == (16,)
    valid = np.concatenate([b["valid"] for b in batches])
    assert valid.sum() == n and (valid[:n] == 1).all() and (valid[n:] == 0).all()
    assert len(_valid_pairs(batches)) == n
    again = [q for b in bundle.eval_batches(16) for q in b["question_text"]]
    assert again == [q for b in batches for q in b["question_text"]]
    limited = list(bundle.eval_batches(16, num_examples=5))
    assert len(limited) == 1 and limited[0]["valid"].sum() == 5


@BOTH
def test_multi_host_slicing(source, request, monkeypatch):
    bundle = request.getfixturevalue(source)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    per_host, train_parts = {}, {}
    for host in (0, 1):
        monkeypatch.setattr(jax, "process_index", lambda host=host: host)
        per_host[host] = list(bundle.eval_batches(batch_size=16))
        stream = bundle.train_iterator(0)
        train_parts[host] = [next(stream) for _ in range(2)]
        assert train_parts[host][0]["image"].shape[0] == 4
    assert len(per_host[0]) == len(per_host[1])
    texts = [_valid_pairs(per_host[h]) for h in (0, 1)]
    monkeypatch.undo()
    everything = _valid_pairs(bundle.eval_batches(16))
    assert texts[0] == everything[0::2] and texts[1] == everything[1::2]
    # The training stream too: host h's rows of each batch are rows h::2 of the one-host
    # global batch, images and drawn questions alike (the same examples for any host count).
    one_host = bundle.train_iterator(0)
    for step in range(2):
        whole = next(one_host)
        for host in (0, 1):
            for key in ("image", "prompt_ids", "answer_ids"):
                np.testing.assert_array_equal(train_parts[host][step][key], whole[key][host::2])
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ValueError, match="divisible"):
        list(bundle.eval_batches(batch_size=15))


def test_too_long_text_raises(bundle):
    enc = TextEncoder(bundle.tokenizer, "plain", max_prompt_len=4, max_answer_len=2)
    with pytest.raises(ValueError, match=r"How many storage tanks.*max_prompt_len is 4"):
        enc.prompt("How many storage tanks are there?")
    with pytest.raises(ValueError, match=r"dense residential.*max_answer_len is 2"):
        enc.answer("dense residential")


def test_tokenizer_is_reused(bundle, tmp_path):
    config = _config(tmp_path, num_train=16, num_test=4)
    build_data(config, "/unused")
    (folder,) = [p for p in os.listdir(tmp_path) if p.startswith("tokenizer-")]
    path = os.path.join(str(tmp_path), folder, "tokenizer.json")
    mtime = os.path.getmtime(path)
    again = build_data(config, "/unused")
    assert os.path.getmtime(path) == mtime and again.vocab_size == bundle.vocab_size


def test_folder_pipeline(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for split, n in (("train", 6), ("test", 3)):
        for cls in ("AnnualCrop", "SeaLake"):
            os.makedirs(root / split / cls)
            for i in range(n):
                arr = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / cls / f"{i}.png")
    config = _config(tmp_path / "d", name="folder", root=str(root), batch_size=4)
    config.data.max_prompt_len = 32  # the prompt lists every class (GeoChat's protocol)
    bundle = build_data(config, "/unused")
    assert bundle.tasks == ("scene",)
    assert [e.name for e in bundle.kb_entries[:2]] == ["annual crop", "sea lake"]
    assert [e.level for e in bundle.kb_entries].count("scene") == 2
    assert bundle.kb_entries[1].aliases == ["SeaLake"]
    assert bundle.kb_entries[1].sources == ["folder"]  # the dataset root's name
    b = next(bundle.train_iterator(0))
    _check_batch(b, bundle, 4, prompt_len=32)
    assert (b["kb_labels"][:, 1:] == -1).all() and (b["task_id"] == 0).all()
    evals = list(bundle.eval_batches(4))
    assert len(evals) == 2 and evals[-1]["valid"].tolist() == [1, 1, 0, 0]
    answers = [a for _, a in _valid_pairs(evals)]
    assert answers == ["annual crop"] * 3 + ["sea lake"] * 3
    assert set(evals[0]["question_text"]) == {
        "Classify the image within one of the given classes: annual crop,sea lake. "
        "Answer with one word or short phrase."
    }
    assert bundle.skips["eval"] == {"split": "test", "images": 6, "skipped": {}, "unsupported": []}

    # A corrupt eval image: an error before any batch, or, with skips allowed, one image
    # fewer and the file named in the bundle's report (which eval.json carries).
    bad = root / "test" / "SeaLake" / "1.png"
    bad.write_bytes(b"not a png")
    (root / "test" / "SeaLake" / "README.txt").write_text("notes")
    with pytest.raises(ValueError, match=r"1 unreadable image\(s\) in .*test, first .*1\.png"):
        build_data(config, "/unused")
    config.data.allow_skips = True
    bundle = build_data(config, "/unused")
    report = bundle.skips["eval"]
    assert report["images"] == 5 and list(report["skipped"]) == [str(bad)]
    assert report["unsupported"] == [str(root / "test" / "SeaLake" / "README.txt")]
    assert bundle.num_eval_examples == 5
    # Verified once: the cache in the data folder knows every file's state.
    assert len(list((tmp_path / "d" / "image_checks").glob("*.json"))) == 2

    # A class added to the training data: a tokenizer of its own, beside the first one,
    # which the checkpoints trained on the old data depend on and which stays as it was.
    (first,) = (tmp_path / "d").glob("tokenizer-*")
    kept = {p.name: p.read_bytes() for p in first.iterdir()}
    os.makedirs(root / "train" / "Forest")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
        root / "train" / "Forest" / "0.png"
    )
    build_data(config, "/unused")
    assert len(list((tmp_path / "d").glob("tokenizer-*"))) == 2
    assert {p.name: p.read_bytes() for p in first.iterdir()} == kept


@BOTH
def test_worker_processes_match_in_process_stream(source, request, monkeypatch):
    from grain._src.python.ipc import shared_memory_array

    # The segments this process opens: other processes (another test's training run) may
    # hold segments of their own in /dev/shm meanwhile.
    opened = set()
    from_metadata = shared_memory_array.SharedMemoryArray.from_metadata.__func__

    def recorded(cls, metadata):
        opened.add(metadata.name.lstrip("/"))
        return from_metadata(cls, metadata)

    monkeypatch.setattr(
        shared_memory_array.SharedMemoryArray, "from_metadata", classmethod(recorded)
    )
    bundle = request.getfixturevalue(source)
    expected = bundle.train_iterator(seed=9)
    for _ in range(2):
        next(expected)
    want = next(expected)
    bundle.worker_count = 2  # each makes every other example: the stream is the same
    try:
        it = bundle.train_iterator(seed=9)
        got = [next(it) for _ in range(3)][2]
        for k in want:
            np.testing.assert_array_equal(want[k], got[k])
        resumed = bundle.train_iterator(seed=9)
        resumed.set_state(it.get_state())
        after = next(resumed)
        next_in_process = next(expected)
        for k in after:
            np.testing.assert_array_equal(after[k], next_in_process[k])
        it.close()
        resumed.close()
        # Closed, though still referenced, the streams hold none of the workers' shared
        # memory (the rest of a run in hand included): nothing is left for exit to reap.
        assert opened and not opened & _shared_memory()
    finally:
        bundle.worker_count = 0


def _shared_memory() -> set[str]:
    return {f for f in os.listdir("/dev/shm") if f.startswith("psm_")}


@pytest.mark.parametrize("box_format", ["geochat", "qwen"])
def test_box_tasks_encode_and_decode_their_boxes(tmp_path, box_format):
    tasks = ("scene", "grounding", "region_caption", "count_boxes", "grounded_description")
    config = _config(
        tmp_path, num_train=16, num_test=6, tasks=tasks, box_format=box_format,
        max_prompt_len=40, max_answer_len=256,
    )  # fmt: skip
    bundle = build_data(config, "/unused")
    asked = {bundle.tasks[int(t)] for b in bundle.eval_batches(8) for t in b["task_id"]}
    assert asked == set(tasks)
    # The tokenizer learned the grid's numbers: a box decodes to the same box.
    for batch in bundle.eval_batches(8):
        for ids, mask, answer, task in zip(
            batch["answer_ids"], batch["answer_mask"], batch["answer_text"], batch["task_id"]
        ):
            if bundle.tasks[int(task)] in tasks_lib.BOX_TASKS:
                text = bundle.tokenizer.decode(ids[mask > 0], skip_special_tokens=True)
                assert boxes.parse(text, box_format) == boxes.parse(answer, box_format) != []
    # rs_synth's one eval source scores the box tasks by boxes, "region_caption" exactly.
    scorer = Scorer(bundle.eval_sources, box_format)
    box = boxes.render([boxes.Box(0.1, 0.1, 0.5, 0.5)], box_format)
    assert scorer.add("grounding", box, box, (box,))
    assert scorer.add("count_boxes", f"1 {box}", f"1 {box}", ())
    assert scorer.add("region_caption", "ship", "ship", ("ship",))
    result = scorer.results()["sources"]["rs_synth"]
    assert result["grounding"]["acc@0.5"] == 1.0 and result["grounding"]["count"] == 1
    assert result["count_boxes"]["count"] == 1 and "grounded_description" not in result
    assert result["per_type"]["region_caption"]["accuracy"] == 1.0
