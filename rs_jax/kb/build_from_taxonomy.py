"""Build the shipped knowledge base from rs_taxonomies.json.

  python -m rs_jax.kb.build_from_taxonomy --taxonomy PATH --out rs_jax/kb/data/rs_kb.jsonl

Steps: normalise every dataset class name, map it to a canonical name (hand
synonym tables), decide its level, merge all spellings into one entry per
(level, canonical name), attach parents (taxonomy hierarchy, then hand table),
contains links and hand-written descriptions, add rs-jax extras, validate,
write sorted JSONL. The hand data is rs_jax/kb/data/{tables,descriptions}.json
(read by `curation`); the rules are documented in docs/knowledge_base.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import tempfile
from collections import defaultdict

from etils import epath

from rs_jax.kb.curation import CurationError, Tables, load_descriptions, load_tables
from rs_jax.kb.schema import LEVELS, Entry, make_id, write_kb
from rs_jax.kb.validate import format_problems, validate_kb_file

EXTRA_SOURCE = "rs-jax"
MIN_ENTRIES = 400
# Depth within the CORINE hierarchy, by nomenclature.
CORINE_DEPTH = {"CORINE-Land-Cover-L1": 1, "CORINE-Land-Cover-L2": 2, "CORINE-Land-Cover-L3": 3}
_KEEP_S = ("ss", "us", "is")


class BuildError(RuntimeError):
    """The taxonomy cannot be turned into a valid knowledge base."""


def normalise(name: str) -> str:
    """Lower-case, split CamelCase, drop punctuation, singularise the last word."""
    s = re.sub(r"\bw/", "with ", name).replace("&", " and ")
    s = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", s).lower()
    words = re.sub(r"[^a-z0-9]+", " ", s).split()
    if words:
        words[-1] = _singular(words[-1])
    return " ".join(words)


def _singular(w: str) -> str:
    if len(w) <= 3 or not w.endswith("s") or w.endswith(_KEEP_S):
        return w
    if w.endswith("ies"):
        return w[:-3] + "y"
    if w.endswith(("ches", "shes", "xes")):
        return w[:-2]
    return w[:-1]


def canonical(dataset: str, raw: str, tables: Tables) -> str:
    """Canonical KB name of one dataset class."""
    if raw in tables.dataset_synonyms.get(dataset, {}):
        return tables.dataset_synonyms[dataset][raw]
    n = normalise(raw)
    return tables.synonyms.get(n, n)


def _level(
    dataset_level: str, name: str, object_names: set[str], lc_names: set[str], tables: Tables
) -> str:
    # Land-cover nomenclatures are pixel classes by definition: never moved.
    if dataset_level == "landcover":
        return "landcover"
    if name in tables.level_overrides:
        return tables.level_overrides[name]
    if dataset_level == "object":
        return "object"
    # Scene datasets often name a chip after its dominant object or cover type.
    if name in object_names:
        return "object"
    if name in lc_names:
        return "landcover"
    return "scene"


def _key(level_name: str) -> str:
    level, _, name = level_name.partition("/")
    return make_id(level, name)


def build_entries(
    taxonomy: dict, tables: Tables, descriptions: dict[str, dict[str, str]]
) -> list[Entry]:
    """Turn the parsed taxonomy into sorted, linked, described entries."""
    datasets = taxonomy["datasets"]
    merged, id_of = _merge_classes(datasets, tables)
    tax_parents = _taxonomy_parents(datasets, id_of, tables)
    _add_hand_entries(merged, tables)
    _check_descriptions(merged.names, descriptions)
    parents, contains = _hand_links(merged.names, tables)
    entries = []
    for eid, (level, name) in merged.names.items():
        if eid in parents:
            parent = parents[eid]
        else:
            # The same class at two CORINE depths (e.g. "Pastures") points at itself; skip.
            cands = [p for p in tax_parents.get(eid, []) if p != eid]
            parent = cands[0] if cands else None
        entries.append(
            Entry(
                id=eid,
                level=level,
                name=name,
                description=descriptions[level][name],
                aliases=sorted(a for a in merged.aliases[eid] if a != name),
                parent=parent,
                contains=contains.get(eid, []),
                sources=sorted(merged.sources[eid]),
                depth=merged.depth.get(eid),
            )
        )
    entries.sort(key=lambda e: (LEVELS.index(e.level), e.id))
    return entries


@dataclasses.dataclass
class _Merged:
    """Every spelling of a class merged into one entry per (level, canonical name), by id."""

    names: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)  # (level, name)
    aliases: dict[str, set[str]] = dataclasses.field(default_factory=lambda: defaultdict(set))
    sources: dict[str, set[str]] = dataclasses.field(default_factory=lambda: defaultdict(set))
    depth: dict[str, int] = dataclasses.field(default_factory=dict)  # CORINE depth


def _merge_classes(datasets: dict, tables: Tables) -> tuple[_Merged, dict[tuple[str, str], str]]:
    """(the dataset classes merged into entries, (dataset, class) -> entry id)."""
    canon = {
        (ds, c): canonical(ds, c, tables) for ds, info in datasets.items() for c in info["classes"]
    }
    object_names = {
        canon[ds, c] for ds, i in datasets.items() if i["level"] == "object" for c in i["classes"]
    }
    lc_names = {
        canon[ds, c]
        for ds, i in datasets.items()
        if i["level"] == "landcover"
        for c in i["classes"]
    }
    merged = _Merged()
    id_of: dict[tuple[str, str], str] = {}
    for ds, info in datasets.items():
        display = info.get("display_names", {})
        for raw in info["classes"]:
            name = canon[ds, raw]
            level = _level(info["level"], name, object_names, lc_names, tables)
            eid = make_id(level, name)
            merged.names[eid] = (level, name)
            id_of[ds, raw] = eid
            merged.aliases[eid].update({raw, display.get(raw, raw)})
            merged.sources[eid].add(ds)
            if ds in CORINE_DEPTH:
                merged.depth[eid] = min(merged.depth.get(eid, 9), CORINE_DEPTH[ds])
    return merged, id_of


def _taxonomy_parents(
    datasets: dict, id_of: dict[tuple[str, str], str], tables: Tables
) -> dict[str, list[str]]:
    """Entry id -> its parents in the taxonomy's hierarchy: CORINE `parent` maps and FAIR1M
    `superclass`."""
    tax_parents: dict[str, list[str]] = defaultdict(list)
    for ds, info in datasets.items():
        for raw, parent_raw in info.get("parent", {}).items():
            parent_ds = _parent_dataset(datasets, ds, parent_raw)
            if parent_ds is not None:
                tax_parents[id_of[ds, raw]].append(id_of[parent_ds, parent_raw])
        for raw, sup in info.get("superclass", {}).items():
            sup_name = tables.superclass_names.get(sup, sup)
            tax_parents[id_of[ds, raw]].append(make_id("object", sup_name))
    return tax_parents


def _add_hand_entries(merged: _Merged, tables: Tables) -> None:
    """rs-jax's extra entries and the hand alias table."""
    for level, extras in tables.extras.items():
        for name, extra_aliases in extras.items():
            eid = make_id(level, name)
            if eid in merged.names:
                raise BuildError(f"extra {eid} already comes from the taxonomy")
            merged.names[eid] = (level, name)
            merged.aliases[eid].update(extra_aliases)
            merged.sources[eid].add(EXTRA_SOURCE)

    for key, extra_aliases in tables.aliases.items():
        if _key(key) not in merged.names:
            raise BuildError(f"alias table names unknown entry {key}")
        merged.aliases[_key(key)].update(extra_aliases)


