"""The simulated VL53L0X: noise and valid range."""

from __future__ import annotations

import numpy as np
from edgeloop.edge_client.sensors.tof_model import TofModel


def test_out_of_range_reads_are_no_reading_not_numbers() -> None:
    model, rng = TofModel(dropout=0.0), np.random.default_rng(0)
    assert all(model.read(5.0, 0, rng) is None for _ in range(50))
    assert all(model.read(1500.0, 0, rng) is None for _ in range(50))
    assert all(model.read(500.0, 0, rng) is not None for _ in range(50))


def test_noise_is_integer_mm_and_grows_with_distance() -> None:
    model, rng = TofModel(dropout=0.0), np.random.default_rng(1)
    near = np.array([model.read(100.0, 0, rng) for _ in range(2000)])
    far = np.array([model.read(800.0, 0, rng) for _ in range(2000)])
    assert np.all(near == np.round(near))
    assert abs(near.mean() - 100) < 0.5 and abs(far.mean() - 800) < 1.5
    assert 2.0 < near.std() < 3.6 and 9 < far.std() < 13


def test_grazing_wall_angles_lose_more_reads() -> None:
    model, rng = TofModel(), np.random.default_rng(2)
    square = sum(model.read(150.0, 0, rng) is None for _ in range(2000))
    grazing = sum(model.read(150.0, 30, rng) is None for _ in range(2000))
    assert grazing > square + 200
