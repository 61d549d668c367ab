"""Console progress lines and TensorBoard metric files.

``read_scalars`` reads the event files back without TensorFlow or TensorBoard, which
neither the tests nor a notebook on a laptop should need.
"""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from etils import epath


def format_duration(seconds: float) -> str:
    """``1671`` -> ``'27m51s'``; hours drop the seconds (``'2h05m'``)."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _format_metric(value: float) -> str:
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4g}" if abs(value) >= 1 else f"{value:.4f}"


class ProgressLine:
    """Prints ``step 150/2500 | loss 1.234 | 45.1 ex/s | 0.71 s/step | ETA 27m51s``.

    Call :meth:`update` after every step. Throughput is measured over the last printed
    interval only, and never includes the first step of the run, which is dominated by
    compilation. unit: what a step is (``record 500/4200 | ...`` for `unit="record"`).
    """

    def __init__(
        self,
        total_steps: int,
        start_step: int = 0,
        every: int = 50,
        *,
        print_fn: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        unit: str = "step",
    ) -> None:
        self.total_steps = total_steps
        self.unit = unit
        self.every = max(int(every), 1)
        self._print = print_fn or (lambda line: print(line, file=sys.stdout, flush=True))
        self._clock = clock
        self._first_step = start_step + 1
        self._start = clock()
        self._mark_time: float | None = None  # None until the compile step is done
        self._mark_step = start_step
        self._examples = 0

    def is_log_step(self, step: int) -> bool:
        """Whether `update(step, ...)` prints (and so reads the device)."""
        return step in (self._first_step, self.total_steps) or step % self.every == 0

    def update(self, step: int, metrics: Mapping[str, Any], examples: int) -> str | None:
        """Record that ``step`` (1-based) finished with ``examples`` examples.

        Returns the printed line on logging steps (every ``every`` steps, the first step
        and the last), else None. Metric values may be device arrays: they are only
        converted (which waits for the device) on logging steps and the first step.
        """
        is_first = step == self._first_step
        if not self.is_log_step(step):
            self._examples += examples
            return None
        values = {k: float(np.asarray(v)) for k, v in metrics.items()}  # syncs the device
        now = self._clock()
        parts = [f"{self.unit} {step}/{self.total_steps}"]
        parts += [f"{k} {_format_metric(v)}" for k, v in values.items()]
        if is_first or self._mark_time is None:
            parts.append(f"first {self.unit} {now - self._start:.1f} s")
        else:
            elapsed = now - self._mark_time
            steps = step - self._mark_step
            examples_done = self._examples + examples
            if elapsed > 0 and steps > 0:
                s_per_step = elapsed / steps
                parts.append(f"{examples_done / elapsed:.1f} ex/s")
                if s_per_step >= 0.005:  # else the rate says it all
                    parts.append(f"{s_per_step:.2f} s/{self.unit}")
                parts.append(f"ETA {format_duration((self.total_steps - step) * s_per_step)}")
        self._mark_time, self._mark_step, self._examples = now, step, 0
        line = " | ".join(parts)
        self._print(line)
        return line


class MetricWriter:
    """TensorBoard scalars and images under ``logdir`` (written by process 0 only)."""

    def __init__(self, logdir: epath.PathLike, enabled: bool | None = None) -> None:
        if enabled is None:
            import jax

            # Every host computes the same global metrics; one copy is enough.
            enabled = jax.process_index() == 0
        self.logdir = epath.Path(logdir)
        self._writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.logdir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(logdir=str(self.logdir), flush_secs=30)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """One scalar per tag; a vector (e.g. per-expert load) becomes ``tag/0``, ``tag/1``..."""
        if self._writer is None:
            return
        for tag, value in scalars.items():
            value = np.asarray(value)
            if value.size == 1:
                self._writer.add_scalar(tag, float(value.reshape(())), global_step=step)
            else:
                for i, item in enumerate(value.reshape(-1)):
                    self._writer.add_scalar(f"{tag}/{i}", float(item), global_step=step)

    def write_image(self, step: int, tag: str, image: np.ndarray) -> None:
        """An ``[H, W, C]`` uint8 image (e.g. a plot rendered to an array)."""
        if self._writer is None:
            return
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"write_image({tag!r}) expects an [H, W, C] uint8 array, "
                f"got shape {image.shape} dtype {image.dtype}"
            )
        self._writer.add_image(tag, image, global_step=step, dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_records(path: epath.Path) -> list[bytes]:
    # TFRecord framing: u64 length, u32 crc(length), payload, u32 crc(payload).
    # CRCs are not checked; a truncated tail (a writer still running) is ignored.
    data = path.read_bytes()
    records, pos = [], 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        end = pos + 12 + length
        if end + 4 > len(data):
            break
        records.append(data[pos + 12 : end])
        pos = end + 4
    return records


def read_scalars(logdir: epath.PathLike) -> dict[str, list[tuple[int, float]]]:
    """All scalars in the event files in ``logdir`` (a MetricWriter's):
    ``{tag: [(step, value), ...]}``."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(epath.Path(logdir).glob("events.out.tfevents.*")):
        for record in _read_records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out
