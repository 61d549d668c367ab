"""Progress lines (rate excludes the compile step) and TensorBoard event files."""

import numpy as np

from rs_jax.train.progress import MetricWriter, ProgressLine, format_duration, read_scalars


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_format_duration():
    assert format_duration(1671) == "27m51s"
    assert format_duration(5) == "5s"
    assert format_duration(7500) == "2h05m"


def test_progress_line_rate_excludes_compile_step():
    clock, lines = FakeClock(), []
    progress = ProgressLine(
        total_steps=2500, start_step=100, every=50, print_fn=lines.append, clock=clock
    )
    clock.now = 30.0  # step 101: compilation dominates
    first = progress.update(101, {"loss": np.float32(5.0)}, examples=32)
    assert first is not None and "first step" in first and "ex/s" not in first
    for step in range(102, 151):
        clock.now += 0.5
        progress.update(step, {"loss": 1.2345}, examples=32)
    # 49 steps of 0.5 s since the compile step; 2350 steps left at 0.5 s each.
    assert lines[-1] == "step 150/2500 | loss 1.234 | 64.0 ex/s | 0.50 s/step | ETA 19m35s"
    assert len(lines) == 2
    # Next interval is measured on its own: slower steps show up at once.
    for step in range(151, 201):
        clock.now += 1.0
        progress.update(step, {"loss": 0.5}, examples=32)
    assert lines[-1].endswith("| 32.0 ex/s | 1.00 s/step | ETA 38m20s")


def test_progress_prints_last_step():
    clock, lines = FakeClock(), []
    progress = ProgressLine(total_steps=7, every=5, print_fn=lines.append, clock=clock)
    for step in range(1, 8):
        clock.now += 1.0
        progress.update(step, {"loss": 1.0}, examples=2)
    assert [line.split(" |")[0] for line in lines] == ["step 1/7", "step 5/7", "step 7/7"]
    assert "ETA 0s" in lines[-1]


def test_metric_writer_scalars_and_images(tmp_path):
    with MetricWriter(tmp_path / "train", enabled=True) as writer:
        writer.write_scalars(1, {"loss": 2.5, "lr": np.float32(1e-3)})
        writer.write_scalars(2, {"loss": np.asarray(1.5), "expert_load": np.array([0.25, 0.75])})
        writer.write_image(2, "router/histogram", np.zeros((8, 6, 3), np.uint8))
        writer.flush()
    files = list((tmp_path / "train").glob("events.out.tfevents.*"))
    assert files and all(f.stat().st_size > 0 for f in files)
    scalars = read_scalars(tmp_path / "train")
    assert scalars["loss"] == [(1, 2.5), (2, 1.5)]
    assert scalars["expert_load/1"] == [(2, 0.75)]
    assert scalars["lr"][0][0] == 1 and abs(scalars["lr"][0][1] - 1e-3) < 1e-9


def test_metric_writer_disabled_writes_nothing(tmp_path):
    writer = MetricWriter(tmp_path / "off", enabled=False)
    writer.write_scalars(1, {"loss": 1.0})
    writer.close()
    assert not (tmp_path / "off").exists()
