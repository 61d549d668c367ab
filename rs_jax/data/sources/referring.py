"""Referring-expression grounding, one expression and its box per record (format
"referring"), as VRSBench's evaluation file (VRSBench_EVAL_referring.json) and the JSON
exports of DIOR-RSVG hold it:

  {"image_id": "P0003_0002.png", "question": "the small white car next to the runway",
   "ground_truth": "{<31><43><54><77>}", "unique": true, "size_group": "small", ...}

`image_id` (or `image`) is relative to `image_root` (default: the file's folder). The
question is "[refer] <question>" (or `expression`); `ground_truth` is the reference box in
GeoChat's notation on its 0-100 grid, as these benchmarks write it, and the answer is that
box written in config.data.box_format. Other fields are ignored. `path` is a JSON list
(*.json) or JSON lines, one file with a `split` on every record or a file per split with
`{split}` in its name: VRSBench's file has no split, so it is named as one (`{split}.json`
in a folder of test.json and train.json).
"""

from __future__ import annotations

import collections

import pydantic

from rs_jax.data import boxes, sources
from rs_jax.data.tasks import GROUNDING_TASK, QA


class ReferringRecord(sources.Record):
    image: sources.Text = pydantic.Field(
        validation_alias=pydantic.AliasChoices("image_id", "image")
    )
    question: sources.Text = pydantic.Field(
        validation_alias=pydantic.AliasChoices("question", "expression")
    )
    ground_truth: sources.Text


def load_split(source: sources.SourceConfig, split: str, ctx: sources.LoadContext) -> sources.Split:
    path, rows = sources.rows_of_split(source, split)
    root = source.image_root()
    bad = sources.BadRecords(ctx.allow_skips)
    qas: dict[str, list[QA]] = collections.defaultdict(list)
    records: dict[str, str] = {}
    for where, row in rows:
        where = f"{path} {where}"
        record = sources.parse_record(ReferringRecord, row, where, bad)
        if record is None:
            continue
        found = boxes.parse(record.ground_truth, "geochat")
        if len(found) != 1:
            bad(
                where, f'"ground_truth" {record.ground_truth!r} is not one box {{<x1><y1><x2><y2>}}'
            )
            continue
        image = sources.image_path(root, record.image)
        answer = boxes.render([boxes.written_in(found[0], ctx.box_format)], ctx.box_format)
        qas[image].append(QA(f"[refer] {record.question}", answer, GROUNDING_TASK))
        records.setdefault(image, where)
    items = [sources.Item(image, tuple(q), (), records[image]) for image, q in qas.items()]
    return sources.with_readable_images(
        items, root, ctx, bad, read_from=f"{path} (split {split!r})"
    )


FORMAT = sources.Format(
    name="referring",
    protocol=sources.Protocol.GROUNDING,
    keys=dict(image_root=""),  # "" = the folder of path
    load=sources.each_split(load_split),
)
