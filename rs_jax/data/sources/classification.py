"""Scene classification folders, `<path>/<split>/<class>/<image>` (format "folder").

Works for the releases of EuroSAT (RGB), UC Merced, AID, NWPU-RESISC45, WHU-RS19, RSSCN7
and PatternNet as they unpack, with a train and a test folder made from their files:
download the dataset from its authors' page (EuroSAT: github.com/phelber/EuroSAT; UC
Merced: weegee.vision.ucmerced.edu/datasets/landuse.html; AID: captain-whu.github.io/AID;
NWPU-RESISC45: gcheng-nwpu.github.io; WHU-RS19, RSSCN7, PatternNet: their papers' pages)
and split it into `<path>/train/<class>/` and `<path>/test/<class>/` (the published split
files of a benchmark, or a fixed stride per class).

Class names become readable ("denseresidential" -> "dense residential"; EuroSAT and
RSSCN7 from the table in data/class_names.json named by the source's `class_names`). With
`prompt="geochat"` the question lists every class (GeoChat's protocol, exact prompt in
rs_jax/data/tasks.py:GEOCHAT_CLASSIFY); with "plain" it does not (training varies the
phrasing; evaluation asks the first).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from rs_jax.data import tasks as tasks_lib
from rs_jax.data.folder import FolderDataset
from rs_jax.data.sources import Format, Item, LoadContext, Protocol, SourceConfig, Split

_NAMES = Path(__file__).resolve().parents[1] / "class_names.json"


@functools.cache
def _tables() -> dict[str, dict[str, str]]:
    return {k: v for k, v in json.loads(_NAMES.read_text()).items() if k != "about"}


def readable_names(folders: tuple[str, ...], table: str, key: str) -> list[str]:
    """Readable class names of class folders, from `table` of data/class_names.json where it
    has the folder ("" = none)."""
    if table and table not in _tables():
        raise ValueError(f"{key}={table!r}: no such table; choose from {sorted(_tables())}")
    names = _tables().get(table, {})
    readable = [names.get(f) or tasks_lib.class_display_name(f) for f in folders]
    seen: dict[str, str] = {}
    for folder, name in zip(folders, readable, strict=True):
        if name in seen:  # they would train as one class under two labels
            raise ValueError(
                f"{key}: class folders {seen[name]!r} and {folder!r} are both the class "
                f"{name!r}; merge the folders or rename one"
            )
        seen[name] = folder
    return readable


def class_questions(
    name: str, classes: list[str], prompt: str, train: bool
) -> tuple[tasks_lib.QA, ...]:
    """The questions whose answer is the class `name`."""
    if prompt == "geochat":
        question = tasks_lib.GEOCHAT_CLASSIFY.format(classes=",".join(classes))
        return (tasks_lib.QA(question, name, "scene"),)
    prompts = tasks_lib.CLASSIFY_PROMPTS if train else tasks_lib.CLASSIFY_PROMPTS[:1]
    return tuple(tasks_lib.QA(p, name, "scene") for p in prompts)


def load(source: SourceConfig, ctx: LoadContext) -> tuple[Split, Split]:
    """(train split, eval split); the eval split takes the train split's classes, so labels
    agree."""
    key = f"config.data.sources.{source.name}"
    prompt = source.options["prompt"]
    if prompt not in ("geochat", "plain"):
        raise ValueError(f"{key}.prompt={prompt!r}; choose 'geochat' or 'plain'")
    splits, folders = [], None
    for split, training in ((source.train_split, True), (source.eval_split, False)):
        ds = FolderDataset(
            source.path,
            split,
            ctx.image_size,
            classes=folders,
            allow_skips=ctx.allow_skips,
            cache_dir=ctx.cache_dir,
            bands=ctx.bands,
        )
        folders = ds.classes
        names = readable_names(folders, source.options["class_names"], f"{key}.class_names")
        items = [
            Item(
                image=path,
                qas=class_questions(names[label], names, prompt, training),
                classes=(names[label],),
                record=path,
            )
            for path, label in zip(ds.files, ds.labels, strict=True)
        ]
        splits.append(
            Split(
                items,
                base_dir=ds.root,
                class_names=tuple(names),
                skipped=dict(ds.skipped),
                unsupported=list(ds.unsupported),
                aliases={name: [folder] for name, folder in zip(names, folders, strict=True)},
            )
        )
    return splits[0], splits[1]


FORMAT = Format(
    name="folder",
    protocol=Protocol.CLASSIFICATION,
    # prompt: "geochat" (every class name in the prompt; GeoChat's protocol) | "plain" (a
    # question without the classes). class_names: a table of data/class_names.json ("" =
    # readable names made from the folder names).
    keys=dict(prompt="geochat", class_names=""),
    load=load,
)
