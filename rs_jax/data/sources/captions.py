"""Image captions (format "captions"): RSICD, UCM-captions and Sydney-captions as released
in the `dataset_*.json` format (Lu et al., github.com/201528014227051/RSICD_optimal;
UCM/Sydney: Qu et al. 2016), or JSON lines.

  dataset_rsicd.json  {"images": [{"filename": "airport_1.jpg", "split": "train",
                       "sentences": [{"raw": "many planes are parked ..."}, ...]}, ...]}
  captions.jsonl      {"image": "ucmerced/train/...png", "split": "train",
                       "captions": ["...", ...], "label": "airplane"}   (one per line)

Images are `image_root/<filename>` (default: the file's folder; RSICD's are in
`RSICDimages/`). The question is the source's `prompt` ("Describe the image."). Training
sees one reference per visit; evaluation generates one caption
per image and scores it against all references (rs_jax/eval/captions.py).
"""

from __future__ import annotations

from rs_jax.data import sources
from rs_jax.data import tasks as tasks_lib


class CaptionRecord(sources.Record):
    image: sources.Text
    captions: list[sources.LongText]
    label: sources.Text | None = None


class Sentence(sources.Record):
    raw: sources.LongText


class KarpathyImage(sources.Record):
    """One entry of dataset_*.json's "images"."""

    filename: sources.Text
    split: sources.Text | None = None
    sentences: list[Sentence]


def _karpathy_rows(source: sources.SourceConfig, split: str) -> tuple[str, list[tuple[str, dict]]]:
    path = source.split_path(split)
    data = sources.read_json(path, f"config.data.sources.{source.name}.path")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise ValueError(f'{path}: expected {{"images": [...]}} (the dataset_*.json format)')
    rows = []
    for i, image in enumerate(images):
        name = image.get("filename") if isinstance(image, dict) else None
        rows.append((f"images[{i}] ({name})", image))
    return path, rows


def _karpathy_record(row: dict, where: str, bad: sources.BadRecords) -> CaptionRecord | None:
    image = sources.parse_record(KarpathyImage, row, where, bad)
    if image is None:
        return None
    captions = [s.raw for s in image.sentences]
    return sources.parse_record(
        CaptionRecord, dict(image=image.filename, captions=captions), where, bad
    )


def load_split(source: sources.SourceConfig, split: str, ctx: sources.LoadContext) -> sources.Split:
    jsonl = source.path.endswith(".jsonl")
    if jsonl:
        path, rows = sources.rows_of_split(source, split)
    else:
        path, rows = _karpathy_rows(source, split)
    root, prompt = source.image_root(), source.options["prompt"]
    bad = sources.BadRecords(ctx.allow_skips)
    items, aliases = [], {}
    for where, row in rows:
        if not jsonl and isinstance(row, dict) and row.get("split", split) != split:
            continue
        where = f"{path} {where}"
        record = (
            sources.parse_record(CaptionRecord, row, where, bad)
            if jsonl
            else _karpathy_record(row, where, bad)
        )
        if record is None:
            continue
        captions = tuple(c.strip() for c in record.captions if c.strip())
        if not captions:
            bad(where, "no captions")
            continue
        label = record.label
        if label:
            aliases[tasks_lib.class_display_name(label)] = [label]
        qa = tasks_lib.QA(prompt, captions[0], "caption", references=captions)
        items.append(
            sources.Item(
                image=sources.image_path(root, record.image),
                qas=(qa,),
                classes=(tasks_lib.class_display_name(label),) if label else (),
                record=where,
            )
        )
    return sources.with_readable_images(
        items, root, ctx, bad, aliases, read_from=f"{path} (split {split!r})"
    )


FORMAT = sources.Format(
    name="captions",
    protocol=sources.Protocol.CAPTIONING,
    # image_root: "" = the folder of path. prompt: the instruction a caption answers.
    keys=dict(image_root="", prompt="Describe the image."),
    load=sources.each_split(load_split),
)
