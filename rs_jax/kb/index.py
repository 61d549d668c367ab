"""Host-side nearest-neighbour search over KB embeddings with ScaNN.

`build_index` picks a configuration from the table size: exact (brute force) scoring for
small tables, a partitioning tree + asymmetric hashing (AH) + exact reordering for large
ones. `LevelIndex` keeps one searcher per KB level and maps hits back to global row ids.
Searchers are saved with ScaNN's own serializer; this needs only `scann_pybind`, not
TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from etils import epath

from rs_jax.files import local_path

# Below this many rows exact scoring is both fast and exact; AH training would not pay off.
BRUTE_FORCE_MAX = 2048

Searcher = Any  # scann.scann_ops_pybind.ScannSearcher; typed loosely to keep imports lazy


def _scann_ops() -> Any:
    # Imported on first use: the module loads a large native library.
    from scann.scann_ops.py import scann_ops_pybind

    return scann_ops_pybind


@dataclass(frozen=True)
class IndexConfig:
    """How a searcher is built; `kind` is "brute_force" or "tree_ah"."""

    kind: str
    num_leaves: int = 0
    num_leaves_to_search: int = 0
    reorder: int = 0
    dims_per_block: int = 2
    anisotropic_threshold: float = 0.2
    training_sample_size: int = 0


def default_config(n: int, *, k: int = 10) -> IndexConfig:
    """Sensible settings for `n` rows, aimed at recall@10 >= 0.95.

    Leaves ~ sqrt(n) keep both the centroid scan and the per-leaf scan near sqrt(n) work;
    searching ~5% of them (at least 8) covers neighbours that sit near a leaf boundary.
    """
    if n <= BRUTE_FORCE_MAX:
        return IndexConfig(kind="brute_force")
    num_leaves = max(16, min(int(round(math.sqrt(n))), 4000))
    return IndexConfig(
        kind="tree_ah",
        num_leaves=num_leaves,
        num_leaves_to_search=max(8, num_leaves // 20),
        reorder=max(100, 10 * k),
        dims_per_block=2,
        anisotropic_threshold=0.2,
        # k-means and AH codebooks train on a sample: 100k rows are plenty for ~1000
        # centres and 16 codes per block, and bound the build time of million-row tables.
        training_sample_size=min(n, 100_000),
    )


def resolve_config(
    n: int,
    *,
    num_leaves: int | None = None,
    num_leaves_to_search: int | None = None,
    reorder: int | None = None,
    brute_force: bool | None = None,
    dims_per_block: int | None = None,
    training_sample_size: int | None = None,
    k: int = 10,
) -> IndexConfig:
    """`default_config(n)` with the given overrides applied and clipped to `n` rows."""
    cfg = default_config(n, k=k)
    if brute_force is None:
        brute_force = cfg.kind == "brute_force" and num_leaves is None
    if brute_force:
        return IndexConfig(kind="brute_force")
    if cfg.kind == "brute_force":
        cfg = default_config(BRUTE_FORCE_MAX + 1, k=k)
    leaves = max(1, min(num_leaves or cfg.num_leaves, n))
    return IndexConfig(
        kind="tree_ah",
        num_leaves=leaves,
        num_leaves_to_search=min(num_leaves_to_search or cfg.num_leaves_to_search, leaves),
        reorder=reorder or cfg.reorder,
        dims_per_block=dims_per_block or cfg.dims_per_block,
        anisotropic_threshold=cfg.anisotropic_threshold,
        training_sample_size=min(training_sample_size or cfg.training_sample_size or n, n),
    )


def build_index(
    embeddings: np.ndarray,
    *,
    num_leaves: int | None = None,
    num_leaves_to_search: int | None = None,
    reorder: int | None = None,
    dot_product: bool = True,
    brute_force: bool | None = None,
    dims_per_block: int | None = None,
    training_sample_size: int | None = None,
    k: int = 10,
) -> Searcher:
    """Build a ScaNN searcher over `embeddings` [N, D] float32.

    Unset arguments come from `default_config(N)`; `brute_force` forces (or forbids) the
    exact configuration. Scores are dot products (cosine for L2-normalised rows) unless
    `dot_product=False`, which ranks by squared L2 distance.
    """
    x = _as_matrix(embeddings, "embeddings")
    n = x.shape[0]
    if n == 0:
        raise ValueError("cannot build an index over 0 embeddings")
    cfg = resolve_config(
        n,
        num_leaves=num_leaves,
        num_leaves_to_search=num_leaves_to_search,
        reorder=reorder,
        brute_force=brute_force,
        dims_per_block=dims_per_block,
        training_sample_size=training_sample_size,
        k=k,
    )
    builder = _scann_ops().builder(x, k, "dot_product" if dot_product else "squared_l2")
    if cfg.kind == "brute_force":
        return builder.score_brute_force().build()
    builder = builder.tree(
        num_leaves=cfg.num_leaves,
        num_leaves_to_search=cfg.num_leaves_to_search,
        training_sample_size=cfg.training_sample_size,
        # Small tables: ScaNN's default minimum (50 rows a leaf) would refuse to split them.
        min_partition_size=max(1, min(50, n // (2 * cfg.num_leaves))),
    )
    # Anisotropic (score-aware) quantization helps only inner-product search.
    threshold = cfg.anisotropic_threshold if dot_product else math.nan
    builder = builder.score_ah(
        cfg.dims_per_block,
        anisotropic_quantization_threshold=threshold,
        training_sample_size=cfg.training_sample_size,
    )
    return builder.reorder(cfg.reorder).build()


def _as_matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D [rows, dim] array, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _reorder_count(searcher: Searcher) -> int:
    """The searcher's default pre-reorder candidate count (0 when it does not reorder)."""
    cached = getattr(searcher, "_rs_reorder", None)
    if cached is None:
        match = re.search(r"approx_num_neighbors:\s*(\d+)", searcher.config())
        cached = int(match.group(1)) if match else 0
        searcher._rs_reorder = cached
    return cached


