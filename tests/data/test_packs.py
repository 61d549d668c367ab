"""ArrayRecord packs: written from any data, read back equal, resumed, refused, damaged.
The stream's own contracts on a pack (host slicing, resume, workers) are in
test_pipeline.py, parametrized over files and pack."""

import json
import os

import numpy as np
import pytest

from configs import ucm_mixture
from configs.common import SHARED_DATA, base_config
from rs_jax.data import packs
from rs_jax.data.pipeline import build_data


def _config(data_dir, **data):
    config = base_config()
    config.data.update(dict(num_train=40, num_test=6, batch_size=4, data_dir=str(data_dir)))
    config.data.worker_count = 0
    config.data.update(data)
    return config


def _write(config, bundle, out, **kwargs) -> dict:
    writer = packs.PackWriter(out, config.data, bundle)
    for split in packs.SPLITS:
        writer.write(split, **kwargs)
    return writer.info


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """(config, bundle from its files, pack folder written with 2 shards a split)."""
    config = _config(tmp_path_factory.mktemp("data"))
    bundle = build_data(config, "/nonexistent-workdir")
    out = tmp_path_factory.mktemp("pack")
    _write(config, bundle, out, num_shards=2)
    return config, bundle, out


def _assert_same_records(want, got):
    assert len(want) == len(got)
    for i in range(len(want)):
        a, b = want[i], got[i]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["kb_labels"], b["kb_labels"])
        assert list(a["qas"]) == list(b["qas"])


def _assert_same_batches(want, got):
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_array_equal(want[key], got[key], err_msg=key)


def test_a_pack_holds_the_records_and_counts_it_was_written_from(synth):
    config, bundle, out = synth
    pack = packs.Pack(str(out), config.data)
    ((name, weight, train),) = pack.record_sets("train", allow_skips=False)
    assert (name, weight) == ("rs_synth", 1.0)
    _assert_same_records(bundle.train_records[0], train)
    ((_, _, test),) = pack.record_sets("test", allow_skips=False)
    _assert_same_records(bundle.eval_records, test)
    info = json.loads((out / packs.INFO).read_text())
    (entry,) = info["splits"]["train"]["sets"]
    tasks = [qa.task for i in range(len(train)) for qa in train.qas(i)]
    assert entry["records"] == len(train) == 40 and len(entry["shards"]) == 2
    assert entry["tasks"] == {t: tasks.count(t) for t in sorted(set(tasks))}
    assert info["tasks"] == list(bundle.tasks) and info["image_size"] == 32


def test_a_run_from_a_pack_reads_the_batches_a_run_from_files_reads(synth, tmp_path):
    config, files, out = synth
    packed = build_data(_config(config.data.data_dir, pack=str(out)), str(tmp_path))
    assert (packed.tasks, packed.vocab_size) == (files.tasks, files.vocab_size)
    assert packed.kb_entries == files.kb_entries and packed.eval_sources == files.eval_sources
    for want, got in zip(files.eval_batches(4), packed.eval_batches(4), strict=True):
        _assert_same_batches(want, got)
    a, b = files.train_iterator(3), packed.train_iterator(3)
    for _ in range(3):
        _assert_same_batches(next(a), next(b))


def test_worker_processes_write_the_bytes_one_process_writes(synth, tmp_path):
    config, bundle, out = synth
    info = _write(config, bundle, tmp_path / "pack", num_shards=2, workers=2)
    assert info["sha256"] == json.loads((out / packs.INFO).read_text())["sha256"]


def test_an_interrupted_pack_resumes_keeping_its_finished_shards(synth, tmp_path):
    config, bundle, reference = synth
    out = tmp_path / "pack"

    class Stop(Exception):
        pass

    def stop_in_the_second_shard(done, total):
        if done == 30:
            raise Stop

    writer = packs.PackWriter(out, config.data, bundle)
    with pytest.raises(Stop):
        writer.write("train", num_shards=2, progress=stop_in_the_second_shard)
    first, second = (out / "train" / n for n in packs._shard_names("rs_synth", 2))
    assert first.exists() and not second.exists()
    kept = os.stat(first).st_mtime_ns
    with pytest.raises(ValueError, match="no complete train and test split"):
        packs.Pack(str(out), config.data)
    info = _write(config, bundle, out, num_shards=2)
    assert os.stat(first).st_mtime_ns == kept
    assert info["sha256"] == json.loads((reference / packs.INFO).read_text())["sha256"]
    assert not list(out.glob("train/*.partial"))


