"""Per-node NNK solvers: ``theta = argmin_{theta >= 0} 1/2 theta' K theta - g' theta``.

Three solvers share one calling convention (see :func:`solve_nnk`):

``"exact"``
    Lawson-Hanson active set on the quadratic form, with a Cholesky factor of the passive block that is *extended*
    by one row when a variable enters (O(p^2)) and refactored only when variables leave.  Variables re-enter
    whenever their dual ``w = g - K theta`` becomes positive.  After ``BPP_SWITCH`` additions the remaining work
    goes to block principal pivoting, which swaps many variables per factorisation (near-full supports).  Either
    way the result satisfies the KKT conditions (``theta >= 0``, ``w <= tol`` off the support, ``w = 0`` on it):
    it is the NNLS optimum.  Compiled with numba and run in parallel over nodes.
``"reference"``
    The NNK authors' published heuristic, step for step (research notes, nnk_reference.md section 1.2):
    duplicate short-circuit, initial set ``g > tau``, repeated Cholesky solves dropping every coordinate below
    ``tau`` at once and never re-admitting it.  Kept for parity with published numbers; it is *not* the optimum.
    One deliberate difference: where the authors add ``tau I`` to a *failed, partial* Cholesky factor (a
    meaningless matrix), we add ``tau I`` to the block itself and flag the node (status bit 2).
``"scipy"``
    A plain Python loop of Cholesky + ``scipy.optimize.nnls``; the independent oracle and the speed baseline.

Common conventions: candidates whose kernel value ``g_j <= tau`` never receive weight (their similarity is at
the level of the threshold that would zero their weight anyway); after solving, weights ``< tau`` are set to 0;
the interpolation error ``e = 1 - 2 g'theta + theta' K theta`` is computed from the thresholded weights (clamped
at 0 against rounding).  A per-node ``status`` bit field reports degenerate cases instead of returning NaN:
1 = no candidate with ``g > tau`` (all weights 0, e = 1), 2 = a numerically dependent candidate was skipped (exact)
or the block regularised (reference), 4 = iteration cap reached.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .._validate import check_choice, check_positive
from ..errors import InputShapeError, NonFiniteError
from .kernels import build_local_problem

__all__ = ["SOLVERS", "solve_nnk", "solve_candidates", "kkt_violation"]

SOLVERS = ("exact", "reference", "scipy")
EXACT, REFERENCE = 0, 1
ST_EMPTY, ST_DEGENERATE, ST_MAXITER = 1, 2, 4
DEFAULT_TOL = 1e-12  # dual tolerance of the exact solver (kernel values are <= 1, so this is relative)


# --------------------------------------------------------------------------------------------------------------
# small dense linear algebra on the passive set (p <= k <= a few hundred)


@nb.njit(cache=True)
def _chol_factor(K, idx, p, L, shift):
    """Lower Cholesky factor of ``K[idx][:, idx] + shift I`` into ``L[:p, :p]``; False if not positive definite."""
    for a in range(p):
        for b in range(a + 1):
            s = K[idx[a], idx[b]]
            if a == b:
                s += shift
            for c in range(b):
                s -= L[a, c] * L[b, c]
            if a == b:
                if s <= 0.0:
                    return False
                L[a, a] = math.sqrt(s)
            else:
                L[a, b] = s / L[b, b]
    return True


@nb.njit(cache=True)
def _chol_solve(L, p, rhs, z, tmp):
    for a in range(p):
        s = rhs[a]
        for c in range(a):
            s -= L[a, c] * tmp[c]
        tmp[a] = s / L[a, a]
    for a in range(p - 1, -1, -1):
        s = tmp[a]
        for c in range(a + 1, p):
            s -= L[c, a] * z[c]
        z[a] = s / L[a, a]


# --------------------------------------------------------------------------------------------------------------
# the two compiled solvers; scratch arrays are owned by the caller so a block of nodes allocates once


_FM = {"reassoc", "contract", "nsz"}  # lets LLVM vectorise the reductions; keeps NaN/inf semantics


# Hot loops index 2-D arrays directly rather than through row views.
@nb.njit(cache=True, fastmath=_FM)
def _forward_row(L, p, col, dest):
    """L[dest, :p] = L[:p, :p]^{-1} col[:p] (dest = p extends the factor)."""
    for a in range(p):
        s = col[a]
        for c in range(a):
            s -= L[a, c] * L[dest, c]
        L[dest, a] = s / L[a, a]


@nb.njit(cache=True, fastmath=_FM)
def _forward(L, p, col, out):
    """out[:p] = L[:p, :p]^{-1} col[:p]."""
    for a in range(p):
        s = col[a]
        for c in range(a):
            s -= L[a, c] * out[c]
        out[a] = s / L[a, a]


@nb.njit(cache=True, fastmath=_FM)
def _backward(L, p, y, z, tmp):
    """z[:p] = L[:p, :p]^{-T} y[:p], column-oriented so the inner loop walks a row of L."""
    for a in range(p):
        tmp[a] = y[a]
    for a in range(p - 1, -1, -1):
        za = tmp[a] / L[a, a]
        z[a] = za
        for c in range(a):
            tmp[c] -= L[a, c] * za


_RETRY_LH = 255  # internal: block pivoting met a singular block, run plain Lawson-Hanson
BPP_SWITCH = 12  # LH additions after which a still-unconverged problem switches to block pivoting


@nb.njit(cache=True)
def _bpp(K, g, tol, theta, w, inF, skip, pidx, L, z, y, tmp):
    """Block principal pivoting (Kim & Park) from the passive set ``inF``; True when KKT holds on return.

    Full exchanges of every infeasible variable while the infeasibility count falls, Murty's single exchange
    (largest index) after 3 exchanges without progress, which guarantees termination.  Returns False on a
    numerically singular passive block, leaving the caller to fall back to Lawson-Hanson.
    """
    k = g.shape[0]
    best = k + 1
    backup = 3
    for _ in range(10 * k):
        p = 0
        for j in range(k):
            if inF[j]:
                pidx[p] = j
                p += 1
        if not _chol_factor(K, pidx, p, L, 0.0):
            return False
        for a in range(p):
            tmp[a] = g[pidx[a]]
        _forward(L, p, tmp, y)
        _backward(L, p, y, z, tmp)
        for j in range(k):
            theta[j] = 0.0
            w[j] = g[j]
        for a in range(p):
            theta[pidx[a]] = z[a]
            ra = pidx[a]
            for j in range(k):
                w[j] -= K[ra, j] * z[a]
        n_inf = 0
        last = -1
        for j in range(k):
            bad = (inF[j] and theta[j] < 0.0) or (not inF[j] and not skip[j] and w[j] > tol)
            if bad:
                n_inf += 1
                last = j
        if n_inf == 0:
            return True
        if n_inf < best:
            best = n_inf
            backup = 3
            full = True
        elif backup > 0:
            backup -= 1
            full = True
        else:
            full = False
        if full:
            for j in range(k):
                if (inF[j] and theta[j] < 0.0) or (not inF[j] and not skip[j] and w[j] > tol):
                    inF[j] = not inF[j]
        else:
            inF[last] = not inF[last]
    return False


@nb.njit(cache=True, fastmath=_FM)
def _exact_lh(K, g, tau, tol, theta, w, inP, skip, tskip, pidx, L, z, y, tmp, switch):
    k = g.shape[0]
    status = 0
    n_allowed = 0
    for j in range(k):
        theta[j] = 0.0
        w[j] = g[j]
        inP[j] = False
        skip[j] = not (g[j] > tau)
        tskip[j] = False
        if not skip[j]:
            n_allowed += 1
    if n_allowed == 0:
        return ST_EMPTY
    p = 0
    it = 0
    maxit = 3 * k + 10
    while True:
        t = -1
        best = tol
        for j in range(k):
            if not inP[j] and not skip[j] and not tskip[j] and w[j] > best:
                best = w[j]
                t = j
        if t < 0:
            break
        if it >= maxit:
            status |= ST_MAXITER
            break
        # extend the factor by t's row: L[p, :p] = L^{-1} K[P, t], L[p, p] = sqrt(K_tt - |l|^2)
        for a in range(p):
            tmp[a] = K[t, pidx[a]]
        _forward_row(L, p, tmp, p)
        s = K[t, t]
        for c in range(p):
            s -= L[p, c] * L[p, c]
        if s <= 1e-13 * K[t, t]:
            tskip[t] = True  # t lies (numerically) in the span of the support: it cannot improve the fit
            status |= ST_DEGENERATE
            continue
        L[p, p] = np.sqrt(s)
        acc = g[t]
        for c in range(p):
            acc -= L[p, c] * y[c]
        y[p] = acc / L[p, p]  # y = L^{-1} g_P, kept up to date in O(p)
        pidx[p] = t
        inP[t] = True
        p += 1
        first = True
        while True:
            it += 1
            _backward(L, p, y, z, tmp)
            feasible = True
            for a in range(p):
                if z[a] <= 0.0:
                    feasible = False
                    break
            if feasible:
                for a in range(p):
                    theta[pidx[a]] = z[a]
                break
            if first and z[p - 1] <= 0.0:
                # In exact arithmetic an entering variable with w_t > 0 gets z_t > 0; if rounding says otherwise,
                # take it back out (the factor's first p-1 rows and y are still valid) rather than cycle.
                p -= 1
                inP[t] = False
                tskip[t] = True
                status |= ST_DEGENERATE
                break
            first = False
            alpha = np.inf
            qmin = -1
            for a in range(p):
                if z[a] <= 0.0:
                    ta = theta[pidx[a]]
                    step = ta / (ta - z[a])
                    if step < alpha:
                        alpha = step
                        qmin = a
            for a in range(p):
                j = pidx[a]
                theta[j] += alpha * (z[a] - theta[j])
            theta[pidx[qmin]] = 0.0
            q = 0
            for a in range(p):
                j = pidx[a]
                if theta[j] > 0.0:
                    pidx[q] = j
                    q += 1
                else:
                    theta[j] = 0.0
                    inP[j] = False
            p = q
            if p == 0:
                break
            _chol_factor(K, pidx, p, L, 0.0)  # a principal block of a PD block stays PD
            for a in range(p):
                tmp[a] = g[pidx[a]]
            _forward(L, p, tmp, y)
            if it >= maxit:
                status |= ST_MAXITER
                break
        if inP[t]:
            for j in range(k):
                tskip[j] = False  # the dual changed: earlier skipped candidates get another look
        # dual w = g - K theta, accumulated row by row of K (contiguous, vectorisable)
        for j in range(k):
            w[j] = g[j]
        for a in range(p):
            ta = theta[pidx[a]]
            ra = pidx[a]
            for j in range(k):
                w[j] -= K[ra, j] * ta
        if status & ST_MAXITER:
            break
        if switch and p >= BPP_SWITCH and status == 0:
            # a large support is coming: let block pivoting finish from P plus every positive-dual candidate
            for j in range(k):
                tskip[j] = inP[j] or (not skip[j] and w[j] > tol)
            if _bpp(K, g, tol, theta, w, tskip, skip, pidx, L, z, y, tmp):
                return status
            return _RETRY_LH
    return status


@nb.njit(cache=True)
def _exact(K, g, tau, tol, theta, w, inP, skip, tskip, pidx, L, z, y, tmp):
    """Lawson-Hanson with the switch to block pivoting; plain LH again if block pivoting gave up."""
    st = _exact_lh(K, g, tau, tol, theta, w, inP, skip, tskip, pidx, L, z, y, tmp, True)
    if st == _RETRY_LH:
        st = _exact_lh(K, g, tau, tol, theta, w, inP, skip, tskip, pidx, L, z, y, tmp, False)
    return st


@nb.njit(cache=True)
def _reference(K, g, tau, theta, pidx, L, z, rhs, tmp):
    k = g.shape[0]
    status = 0
    dup = False
    for j in range(k):
        if g[j] > 1.0 - tau:
            dup = True
    if dup:  # step 1: near-duplicates of the query are returned with their raw kernel values
        for j in range(k):
            theta[j] = g[j] if g[j] > 1.0 - tau else 0.0
        return status
    p = 0
    for j in range(k):  # step 2: initial active set
        theta[j] = 0.0
        if g[j] > tau:
            pidx[p] = j
            p += 1
    if p == 0:
        return ST_EMPTY
    for _ in range(50 * k):  # step 3
        shift = 0.0
        while not _chol_factor(K, pidx, p, L, shift):
            shift = tau if shift == 0.0 else 10.0 * shift
            status |= ST_DEGENERATE
        for a in range(p):
            rhs[a] = g[pidx[a]]
        _chol_solve(L, p, rhs, z, tmp)
        for j in range(k):
            theta[j] = 0.0
        for a in range(p):
            theta[pidx[a]] = z[a]
        viol = 0.0
        for j in range(k):
            if theta[j] < tau and abs(theta[j]) > viol:
                viol = abs(theta[j])
        q = 0
        for a in range(p):
            if theta[pidx[a]] > tau:
                pidx[q] = pidx[a]
                q += 1
        p = q
        if viol <= tau or p == 0:
            break
    return status


@nb.njit(cache=True)
def _finish(K, g, theta, tau):
    """Threshold the weights and return the interpolation error of the thresholded weights."""
    k = g.shape[0]
    for j in range(k):
        if theta[j] < tau:
            theta[j] = 0.0
    e = 1.0
    for a in range(k):
        if theta[a] != 0.0:
            e -= 2.0 * g[a] * theta[a]
            s = 0.0
            for b in range(k):
                if theta[b] != 0.0:
                    s += K[a, b] * theta[b]
            e += theta[a] * s
    return max(e, 0.0)


@nb.njit(cache=True)
def _solve_one(K, g, method, tau, tol, theta, w, inP, skip, tskip, pidx, L, z, rhs, tmp):
    if method == EXACT:
        st = _exact(K, g, tau, tol, theta, w, inP, skip, tskip, pidx, L, z, rhs, tmp)
    else:
        st = _reference(K, g, tau, theta, pidx, L, z, rhs, tmp)
    return _finish(K, g, theta, tau), st


@nb.njit(cache=True)
def _scratch(k):
    """Per-chunk work arrays of the solvers: w, inP, skip, tskip, pidx, L, z, rhs, tmp."""
    return (np.empty(k), np.empty(k, np.bool_), np.empty(k, np.bool_), np.empty(k, np.bool_),
            np.empty(k, np.int64), np.empty((k, k)), np.empty(k), np.empty(k), np.empty(k))


@nb.njit(parallel=True, cache=True)
def _solve_batch(Ks, gs, method, tau, tol, thetas, errors, status, chunk):
    n, k = gs.shape
    n_chunks = (n + chunk - 1) // chunk
    for c in nb.prange(n_chunks):
        w, inP, skip, tskip, pidx, L, z, rhs, tmp = _scratch(k)
        for r in range(c * chunk, min(n, (c + 1) * chunk)):
            e, st = _solve_one(Ks[r], gs[r], method, tau, tol, thetas[r], w, inP, skip, tskip, pidx, L, z, rhs, tmp)
            errors[r] = e
            status[r] = st


@nb.njit(parallel=True, cache=True)
def solve_nodes(Q, q_inv, X, inv_norms, candidates, kind, gamma, method, tau, tol, start, thetas, errors, status,
                chunk):
    """Build and solve the problems of queries ``start .. start + len(thetas)`` (rows of ``Q``; candidates are rows
    of ``X``; ``Q is X`` for a graph).  Fused: no (n, k, k) array is stored."""
    n = thetas.shape[0]
    k = candidates.shape[1]
    d = X.shape[1]
    n_chunks = (n + chunk - 1) // chunk
    for c in nb.prange(n_chunks):
        xi = np.empty(d)
        buf = np.empty((k, d))
        K = np.empty((k, k))
        g = np.empty(k)
        w, inP, skip, tskip, pidx, L, z, rhs, tmp = _scratch(k)
        for r in range(c * chunk, min(n, (c + 1) * chunk)):
            i = start + r
            qi = q_inv[i] if kind == 1 else 1.0
            build_local_problem(X, inv_norms, Q[i], qi, candidates[i], kind, gamma, xi, buf, K, g)
            e, st = _solve_one(K, g, method, tau, tol, thetas[r], w, inP, skip, tskip, pidx, L, z, rhs, tmp)
            errors[r] = e
            status[r] = st


# --------------------------------------------------------------------------------------------------------------
# the scipy oracle


def _scipy_one(K: np.ndarray, g: np.ndarray, tau: float) -> tuple[np.ndarray, int]:
    from scipy.linalg import LinAlgError, cholesky, solve_triangular
    from scipy.optimize import nnls

    theta = np.zeros_like(g)
    allowed = np.flatnonzero(g > tau)
    if allowed.size == 0:
        return theta, ST_EMPTY
    Ka, ga = K[np.ix_(allowed, allowed)], g[allowed]
    status = 0
    try:
        R = cholesky(Ka, lower=False, check_finite=False)  # Ka = R'R, so |R t - b|^2 = t'Ka t - 2 ga't + const
        b = solve_triangular(R, ga, trans="T", check_finite=False)
    except LinAlgError:  # singular block (duplicate candidates): symmetric square root with a pseudo-inverse
        lam, V = np.linalg.eigh(Ka)
        keep = lam > lam.max() * 1e-13
        R = np.sqrt(lam[keep])[:, None] * V[:, keep].T
        b = (V[:, keep].T @ ga) / np.sqrt(lam[keep])
        status = ST_DEGENERATE
    theta[allowed] = nnls(R, b, maxiter=50 * len(ga))[0]
    return theta, status


# --------------------------------------------------------------------------------------------------------------
# public entry points


def solve_candidates(Q, X, kernel, candidates, *, solver: str = "exact", tau: float = 1e-6,
                     tol: float = DEFAULT_TOL, n_jobs: int | None = None, block_size: int = 16384,
                     progress: bool | None = None, q_inv=None, x_inv=None):
    """NNK weights of every query row of ``Q`` over its candidate rows of ``X`` (``Q is X`` for a graph).

    ``kernel`` is a resolved :class:`~nnkscope.engine.kernels.Kernel`.  Returns ``theta (n, k), errors (n,),
    status (n,)``; blocks of ``block_size`` queries advance the progress bar.
    """
    from .._runtime import progress_bar, thread_limit
    from .kernels import _local_problems, inverse_norms

    n, k = candidates.shape
    x_inv = inverse_norms(X, kernel) if x_inv is None else x_inv
    q_inv = (x_inv if Q is X else inverse_norms(Q, kernel)) if q_inv is None else q_inv
    theta = np.zeros((n, k))
    errors = np.empty(n)
    status = np.zeros(n, np.uint8)
    with thread_limit(n_jobs), progress_bar(n, "NNK solve", progress) as bar:
        for lo in range(0, n, block_size):
            hi = min(n, lo + block_size)
            if solver == "scipy":
                rows = np.arange(lo, hi, dtype=np.int64)
                Ks, gs = _local_problems(Q, q_inv, X, x_inv, rows, candidates[lo:hi], kernel.code, kernel.gamma)
                theta[lo:hi], errors[lo:hi], status[lo:hi] = solve_nnk(Ks, gs, solver="scipy", tau=tau, tol=tol)
            else:
                method = EXACT if solver == "exact" else REFERENCE
                solve_nodes(Q, q_inv, X, x_inv, candidates, kernel.code, kernel.gamma, method, tau, tol, lo,
                            theta[lo:hi], errors[lo:hi], status[lo:hi], 64)
            bar.update(hi - lo)
    return theta, errors, status


def solve_nnk(K, g, *, solver: str = "exact", tau: float = 1e-6, tol: float = DEFAULT_TOL, chunk: int = 64):
    """Solve one or many NNK problems ``min_{theta >= 0} 1/2 theta' K theta - g' theta``.

    Parameters
    ----------
    K : (k, k) or (n, k, k) array
        Unit-diagonal kernel matrices among candidates.
    g : (k,) or (n, k) array
        Kernel values between each query and its candidates.
    solver : {"exact", "reference", "scipy"}
        See the module docstring.
    tau : float
        Weight threshold: weights below it are zeroed, candidates with ``g <= tau`` get no weight.
    tol : float
        Dual (KKT) tolerance of the exact solver.

    Returns
    -------
    theta : array like ``g``; errors : float or (n,) interpolation errors; status : int or (n,) uint8 bit field.

    Examples
    --------
    >>> K = np.array([[1.0, 0.5], [0.5, 1.0]])
    >>> theta, err, status = solve_nnk(K, np.array([0.9, 0.2]))
    >>> theta.round(3).tolist(), round(err, 3), status
    ([0.9, 0.0], 0.19, 0)
    """
    check_choice(solver, "solver", SOLVERS)
    tau = check_positive(tau, "tau", allow_zero=True)
    tol = check_positive(tol, "tol")
    K = np.asarray(K, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    single = g.ndim == 1
    if single:
        K, g = K[None], g[None]
    if g.ndim != 2 or K.shape != (g.shape[0], g.shape[1], g.shape[1]):
        raise InputShapeError(f"K must be (n, k, k) and g (n, k) (or (k, k) and (k,)); got {K.shape} and {g.shape}")
    if not (np.isfinite(K).all() and np.isfinite(g).all()):
        raise NonFiniteError("K or g contains NaN/inf; rebuild them from finite data")
    n, k = g.shape
    thetas = np.zeros((n, k))
    errors = np.empty(n)
    status = np.zeros(n, np.uint8)
    if solver == "scipy":
        for r in range(n):
            thetas[r], status[r] = _scipy_one(K[r], g[r], tau)
            errors[r] = _finish(K[r], g[r], thetas[r], tau)
    else:
        method = EXACT if solver == "exact" else REFERENCE
        _solve_batch(np.ascontiguousarray(K), np.ascontiguousarray(g), method, tau, tol, thetas, errors, status,
                     chunk)
    if single:
        return thetas[0], float(errors[0]), int(status[0])
    return thetas, errors, status


def kkt_violation(K, g, theta, tau: float = 0.0) -> float:
    """Largest violation of the NNK optimality conditions, relative to ``max(1, |g|_inf)``.

    Checks primal feasibility ``theta >= 0``, dual feasibility ``K theta - g >= 0`` on every candidate with
    ``g > tau`` that carries no weight, and stationarity ``(K theta - g)_j = 0`` on the support.

    Examples
    --------
    >>> K = np.eye(2); g = np.array([0.5, 0.1])
    >>> kkt_violation(K, g, np.array([0.5, 0.1]))
    0.0
    """
    K, g, theta = (np.asarray(a, dtype=np.float64) for a in (K, g, theta))
    grad = K @ theta - g
    support = theta > 0
    allowed = g > tau
    viol = max(0.0, -theta.min(initial=0.0))
    if support.any():
        viol = max(viol, np.abs(grad[support]).max())
    off = allowed & ~support
    if off.any():
        viol = max(viol, max(0.0, -grad[off].min()))
    return viol / max(1.0, np.abs(g).max(initial=0.0))