def search(
    searcher: Searcher,
    queries: np.ndarray,
    k: int,
    *,
    leaves_to_search: int | None = None,
    pre_reorder: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` of each query [Q, D] -> (ids [Q, k] int64, scores [Q, k] float32).

    Scores are dot products (higher is better) for dot-product searchers. Where the table
    has fewer than `k` rows the tail is padded with id -1 and score -inf.
    """
    q = _as_matrix(queries, "queries")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    reorder = _reorder_count(searcher)
    if reorder and pre_reorder is None and k > reorder:
        # Otherwise ScaNN returns only `reorder` hits for a large k.
        pre_reorder = k
    if q.shape[0] == 0:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    ids, scores = searcher.search_batched_parallel(
        q,
        final_num_neighbors=k,
        pre_reorder_num_neighbors=pre_reorder,
        leaves_to_search=leaves_to_search,
    )
    ids = np.asarray(ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    # ScaNN pads missing hits with id 0 and a NaN score.
    missing = np.isnan(scores)
    ids[missing] = -1
    scores[missing] = -np.inf
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return ids, scores


def save_index(searcher: Searcher, directory: str | os.PathLike) -> None:
    """Serialize `searcher` into `directory` (created, on this host: ScaNN writes local
    files only) with paths relative to it."""
    local_path(directory, "a ScaNN index folder").mkdir(parents=True, exist_ok=True)
    searcher.serialize(os.fspath(directory), relative_path=True)


def load_index(directory: str | os.PathLike) -> Searcher:
    """Load a searcher written by `save_index` (on this host: ScaNN reads local files only)."""
    path = local_path(directory, "a ScaNN index folder")
    if not (path / "scann_assets.pbtxt").is_file():
        raise FileNotFoundError(f"no ScaNN index in {path} (missing scann_assets.pbtxt)")
    return _scann_ops().load_searcher(str(path), assets_backcompat_shim=False)


class LevelIndex:
    """One searcher per KB level; results are global row ids of the whole table."""

    def __init__(
        self,
        searchers: dict[str, Searcher],
        row_ids: dict[str, np.ndarray],
        configs: dict[str, IndexConfig] | None = None,
    ):
        self.searchers = searchers
        self.row_ids = {level: np.asarray(ids, np.int64) for level, ids in row_ids.items()}
        self.configs = configs or {}

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.searchers)

    @classmethod
    def build(
        cls, embeddings: np.ndarray, levels: Sequence[str], **build_kwargs: Any
    ) -> LevelIndex:
        """Index the rows of `embeddings` [N, D] separately for each distinct level.

        `levels[i]` is the level of row i; `build_kwargs` go to `build_index`.
        """
        x = _as_matrix(embeddings, "embeddings")
        level_arr = np.asarray(levels, dtype=object)
        if level_arr.shape != (x.shape[0],):
            raise ValueError(f"{len(level_arr)} levels for {x.shape[0]} embeddings")
        searchers, row_ids, configs = {}, {}, {}
        # First-seen order keeps the KB's own (coarse-to-fine) order of levels.
        for level in dict.fromkeys(level_arr.tolist()):
            ids = np.flatnonzero(level_arr == level)
            searchers[level] = build_index(x[ids], **build_kwargs)
            row_ids[level] = ids
            settings = {key: v for key, v in build_kwargs.items() if key != "dot_product"}
            configs[level] = resolve_config(len(ids), **settings)
        return cls(searchers, row_ids, configs)

    def search(
        self, queries: np.ndarray, level: str | None, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` rows of `level` (all levels merged when None) -> (ids [Q, k], scores).

        Padding where a level has fewer than `k` rows: id -1, score -inf.
        """
        if level is None:
            parts = [self.search(queries, name, k) for name in self.searchers]
            ids = np.concatenate([p[0] for p in parts], axis=1)
            scores = np.concatenate([p[1] for p in parts], axis=1)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            return np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
        if level not in self.searchers:
            known = ", ".join(self.searchers) or "none"
            raise ValueError(f"unknown level {level!r}; this index has: {known}")
        local, scores = search(self.searchers[level], queries, k)
        ids = np.where(local >= 0, self.row_ids[level][np.maximum(local, 0)], -1)
        return ids, scores

    def save(self, directory: str | os.PathLike) -> None:
        """Write `<directory>/<level>/` searchers and `levels.json` (row-id maps)."""
        root = epath.Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        manifest = {}
        for level, searcher in self.searchers.items():
            save_index(searcher, root / level)
            np.save(root / level / "row_ids.npy", self.row_ids[level])
            cfg = self.configs.get(level)
            manifest[level] = {
                "count": int(len(self.row_ids[level])),
                "config": asdict(cfg) if cfg else None,
            }
        (root / "levels.json").write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LevelIndex:
        """Read an index written by `save`."""
        root = epath.Path(directory)
        manifest_path = root / "levels.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no level index in {root} (missing levels.json)")
        manifest = json.loads(manifest_path.read_text())
        searchers, row_ids, configs = {}, {}, {}
        for level, info in manifest.items():
            ids_path = root / level / "row_ids.npy"
            if not ids_path.is_file():
                raise FileNotFoundError(f"level index incomplete: missing {ids_path}")
            searchers[level] = load_index(root / level)
            row_ids[level] = np.load(ids_path)
            if info.get("config"):
                configs[level] = IndexConfig(**info["config"])
        return cls(searchers, row_ids, configs)
