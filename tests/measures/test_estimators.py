"""NNKClassifier, NNKRegressor and NNKMeans as scikit-learn estimators: sklearn's own checks, clone, Pipeline,
cross-validation and grid search, against the functional API and brute-force oracles."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from helpers import brute_knn
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nnkscope.errors import (
    InputDTypeError,
    InputShapeError,
    InvalidParameterError,
    NNKScopeError,
    TooFewPointsError,
)
from nnkscope.measures.interpolation import NNKClassifier, NNKRegressor, nnk_interpolate, vote
from nnkscope.measures.nnk_means import NNKMeans

SKLEARN_16 = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 6)

# Small k / n_components: scikit-learn's checks fit on as few as 10 samples, and k larger than the training set is
# refused (never silently lowered).
CHECKED = [NNKClassifier(k=3), NNKRegressor(k=3), NNKMeans(n_components=3, n_nonzero=2, n_iter=2)]

# Each expected failure is a deliberate nnkscope rule that differs from scikit-learn's default behaviour.
COMPLEX = ("nnkscope refuses complex X with InputDTypeError, a TypeError like every nnkscope dtype error; the check "
           "wants a ValueError")
ZERO_ROW = ("the cosine kernel (the default) refuses all-zero rows with ZeroVectorError naming the fix (they have no "
            "direction); the check's integer cast of uniform data makes one. test_object_arrays_of_numbers_and_other_"
            "dtypes_give_the_same_predictions covers the dtypes")
EXPECTED_FAILURES = {
    "NNKClassifier": {
        "check_complex_data": COMPLEX,
        "check_estimators_dtypes": ZERO_ROW,
        # labels go through the one label checker, which refuses an (N, 1) column naming y.ravel() instead of
        # warning and guessing; the check wants a DataConversionWarning and a fit
        "check_supervised_y_2d": "an (N, 1) y is refused with InputShapeError naming y.ravel()",
    },
    "NNKRegressor": {"check_complex_data": COMPLEX},
    "NNKMeans": {"check_complex_data": COMPLEX, "check_estimators_dtypes": ZERO_ROW},
}


def _expected_failures(est):
    return EXPECTED_FAILURES[type(est).__name__]


if SKLEARN_16:
    from sklearn.utils.estimator_checks import parametrize_with_checks

    @parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failures)
    def test_sklearn_estimator_checks(estimator, check):
        check(estimator)
else:
    @pytest.mark.skip(reason="expected_failed_checks needs scikit-learn >= 1.6")
    def test_sklearn_estimator_checks():
        pass


def _blobs(n=120, d=5, seed=0):
    r = np.random.default_rng(seed)
    centers = r.normal(size=(3, d)) * 3
    y = np.arange(n) % 3
    return centers[y] + r.normal(size=(n, d)) + 10.0, y  # offset: the cosine kernel then sees distinct directions


def test_clone_keeps_params_and_drops_fit():
    X, y = _blobs()
    clf = NNKClassifier(k=7, kernel="gaussian", sigma=2.0, weights="kernel", knn="hnsw").fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "classes_") and not hasattr(twin, "X_")
    assert set(clf.get_params()) == {"k", "kernel", "sigma", "weights", "solver", "tau", "knn", "n_jobs",
                                     "knn_method"}


def test_pipeline_equals_scaling_by_hand():
    X, y = _blobs()
    Q = _blobs(30, seed=1)[0]
    pipe = make_pipeline(StandardScaler(), NNKClassifier(k=9)).fit(X, y)
    sc = StandardScaler().fit(X)
    by_hand = NNKClassifier(k=9).fit(sc.transform(X), y)
    np.testing.assert_array_equal(pipe.predict_proba(Q), by_hand.predict_proba(sc.transform(Q)))
    assert pipe.score(Q, y[:30]) == by_hand.score(sc.transform(Q), y[:30])


def test_cross_val_score_equals_manual_folds():
    X, y = _blobs(150)
    y = np.array(["cat", "dog", "eel"])[y]  # labels of any hashable type
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = cross_val_score(NNKClassifier(k=5), X, y, cv=cv)
    manual = [np.mean(NNKClassifier(k=5).fit(X[tr], y[tr]).predict(X[te]) == y[te]) for tr, te in cv.split(X, y)]
    np.testing.assert_allclose(scores, manual, rtol=0, atol=0)
    reg_scores = cross_val_score(NNKRegressor(k=5), X, X[:, 0] ** 2, cv=3)
    assert reg_scores.shape == (3,) and np.isfinite(reg_scores).all()


def test_grid_search_over_k_matches_cross_val_score():
    r = np.random.default_rng(3)
    X = r.normal(size=(150, 4))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)  # XOR-like: the score depends on k
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    ks = [1, 5, 15, 40]
    gs = GridSearchCV(NNKClassifier(kernel="gaussian"), {"k": ks}, cv=cv).fit(X, y)
    means = [cross_val_score(NNKClassifier(k=k, kernel="gaussian"), X, y, cv=cv).mean() for k in ks]
    np.testing.assert_allclose(gs.cv_results_["mean_test_score"], means, rtol=0, atol=1e-15)
    assert gs.best_params_ == {"k": ks[int(np.argmax(means))]}
    refit = NNKClassifier(k=gs.best_params_["k"], kernel="gaussian").fit(X, y)
    np.testing.assert_array_equal(gs.predict_proba(X), refit.predict_proba(X))


def test_estimators_equal_the_functional_api():
    X, y = _blobs()
    Q = _blobs(25, seed=2)[0]
    t = X[:, 1] - X[:, 2]
    for w in ("nnk", "nnk_uniform", "kernel", "uniform"):
        I = nnk_interpolate(X, Q, 8, kernel="cosine")
        expected, _ = vote(I.weights(w), y[I.candidates], 3)
        clf = NNKClassifier(k=8, weights=w).fit(X, y)
        np.testing.assert_array_equal(clf.predict_proba(Q), expected)
        np.testing.assert_array_equal(NNKClassifier(k=8).fit(X, y).predict_proba(Q, weights=w), expected)
        Ig = nnk_interpolate(X, Q, 8, kernel="gaussian", sigma=3.0)
        Wg = Ig.weights(w)
        assert (Wg.sum(1) > 0).all()  # no fallback: the plain weighted mean is the answer
        reg = NNKRegressor(k=8, sigma=3.0, weights=w).fit(X, t)
        np.testing.assert_allclose(reg.predict(Q), (Wg * t[Ig.candidates]).sum(1) / Wg.sum(1), rtol=1e-14)


def test_default_bandwidth_is_the_rule_on_the_training_set_fixed_at_fit():
    X, y = _blobs(200)
    clf = NNKClassifier(k=6, kernel="gaussian").fit(X, y)
    _, dist = brute_knn(X, 6)
    assert clf.sigma_ == pytest.approx(dist[:, -1].mean() / 3, rel=1e-12)  # mean 6th-neighbour distance / 3
    explicit = NNKClassifier(k=6, kernel="gaussian", sigma=clf.sigma_).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X[:20] + 0.1), explicit.predict_proba(X[:20] + 0.1))
    assert NNKClassifier(k=6).fit(X, y).sigma_ is None  # cosine has no bandwidth


def test_knn_method_is_a_deprecated_alias_of_knn():
    X, y = _blobs()
    new = NNKClassifier(k=5, knn="exact").fit(X, y)
    with pytest.warns(DeprecationWarning, match="knn_method"):
        old = NNKClassifier(k=5, knn_method="exact").fit(X, y)
    np.testing.assert_array_equal(old.predict_proba(X[:10]), new.predict_proba(X[:10]))
    with pytest.warns(DeprecationWarning), pytest.raises(InvalidParameterError, match="disagree"):
        NNKClassifier(k=5, knn="hnsw", knn_method="exact").fit(X, y)
    with pytest.raises(InvalidParameterError, match="knn must be"):
        NNKRegressor(k=5, knn="annoy").fit(X, y)


def test_k_above_the_training_set_is_refused_not_lowered():
    X, y = _blobs(12)
    with pytest.raises(TooFewPointsError, match=r"NNKClassifier\(k=25\) needs at least 25 .* Lower k to at most 12"):
        NNKClassifier().fit(X, y)
    assert NNKClassifier(k=12).fit(X, y).predict(X).shape == (12,)  # k = n_samples is allowed
    with pytest.raises(TooFewPointsError, match="Lower n_components to at most 12"):
        NNKMeans(n_components=13).fit(X)
    with pytest.raises(InvalidParameterError, match="k must be a positive integer"):
        NNKRegressor(k=0).fit(X, y)


def test_errors_stay_nnkscope_errors_naming_the_fix():
    X, y = _blobs(30)
    for est in (NNKClassifier(k=3), NNKRegressor(k=3), NNKMeans(n_components=3)):
        method = est.predict if not isinstance(est, NNKMeans) else est.transform
        with pytest.raises(InvalidParameterError, match="not fitted yet; call fit") as info:
            method(X)
        assert isinstance(info.value, SklearnNotFittedError)  # what scikit-learn's tools catch
        with pytest.raises(InputDTypeError, match=r"toarray\(\)"):
            clone(est).fit(sp.csr_array(X), y)
        with pytest.raises(InputShapeError, match="Reshape your data"):
            clone(est).fit(X[:, 0], y)
        fitted = clone(est).fit(X, y)
        with pytest.raises(InputShapeError, match="X has 4 features, but .* is expecting 5 features"):
            fitted.predict(X[:, :4])
    with pytest.raises(InvalidParameterError, match="Unknown label type: continuous.*use NNKRegressor"):
        NNKClassifier(k=3).fit(X, X[:, 0])
    for est in (NNKClassifier(k=3), NNKRegressor(k=3)):
        with pytest.raises(InvalidParameterError, match="requires y"):
            est.fit(X, None)
    with pytest.raises(InvalidParameterError, match="y must hold numbers"):
        NNKRegressor(k=3).fit(X, np.array(["a"] * 30))
    with pytest.raises(InvalidParameterError, match="no parameter 'kk'"):
        NNKMeans().set_params(kk=1)
    for bad in ({"weights": "magic"}, {"solver": "magic"}, {"tau": 1.5}, {"kernel": "cosine", "sigma": 1.0}):
        with pytest.raises(InvalidParameterError):  # checked at fit, not at the first predict
            NNKClassifier(k=3, **bad).fit(X, y)
    assert issubclass(InvalidParameterError, ValueError) and issubclass(InvalidParameterError, NNKScopeError)


def test_object_arrays_of_numbers_and_other_dtypes_give_the_same_predictions():
    X, y = _blobs(60)
    Xi = np.round(X * 4)  # integer-valued, no zero row
    ref = NNKClassifier(k=5).fit(Xi, y).predict_proba(Xi[:15])
    for Z in (Xi.astype(np.int64), Xi.astype(np.int32), Xi.astype(object), Xi.tolist()):
        np.testing.assert_array_equal(NNKClassifier(k=5).fit(Z, y).predict_proba(Xi[:15]), ref)
    p32 = NNKClassifier(k=5).fit(X.astype(np.float32), y).predict(X[:15].astype(np.float32))
    np.testing.assert_array_equal(p32, y[:15])
    with pytest.raises(InputDTypeError, match="not numbers"):
        NNKClassifier(k=5).fit(np.array([[1.0, {}]] * 60, dtype=object), y)


def test_predict_changes_nothing_and_reports_fallbacks():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 1, 1, 0])
    clf = NNKClassifier(k=2, kernel="gaussian", sigma=0.1).fit(X, y)
    before = pickle.dumps(clf)
    Q = np.array([[0.9], [50.0]])  # the far query's kernel values underflow to 0: no weight, nearest label
    labels, fallback = clf.predict(Q, return_fallback=True)
    assert labels.tolist() == [1, 0] and fallback.tolist() == [False, True]
    proba, fb = clf.predict_proba(Q, return_fallback=True)
    assert proba[1].tolist() == [1.0, 0.0] and fb.tolist() == [False, True]
    assert pickle.dumps(clf) == before  # predict left the estimator as it was
    with pytest.raises(AttributeError, match="return_fallback=True"):
        _ = clf.n_fallback_
    reg = NNKRegressor(k=2, sigma=0.1).fit(X, np.array([0.0, 1.0, 2.0, 3.0]))
    pred, fb = reg.predict(Q, return_fallback=True)
    assert pred.tolist() == [1.0, 3.0] and fb.tolist() == [False, True]


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = _blobs(40)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    clf = NNKClassifier(k=3).fit(df, pd.Series(y))
    assert clf.feature_names_in_.tolist() == list(df.columns) and clf.n_features_in_ == 5
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = clf.predict(X)
    np.testing.assert_array_equal(clf.predict(df), from_array)


def test_multi_output_regression_and_r2():
    X, _ = _blobs(80)
    Y = np.c_[X[:, 0], X[:, 1] ** 2]
    reg = NNKRegressor(k=6).fit(X, Y)
    P = reg.predict(X)
    assert P.shape == (80, 2)
    r2 = [1 - ((Y[:, j] - P[:, j]) ** 2).sum() / ((Y[:, j] - Y[:, j].mean()) ** 2).sum() for j in range(2)]
    assert reg.score(X, Y) == pytest.approx(np.mean(r2), rel=1e-12)  # scikit-learn's R^2: mean over outputs


def test_nnk_means_as_a_transformer():
    X, y = _blobs(90)
    m = NNKMeans(n_components=6, n_nonzero=3, n_iter=3).fit(X, y)
    T = m.transform(X)
    assert sp.issparse(T) and T.shape == (90, 6)
    np.testing.assert_allclose(T.sum(1), 1.0, rtol=1e-12)
    assert m.get_feature_names_out().tolist() == [f"nnkmeans{i}" for i in range(6)]
    # score: accuracy with labels, negative mean squared reconstruction error without
    assert m.score(X, y) == np.mean(m.predict(X) == y)
    assert m.score(X) == pytest.approx(-np.mean(((X - T @ m.atoms_) ** 2).sum(1)), rel=1e-12)
    piped = make_pipeline(StandardScaler(), NNKMeans(n_components=6, n_nonzero=3, n_iter=3)).fit_transform(X)
    sc = StandardScaler().fit(X)
    by_hand = NNKMeans(n_components=6, n_nonzero=3, n_iter=3).fit(sc.transform(X)).transform(sc.transform(X))
    np.testing.assert_array_equal(piped.toarray(), by_hand.toarray())
    # a refit without labels forgets the classes and cannot predict them
    m.fit(X)
    assert not hasattr(m, "classes_") and m.atom_labels_ is None
    with pytest.raises(InvalidParameterError, match="fitted without labels"):
        m.predict(X)
    # n_nonzero is an upper bound: a smaller dictionary offers all its atoms
    big = NNKMeans(n_components=4, n_nonzero=10, n_iter=2).fit(X)
    exact = NNKMeans(n_components=4, n_nonzero=4, n_iter=2).fit(X)
    np.testing.assert_array_equal(big.transform(X).toarray(), exact.transform(X).toarray())


def test_grid_search_over_nnk_means_components():
    X, y = _blobs(90)
    gs = GridSearchCV(NNKMeans(n_nonzero=3, n_iter=2), {"n_components": [3, 9]}, cv=3).fit(X, y)
    assert gs.best_params_["n_components"] in (3, 9) and gs.predict(X).shape == (90,)


def test_no_warning_on_plain_use():
    X, y = _blobs(40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NNKClassifier(k=3).fit(X, y).predict(X)
        NNKRegressor(k=3).fit(X, X[:, 0]).score(X, X[:, 0])
        NNKMeans(n_components=3, n_iter=1).fit(X, y).predict(X)
