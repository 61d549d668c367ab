"""The training loop: jitted sharded steps, checkpoints with the data stream, resume."""

import dataclasses
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from flax import nnx

from rs_jax import sharding
from rs_jax.config_files import config_changes
from rs_jax.data.manifest import describe_change, manifest_sha256, write_manifest
from rs_jax.data.tokenizer import stored_corpus_hash
from rs_jax.files import is_local
from rs_jax.train import experiment as experiment_lib
from rs_jax.train import report
from rs_jax.train.checkpointing import (
    DATA_SHA256,
    KNOWLEDGE_SHA256,
    TOKENIZER_SHA256,
    Checkpointer,
)
from rs_jax.train.lock import WorkdirLock
from rs_jax.train.losses import alignment_loss, compute_loss, expert_usage_from_metrics
from rs_jax.train.preemption import StopSignals
from rs_jax.train.progress import MetricWriter, ProgressLine

# Shown on the progress line; everything else goes to TensorBoard.
HEADLINE_METRICS = ("loss", "answer_loss", "token_accuracy")


def make_grad_fn(exp: experiment_lib.Experiment):
    """(params, batch, jitter_key) -> (gradients, metrics), traceable inside jit.

    With config.train.grad_accum_steps = N the batch is split into N micro-batches whose
    gradients are summed in float32; the answer loss is normalised by the whole batch's
    answer tokens, so N micro-batches give the gradient of one N-times-larger batch (the
    auxiliary losses, nonlinear in the batch, are averaged over the micro-batches).
    """
    graphdef, train = exp.graphdef, exp.config.train
    accum, vocab_chunk = train.grad_accum_steps, train.loss_vocab_chunk
    labels = exp.param_labels()

    def grads_and_metrics(params, batch, key, num_tokens=None):
        def loss_fn(p):
            model = nnx.merge(graphdef, p)
            if train.get("objective", "answer") == "align":
                return alignment_loss(model, batch)
            return compute_loss(
                model,
                batch,
                vocab_chunk=vocab_chunk,
                jitter_key=key,
                num_tokens=num_tokens,
                num_micro_batches=accum,
            )

        return jax.grad(loss_fn, has_aux=True)(params)

    def accumulate(params, batch, key):
        # Micro-batch k takes rows k, k + N, ...: every device keeps its share of each.
        micro = jax.tree.map(
            lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1), batch
        )
        num_tokens = (batch["answer_mask"] * batch["valid"][..., None]).sum().astype(jnp.float32)

        def body(total, inputs):
            micro_batch, index = inputs
            micro_batch = jax.tree.map(
                lambda x: jax.lax.with_sharding_constraint(
                    x, sharding.batch_sharding(exp.mesh, exp.rules, x.ndim)
                ),
                micro_batch,
            )
            grads, metrics = grads_and_metrics(
                params, micro_batch, jax.random.fold_in(key, index), num_tokens
            )
            # Frozen parts' gradients are left out, so that XLA does not compute them.
            total = jax.tree.map(
                lambda t, g, label: t + g.astype(jnp.float32) if label == "train" else t,
                total,
                grads,
                labels,
            )
            return total, metrics

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        grads, metrics = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
        metrics = {k: v.mean(0) for k, v in metrics.items()}
        metrics["loss"] = metrics["loss"] * accum  # the micro-batch losses add up
        return grads, metrics

    grad_fn = accumulate if accum > 1 else grads_and_metrics

    def with_rules(params, batch, key):
        # Activations are pinned by logical axis names (models.layers.constrain).
        with nnx.logical_axis_rules(exp.rules):
            return grad_fn(params, batch, key)

    return with_rules