def _check_descriptions(
    names: dict[str, tuple[str, str]], descriptions: dict[str, dict[str, str]]
) -> None:
    """Every entry has a description, and every description an entry."""
    described = {(lv, n) for lv, by_name in descriptions.items() for n in by_name}
    missing = sorted(f"{lv}/{n}" for lv, n in names.values() if (lv, n) not in described)
    if missing:
        raise BuildError("no description for: " + ", ".join(missing))
    # A description under the wrong level or a stale name would otherwise be silently unused.
    unused = sorted(f"{lv}/{n}" for lv, n in described - set(names.values()))
    if unused:
        raise BuildError("descriptions name unknown entries: " + ", ".join(unused))


def _hand_links(
    names: dict[str, tuple[str, str]], tables: Tables
) -> tuple[dict[str, str | None], dict[str, list[str]]]:
    """(entry id -> its parent, entry id -> what it contains) from the hand tables."""
    parents = {_key(k): (_key(v) if v else None) for k, v in tables.parents.items()}
    contains = {_key(k): sorted({_key(x) for x in v}) for k, v in tables.contains.items()}
    unknown = sorted((set(parents) | set(contains)) - set(names))
    if unknown:
        raise BuildError("hand tables name unknown entries: " + ", ".join(unknown))
    return parents, contains


def _parent_dataset(datasets: dict, ds: str, parent_raw: str) -> str | None:
    # CORINE L3 parents are L2 names, L2 parents are L1 names.
    order = list(CORINE_DEPTH)
    if ds in order and order.index(ds) > 0:
        up = order[order.index(ds) - 1]
        if parent_raw in datasets.get(up, {}).get("classes", []):
            return up
    return None


def build(
    taxonomy_path: epath.PathLike,
    out_path: epath.PathLike,
    tables: Tables | None = None,
    descriptions: dict[str, dict[str, str]] | None = None,
) -> list[Entry]:
    """Build, validate and write the KB; refuses to write an invalid one.

    tables, descriptions: default to the shipped files in rs_jax/kb/data/.
    """
    taxonomy = json.loads(epath.Path(taxonomy_path).read_text())
    entries = build_entries(
        taxonomy,
        load_tables() if tables is None else tables,
        load_descriptions() if descriptions is None else descriptions,
    )
    if len(entries) < MIN_ENTRIES:
        raise BuildError(f"only {len(entries)} entries, need at least {MIN_ENTRIES}")
    missing_levels = set(LEVELS) - {e.level for e in entries}
    if missing_levels:
        raise BuildError(f"no entries at level(s) {sorted(missing_levels)}")
    out_path = epath.Path(out_path)
    # Validate a scratch copy first so a bad build never clobbers the shipped file.
    with tempfile.TemporaryDirectory() as tmp:
        scratch = epath.Path(tmp) / "kb.jsonl"
        write_kb(entries, scratch)
        problems = validate_kb_file(scratch)
        if problems:
            raise BuildError("built KB is invalid:\n" + format_problems(problems))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(scratch.read_bytes())
    return entries


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--taxonomy", required=True, help="path to rs_taxonomies.json")
    p.add_argument("--out", required=True, help="output JSONL path")
    args = p.parse_args(argv)
    try:
        entries = build(args.taxonomy, args.out)
    except (BuildError, CurationError) as e:
        print(f"build_from_taxonomy: error: {e}", file=sys.stderr)
        return 1
    counts = {lv: sum(e.level == lv for e in entries) for lv in LEVELS}
    print(f"wrote {len(entries)} entries to {args.out} ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
