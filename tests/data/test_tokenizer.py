"""WordPiece training, transformers loading, the packaged MiniLM tokenizer."""

import pytest

from rs_jax.data import tasks
from rs_jax.data import tokenizer as tok_lib


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    return tok_lib.train_tokenizer(tasks.corpus_texts(), str(out), vocab_size=500)


def test_special_tokens_and_round_trip(trained):
    tok = tok_lib.load_tokenizer(trained)
    assert tok.convert_tokens_to_ids(list(tok_lib.SPECIAL_TOKENS)) == [0, 1, 2, 3, 4]
    assert tok_lib.special_ids(tok) == {"pad": 0, "bos": 2, "eos": 3}
    text = "How many storage tanks are there?"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text.lower()
    assert len(tok) <= 500


def test_auto_tokenizer_loads_folder(trained):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(trained, local_files_only=True)
    assert tok.pad_token == "[PAD]" and tok.cls_token == "[CLS]" and tok.sep_token == "[SEP]"


def test_training_is_deterministic(trained, tmp_path):
    again = tok_lib.train_tokenizer(tasks.corpus_texts(), str(tmp_path / "t"), vocab_size=500)
    a, b = tok_lib.load_tokenizer(trained), tok_lib.load_tokenizer(again)
    assert a.get_vocab() == b.get_vocab()
    assert tok_lib.stored_corpus_hash(trained) == tok_lib.stored_corpus_hash(again)


def test_minilm():
    tok = tok_lib.load_tokenizer("minilm")
    assert tok_lib.special_ids(tok) == {"pad": 0, "bos": 101, "eos": 102}
    assert len(tok) == 30522


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        tok_lib.load_tokenizer(str(tmp_path / "does-not-exist"))


def test_small_vocab_spells_rare_words(tmp_path):
    texts = ["alpha beta beta gamma gamma gamma"]
    chars = len(set("alphabetgm"))
    path = tok_lib.train_tokenizer(texts, str(tmp_path / "t"), vocab_size=5 + 2 * chars + 1)
    tok = tok_lib.load_tokenizer(path)
    assert "gamma" in tok.get_vocab() and "alpha" not in tok.get_vocab()
    ids = tok("alpha gamma", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == "alpha gamma"
    with pytest.raises(ValueError, match="vocab_size"):
        tok_lib.train_tokenizer(texts, str(tmp_path / "u"), vocab_size=8)
