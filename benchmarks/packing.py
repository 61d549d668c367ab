"""Sequence packing: decoder token efficiency and training throughput, packed against
unpacked, side by side on the same data and model.

  python benchmarks/packing.py --out benchmarks/results/packing.json \\
      [--config configs/ucm_mixture.py] [--slots 6] [--length 0] [--rounds 3] [--calls 3]

Token efficiency is the share of the decoder tokens a train step computes that are real
(text before the image, visual tokens, the prompt's and the answer's tokens), over the
first `--batches` batches of each stream. Throughput is examples per second of the
compiled train step: both steps are compiled first, then timed in interleaved rounds, and
the JSON reports medians. Unpacked batches hold config.data.batch_size examples; packed
ones batch_size / slots rows (each of up to `slots` examples), so a packed step sees about
as many examples. `--length 0` gives each row room for two of the longest examples.
"""

import argparse

import common
import jax

from rs_jax.config_files import load_config
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.trainer import make_train_step


def efficiency(exp, batches: int, visual: int) -> dict:
    """Real and computed decoder tokens, and examples, over `batches` train batches."""
    real = computed = examples = 0
    iterator = exp.data.train_iterator(seed=0)
    for _ in range(batches):
        batch = next(iterator)
        valid = batch["valid"] > 0
        prefix = batch["prefix_ids"].shape[-1]
        tokens = prefix + visual + batch["prompt_mask"].sum(-1) + batch["answer_mask"].sum(-1)
        real += int(tokens[valid].sum())
        examples += int(valid.sum())
        if "token_index" in batch:
            computed += batch["token_index"].size
        else:
            width = batch["prompt_ids"].shape[-1] + batch["answer_ids"].shape[-1]
            computed += len(valid) * (prefix + visual + width)
    return {"real_tokens": real, "computed_tokens": computed, "examples": examples,
            "efficiency": real / computed}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ucm_mixture.py")
    parser.add_argument("--slots", type=int, default=6)
    parser.add_argument("--length", type=int, default=0)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--workdir", default="runs/bench_packing")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    base = load_config(args.config)
    exp = experiment_lib.setup(base, args.workdir)
    visual = exp.model_config.visual_tokens
    prefix = len(exp.data.encoder.prefix_ids)
    longest = prefix + visual + base.data.max_prompt_len + base.data.max_answer_len
    length = args.length or 2 * longest
    rows = base.data.batch_size // args.slots
    packed_exp = experiment_lib.setup(
        load_config(
            args.config,
            [
                f"data.packing.slots={args.slots}",
                f"data.packing.length={length}",
                f"data.batch_size={rows}",
            ],
        ),
        args.workdir,
    )
    tokens = {
        "unpacked": efficiency(exp, args.batches, visual),
        "packed": efficiency(packed_exp, args.batches, visual),
    }

    steps, batches, per_step = {}, {}, {}
    for name, e in (("unpacked", exp), ("packed", packed_exp)):
        host = next(e.data.train_iterator(seed=1))
        batches[name] = e.shard_batch(host)
        per_step[name] = int((host["valid"] > 0).sum())
        with jax.set_mesh(e.mesh):
            steps[name] = make_train_step(e).lower(e.state, batches[name]).compile()
        holder = {"state": e.state}  # the step donates its state: carry the new one

        def call(step=steps[name], batch=batches[name], holder=holder, mesh=e.mesh):
            with jax.set_mesh(mesh):
                holder["state"], metrics = step(holder["state"], batch)
                jax.block_until_ready(metrics["loss"])

        steps[name] = call
        call()
    times = common.interleaved(steps, args.rounds, args.calls)
    seconds = {name: common.median(t) for name, t in times.items()}
    speed = {name: per_step[name] / seconds[name] for name in seconds}
    result = {
        "config": args.config,
        "slots": args.slots,
        "length": length,
        "unpacked_length": longest,
        "tokens": tokens,
        "examples_per_step": per_step,
        "seconds_per_step": seconds,
        "examples_per_second": speed,
        "speedup": speed["packed"] / speed["unpacked"],
    }
    rows_table = [
        [
            name,
            f"{tokens[name]['efficiency']:.2f}",
            f"{tokens[name]['examples'] / args.batches:.1f}",
            f"{seconds[name]:.3f}",
            f"{speed[name]:.1f}",
        ]
        for name in ("unpacked", "packed")
    ]
    summary = common.table(
        ["batches", "real / computed decoder tokens", "examples a step", "s/step", "examples/s"],
        rows_table,
    ) + [
        "",
        f"`{args.config}`: unpacked rows of {longest} tokens, batch {base.data.batch_size}; "
        f"packed rows of {length} tokens with up to {args.slots} examples, batch {rows}. "
        f"Packed / unpacked examples per second: {result['speedup']:.2f}x.",
    ]
    common.write(result, args.out, summary)


if __name__ == "__main__":
    main()
