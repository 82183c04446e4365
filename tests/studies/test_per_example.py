"""Per-example geometry study kinds (label propagation, reliability, robustness, redundancy): building blocks
against known answers and the quick configs' results."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("duckdb")
pytest.importorskip("matplotlib")
pytest.importorskip("yaml")

from helpers import brute_knn  # noqa: E402

from nnkscope.errors import InvalidParameterError  # noqa: E402
from nnkscope.report import write_report  # noqa: E402
from nnkscope.studies.base import load_yaml  # noqa: E402
from nnkscope.studies.propagation import labelled_split, propagation_error, propagation_graphs  # noqa: E402
from nnkscope.studies.registry import resolve_config, run_study  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "studies"


def quick(kind: str, tmp_path, **overrides):
    cfg = resolve_config(kind, {**load_yaml(EXAMPLES / f"{kind}-quick.yaml"), **overrides})
    store, table = run_study(kind, cfg, tmp_path / kind)
    write_report(tmp_path / kind)
    return store, table, (tmp_path / kind / "report.html").read_text()


# ---------------------------------------------------------------------------------------------------------------
# label propagation (R2)


def test_labelled_split_is_stratified_and_seeded():
    y = np.repeat(np.arange(4), [10, 20, 30, 3])
    m = labelled_split(y, 0.1, seed=3)
    assert [int(m[y == c].sum()) for c in range(4)] == [1, 2, 3, 1]
    assert (labelled_split(y, 0.1, seed=3) == m).all() and not (labelled_split(y, 0.1, seed=4) == m).all()
    with pytest.raises(InvalidParameterError, match=r"\(0, 1\)"):
        labelled_split(y, 1.0, seed=0)


def test_propagation_graphs_share_candidates(rng):
    X = rng.normal(size=(120, 5))
    gs = propagation_graphs(X, 10, ["knn", "nnk-max", "nnk-reference", "nnk-min"])
    # the kNN graph is the union of the brute-force 10-NN lists
    idx, _ = brute_knn(X, 10)
    brute = sp.csr_array((np.ones(idx.size), (np.repeat(np.arange(120), 10), idx.ravel())), shape=(120, 120))
    brute = brute.maximum(brute.T)
    A, edges = gs["knn"]
    assert edges == brute.nnz and ((A > 0).astype(int) != (brute > 0).astype(int)).nnz == 0
    for A, _ in gs.values():
        assert abs(A - A.T).max() == 0 and A.min() >= 0 and A.diagonal().max() == 0
        # every NNK edge joins two points that are kNN candidates of one another's lists
        assert ((A > 0).astype(int) - (A > 0).astype(int).multiply(brute > 0)).nnz == 0
    assert gs["knn"][1] > gs["nnk-max"][1] > gs["nnk-min"][1]
    with pytest.raises(InvalidParameterError, match="unknown graph"):
        propagation_graphs(X, 5, ["nnk-sideways"])


def test_propagation_error_counts_unreachable_nodes():
    # nodes 0-1 labelled/unlabelled pair; nodes 2-3 a component without any label
    A = sp.csr_array(np.array([[0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1.0], [0, 0, 1.0, 0]]))
    r = propagation_error(A, np.array([0, 0, 1, 1]), np.array([True, False, False, False]))
    assert r == {"error": 2 / 3, "unreachable": 2, "isolated_nodes": 0}


def test_label_propagation_quick(tmp_path):
    store, t, page = quick("label-propagation", tmp_path)
    assert list(t.columns[:4]) == ["graph", "k", "split", "error"]
    assert len(t) == 3 * 2 * 2 and t.error.between(0, 1).all()
    e = t.groupby(["graph", "k"]).edges.first()
    # NNK keeps a subset of the kNN edges; the reference rule fewer still
    assert (e["knn"] > e["nnk-max"]).all() and (e["nnk-max"] > e["nnk-reference"]).all()
    assert "Label propagation" in page and "best NNK graph" in page
