"""Per-query explanations of the NNK classifier (DeepNNK section 3): which training points, with which weights.

The NNK classifier's prediction for a query is the theta-weighted vote of its NNK neighbours, so listing those
neighbours with their weights *is* the explanation, exactly.  :func:`explain` returns one row per (query, NNK
neighbour) with the interpolated class probabilities and a reliability score; :func:`explanation_page` renders the
table as a self-contained HTML page (image thumbnails or feature strips).

Reliability (defined here, used by the table and the page):

* the **polytope diameter** ``D(q)`` of a query is the largest distance between two points of ``{q} ∪ N(q)``
  (``N(q)`` its NNK neighbours among the training rows; the nearest candidate alone for a query whose weights are
  all zero), measured on unit-normalised rows for the cosine kernel (so in [0, 2]) and on the raw rows for the
  Gaussian kernel -- the geometry each kernel sees;
* the **typical diameter** ``T(c)`` of class c is the median of ``D(i)`` over the training points i labelled c,
  each interpolated leave-one-out from the other training points (same k, kernel and bandwidth);
* ``relative_diameter = D(q) / T(c)`` with c the predicted class, and
  ``reliability = min(1, T(c) / D(q))`` (1 when ``D(q) = 0``; 0 when ``T(c) = 0 < D(q)``): 1 means the query sits
  in a polytope no wider than a typical one of its predicted class, 0.5 one twice as wide -- the query is
  interpolated from far-apart points, the situation in which DeepNNK calls an interpolation unreliable.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib

import numpy as np

from .._validate import as_points, check_labels
from ..errors import InputShapeError, InvalidParameterError

__all__ = ["explain", "explanation_page", "class_diameters", "query_diameters", "parse_image_shape", "read_texts"]


def query_diameters(X_train: np.ndarray, Q: np.ndarray, candidates: np.ndarray, support: np.ndarray, *,
                    normalize: bool) -> np.ndarray:
    """Polytope diameter of each query among its NNK neighbours: max distance within ``{q} ∪ N(q)``.

    ``support`` is the (n, k) boolean mask of the neighbours among ``candidates`` (rows of ``X_train``).

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> query_diameters(X, np.array([[1.0, 1.0]]), np.array([[0, 1]]), np.array([[True, True]]), normalize=False)
    array([1.41421356])
    """
    from .manifold import polytope_diameter

    # stack the queries above the training rows: row i of the stack is query i, its candidates are shifted by n
    Z = np.concatenate([np.asarray(Q, np.float64), np.asarray(X_train, np.float64)])
    theta = support.astype(np.float64)
    return polytope_diameter(Z, candidates + len(Q), theta, normalize=normalize)


def class_diameters(diameters: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Median polytope diameter per class code (NaN for a class without points).

    Examples
    --------
    >>> class_diameters(np.array([1.0, 3.0, 2.0, 0.5]), np.array([0, 0, 0, 1]), 2).tolist()
    [2.0, 0.5]
    """
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        sel = codes == c
        if sel.any():
            out[c] = float(np.median(diameters[sel]))
    return out