def make_train_step(exp: experiment_lib.Experiment):
    """A jitted (state, batch) -> (state, metrics) with explicit shardings; state donated."""
    tx, schedule, seed = exp.optimizer, exp.schedule, exp.config.seed
    grad_fn = make_grad_fn(exp)
    # The norm of the gradients that train: a frozen part's would keep its weight gradients
    # alive, which XLA otherwise drops (the optimizer ignores them).
    labels = jax.tree.leaves(exp.param_labels())

    def train_step(state: dict[str, Any], batch: dict[str, jax.Array]):
        # A function of the step alone, so a resumed run draws the same router jitter.
        jitter_key = jax.random.fold_in(jax.random.key(seed), state["step"])
        grads, metrics = grad_fn(state["params"], batch, jitter_key)
        trained = [g for g, label in zip(jax.tree.leaves(grads), labels) if label == "train"]
        metrics["grad_norm"] = optax.tree.norm(trained)
        metrics["learning_rate"] = schedule(state["step"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        # A non-finite loss, gradient or update is never applied, and the host decides
        # (train.on_nonfinite). Which of them, as bits (NONFINITE_PARTS), so the message
        # names the culprit. The optimizer state keeps its old value when the loss or the
        # gradients are not finite: that verdict exists before the update, so XLA fuses the
        # choice into the optimizer's pass; waiting for the update's norm too would add a
        # pass over the state (about a tenth of a CPU step). Only the parameters wait for it.
        checked = (metrics["loss"], metrics["grad_norm"], optax.tree.norm(updates))
        nonfinite = sum((~jnp.isfinite(x)).astype(jnp.int32) << i for i, x in enumerate(checked))
        inputs_finite = jnp.isfinite(checked[0]) & jnp.isfinite(checked[1])
        opt_state = jax.tree.map(
            lambda new, old: jnp.where(inputs_finite, new, old), opt_state, state["opt_state"]
        )
        params = jax.tree.map(
            lambda p, u: jnp.where(nonfinite == 0, p + u, p).astype(p.dtype),
            state["params"],
            updates,
        )
        metrics["nonfinite"] = nonfinite
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    return jax.jit(
        train_step,
        in_shardings=(exp.state_shardings, None),  # batch arrays arrive already sharded
        out_shardings=(exp.state_shardings, None),
        donate_argnums=0,
    )


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    allow_config_change: bool = False,
    allow_data_change: bool = False,
) -> dict[str, Any]:
    """Trains to config.train.steps, resuming from the newest good checkpoint in workdir.

    One run per workdir (rs_jax.train.lock). Each checkpoint stores the config that wrote
    it; resuming with one that changes the model, the data stream or the optimizer is an
    error listing the changes, unless `allow_config_change` (then they are printed). So is
    resuming on training files that were added, removed or edited, unless
    `allow_data_change`.
    SIGTERM / SIGINT (or a preemption notice) end the run after the current step with a
    checkpoint; the summary then has "preempted": True (rs_jax.train.preemption)."""
    workdir_path = epath.Path(workdir)
    try:
        workdir_path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FileExistsError(f"--workdir {workdir}: cannot create it ({e.strerror})") from e
    if is_local(workdir_path) and not os.access(workdir_path, os.W_OK):
        raise FileExistsError(f"--workdir {workdir} is not writable")
    with WorkdirLock(workdir_path):
        return _train(config, workdir_path, Allowed(allow_config_change, allow_data_change))


@dataclasses.dataclass(frozen=True)
class Allowed:
    """What a resumed run may change besides RESUMABLE keys (the CLI's --allow_* flags)."""

    config_change: bool = False
    data_change: bool = False


def _train(
    config: ml_collections.ConfigDict, workdir_path: epath.Path, allowed: Allowed
) -> dict[str, Any]:
    # A run with a checkpoint folder starts from shapes only (it never holds a fresh
    # initialisation beside the checkpoint it restores); a new run builds its state once.
    resuming = (workdir_path / "checkpoints").is_dir()
    exp = experiment_lib.setup(config, str(workdir_path), abstract=resuming)
    resolved = _resolved_config(exp)
    checkpointer = Checkpointer(
        workdir_path, keep=config.train.keep_checkpoints, async_save=config.train.async_checkpoints
    )
    train_iter = exp.data.train_iterator(seed=config.seed)
    exp, state, start = _restore_or_initialise(exp, checkpointer, train_iter, resolved, allowed)
    _write_config_record(workdir_path, resolved)
    write_manifest(workdir_path, exp.data.manifest)
    total = config.train.steps
    if start >= total:
        print(f"Already trained: step {start} >= config.train.steps={total}.", flush=True)
        train_iter.close()
        checkpointer.close()
        return {"step": start}
    host_batch = next(train_iter)
    batch = exp.shard_batch(host_batch)
    train_step = _compile_step(exp, state, batch, checkpointer, start)
    progress = ProgressLine(total, start, config.train.log_every)
    writer = MetricWriter(workdir_path / "tensorboard")
    metrics: dict[str, Any] = {}
    stopped_by, skipped = None, []
    # Steps run since the host last read the device: their guard verdicts and batches. The
    # host reads them only at log steps and before a checkpoint, so steps are dispatched
    # ahead of the device instead of waiting for it at every step.
    unchecked: list[tuple[int, dict[str, Any], dict[str, np.ndarray]]] = []
    try:
        with jax.set_mesh(exp.mesh), StopSignals() as signals:
            for step in range(start + 1, total + 1):
                if step > start + 1:
                    host_batch = next(train_iter)
                    batch = exp.shard_batch(host_batch)
                state, metrics = train_step(state, batch)
                unchecked.append((step, metrics, host_batch))
                if checkpointer.reached_preemption(step):
                    stopped_by = "a preemption notice"
                elif signals.received:
                    stopped_by = signals.received
                save = step % config.train.checkpoint_every == 0 or step == total or stopped_by
                if save or progress.is_log_step(step):
                    skipped += _check_nonfinite(config, workdir_path, unchecked, checkpointer)
                    unchecked.clear()
                # Examples, not rows: a packed row holds several.
                examples = int(host_batch["valid"].sum()) * jax.process_count()
                if progress.update(step, _headline(metrics), examples):
                    writer.write_scalars(step, jax.device_get(metrics))
                if step == total:
                    _write_expert_usage_images(
                        writer, step, jax.device_get(metrics), exp.model_config.level_names
                    )
                if save:
                    checkpointer.save(step, state, train_iter, config=resolved)
                if stopped_by:
                    break
    finally:
        # Now, not at exit: the data workers stop and what they have in flight is freed.
        train_iter.close()
        checkpointer.wait()
        checkpointer.close()
        writer.close()
    return _summary(step, total, metrics, skipped, exp.data.stream_skips, stopped_by, checkpointer)


def _resolved_config(exp: experiment_lib.Experiment) -> dict[str, Any]:
    """The resolved config (pretrained towers' architecture included) with the fingerprints
    of the KB and the tokenizer, saved with every checkpoint and as <workdir>/config.json."""
    resolved = json.loads(exp.config.to_json_best_effort())
    resolved[KNOWLEDGE_SHA256] = exp.knowledge.sha256
    # A tokenizer learned from the training texts (None for one named by data.tokenizer).
    resolved[TOKENIZER_SHA256] = stored_corpus_hash(exp.data.tokenizer.name_or_path)
    resolved[DATA_SHA256] = manifest_sha256(exp.data.manifest)
    return resolved


def _restore_or_initialise(
    exp: experiment_lib.Experiment,
    checkpointer: Checkpointer,
    train_iter: Any,
    resolved: dict[str, Any],
    allowed: Allowed,
) -> tuple[experiment_lib.Experiment, Any, int]:
    """(experiment, state, step): the newest good checkpoint restored into the abstract
    state, or, with none, the state initialised (unless `exp` holds it already)."""
    try:
        # The newest checkpoint's config before its arrays: a changed model would otherwise
        # fail the restore on array shapes, naming no key.
        checked = _check_latest_config(checkpointer, resolved, exp.data.manifest, allowed)
        restored = checkpointer.restore_latest_good(exp.abstract_state(), train_iter)
        if restored is not None and restored[1] != checked:  # fell back to an older one
            _check_resume(checkpointer, restored[1], resolved, exp.data.manifest, allowed)
    except ValueError:
        checkpointer.close()
        raise
    if restored is None:
        if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(exp.state)):
            exp = experiment_lib.initialise(exp)
        return exp, exp.state, 0
    state, start = restored
    print(f"Resumed from {checkpointer.step_dir(start)} (step {start}).", flush=True)
    return exp, state, start


