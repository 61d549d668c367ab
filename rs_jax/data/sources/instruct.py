"""Instruction data in the LLaVA / GeoChat conversation JSON (format "instruct").

  [{"id": "P0001", "image": "P0001.png",
    "conversations": [{"from": "human", "value": "<image>\\nWhat is in the image?"},
                      {"from": "gpt", "value": "Two ships."},
                      {"from": "human", "value": "Where are they?"}, ...]}, ...]

GeoChat's instruction set (huggingface.co/datasets/MBZUAI/GeoChat_Instruct) and LLaVA's
(liuhaotian/LLaVA-Instruct-150K) are in this format; download the JSON and the images it
names. `path` is one file per split (`{split}` in the name: "geochat_{split}.json") or a
file whose records carry a "split"; images are `image_root/<image>` (default: the file's
folder). A record may carry "task" (what results are reported by; default "instruct").
A turn whose question starts with GeoChat's [refer] or [grounding] tag and whose answer holds
a box in config.data.box_format ({<x1><y1><x2><y2>|<θ>} for "geochat") has task "grounding"
whatever the record says, so that it is scored by its boxes (docs/evaluation.md).

Each assistant turn is one training example: the earlier rounds are its context (never
scored) and only the reply is in the loss. A visit trains every turn from one decoded image
(records.VisitExamples). The image placeholder `<image>` must appear
exactly once, in a user turn; turns alternate human, gpt starting with human.
"""

from __future__ import annotations

import pydantic

from rs_jax.data import boxes, sources
from rs_jax.data import tasks as tasks_lib
from rs_jax.data.conversation import IMAGE

ROLES = ("human", "gpt")
# GeoChat's task tags whose answers are boxes (its [identify] asks about a box in the
# question and answers in words; [vqa] and the untagged ones are text).
GROUNDING_TAGS = ("[refer]", "[grounding]")


class Turn(sources.Record):
    speaker: sources.Text = pydantic.Field(alias="from")
    value: sources.LongText


class Conversation(sources.Record):
    image: sources.Text
    conversations: list[Turn]
    task: sources.Text = "instruct"


def conversation_qas(
    turns: list[Turn], task: str, box_format: str = "geochat"
) -> tuple[list[tasks_lib.QA], str | None]:
    """(one QA per assistant turn, with the rounds before it as history; the problem with the
    conversation or None). A grounding turn (GROUNDING_TAGS, a box in the answer) gets task
    "grounding"."""
    if len(turns) < 2:
        return [], "needs at least one human and one gpt turn"
    if len(turns) % 2:
        # A last turn without its pair would go unchecked (its role, a placeholder in it).
        return [], f"has {len(turns)} turns; expected human, gpt pairs"
    placeholders = sum(t.value.count(IMAGE) for t in turns)
    if placeholders != 1:
        return [], f"has {placeholders} image placeholders {IMAGE!r}; expected exactly one"
    qas, history = [], []
    for i in range(0, len(turns) - 1, 2):
        human, gpt = turns[i], turns[i + 1]
        if (human.speaker, gpt.speaker) != ROLES:
            return [], f"turns {i}, {i + 1} are from {human.speaker!r}, {gpt.speaker!r}"
        if IMAGE in gpt.value:
            return [], f"the image placeholder is in a gpt turn ({i + 1})"
        question = human.value.replace(IMAGE, "").strip()
        answer = gpt.value.strip()
        grounding = question.lower().startswith(GROUNDING_TAGS) and boxes.parse(answer, box_format)
        turn_task = tasks_lib.GROUNDING_TASK if grounding else task
        qas.append(tasks_lib.QA(question, answer, turn_task, history=tuple(history)))
        history.append((question, answer))
    return qas, None


def load_split(source: sources.SourceConfig, split: str, ctx: sources.LoadContext) -> sources.Split:
    path = source.split_path(split)
    records = sources.read_json(path, f"config.data.sources.{source.name}.path")
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of conversation records (LLaVA format)")
    per_split = "{split}" in source.path
    root = source.image_root()
    bad = sources.BadRecords(ctx.allow_skips)
    items = []
    for i, row in enumerate(records):
        if not isinstance(row, dict):
            bad(f"{path} record {i}", f"expected an object, got {type(row).__name__}")
            continue
        where = f"{path} record {i} (id {row.get('id')!r})"
        if not per_split:
            if "split" not in row:
                raise ValueError(f'{where}: no "split" (or put {{split}} in the path)')
            if row["split"] != split:
                continue
        if not row.get("image"):
            bad(where, "no image (text-only conversations are not supported)")
            continue
        record = sources.parse_record(Conversation, row, where, bad)
        if record is None:
            continue
        qas, problem = conversation_qas(record.conversations, record.task, ctx.box_format)
        if problem:
            bad(where, problem)
            continue
        items.append(sources.Item(sources.image_path(root, record.image), tuple(qas), (), where))
    return sources.with_readable_images(
        items, root, ctx, bad, read_from=f"{path} (split {split!r})"
    )


FORMAT = sources.Format(
    name="instruct",
    protocol=sources.Protocol.VQA,
    keys=dict(image_root=""),  # "" = the folder of path
    load=sources.each_split(load_split),
)
