"""Conversation templates against the decoders' own chat templates (transformers'
apply_chat_template on tokenizers that ship one) and LLaVA's Vicuna v1 format."""

import copy

import numpy as np
import pytest

from rs_jax.data import conversation
from rs_jax.data import tokenizer as tok_lib
from rs_jax.data.text import TextEncoder
from tests.chat_tokenizers import make_tokenizer

CONVERSATION = [
    {"role": "user", "content": "What is the scene?"},
    {"role": "assistant", "content": "an airport"},
    {"role": "user", "content": " How many planes are there? "},
    {"role": "assistant", "content": "3"},
]
SHIPPED = [("chatml", "qwen2"), ("llama3", "llama3")]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    return {kind: make_tokenizer(kind, root / kind) for kind in ("llama2", "llama3", "qwen2")}


def formatter(tok, template):
    ids = tok_lib.special_ids(tok)
    return conversation.Formatter(tok, conversation.load_template(template), ids["bos"], ids["eos"])


def hf_ids(tok, messages, **kwargs):
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)
    return list(out["input_ids"])


@pytest.mark.parametrize("template, kind", SHIPPED)
@pytest.mark.parametrize("system", [None, "Answer briefly."])
def test_text_and_ids_equal_the_shipped_chat_template(tokenizers, template, kind, system):
    tok = tokenizers[kind]
    messages = ([{"role": "system", "content": system}] if system else []) + CONVERSATION
    fmt = formatter(tok, template)
    for upto, generation in [(4, False), (3, True)]:  # whole, and a prompt for the next reply
        turns = messages[: len(messages) - 4 + upto]
        text, _ = fmt.render(turns, image=False, add_generation_prompt=generation)
        assert text == tok.apply_chat_template(
            turns, tokenize=False, add_generation_prompt=generation
        )
        encoded = fmt.encode(turns, image=False, add_generation_prompt=generation)
        assert encoded.before_image == []
        assert encoded.ids == hf_ids(tok, turns, add_generation_prompt=generation)


@pytest.mark.parametrize("template, kind", SHIPPED)
def test_the_image_splits_the_ids_as_a_special_image_token_would(tokenizers, template, kind):
    tok = tokenizers[kind]
    encoded = formatter(tok, template).encode(CONVERSATION)
    # LLaVA's format: the image first in the first user turn, then a new line.
    with_image = copy.deepcopy(CONVERSATION)
    with_image[0]["content"] = "<image>\n" + with_image[0]["content"]
    reference = copy.deepcopy(tok)
    reference.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_id = reference.convert_tokens_to_ids("<image>")
    ids = hf_ids(reference, with_image)
    split = ids.index(image_id)
    assert encoded.before_image == ids[:split] and encoded.ids == ids[split + 1 :]


@pytest.mark.parametrize(
    "template, kind, answers",
    [
        ("chatml", "qwen2", "an airport<|im_end|>3<|im_end|>"),
        ("llama3", "llama3", "an airport<|eot_id|>3<|eot_id|>"),
        ("vicuna_v1", "llama2", " an airport</s> 3</s>"),
    ],
)
def test_the_loss_scores_the_replies_and_their_stop_tokens(tokenizers, template, kind, answers):
    tok = tokenizers[kind]
    encoded = formatter(tok, template).encode(CONVERSATION)
    scored = [i for i, t in zip(encoded.ids, encoded.targets, strict=True) if t]
    assert tok.decode(scored) == answers


def test_vicuna_v1_is_llavas_format(tokenizers):
    text, _ = formatter(tokenizers["llama2"], "vicuna_v1").render(
        CONVERSATION[:3], add_generation_prompt=True
    )
    system = (
        "A chat between a curious user and an artificial intelligence assistant. The "
        "assistant gives helpful, detailed, and polite answers to the user's questions."
    )
    assert text == (
        f"<s>{system} USER: <image>\nWhat is the scene? ASSISTANT: an airport</s>"
        "USER:  How many planes are there?  ASSISTANT:"
    )


def test_an_image_marked_in_the_data_moves_to_the_first_turn(tokenizers):
    fmt = formatter(tokenizers["qwen2"], "chatml")
    marked = [{"role": "user", "content": "What is the scene?\n<image>"}, CONVERSATION[1]]
    assert fmt.render(marked) == fmt.render(CONVERSATION[:2])


def test_roles_must_alternate(tokenizers):
    fmt = formatter(tokenizers["qwen2"], "chatml")
    with pytest.raises(ValueError, match="Message 1 has role 'user'"):
        fmt.render([CONVERSATION[0], CONVERSATION[0]])


def test_a_template_the_tokenizer_cannot_spell_names_the_key(tokenizers):
    with pytest.raises(ValueError, match=r"config.data.template='chatml' needs the token"):
        formatter(tokenizers["llama2"], "chatml")
    with pytest.raises(ValueError, match=r"config.data.template='nope' is not a template"):
        conversation.load_template("nope")


@pytest.mark.parametrize("template, kind", [*SHIPPED, ("vicuna_v1", "llama2")])
def test_text_encoder_rows_are_the_conversation(tokenizers, template, kind):
    """The model's [before image | image | prompt | answer] rows are the formatted
    single-turn conversation, cut where the image and the reply begin."""
    tok = tokenizers[kind]
    encoder = TextEncoder(tok, template, max_prompt_len=48, max_answer_len=8)
    prompt_ids, prompt_mask = encoder.prompt("What is the scene?")
    answer_ids, answer_mask = encoder.answer("an airport")
    encoded = formatter(tok, template).encode(CONVERSATION[:2])
    prompt = prompt_ids[prompt_mask > 0].tolist()
    answer = answer_ids[answer_mask > 0].tolist()
    assert encoder.prefix_ids.tolist() == encoded.before_image
    assert encoded.ids[: len(prompt) + len(answer)] == prompt + answer
    assert encoded.targets[len(prompt) : len(prompt) + len(answer)] == [True] * len(answer)
    assert (
        answer[-1]
        == encoder.eos_id
        == tok.convert_tokens_to_ids(conversation.load_template(template).stop)
    )
    assert np.all(answer_ids[answer_mask == 0] == encoder.pad_id)