def test_packing_into_a_folder_of_other_files_or_data_is_refused(synth, tmp_path):
    config, bundle, out = synth
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=rf"--out {tmp_path} is not empty"):
        packs.PackWriter(tmp_path, config.data, bundle)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match=r"config.data.image_size=48, but the pack .* 32"):
        packs.PackWriter(out, _config(config.data.data_dir, image_size=48).data, bundle)
    with pytest.raises(ValueError, match=r"config.data.max_answer_len=9, but .* 8; pack"):
        build_data(_config(config.data.data_dir, pack=str(out), max_answer_len=9), "/w")


def test_a_damaged_record_names_its_shard_or_is_skipped_and_counted(synth, tmp_path):
    config, _, out = synth
    damaged = tmp_path / "pack"
    damaged.mkdir()
    for path in out.rglob("*"):
        if path.is_file():
            (damaged / path.relative_to(out)).parent.mkdir(exist_ok=True)
            (damaged / path.relative_to(out)).write_bytes(path.read_bytes())
    shard = damaged / "train" / packs._shard_names("rs_synth", 2)[0]
    raw = bytearray(shard.read_bytes())
    raw[4000:4040] = b"\xff" * 40  # inside an early record's chunk
    shard.write_bytes(bytes(raw))
    strict = packs.PackRecords([str(shard)], [20], allow_skips=False)
    broken = []
    for i in range(20):
        try:
            strict[i]
        except packs.CorruptRecordError as e:
            broken.append(i)
            assert f"{shard} record {i}: corrupt (RuntimeError" in str(e)
            assert "config.data.allow_skips" in str(e) and "\n" not in str(e)
    assert len(broken) == 1
    lenient = build_data(_config(config.data.data_dir, pack=str(damaged), allow_skips=True), "/w")
    # Read in a worker process: the skip still reaches the process that trains.
    lenient.worker_count = 1
    stream = lenient.train_iterator(0)
    for _ in range(12):  # 48 rows: every record read at least once
        next(stream)
    where = f"{shard} record {broken[0]}"
    assert list(lenient.stream_skips) == [where]
    assert lenient.stream_skips[where].startswith("RuntimeError")
    del stream
    # A truncated shard: every read names it.
    shard.write_bytes(bytes(raw[: len(raw) // 3]))
    with pytest.raises(packs.CorruptRecordError, match=rf"{shard} record 0: corrupt \("):
        packs.PackRecords([str(shard)], [20], allow_skips=False)[0]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not found at {SHARED_DATA}")
def test_the_ucm_mixture_from_a_pack_gives_the_batches_of_its_files(tmp_path):
    """Three sources of real files (classification folder, VQA JSONL, captions), mixed by
    weight: the pack holds a record set per source, and a run reads the same stream."""
    config = ucm_mixture.get_config()
    config.data.data_dir = str(tmp_path / "data")
    files = build_data(config, str(tmp_path))
    info = _write(config, files, tmp_path / "pack")
    sets = info["splits"]["train"]["sets"]
    assert [s["name"] for s in sets] == [s.name for s in files.eval_sources]
    assert {s["name"] for s in sets} == {"classify", "vqa", "captions"}
    assert info["splits"]["test"]["records"] == len(files.eval_records)
    config.data.pack = str(tmp_path / "pack")
    packed = build_data(config, str(tmp_path))
    assert packed.manifest == files.manifest  # a resumed run compares the files packed
    assert packed.tasks == files.tasks and packed.train_weights == files.train_weights
    a, b = files.train_iterator(0), packed.train_iterator(0)
    for _ in range(2):
        _assert_same_batches(next(a), next(b))
    _assert_same_batches(next(files.eval_batches(8)), next(packed.eval_batches(8)))
