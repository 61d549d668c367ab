"""Semantic experts with expert parallelism: a small model on rs_synth, experts over 'expert'.

  RS_JAX_CPU_DEVICES=8 rs-jax train --config configs/moe_ep.py:e8,k2,cap1.25,dropless,\
mesh=data2_expert4 --workdir /tmp/ep

Variant grammar (``:arg``, comma-separated, any order, each at most once):

  e<N>          experts per level (default 8; 3 levels, so 3 * N experts in all)
  k<N>          top-k within the token's level (default 2)
  cap<F>        capacity factor of the einsum path (default 1.25)
  einsum | dropless
                dispatch path (default einsum; docs/experts.md)
  jitter<F>     router jitter during training (default 0)
  mesh=<axis><size>[_<axis><size>...]
                mesh sizes, e.g. mesh=data2_expert4 or mesh=expert8; axes not named are 1
                (default: expert4 with data filling the remaining devices)

The number of experts (3 * N) must divide by the mesh 'expert' size.
"""

import re

import ml_collections

from configs import tiny

_MESH_TERM = re.compile(r"(data|fsdp|expert|tensor)(-?\d+)")


def parse(arg: str | None) -> dict:
    """Variant string -> settings dict (see the module docstring for the grammar)."""
    out: dict = dict(
        experts_per_level=8, top_k=2, capacity_factor=1.25, dispatch="einsum", jitter=0.0
    )
    out["mesh"] = {"data": -1, "fsdp": 1, "expert": 4, "tensor": 1}
    for term in (t.strip() for t in (arg or "").split(",")):
        if not term:
            continue
        if term in ("einsum", "dropless"):
            out["dispatch"] = term
        elif term.startswith("mesh="):
            mesh = {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}
            for part in term.removeprefix("mesh=").split("_"):
                m = _MESH_TERM.fullmatch(part)
                if not m:
                    raise ValueError(f"bad mesh term {part!r} in {term!r}: use e.g. data2_expert4")
                mesh[m.group(1)] = int(m.group(2))
            out["mesh"] = mesh
        elif m := re.fullmatch(r"e(\d+)", term):
            out["experts_per_level"] = int(m.group(1))
        elif m := re.fullmatch(r"k(\d+)", term):
            out["top_k"] = int(m.group(1))
        elif m := re.fullmatch(r"cap(\d+(?:\.\d*)?)", term):
            out["capacity_factor"] = float(m.group(1))
        elif m := re.fullmatch(r"jitter(\d+(?:\.\d*)?)", term):
            out["jitter"] = float(m.group(1))
        else:
            raise ValueError(
                f"Unknown config variant {term!r}; allowed: e<N>, k<N>, cap<F>, einsum, "
                "dropless, jitter<F>, mesh=<axis><size>_..."
            )
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    settings = parse(arg)
    # The tiny model with more data, a batch that splits over up to 16 devices, and the
    # variant's experts and mesh.
    config = tiny.get_config()
    config.mesh.update(settings["mesh"])
    config.data.num_train = 128
    config.data.num_test = 16
    config.data.batch_size = 16
    config.model.experts.update(
        experts_per_level=settings["experts_per_level"],
        top_k=settings["top_k"],
        capacity_factor=settings["capacity_factor"],
        dispatch=settings["dispatch"],
        router_jitter=settings["jitter"],
    )
    config.train.steps = 50
    config.train.warmup_steps = 5
    config.train.log_every = 5
    config.train.checkpoint_every = 50
    return config
