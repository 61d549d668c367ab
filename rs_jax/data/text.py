"""Questions and answers -> fixed-length token id / mask rows in the conversation template."""

from __future__ import annotations

from typing import Any

import numpy as np

from rs_jax.data import conversation
from rs_jax.data import tokenizer as tokenizer_lib

History = tuple[tuple[str, str], ...]  # earlier (question, answer) rounds, oldest first


class TextEncoder:
    """Tokenises questions and answers in the conversation template to fixed-length id/mask
    rows (cached per distinct text).

    A prompt is the user turn (the text after the image) up to the assistant's header, an
    answer the assistant's reply with the stop token, both tokenised as in the whole
    conversation. `prefix_ids` [P]: the template's text before the image (the same for
    every example; empty for "plain").
    """

    def __init__(self, tokenizer: Any, template: str, max_prompt_len: int, max_answer_len: int):
        ids = tokenizer_lib.special_ids(tokenizer)
        self.tokenizer = tokenizer
        self.formatter = conversation.Formatter(
            tokenizer, conversation.load_template(template), ids["bos"], ids["eos"]
        )
        self.pad_id, self.eos_id = ids["pad"], self.formatter.stop_id
        self.max_prompt_len, self.max_answer_len = int(max_prompt_len), int(max_answer_len)
        self.prefix_ids = np.asarray(self._encode("").before_image, np.int32)
        self._prompts: dict[tuple, list[int]] = {}
        self._answers: dict[str, list[int]] = {}

    def _encode(
        self, question: str, answer: str | None = None, history: History = ()
    ) -> conversation.Encoded:
        messages = []
        for past_question, past_answer in history:
            messages.append({"role": "user", "content": past_question})
            messages.append({"role": "assistant", "content": past_answer})
        messages.append({"role": "user", "content": question})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        return self.formatter.encode(messages, add_generation_prompt=answer is None)

    def prompt(self, text: str, history: History = ()) -> tuple[np.ndarray, np.ndarray]:
        """The question's turn (after the earlier rounds of `history`, oldest first: the
        conversation so far), left-padded to max_prompt_len -> (ids, mask) int32 [Tp]."""
        key = (tuple(history), text)
        ids = self._prompts.get(key)
        if ids is None:
            ids = self._prompts[key] = self._encode(text, history=history).ids
        what = f"Prompt {text!r}" + (f" (after {len(history)} rounds)" if history else "")
        return self._pad(ids, self.max_prompt_len, left=True, what=what)

    def answer(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The reply with its stop token, right-padded to max_answer_len -> (ids, mask) [Ta]."""
        ids = self._answers.get(text)
        if ids is None:
            # The header before it keeps the reply's tokens independent of the question.
            encoded = self._encode("", text)
            ids = [i for i, t in zip(encoded.ids, encoded.targets, strict=True) if t]
            self._answers[text] = ids
        return self._pad(ids, self.max_answer_len, left=False, what=f"Answer {text!r}")

    def _pad(
        self, ids: list[int], length: int, *, left: bool, what: str
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(ids)
        if n > length:
            limit = "max_prompt_len" if left else "max_answer_len"
            raise ValueError(
                f"{what} needs {n} tokens in template {self.formatter.template.name!r} but "
                f"config.data.{limit} is {length}; raise the limit (texts are never truncated)"
            )
        out = np.full(length, self.pad_id, np.int32)
        mask = np.zeros(length, np.int32)
        span = slice(length - n, None) if left else slice(0, n)
        out[span], mask[span] = ids, 1
        return out, mask
