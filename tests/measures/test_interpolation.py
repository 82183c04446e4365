"""NNK classifier/regressor and leave-one-out against hand computations."""

import numpy as np
import pytest
from helpers import brute_knn, dense_kernel, nnls_oracle

from nnkscope.errors import InputShapeError, InvalidParameterError
from nnkscope.measures.interpolation import NNKClassifier, NNKRegressor, leave_one_out, nnk_interpolate, vote


def test_classifier_equals_hand_computation():
    X = np.array([[0.0], [1.0], [3.0], [4.0], [10.0]])
    y = np.array([0, 1, 1, 0, 1])
    q = np.array([[0.4], [2.5]])
    sigma, k = 1.5, 3
    clf = NNKClassifier(k=k, kernel="gaussian", sigma=sigma).fit(X, y)
    P = clf.predict_proba(q)
    Z = np.vstack([X, q])
    Kfull = dense_kernel(Z, "gaussian", sigma)
    for r in range(len(q)):
        d = np.abs(X[:, 0] - q[r, 0])
        cand = np.lexsort((np.arange(len(X)), d))[:k]
        theta = nnls_oracle(Kfull[np.ix_(cand, cand)], Kfull[len(X) + r, cand])
        expected = np.array([theta[y[cand] == c].sum() for c in (0, 1)]) / theta.sum()
        np.testing.assert_allclose(P[r], expected, atol=1e-10)
        # the baselines on the same candidates
        g = Kfull[len(X) + r, cand]
        wk = np.array([g[y[cand] == c].sum() for c in (0, 1)]) / g.sum()
        np.testing.assert_allclose(clf.predict_proba(q, weights="kernel")[r], wk, atol=1e-12)
        un = np.array([(y[cand] == c).mean() for c in (0, 1)])
        np.testing.assert_allclose(clf.predict_proba(q, weights="uniform")[r], un, atol=1e-12)
    assert clf.predict(q).tolist() == [int(p.argmax()) for p in P]


def test_ties_go_to_the_lowest_class_and_string_labels_work():
    p, _ = vote(np.array([[1.0, 1.0]]), np.array([[2, 0]]), 3)
    assert p.argmax(1).tolist() == [0]
    X = np.array([[-1.0, 0.1], [1.0, 0.1], [0.0, 1.0], [0.0, -1.0]])
    clf = NNKClassifier(k=2, weights="uniform").fit(X, np.array(["b", "a", "b", "a"]))
    assert clf.predict(np.array([[1.0, 1.0]])).tolist() == ["a"]  # one 'a' and one 'b' candidate: tie -> 'a'


def test_regressor_hand_computation_and_multi_output():
    X = np.array([[0.0], [1.0], [2.0], [3.5]])
    y = np.c_[[0.0, 1.0, 4.0, 2.0], [1.0, 1.0, 1.0, 1.0]]
    reg = NNKRegressor(k=2, kernel="gaussian", sigma=0.8).fit(X, y)
    pred = reg.predict(np.array([[1.2]]))
    K = dense_kernel(np.array([[1.0], [2.0], [1.2]]), "gaussian", 0.8)
    theta = nnls_oracle(K[:2, :2], K[2, :2])
    np.testing.assert_allclose(pred[0], (theta @ y[[1, 2]]) / theta.sum(), atol=1e-10)
    assert pred.shape == (1, 2) and pred[0, 1] == pytest.approx(1.0)


