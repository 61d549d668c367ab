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

from rs_jax.data import tasks as tasks_lib
from rs_jax.data.sources import (
    BadRecords,
    Item,
    LoadContext,
    SourceConfig,
    Split,
    image_path,
    read_json,
    with_readable_images,
)
from rs_jax.data.sources.vqa_jsonl import rows_of_split


def _karpathy_rows(source: SourceConfig, split: str) -> tuple[str, list[tuple[str, dict]]]:
    path = source.split_path(split)
    data = read_json(path, f"config.data.sources.{source.name}.path")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise ValueError(f'{path}: expected {{"images": [...]}} (the dataset_*.json format)')
    rows = []
    for i, image in enumerate(images):
        if image.get("split", split) != split:
            continue
        row = {
            "image": image.get("filename", ""),
            "captions": [s.get("raw", "") for s in image.get("sentences", [])],
        }
        rows.append((f"images[{i}] ({image.get('filename')})", row))
    return path, rows


def load_one(source: SourceConfig, split: str, ctx: LoadContext) -> Split:
    if source.path.endswith(".jsonl"):
        path, numbered = rows_of_split(source, split)
        rows = [(f"line {n}", r) for n, r in numbered]
    else:
        path, rows = _karpathy_rows(source, split)
    root, prompt = source.image_root(), source.options["prompt"]
    bad = BadRecords(ctx.allow_skips)
    items, aliases = [], {}
    for where, row in rows:
        captions = tuple(c.strip() for c in row.get("captions", []) if str(c).strip())
        if not row.get("image") or not captions:
            bad(f"{path} {where}", "no image" if not row.get("image") else "no captions")
            continue
        label = row.get("label")
        if label:
            aliases[tasks_lib.class_display_name(label)] = [label]
        qa = tasks_lib.QA(prompt, captions[0], "caption", references=captions)
        items.append(
            Item(
                image=image_path(root, row["image"]),
                qas=(qa,),
                classes=(tasks_lib.class_display_name(label),) if label else (),
                record=f"{path} {where}",
            )
        )
    return with_readable_images(items, root, ctx, bad, aliases)
