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


def _decoder_style_tokenizer(folder, **special):
    """A tokenizer shaped like a LLaMA (<s>, </s>, <unk>; no pad) or Qwen one (no bos)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "<|endoftext|>", "how", "many", "trees", "two"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, **special).save_pretrained(folder)
    return tok_lib.load_tokenizer(str(folder))


def test_llama_and_qwen_style_special_tokens(tmp_path):
    from rs_jax.data.text import TextEncoder

    llama = _decoder_style_tokenizer(
        tmp_path / "llama", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    assert tok_lib.special_ids(llama) == {"pad": 0, "bos": 1, "eos": 2}  # pad: unk
    encoder = TextEncoder(llama, "plain", max_prompt_len=5, max_answer_len=3)
    ids, mask = encoder.prompt("how many trees")
    assert ids.tolist() == [0, 1, 4, 5, 6] and mask.tolist() == [0, 1, 1, 1, 1]
    assert encoder.answer("two")[0].tolist() == [7, 2, 0]

    qwen = _decoder_style_tokenizer(
        tmp_path / "qwen", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    assert tok_lib.special_ids(qwen) == {"pad": 3, "bos": None, "eos": 3}
    ids, mask = TextEncoder(qwen, "plain", 4, 2).prompt("how many")
    assert ids.tolist() == [3, 3, 4, 5] and mask.tolist() == [0, 0, 1, 1]  # no bos


def test_tokenizer_without_an_end_token(tmp_path):
    with pytest.raises(ValueError, match="has no end token"):
        _decoder_style_tokenizer(tmp_path, unk_token="<unk>")