def _compile_step(
    exp: experiment_lib.Experiment, state: Any, batch: Any, checkpointer: Checkpointer, start: int
) -> jax.stages.Compiled:
    """The train step compiled ahead of the loop, with the start-up report (its buffer
    assignment included); a step that cannot fit the device stops here, not at step 1."""
    config = exp.config
    precision, accum = exp.model_config.precision, config.train.grad_accum_steps
    print(
        f"Training {exp.model_config.variant} model: "
        f"mesh {dict(exp.mesh.shape)}, global batch {config.data.batch_size}"
        + (f" in {accum} micro-batches" if accum > 1 else "")
        + f", compute {jnp.dtype(precision.dtype).name}, weights "
        f"{jnp.dtype(precision.param_dtype).name}, steps {start}->{config.train.steps}.",
        flush=True,
    )
    start_compile = time.perf_counter()
    with jax.set_mesh(exp.mesh):
        train_step = make_train_step(exp).lower(state, batch).compile()
    step_memory = report.compiled_report(train_step)
    print(
        report.format_report(report.state_report(state, exp.mesh), step_memory)
        + f"\nCompiled the train step in {time.perf_counter() - start_compile:.1f} s.",
        flush=True,
    )
    try:
        report.check_fits(step_memory, exp.mesh.devices.flat[0])
    except ValueError:
        checkpointer.close()
        raise
    return train_step


