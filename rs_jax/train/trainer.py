"""The training loop: jitted sharded steps, checkpoints with the data stream, resume."""

from pathlib import Path
from typing import Any

import jax
import ml_collections
import optax
from flax import nnx

from rs_jax.train import experiment as experiment_lib
from rs_jax.train.checkpointing import Checkpointer
from rs_jax.train.losses import compute_loss, expert_usage_from_metrics
from rs_jax.train.progress import MetricWriter, ProgressLine

# Shown on the progress line; everything else goes to TensorBoard.
HEADLINE_METRICS = ("loss", "answer_loss", "token_accuracy")


def make_train_step(exp: experiment_lib.Experiment):
    """A jitted (state, batch) -> (state, metrics) with explicit shardings; state donated."""
    graphdef, tx, schedule, model_config = (
        exp.graphdef,
        exp.optimizer,
        exp.schedule,
        exp.config.model,
    )
    seed = exp.config.seed

    def train_step(state: dict[str, Any], batch: dict[str, jax.Array]):
        # A function of the step alone, so a resumed run draws the same router jitter.
        jitter_key = jax.random.fold_in(jax.random.key(seed), state["step"])

        def loss_fn(params):
            return compute_loss(nnx.merge(graphdef, params), batch, model_config, jitter_key)

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics |= {"grad_norm": optax.global_norm(grads), "learning_rate": schedule(state["step"])}
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    return jax.jit(
        train_step,
        in_shardings=(exp.state_shardings, None),  # batch arrays arrive already sharded
        out_shardings=(exp.state_shardings, None),
        donate_argnums=0,
    )


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains to config.train.steps, resuming from the latest checkpoint in workdir."""
    workdir_path = Path(workdir)
    workdir_path.mkdir(parents=True, exist_ok=True)
    (workdir_path / "config.json").write_text(config.to_json_best_effort(indent=2))

    exp = experiment_lib.setup(config, workdir)
    checkpointer = Checkpointer(
        workdir, keep=config.train.keep_checkpoints, async_save=config.train.async_checkpoints
    )
    train_iter = exp.data.train_iterator(seed=config.seed)
    state, start = exp.state, checkpointer.latest_step() or 0
    if start:
        state = checkpointer.restore(start, exp.abstract_state(), train_iter)
        print(f"Resumed from {checkpointer.step_dir(start)} (step {start}).", flush=True)
    total = config.train.steps
    if start >= total:
        print(f"Already trained: step {start} >= config.train.steps={total}.", flush=True)
        checkpointer.close()
        return {"step": start}

    num_params = sum(x.size for x in jax.tree.leaves(state["params"]))
    print(
        f"Training {'baseline' if config.model.baseline else 'full'} model: "
        f"{num_params / 1e6:.2f}M parameters, mesh {dict(exp.mesh.shape)}, "
        f"global batch {config.data.batch_size}, steps {start}->{total}.",
        flush=True,
    )
    train_step = make_train_step(exp)
    progress = ProgressLine(total, start, config.train.log_every)
    writer = MetricWriter(workdir_path / "tensorboard")
    metrics: dict[str, Any] = {}
    with jax.set_mesh(exp.mesh):
        for step in range(start + 1, total + 1):
            batch = exp.shard_batch(next(train_iter))
            state, metrics = train_step(state, batch)
            line = progress.update(step, _headline(metrics), config.data.batch_size)
            if line is not None:
                writer.write_scalars(step, jax.device_get(metrics))
            if step == total:
                _write_expert_usage_images(writer, step, jax.device_get(metrics), config)
            if step % config.train.checkpoint_every == 0 or step == total:
                checkpointer.save(step, state, train_iter)
    checkpointer.wait()
    checkpointer.close()
    writer.close()
    return {"step": total, **{k: float(v) for k, v in jax.device_get(metrics).items()}}


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in HEADLINE_METRICS if k in metrics}


def _write_expert_usage_images(
    writer: MetricWriter, step: int, metrics: dict[str, Any], config: ml_collections.ConfigDict
) -> None:
    """The expert usage bar charts (last batch's routing) as TensorBoard images."""
    from rs_jax.eval.plots import expert_usage_figure, figure_to_array  # matplotlib: lazily

    for prefix in ("moe", "moe_llm"):
        usage = expert_usage_from_metrics(metrics, config.model.level_names, prefix)
        if usage:
            image = figure_to_array(expert_usage_figure(usage))
            writer.write_image(step, f"{prefix}/expert_usage", image)
