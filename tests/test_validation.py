"""Bad input: each case gets a specific exception whose message names the fix; never a silent NaN."""

import numpy as np
import pytest

from nnkscope import knn, knn_graph, local_problems, nnk_graph, solve_nnk
from nnkscope.errors import (
    DuplicatePointsError,
    InputDTypeError,
    InputRangeError,
    InputShapeError,
    InvalidParameterError,
    NNKScopeError,
    NonFiniteError,
    TooFewPointsError,
    ZeroVectorError,
)

X = np.random.default_rng(0).normal(size=(50, 4))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(bad):
    Y = X.copy()
    Y[7, 2] = bad
    with pytest.raises(NonFiniteError, match=r"row 7.*drop or impute"):
        nnk_graph(Y, 5)


def test_values_beyond_float64_squares_are_refused():
    Y = X * 1e300  # the float64 sum overflows, every entry is finite: must not be reported as NaN/inf
    with pytest.raises(InputRangeError, match="Rescale"):
        nnk_graph(Y, 5)
    with pytest.raises(InputRangeError):
        nnk_graph(X * 1e-200, 5)


@pytest.mark.parametrize("scale", [1e-100, 1e100])
def test_values_beyond_float32_still_give_exact_neighbours(scale):
    from helpers import brute_knn

    nb = knn(X * scale, 6)  # the float32 search copy is rescaled; the result is exact
    np.testing.assert_array_equal(nb.indices, brute_knn(X, 6)[0])


@pytest.mark.parametrize("shape", [(50,), (5, 10, 2), ()])
def test_wrong_ndim(shape):
    with pytest.raises(InputShapeError, match="must be 2-D.*reshape"):
        nnk_graph(np.zeros(shape), 3)


def test_zero_features():
    with pytest.raises(InputShapeError, match="0 features"):
        nnk_graph(np.zeros((10, 0)), 3)


@pytest.mark.parametrize("k", [50, 60])
def test_too_few_points(k):
    with pytest.raises(TooFewPointsError, match=rf"k={k} needs at least {k + 1} points.*got 50"):
        nnk_graph(X, k)


@pytest.mark.parametrize("k", [0, -3])
def test_non_positive_k(k):
    with pytest.raises(InvalidParameterError, match="positive integer"):
        nnk_graph(X, k)


@pytest.mark.parametrize("k", [2.5, "10", True])
def test_non_integer_k(k):
    with pytest.raises(InvalidParameterError, match="positive integer"):
        knn(X, k)


@pytest.mark.parametrize("arr", [X.astype(complex), X.astype(str), X.astype(object)])
def test_unusable_dtypes(arr):
    with pytest.raises(InputDTypeError, match="astype"):
        nnk_graph(arr, 3)


def test_integer_input_is_promoted_exactly():
    Z = np.random.default_rng(1).integers(0, 16, size=(80, 6))
    G = nnk_graph(Z, 5, duplicates="drop")
    H = nnk_graph(Z.astype(np.float64), 5, duplicates="drop")
    np.testing.assert_array_equal(G.theta, H.theta)


def test_mismatched_candidate_dtype():
    with pytest.raises(InputDTypeError, match="integer"):
        local_problems(X, np.zeros((50, 3)) + 0.5, "gaussian", sigma=1.0)


def test_all_zero_rows_under_cosine():
    Y = X.copy()
    Y[[3, 9]] = 0
    with pytest.raises(ZeroVectorError, match=r"2 all-zero row\(s\) \(rows 3, 9\).*kernel='gaussian'"):
        nnk_graph(Y, 5, kernel="cosine")
    with pytest.raises(ZeroVectorError):
        knn_graph(Y, 5, kernel="cosine")
    G = nnk_graph(Y, 5, kernel="gaussian", duplicates="keep")  # zero rows are ordinary points for the Gaussian
    assert np.isfinite(G.theta).all()


def test_duplicate_points_default_is_an_error_that_names_the_options():
    Y = np.vstack([X, X[:2]])
    with pytest.raises(DuplicatePointsError, match=r"2 point\(s\)|4 point\(s\)") as info:
        nnk_graph(Y, 5)
    assert "duplicates='drop'" in str(info.value) and "duplicates='keep'" in str(info.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"kernel": "rbf"}, "kernel must be one of"),
    ({"solver": "fast"}, "solver must be one of"),
    ({"symmetrize": "union"}, "symmetrize must be one of"),
    ({"sigma": -1.0}, "sigma must be > 0"),
    ({"sigma": 0.0}, "sigma must be > 0"),
    ({"kernel": "cosine", "sigma": 1.0}, "sigma only applies"),
    ({"tau": -1e-6}, "tau must be >= 0"),
    ({"tol": 0.0}, "tol must be > 0"),
    ({"knn": "annoy"}, "knn must be"),
    ({"duplicates": "ignore"}, "duplicates must be one of"),
    ({"block_size": 0}, "block_size"),
    ({"n_jobs": 0}, "n_jobs"),
])
def test_invalid_parameters(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        nnk_graph(X, 5, **kwargs)


def test_precomputed_neighbours_must_match():
    nb = knn(X, 4)
    with pytest.raises(InputShapeError, match="expected"):
        nnk_graph(X, 5, knn=nb)
    with pytest.raises(InvalidParameterError, match="cosine neighbours"):
        nnk_graph(X, 4, kernel="cosine", knn=nb)
    G = nnk_graph(X, 4, knn=nb)
    np.testing.assert_array_equal(G.candidates, nb.indices)


def test_solver_input_checks():
    with pytest.raises(InputShapeError):
        solve_nnk(np.eye(3), np.ones(2))
    with pytest.raises(NonFiniteError):
        solve_nnk(np.eye(2), np.array([np.nan, 1.0]))


def test_every_error_is_also_a_builtin_exception():
    with pytest.raises(ValueError):
        nnk_graph(X, 0)
    with pytest.raises(TypeError):
        nnk_graph(X.astype(complex), 3)
    assert issubclass(DuplicatePointsError, NNKScopeError)


def test_no_nan_on_extreme_but_valid_inputs():
    r = np.random.default_rng(2)
    line = np.linspace(0.5, 1, 60)
    cases = [r.normal(size=(60, 3)) * 1e-100, r.normal(size=(60, 3)) * 1e100, np.column_stack([line, line**2])]
    for Y in cases:
        for kernel in ("gaussian", "cosine"):
            for solver in ("exact", "reference"):
                G = nnk_graph(Y, 10, kernel=kernel, solver=solver, duplicates="keep")
                assert np.isfinite(G.theta).all() and np.isfinite(G.errors).all()
                assert np.isfinite(G.adjacency().data).all()


def test_trusted_arrays_skip_only_the_value_scans_and_only_for_that_object():
    """A caller that checked an array itself may hand it to many measures without a re-scan each; a copy, a
    slice or another array is still checked, and shape checks always run."""
    from nnkscope._validate import as_points, trusted

    bad = np.ones((4, 3))
    bad[2, 1] = np.nan  # what a trusted array would never hold: it shows that the scan was skipped
    with trusted(bad):
        assert as_points(bad) is bad
        with pytest.raises(NonFiniteError):
            as_points(bad.copy())
        with pytest.raises(NonFiniteError):
            as_points(bad[1:])
        with pytest.raises(InputShapeError):
            as_points(bad[0])
    with pytest.raises(NonFiniteError):  # outside the block: checked again
        as_points(bad)