def _summary(
    step: int,
    total: int,
    metrics: dict[str, Any],
    skipped: list[int],
    skipped_records: dict[str, str],
    stopped_by: str | None,
    checkpointer: Checkpointer,
) -> dict[str, Any]:
    """The last step's metrics, the dropped steps, the damaged records this process's
    stream skipped, and whether a signal stopped the run."""
    summary = {"step": step, **{k: float(v) for k, v in jax.device_get(metrics).items()}}
    summary["nonfinite_steps"] = len(skipped)
    summary["skipped_records"] = len(skipped_records)
    if skipped_records:
        first = next(iter(skipped_records))
        print(
            f"Skipped {len(skipped_records)} damaged training record(s) "
            f"(config.data.allow_skips), the first {first}: {skipped_records[first]}.",
            flush=True,
        )
    if skipped:
        print(
            f"Skipped {len(skipped)} step(s) whose loss or gradients were not finite "
            f"(train.on_nonfinite=skip): {_ranges(skipped)}.",
            flush=True,
        )
    if stopped_by and step < total:
        print(
            f"Stopped by {stopped_by} after step {step}: saved {checkpointer.step_dir(step)}. "
            f"The same command resumes from there.",
            flush=True,
        )
        summary["preempted"] = True
    return summary


# What a resumed run may change: how long and how it runs, logs, checkpoints and evaluates,
# where its data lives and its devices (checkpoints restore onto another mesh).
RESUMABLE = (
    "train.steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.async_checkpoints",
    "train.on_nonfinite",
    "eval.",
    "mesh.",
    "sharding_rules",
    "data.worker_count",
    "data.data_dir",
    "data.pack",
    "init.",
)


def _check_latest_config(
    checkpointer, resolved: dict, manifest: dict[str, str], allowed: Allowed
) -> int | None:
    """Checks the newest checkpoint's config and data (`_check_resume`); returns its step, or
    None when there is none or its config cannot be read (a damaged step, which
    restore_latest_good sets aside)."""
    step = checkpointer.latest_step()
    if step is None:
        return None
    try:
        checkpointer.stored_config(step)
    except Exception:  # orbax raises many kinds; the restore reports the damage
        return None
    _check_resume(checkpointer, step, resolved, manifest, allowed)
    return step


def _check_resume(
    checkpointer, step: int, resolved: dict, manifest: dict[str, str], allowed: Allowed
) -> None:
    """Raises if resuming `step` would change its config or its training files, beyond what
    `allowed` lets through (printed then)."""
    stored = checkpointer.stored_config(step)
    if stored is None:  # saved before checkpoints held their config
        return
    changes = {
        key: change
        for key, change in config_changes(stored, resolved).items()
        if not key.startswith(RESUMABLE)
        # Checkpoints written before these hashes were stored are taken as they are.
        and not (key in (TOKENIZER_SHA256, DATA_SHA256) and change[0] is None)
    }
    where = checkpointer.step_dir(step)
    if DATA_SHA256 in changes:
        old = changes.pop(DATA_SHA256)[0]
        files = describe_change(checkpointer.directory.parent, old, manifest)
        if not allowed.data_change:
            raise ValueError(
                f"Resuming {where}: the training data changed since it was saved: {files}. "
                f"Restore the data, choose a new --workdir, or pass --allow_data_change to go on"
            )
        print(f"rs-jax: warning: resuming {where} on changed training data: {files}", flush=True)
    if not changes:
        return
    listed = [f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items()]
    if TOKENIZER_SHA256 in changes:  # the run's own tokenizer stays in data.data_dir
        old, new = changes[TOKENIZER_SHA256]
        listed[list(changes).index(TOKENIZER_SHA256)] = (
            f"the training texts changed (its tokenizer {str(old)[:16]} -> {str(new)[:16]}, "
            f"both kept in config.data.data_dir)"
        )
    shown = "; ".join(listed[:8]) + (f"; and {len(listed) - 8} more" if len(listed) > 8 else "")
    if allowed.config_change:
        print(f"rs-jax: warning: resuming {where} with config changes: {shown}", flush=True)
        return
    raise ValueError(
        f"Resuming {where} with a config that changes the model, data or optimizer: {shown}. "
        f"The config that wrote it is in {where / 'config'}; use it, choose a new --workdir, "
        f"or pass --allow_config_change to go on with the change"
    )