def _reliability(diam: np.ndarray, typical: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(diam > 0, np.minimum(1.0, typical / np.where(diam > 0, diam, 1.0)), 1.0)
    return np.where(np.isnan(r), 0.0, r)


def _check_texts(texts, n: int, name: str, rows: str) -> np.ndarray | None:
    """``texts`` as an object array of ``n`` strings (None stays None), or a clear error."""
    if texts is None:
        return None
    if isinstance(texts, (str, bytes)):
        raise InvalidParameterError(f"{name} must be a sequence of strings, one per row of {rows}; got one string")
    out = np.asarray(list(texts), dtype=object)
    if out.ndim != 1 or len(out) != n:
        raise InputShapeError(f"{name} has {len(out)} entries but {rows} has {n} rows: give one sentence per row, "
                              "in row order")
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        raise InvalidParameterError(f"{name} must hold strings; entry {bad[0]} is a {type(out[bad[0]]).__name__}")
    return out


def read_texts(path, n_rows: int, *, name: str = "texts", rows: str = "the features"):
    """One sentence per line of a UTF-8 text file (a final newline ends the last line, ``\\r\\n`` is accepted);
    the number of lines must equal ``n_rows``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.txt"
    >>> _ = p.write_text("a cat sat\\nthe dog ran\\n", encoding="utf-8")
    >>> read_texts(p, 2)
    ['a cat sat', 'the dog ran']
    """
    from pathlib import Path

    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidParameterError(f"{name} {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the "
                                    "sentences as UTF-8, one per line") from None
    except OSError as exc:
        raise InvalidParameterError(f"{name} {path}: cannot read it ({exc.strerror or type(exc).__name__}); check "
                                    "the path") from None
    if text.endswith("\n"):
        text = text[:-1]
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")] if text else []
    if len(lines) != n_rows:
        raise InputShapeError(f"{name} {path} has {len(lines)} lines but {rows} has {n_rows} rows: write one "
                              "sentence per line, in row order (a sentence may not contain a line break)")
    return lines


def explain(X_train, y_train, X_query, k: int = 25, *, kernel: str = "cosine", sigma: float | None = None,
            solver: str = "exact", tau: float = 1e-10, knn="exact", n_jobs: int | None = None,
            texts_train=None, texts_query=None):
    """Explain the NNK classifier's prediction for each query by its NNK neighbours among the training rows.

    Parameters
    ----------
    X_train : (N, d) array
        Training features.
    y_train : (N,) array
        Class labels of the training rows (any hashable type).
    X_query : (n, d) array
        Queries from the same feature space (same model, layer and preprocessing).
    k, kernel, sigma, solver, tau, knn, n_jobs
        As :class:`~nnkscope.measures.interpolation.NNKClassifier`; the prediction equals
        ``NNKClassifier(k=k, kernel=kernel, ...).fit(X_train, y_train).predict(X_query)``.
    texts_train, texts_query : sequence of str, optional
        Sentences (or any text), one per row of ``X_train`` / ``X_query``: for features of text the table then
        shows what each query and neighbour says (columns ``query_text``, ``neighbor_text``) and
        :func:`explanation_page` prints it.

    Returns
    -------
    pandas.DataFrame
        One row per (query, NNK neighbour), queries in order and neighbours by decreasing weight:

        * ``query`` (row of ``X_query``), ``rank`` (0 = largest weight), ``neighbor`` (row of ``X_train``),
          ``neighbor_label``, ``weight`` (the NNK weight theta), ``share`` (its part of the vote, weight / sum of
          the query's weights; 1 for the nearest candidate of a query that fell back);
        * per query (repeated on its rows): ``prediction``, ``fallback`` (no positive weight: the nearest
          candidate's label), ``n_neighbors``, ``interpolation_error``, ``diameter``, ``class_diameter`` (typical
          diameter of the predicted class), ``relative_diameter``, ``reliability`` (module docstring), and
          ``proba_<class>`` per class.

    ``df.attrs`` holds the settings and the typical diameter of every class.

    Examples
    --------
    >>> X = np.array([[0.0, 1.0], [0.1, 1.0], [0.2, 1.0], [1.0, 0.0], [1.0, 0.1], [1.0, 0.2]])
    >>> t = explain(X, np.array([0, 0, 0, 1, 1, 1]), np.array([[0.05, 1.0]]), k=3)
    >>> t[["query", "neighbor", "prediction"]].values.tolist()
    [[0, 1, 0], [0, 0, 0]]
    """
    import pandas as pd

    from .estimators import NNKClassifier
    from .interpolation import nnk_interpolate, vote

    X = as_points(X_train, "X_train")
    Q = as_points(X_query, "X_query")
    if Q.shape[1] != X.shape[1]:
        raise InputShapeError(f"X_query has {Q.shape[1]} features but X_train has {X.shape[1]}: the queries come from "
                              "a different feature space. Pass queries embedded by the same model, layer and "
                              "preprocessing as the training rows")
    classes, codes = check_labels(y_train, len(X), name="y_train")
    texts_train = _check_texts(texts_train, len(X), "texts_train", "X_train")
    texts_query = _check_texts(texts_query, len(Q), "texts_query", "X_query")
    if len(X) < 3:
        raise InvalidParameterError(f"explain needs at least 3 training rows (the typical diameters interpolate "
                                    f"each from the others); got {len(X)}")
    clf = NNKClassifier(k=k, kernel=kernel, sigma=sigma, solver=solver, tau=tau, knn=knn, n_jobs=n_jobs)
    clf.fit(X, y_train)
    I = clf.interpolate(Q)
    proba, fallback = vote(I.theta, clf.y_[I.candidates], len(classes))
    pred_code = proba.argmax(1)
    support = I.theta > 0
    support[fallback, 0] = True  # a query that fell back is explained by its nearest candidate
    normalize = clf.kernel == "cosine"
    diam_q = query_diameters(X, Q, I.candidates, support, normalize=normalize)
    # typical diameters: every training point interpolated from the others, with the classifier's own geometry
    k_loo = min(clf.k, len(X) - 1)
    L = nnk_interpolate(X, None, k_loo, kernel=clf.kernel, sigma=clf.sigma_, solver=solver, tau=tau, knn=knn,
                        n_jobs=n_jobs, progress=False)
    sup_loo = L.theta > 0
    sup_loo[~sup_loo.any(1), 0] = True
    from .manifold import polytope_diameter

    diam_train = polytope_diameter(X, L.candidates, sup_loo.astype(np.float64), normalize=normalize)
    typical = class_diameters(diam_train, codes, len(classes))
    typ_q = typical[pred_code]
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(typ_q > 0, diam_q / np.where(typ_q > 0, typ_q, 1.0), np.inf)
    relative = np.where((diam_q == 0) & (typ_q == 0), 1.0, relative)
    reliability = _reliability(diam_q, typ_q)

    total = I.theta.sum(1, keepdims=True)
    share = np.where(total > 0, I.theta / np.where(total > 0, total, 1.0), 0.0)
    share[fallback, 0] = 1.0
    # within a query: decreasing weight (share), ties by candidate order (distance)
    order = np.argsort(-share, axis=1, kind="stable")
    qi, slot = np.nonzero(np.take_along_axis(support, order, 1))
    col = order[qi, slot]
    rank = slot  # support entries come first in the sorted order, so the slot is the rank
    nbr = I.candidates[qi, col]
    df = pd.DataFrame({
        "query": qi.astype(np.int64), "rank": rank.astype(np.int64), "neighbor": nbr.astype(np.int64),
        "neighbor_label": classes[codes[nbr]], "weight": I.theta[qi, col], "share": share[qi, col],
        "prediction": classes[pred_code][qi], "fallback": fallback[qi], "n_neighbors": support.sum(1)[qi],
        "interpolation_error": I.errors[qi], "diameter": diam_q[qi], "class_diameter": typ_q[qi],
        "relative_diameter": relative[qi], "reliability": reliability[qi]})
    for c, name in enumerate(classes):
        df[f"proba_{name}"] = proba[qi, c]
    if texts_query is not None:
        df["query_text"] = texts_query[qi]
    if texts_train is not None:
        df["neighbor_text"] = texts_train[nbr]
    df.attrs.update({"k": clf.k, "kernel": clf.kernel, "sigma": clf.sigma_, "solver": solver, "tau": tau,
                     "n_train": len(X), "n_query": len(Q),
                     "class_diameters": {str(c): float(t) for c, t in zip(classes, typical, strict=True)},
                     "diameter_space": "unit-normalised rows" if normalize else "raw rows"})
    return df


# ---------------------------------------------------------------------------------------------------------------
# the HTML page


def parse_image_shape(text: str) -> tuple[int, int]:
    """``"28x28"`` -> ``(28, 28)``, with a clear error otherwise.

    Examples
    --------
    >>> parse_image_shape("8x8")
    (8, 8)
    """
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise InvalidParameterError(f"image shape must look like 28x28 (height x width); got {text!r}") from None
    if h <= 0 or w <= 0:
        raise InvalidParameterError(f"image shape must be positive, like 28x28; got {text!r}")
    return h, w


def _png_gray(img: np.ndarray) -> bytes:
    """A grayscale PNG of a 2-D uint8 array (no imaging library needed)."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _thumb(row: np.ndarray, lo: float, hi: float, shape: tuple[int, int] | None) -> str:
    span = hi - lo if hi > lo else 1.0
    v = np.clip((np.asarray(row, np.float64) - lo) / span, 0.0, 1.0)
    if shape is not None:
        img = v.reshape(shape)
        scale = max(1, 64 // max(shape))
    else:  # a feature row: one column per feature, as a strip
        img = v[None, :]
        scale = max(1, 256 // len(v))
        img = np.repeat(img, 12, axis=0)
    img = np.kron(img, np.ones((scale, scale))) if scale > 1 else img
    data = _png_gray((255 * (1.0 - img)).round().astype(np.uint8))  # dark ink on white
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}" alt="">'


def _quote(row, column: str) -> str:
    """The row's sentence in ``column`` as an escaped block quote ('' when the table has no such column)."""
    text = row.get(column) if hasattr(row, "get") else None
    return "" if text is None or not isinstance(text, str) else f"<blockquote>{html.escape(text)}</blockquote>"


_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222} .q{border-top:1px solid #ccc;padding:.6em 0}
.row{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-end} figure{margin:0;text-align:center;font-size:.8em}
figure img{image-rendering:pixelated;border:1px solid #ddd} .low{color:#b00} table{border-collapse:collapse}
blockquote{margin:.2em 0;max-width:22em;font-style:italic;text-align:left;white-space:pre-wrap}
td,th{padding:0 .5em;font-size:.85em;text-align:right}"""


def explanation_page(table, X_train, X_query, *, image_shape: tuple[int, int] | None = None,
                     max_queries: int = 100, title: str = "NNK explanations") -> str:
    """A self-contained HTML page of an :func:`explain` table: per query its thumbnail (image or feature strip),
    prediction, reliability and class probabilities, then its NNK neighbours by decreasing weight.  When the table
    has ``query_text`` / ``neighbor_text`` (``explain(..., texts_train=, texts_query=)``) each sentence is printed
    (HTML-escaped) under its thumbnail.

    Examples
    --------
    >>> X = np.array([[0.0, 1.0], [0.1, 1.0], [0.2, 1.0], [1.0, 0.0], [1.0, 0.1], [1.0, 0.2]])
    >>> Q = np.array([[0.05, 1.0]])
    >>> page = explanation_page(explain(X, np.array([0, 0, 0, 1, 1, 1]), Q, k=3), X, Q)
    >>> page.startswith("<!DOCTYPE html>") and "prediction" in page
    True
    """
    X_train = np.asarray(X_train)
    X_query = np.asarray(X_query)
    d = X_train.shape[1]
    if image_shape is not None and image_shape[0] * image_shape[1] != d:
        raise InvalidParameterError(f"image shape {image_shape[0]}x{image_shape[1]} has "
                                    f"{image_shape[0] * image_shape[1]} pixels but the rows have {d} features; "
                                    "give the shape of the images (e.g. 8x8 for 64 features, 28x28 for 784)")
    lo, hi = float(np.min(X_train)), float(np.max(X_train))
    proba_cols = [c for c in table.columns if c.startswith("proba_")]
    a = table.attrs
    head = (f"<h1>{html.escape(title)}</h1><p>NNK classifier, k={a.get('k')}, kernel {a.get('kernel')}; "
            f"{a.get('n_query')} queries against {a.get('n_train')} training rows. The prediction is the "
            "weighted vote of the neighbours shown (weight = NNK coefficient). Reliability = min(1, typical "
            "polytope diameter of the predicted class / the query's polytope diameter).</p>")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>", head]
    queries = table["query"].unique()
    for q in queries[:max_queries]:
        rows = table[table["query"] == q]
        r0 = rows.iloc[0]
        probs = "".join(f"<th>{html.escape(c[6:])}</th>" for c in proba_cols)
        vals = "".join(f"<td>{r0[c]:.3f}</td>" for c in proba_cols)
        cls = " class='low'" if r0.reliability < 0.5 else ""
        fb = " (no positive weight: nearest training row)" if r0.fallback else ""
        qtext = _quote(r0, "query_text")
        parts.append(f"<div class='q'><div class='row'><figure>{_thumb(X_query[q], lo, hi, image_shape)}"
                     f"<figcaption>query {q}{qtext}</figcaption></figure><div><b>prediction "
                     f"{html.escape(str(r0.prediction))}"
                     f"</b>{fb}<br><span{cls}>reliability {r0.reliability:.2f}</span> (diameter {r0.diameter:.3f}, "
                     f"typical {r0.class_diameter:.3f}); interpolation error {r0.interpolation_error:.3f}"
                     f"<table><tr>{probs}</tr><tr>{vals}</tr></table></div></div><div class='row'>")
        for r in rows.itertuples():
            parts.append(f"<figure>{_thumb(X_train[r.neighbor], lo, hi, image_shape)}<figcaption>#{r.neighbor} "
                         f"label {html.escape(str(r.neighbor_label))}<br>weight {r.weight:.3f} "
                         f"({100 * r.share:.0f}%){_quote(r._asdict(), 'neighbor_text')}</figcaption></figure>")
        parts.append("</div></div>")
    if len(queries) > max_queries:
        parts.append(f"<p>{len(queries) - max_queries} more queries are in the table.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