def test_leave_one_out_never_uses_the_query():
    r = np.random.default_rng(0)
    X = r.normal(size=(120, 6))
    y = np.zeros(120, int)
    lonely = [5, 40, 77]
    y[lonely] = 1  # each the only member of its class among the others' eyes: LOO can never predict 1 for them
    y[lonely[0]] = 2
    with pytest.raises(InvalidParameterError, match="only 1 sample"):
        leave_one_out(X, y, k=10)  # a class of one cannot be judged by LOO: refused unless asked for
    res = leave_one_out(X, y, k=10, check_class_sizes=False)
    I = res.interpolation
    assert not (I.candidates == np.arange(120)[:, None]).any()
    for w in ("nnk", "nnk_uniform", "kernel", "uniform"):
        assert res.hard_error(w)[lonely[0]]  # class 2 has a single member
    # exact duplicates: with drop_identical the twin cannot leak its label
    Xd = np.vstack([X, X[:1]])
    yd = np.r_[y, 7]
    yd[0] = 7
    keep = leave_one_out(Xd, yd, k=10, check_class_sizes=False)
    drop = leave_one_out(Xd, yd, k=10, duplicates="drop", check_class_sizes=False)
    assert not keep.hard_error()[0] and not keep.hard_error()[-1]  # the twin predicts the label
    assert drop.hard_error()[0] and drop.hard_error()[-1]
    assert not np.isin(drop.interpolation.candidates[0], [0, 120]).any()


def test_loo_matches_graph_weights(digits, digits_labels):
    from nnkscope import nnk_graph

    res = leave_one_out(digits[:500], digits_labels[:500], k=15, tau=1e-6)
    G = nnk_graph(digits[:500], 15, kernel="cosine", duplicates="keep")
    np.testing.assert_array_equal(res.interpolation.candidates, G.candidates)
    np.testing.assert_allclose(res.interpolation.theta, G.theta, atol=1e-12)
    s = res.summary()
    assert 0 <= s["loo_error_nnk"] <= s["loo_error_kernel"] + 0.02


def test_out_of_sample_candidates_are_exact():
    r = np.random.default_rng(1)
    X, Q = r.normal(size=(300, 8)), r.normal(size=(40, 8))
    I = nnk_interpolate(X, Q, k=12)
    Z = np.vstack([X, Q])
    idx, _ = brute_knn(Z, 12 + 40, "cosine")
    for r_ in range(40):
        row = [j for j in idx[300 + r_] if j < 300][:12]
        assert I.candidates[r_].tolist() == row


def test_estimator_conventions():
    clf = NNKClassifier(k=7, kernel="gaussian", sigma=2.0)
    assert clf.get_params()["k"] == 7
    assert clf.set_params(k=9).k == 9
    with pytest.raises(InvalidParameterError, match="no parameter 'kk'"):
        clf.set_params(kk=1)
    with pytest.raises(InvalidParameterError, match="not fitted"):
        clf.predict(np.zeros((1, 2)))
    assert "NNKClassifier(k=9" in repr(clf)


def test_label_errors():
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(InputShapeError, match="one label per row"):
        NNKClassifier(k=3).fit(X, np.zeros(29))
    with pytest.raises(InvalidParameterError, match="single class"):
        NNKClassifier(k=3).fit(X, np.zeros(30))
    with pytest.raises(InvalidParameterError, match="NaN"):
        NNKClassifier(k=3).fit(X, np.r_[np.zeros(29), np.nan])
    with pytest.raises(InputShapeError, match="features"):
        NNKClassifier(k=3).fit(X, np.repeat([0, 1], 15)).predict(np.zeros((2, 4)))
    with pytest.raises(InvalidParameterError, match="weights must be one of"):
        NNKClassifier(k=3, weights="magic").fit(X, np.repeat([0, 1], 15))


def test_nnk_is_robust_to_k_on_digits():
    """R1 (research notes 16.2): NNK flat in K, weighted kNN degrades."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
    import nnk_vs_knn_digits

    t = nnk_vs_knn_digits.run(ks=(10, 75), verbose=False).set_index("k")
    assert (t["nnk_accuracy"] >= 0.985).all()
    assert (t["nnk_accuracy"] >= t["wknn_accuracy"]).all()
    assert t.loc[75, "wknn_accuracy"] < t.loc[10, "wknn_accuracy"] - 0.02
    assert t.loc[75, "mean_nnk_degree"] < 2.5 * t.loc[10, "mean_nnk_degree"]
