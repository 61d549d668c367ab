"""Small tokenizers shaped like the decoders' own (no download): byte-level BPE with the
special tokens of LLaMA 2 / Vicuna, Llama 3 and Qwen2, the last two shipping their
official chat templates, as their Hugging Face folders do."""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rs_jax.data import tasks

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
KINDS = {
    "llama2": dict(
        specials=["<unk>", "<s>", "</s>"],
        tokens=dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
    ),
    "llama3": dict(
        specials=[
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ],
        tokens=dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"),
        chat_template=LLAMA3_TEMPLATE,
    ),
    "qwen2": dict(
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        tokens=dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"),
        chat_template=QWEN2_TEMPLATE,
    ),
}
CORPUS = [
    *tasks.corpus_texts(),
    "A chat between a curious user and an artificial intelligence assistant.",
    "USER: ASSISTANT: system user assistant You are a helpful assistant.",
]


def make_tokenizer(kind: str, folder) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of `kind` (KINDS) saved to `folder` and returned."""
    spec = KINDS[kind]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=spec["specials"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(CORPUS, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, **spec["tokens"])
    if "chat_template" in spec:
        tok.chat_template = spec["chat_template"]
    tok.save_pretrained(folder)
    return tok
