"""Visual question answering as JSON lines (format "vqa_jsonl"), one question per line:

  {"image": "ucmerced/train/airplane/airplane00.png", "question": "...", "answer": "yes",
   "question_type": "presence", "split": "train", "label": "airplane"}

`image` is relative to `image_root` (default: the file's folder); `question_type` (default
"vqa") is what results are reported by; `label` (optional) is the image's scene class,
which supervises retrieval. `path` is one file with a `split` on every line, or a file per
split with `{split}` in its name. This is how rs-jax's shared data holds RSIVQA (Zheng et
al., TGRS 2021; github.com/spectralpublic/RSIVQA, its `<n>.tif:<question>?<answer>` lines
joined with the images they name).
"""

from __future__ import annotations

import collections

from rs_jax.data import sources
from rs_jax.data import tasks as tasks_lib


class VqaRecord(sources.Record):
    image: sources.Text
    question: sources.Text
    answer: (
        sources.Text | bool | int | float
    )  # counts and yes/no may come as JSON numbers, booleans
    question_type: sources.Text = "vqa"
    label: sources.Text | None = None


def load_split(source: sources.SourceConfig, split: str, ctx: sources.LoadContext) -> sources.Split:
    path, rows = sources.rows_of_split(source, split)
    opts, root = source.options, source.image_root()
    keep, suffix = opts["question_types"], opts["prompt_suffix"]
    bad = sources.BadRecords(ctx.allow_skips)
    qas: dict[str, list[tasks_lib.QA]] = collections.defaultdict(list)
    labels, records, aliases = {}, {}, {}
    for where, row in rows:
        where = f"{path} {where}"
        record = sources.parse_record(VqaRecord, row, where, bad)
        if record is None:
            continue
        kind = record.question_type
        if keep and kind not in keep:
            continue
        image = sources.image_path(root, record.image)
        question = record.question + (f" {suffix}" if suffix else "")
        qas[image].append(tasks_lib.QA(question, str(record.answer), kind))
        records.setdefault(image, where)
        if record.label:
            labels[image] = tasks_lib.class_display_name(record.label)
            aliases[labels[image]] = [record.label]
    items = [
        sources.Item(image, tuple(q), (labels[image],) if image in labels else (), records[image])
        for image, q in qas.items()
    ]
    return sources.with_readable_images(
        items, root, ctx, bad, aliases, read_from=f"{path} (split {split!r})"
    )


FORMAT = sources.Format(
    name="vqa_jsonl",
    protocol=sources.Protocol.VQA,
    # image_root: "" = the folder of path. question_types: () = all. prompt_suffix:
    # appended to every question.
    keys=dict(image_root="", question_types=(), prompt_suffix=""),
    load=sources.each_split(load_split),
)