def _write_config_record(workdir: epath.Path, resolved: dict) -> None:
    """<workdir>/config.json := the resolved config; a different earlier one is kept as
    config.<time>.json (it may be the only record of what wrote older checkpoints)."""
    path = workdir / "config.json"
    if path.exists():
        try:
            earlier = json.loads(path.read_text())
        except ValueError:
            earlier = None
        if earlier == resolved:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(path.stat().mtime))
        path.rename(workdir / f"config.{stamp}.json")
    path.write_text(json.dumps(resolved, indent=2) + "\n")


# The guard's bits, in order: what was not finite.
NONFINITE_PARTS = (
    "the loss",
    "the gradients",
    "the update (the optimizer state or the parameters: a damaged checkpoint?)",
)


def _nonfinite_parts(bits: int) -> str:
    return " and ".join(part for i, part in enumerate(NONFINITE_PARTS) if bits >> i & 1)


class NonFiniteError(ValueError):
    """Training met a non-finite loss or gradient and train.on_nonfinite is "stop"."""


def _check_nonfinite(
    config, workdir: epath.Path, unchecked: list, checkpointer: Checkpointer
) -> list[int]:
    """Reads the guard's verdicts of the `unchecked` steps (one device sync) and returns
    the steps whose update was dropped (train.on_nonfinite="skip"); with "stop", the first
    such step is an error naming it, with its batch written for inspection."""
    verdicts = jax.device_get([metrics["nonfinite"] for _, metrics, _ in unchecked])
    dropped = []
    for (step, metrics, host_batch), nonfinite in zip(unchecked, verdicts):
        if not int(nonfinite):
            continue
        values = ", ".join(f"{k}={float(metrics[k]):.4g}" for k in ("loss", "grad_norm"))
        culprit = _nonfinite_parts(int(nonfinite))
        if config.train.on_nonfinite == "skip":
            print(f"step {step}: {culprit} not finite ({values}); update dropped", flush=True)
            dropped.append(step)
            continue
        path = workdir / f"nonfinite_batch_step{step}.npz"
        if not path.exists():
            with path.open("wb") as f:
                np.savez(f, **{k: v for k, v in host_batch.items() if v.dtype != object})
        last = checkpointer.latest_step()
        saved = "no checkpoint was saved" if last is None else f"the last checkpoint is step {last}"
        raise NonFiniteError(
            f"step {step}: {culprit} not finite ({values}); the update was not applied and "
            f"{saved}. The batch is in {path}. "
            f"Lower config.train.learning_rate or set config.train.grad_clip, or set "
            f"config.train.on_nonfinite=skip to drop such steps"
        )
    return dropped


def _ranges(steps: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    runs: list[list[int]] = []
    for step in steps:
        if runs and step == runs[-1][1] + 1:
            runs[-1][1] = step
        else:
            runs.append([step, step])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in HEADLINE_METRICS if k in metrics}


def _write_expert_usage_images(
    writer: MetricWriter, step: int, metrics: dict[str, Any], level_names: tuple[str, ...]
) -> None:
    """The expert usage bar charts (last batch's routing) as TensorBoard images."""
    from rs_jax.train.charts import expert_usage_figure, figure_to_array  # matplotlib: lazily

    for prefix in ("moe", "moe_llm"):
        usage = expert_usage_from_metrics(metrics, level_names, prefix)
        if usage:
            image = figure_to_array(expert_usage_figure(usage))
            writer.write_image(step, f"{prefix}/expert_usage", image)
