"""Short versions of the class-geometry reproductions (R12, R13) on MNIST-1D generated offline.

They train small torch models (CPU, one thread, seeded) and take about a minute together; skipped cleanly where
torch or mnist1d is not installed. The full protocols are examples/equi_separation.py and
examples/neural_collapse.py.
"""

import os
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("mnist1d")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))


def test_law_of_equi_separation_and_its_controls():
    import equi_separation

    res = equi_separation.run(epochs=100, verbose=False)
    law = res["BatchNorm, trained"]["fits"]["without_input"]
    assert res["BatchNorm, trained"]["train_error"] == 0.0
    assert law.r <= -0.98 and law.r2 >= 0.95
    assert 0.15 <= law.rho <= 0.5
    assert res["no BatchNorm, trained"]["fits"]["without_input"].r > -0.9
    assert res["BatchNorm, untrained"]["fits"]["without_input"].r > -0.5


def test_neural_collapse_metrics_fall_through_training():
    import neural_collapse

    df = neural_collapse.run(epochs=60, width=256, every=10, n_train=2000, verbose=False)
    first, last = df.iloc[0], df.iloc[-1]
    assert last.train_error == 0.0
    assert last.nc1 < 0.05 * first.nc1
    assert last.nc4 <= 0.005 < first.nc4
    for key in ("nc2_means_equiangular_std", "nc2_means_max_angle", "nc3"):
        assert last[key] < first[key], key
    tpt = df[df.tpt_start]
    assert len(tpt) == 1 and last.nc1 < tpt.iloc[0].nc1  # still collapsing after training error hits zero
