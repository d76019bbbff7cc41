"""The UI's charts: curves cut on the server keep their shape and spikes; axes and ticks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from runner.tracking.plot import nice_ticks
from runner.tracking.store import open_store
from runner.ui import charts


@pytest.mark.slow
def test_a_million_points_become_two_per_bucket_and_keep_a_spike() -> None:
    points = [(float(i), math.sin(i / 1000)) for i in range(1_000_000)]
    points[500_123] = (500_123.0, 50.0)
    kept = charts.minmax_buckets(points, 640)
    assert len(kept) <= 2 * 640
    assert (500_123.0, 50.0) in kept
    assert kept[0][0] == 0 and kept[-1][0] >= 999_000
    assert [x for x, _ in kept] == sorted(x for x, _ in kept)


@pytest.mark.slow
def test_the_store_cuts_curves_in_sql_with_the_same_extremes(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    from runner.tracking.record import new_record

    record = new_record(experiment="e", run_name=None, source={"kind": "local"},
                        entry_point="main", command={"template": "x", "argv": [], "shell": False},
                        params={}, env={"kind": "local"}, backend="local", heartbeat_seconds=5.0)  # fmt: skip
    store.create_run(record)
    n = 200_000
    values = [1.0 / (i + 1) for i in range(n)]
    values[123_456] = -7.0
    store.add_metrics(record["id"], [("loss", v, i, 1000.0 + i / 10) for i, v in enumerate(values)])
    cut = store.metric_buckets(record["id"], "loss", 640)
    assert len(cut) <= 2 * 640
    assert min(y for _, y in cut) == -7.0 and max(y for _, y in cut) == 1.0
    assert cut[0][0] == 0 and cut[-1][0] == n - 1
    by_time = store.metric_buckets(record["id"], "loss", 100, by_time=True)
    assert by_time[0][0] == 0 and math.isclose(by_time[-1][0], (n - 1) / 10)


def test_ticks_are_round_numbers_inside_the_range() -> None:
    ticks = nice_ticks(0, 1)
    assert len(ticks) == 6
    assert all(math.isclose(a, b) for a, b in zip(ticks, [0, 0.2, 0.4, 0.6, 0.8, 1], strict=True))
    assert nice_ticks(3, 97) == [20, 40, 60, 80]


def test_log_scale_draws_a_1_over_x_curve_across_decades_and_drops_non_positive() -> None:
    points = [(float(i), 1.0 / i) for i in range(1, 100_001)] + [(100_001.0, 0.0)]
    svg = charts.line_chart("loss", [charts.Series("a", charts.minmax_buckets(points, 640))],
                            "step", log_y=True)  # fmt: skip
    for decade in ("1e-05", "0.0001", "0.001", "0.01", "0.1", ">1<"):
        assert decade in svg  # every decade has its tick: the curve is not flat on the axis
    assert "1 points ≤ 0 or not finite left out" in svg


def test_smoothing_keeps_a_constant_curve_and_evens_out_noise() -> None:
    flat = [(float(i), 5.0) for i in range(10)]
    assert all(math.isclose(y, 5.0) for _, y in charts.smooth(flat, 0.9))
    noisy = [(float(i), (-1.0) ** i) for i in range(100)]
    assert max(abs(y) for _, y in charts.smooth(noisy, 0.9)[50:]) < 0.2
