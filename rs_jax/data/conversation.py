"""Conversation templates: a (multi-turn) conversation about an image -> token ids, the
place of the image and the tokens the loss scores.

A decoder answers best in the format it was tuned with: Vicuna v1 (LLaVA, GeoChat),
Llama 3 or ChatML (Qwen2). The templates are data (templates.json); `config.data.template`
names one. Messages are dicts {"role": "system" | "user" | "assistant", "content": str},
as in transformers' `apply_chat_template`; the rendered text equals what the decoder's own
chat template renders, and the token ids equal its tokenisation (tests check both).

The image goes where the template's `{image}` is, in the first user turn (LLaVA moves an
`<image>` written anywhere in the data there too). The text before it and the text after
it are tokenised separately, as LLaVA does and as a tokenizer holding `<image>` as a
special token would; the model puts the visual tokens between them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

IMAGE = "<image>"
_TEMPLATES = Path(__file__).with_name("templates.json")


@dataclasses.dataclass(frozen=True)
class Template:
    """Format strings with {content}, {image}, {bos}, {eos} (the tokenizer's own tokens).

    A conversation renders as begin, [system_turn], then per round user, assistant (the
    header a generation prompt ends with), answer (scored by the loss; it ends with `stop`,
    the token generation stops at) and after_answer.
    """

    name: str
    begin: str
    user: str
    image: str
    assistant: str
    answer: str
    stop: str
    system: str = ""  # the default system message ("" = none)
    system_turn: str = ""
    after_answer: str = ""
    strip: bool = False  # contents are stripped of surrounding whitespace
    tokens: tuple[str, ...] = ()  # special tokens the tokenizer must hold as single tokens
    about: str = ""


@functools.cache
def _table() -> dict[str, dict[str, Any]]:
    with open(_TEMPLATES) as f:
        return json.load(f)


def template_names() -> tuple[str, ...]:
    return tuple(_table())


def load_template(name: str) -> Template:
    fields = _table().get(name)
    if fields is None:
        raise ValueError(
            f"config.data.template={name!r} is not a template (choose from {template_names()})"
        )
    return Template(name=name, **{**fields, "tokens": tuple(fields.get("tokens", ()))})


@dataclasses.dataclass(frozen=True)
class Encoded:
    """before_image: ids before the image (empty without one); ids: the ids after it (all of
    them without an image); targets: per id of `ids`, whether the loss scores it."""

    before_image: list[int]
    ids: list[int]
    targets: list[bool]


class Formatter:
    """A template bound to a tokenizer: renders and tokenises conversations."""

    def __init__(self, tokenizer: Any, template: Template, bos: int | None, eos: int):
        """bos / eos: the ids `{bos}` / `{eos}` stand for (bos None: `{bos}` is empty)."""
        self.tokenizer = tokenizer
        self.template = template
        self._specials = {
            "bos": "" if bos is None else tokenizer.convert_ids_to_tokens(bos),
            "eos": tokenizer.convert_ids_to_tokens(eos),
        }
        unk = tokenizer.unk_token_id
        for token in (self._fill(template.stop), *template.tokens):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or (token_id == unk and token != tokenizer.unk_token):
                raise ValueError(
                    f"config.data.template={template.name!r} needs the token {token!r}, which "
                    f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} does not hold "
                    f"(choose the template its decoder was tuned with)"
                )
        self.stop_id = tokenizer.convert_tokens_to_ids(self._fill(template.stop))

    def _fill(self, fmt: str, content: str = "", image: str = "") -> str:
        return fmt.format(content=content, image=image, **self._specials)

    def render(
        self, messages: Sequence[dict], *, image: bool = True, add_generation_prompt: bool = False
    ) -> tuple[str, list[tuple[int, int]]]:
        """The conversation's text (the image as IMAGE) and the character spans the loss
        scores (each answer with its stop token)."""
        t = self.template
        messages = list(messages)
        system = t.system
        if messages and messages[0]["role"] == "system":
            system = messages.pop(0)["content"]
        text, spans = self._fill(t.begin), []
        if system:
            text += self._fill(t.system_turn, self._content(system))
        image_text = t.image if image else ""
        for i, message in enumerate(messages):
            role = message["role"]
            if role != ("user", "assistant")[i % 2]:
                raise ValueError(
                    f"Message {i} has role {role!r}; after an optional system message, "
                    f"roles alternate user, assistant, user, ..."
                )
            content = self._content(message["content"])
            if role == "user":
                text += self._fill(t.user, content, image_text)
                image_text = ""
            else:
                text += self._fill(t.assistant)
                start = len(text)
                text += self._fill(t.answer, content)
                spans.append((start, len(text)))
                text += self._fill(t.after_answer)
        if image_text:
            raise ValueError("A conversation with an image needs a user message")
        if add_generation_prompt:
            text += self._fill(t.assistant)
        return text, spans

    def _content(self, content: str) -> str:
        # LLaVA-format data marks the image in the text; the template places it instead.
        marked = IMAGE in content
        content = content.replace(IMAGE, "")
        return content.strip() if self.template.strip or marked else content

    def encode(
        self, messages: Sequence[dict], *, image: bool = True, add_generation_prompt: bool = False
    ) -> Encoded:
        text, spans = self.render(
            messages, image=image, add_generation_prompt=add_generation_prompt
        )
        before, after, offset = "", text, 0
        if image:
            before, after = text.split(IMAGE)
            offset = len(before) + len(IMAGE)
        tokens = self.tokenizer(after, add_special_tokens=False, return_offsets_mapping=True)
        targets = []
        for token_id, (start, end) in zip(
            tokens["input_ids"], tokens["offset_mapping"], strict=True
        ):
            scored = False
            for span_start, span_end in spans:
                span_start, span_end = span_start - offset, span_end - offset
                if start < span_start < end or start < span_end < end:
                    raise ValueError(
                        f"Template {self.template.name!r}: token "
                        f"{self.tokenizer.convert_ids_to_tokens(token_id)!r} crosses the "
                        f"border of the answer in {after!r}"
                    )
                scored |= span_start <= start < span_end
            targets.append(scored)
        before_ids = self.tokenizer(before, add_special_tokens=False)["input_ids"] if image else []
        return Encoded(list(before_ids), list(tokens["input_ids"]), targets)
