"""nnkscope.explain: the explanation is exact (it reproduces the classifier), diameters and reliability against
brute force, the HTML page and the CLI, and the light package import."""

import subprocess
import sys

import numpy as np
import pytest
from helpers import brute_knn, dense_kernel, nnls_oracle

import nnkscope
from nnkscope.cli import main
from nnkscope.errors import InputShapeError, InvalidParameterError
from nnkscope.measures.explain import explain, explanation_page, parse_image_shape
from nnkscope.measures.interpolation import NNKClassifier


@pytest.fixture(scope="module")
def split(digits, digits_labels):
    r = np.random.default_rng(0)
    idx = r.permutation(len(digits))
    tr, te = idx[:400], idx[400:460]
    return digits[tr], digits_labels[tr], digits[te], digits_labels[te]


@pytest.mark.parametrize("kernel", ["cosine", "gaussian"])
def test_prediction_equals_the_classifier(split, kernel):
    Xtr, ytr, Xte, _ = split
    t = explain(Xtr, ytr, Xte, k=15, kernel=kernel)
    clf = NNKClassifier(k=15, kernel=kernel).fit(Xtr, ytr)
    per_q = t.groupby("query").first()
    assert per_q.index.tolist() == list(range(len(Xte)))
    np.testing.assert_array_equal(per_q.prediction.to_numpy(), clf.predict(Xte))
    proba = clf.predict_proba(Xte)
    np.testing.assert_array_equal(per_q[[f"proba_{c}" for c in clf.classes_]].to_numpy(), proba)
    # the explanation is exact: each class's share of the neighbours' vote is its probability
    votes = t.pivot_table(index="query", columns="neighbor_label", values="share", aggfunc="sum", fill_value=0.0)
    np.testing.assert_allclose(votes.reindex(columns=clf.classes_, fill_value=0.0).to_numpy(), proba, atol=1e-12)
    # neighbours are the NNK support, by decreasing weight, weights are the classifier's theta
    I = clf.interpolate(Xte)
    for q in (0, 7, 33):
        rows = t[t["query"] == q]
        assert rows["rank"].tolist() == list(range(len(rows)))
        assert (np.diff(rows.weight.to_numpy()) <= 0).all()
        sup = I.theta[q] > 0
        assert sorted(rows.neighbor) == sorted(I.candidates[q][sup])
        assert sorted(rows.weight) == pytest.approx(sorted(I.theta[q][sup]), abs=0)
        assert rows.n_neighbors.iloc[0] == sup.sum()


def _brute_loo_diameters(X, k):
    """Every point interpolated from the others by a dense kernel and NNLS; diameter on unit rows."""
    cand, _ = brute_knn(X, k, "cosine")
    K = dense_kernel(X, "cosine")
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    out = np.empty(len(X))
    for i in range(len(X)):
        theta = nnls_oracle(K[np.ix_(cand[i], cand[i])], K[cand[i], i], 1e-10)
        P = np.vstack([U[i], U[cand[i][theta > 0]]])
        out[i] = max(np.linalg.norm(a - b) for a in P for b in P)
    return out


def test_diameters_and_reliability_against_brute_force(split):
    Xtr, ytr, Xte, _ = split
    Xtr, ytr = Xtr[:120], ytr[:120]
    k = 8
    t = explain(Xtr, ytr, Xte[:15], k=k)
    loo = _brute_loo_diameters(Xtr, k)
    typical = {str(c): np.median(loo[ytr == c]) for c in np.unique(ytr)}
    assert t.attrs["class_diameters"] == pytest.approx(typical, abs=1e-9)
    U = lambda A: A / np.linalg.norm(A, axis=-1, keepdims=True)  # noqa: E731
    for q, rows in t.groupby("query"):
        P = np.vstack([U(Xte[q]), U(Xtr[rows.neighbor.to_numpy()])])
        brute = max(np.linalg.norm(a - b) for a in P for b in P)
        r0 = rows.iloc[0]
        assert r0.diameter == pytest.approx(brute, abs=1e-9)
        T = typical[str(r0.prediction)]
        assert r0.class_diameter == pytest.approx(T, abs=1e-12)
        assert r0.relative_diameter == pytest.approx(brute / T, rel=1e-9)
        assert r0.reliability == pytest.approx(min(1.0, T / brute), rel=1e-9)
    assert ((t.reliability > 0) & (t.reliability <= 1)).all()


def test_reliability_is_low_far_from_the_data():
    # two tight classes on the unit circle; a query between them interpolates from far-apart points
    ang = np.r_[np.linspace(0, 0.1, 10), np.linspace(1.5, 1.6, 10)]
    X = np.c_[np.cos(ang), np.sin(ang)]
    y = np.r_[[0] * 10, [1] * 10]
    t = explain(X, y, np.array([[np.cos(0.05), np.sin(0.05)], [np.cos(0.8), np.sin(0.8)]]), k=5)
    rel = t.groupby("query").reliability.first()
    assert rel[0] == 1.0 and rel[1] < 0.2
    assert set(t[t["query"] == 1].neighbor_label) == {0, 1}  # explained by one point of each class


def test_fallback_query_is_explained_by_its_nearest_row():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    y = np.array(["a", "b", "b", "a"])
    # a bandwidth so small that every kernel value underflows: no positive weight, the nearest row decides
    t = explain(X, y, np.array([[0.9, 0.1]]), k=3, kernel="gaussian", sigma=1e-3)
    assert len(t) == 1 and bool(t.fallback[0]) and t.neighbor[0] == 1 and t.share[0] == 1.0
    assert t.prediction[0] == NNKClassifier(k=3, kernel="gaussian", sigma=1e-3).fit(X, y).predict(
        np.array([[0.9, 0.1]]))[0] == "b"


def test_bad_input(split):
    Xtr, ytr, Xte, _ = split
    with pytest.raises(InputShapeError, match="different feature space"):
        explain(Xtr, ytr, Xte[:, :10])
    with pytest.raises(InputShapeError, match="one label per row"):
        explain(Xtr, ytr[:-1], Xte)
    with pytest.raises(InvalidParameterError, match="image shape 7x7 has 49 pixels"):
        explanation_page(explain(Xtr, ytr, Xte[:2], k=5), Xtr, Xte[:2], image_shape=(7, 7))
    with pytest.raises(InvalidParameterError, match="like 28x28"):
        parse_image_shape("28by28")


def test_page_has_a_thumbnail_per_query_and_neighbour(split):
    Xtr, ytr, Xte, _ = split
    t = explain(Xtr, ytr, Xte[:4], k=10)
    for shape in [(8, 8), None]:
        page = explanation_page(t, Xtr, Xte[:4], image_shape=shape)
        assert page.count("data:image/png;base64,") == 4 + len(t)
    assert "2 more queries" in explanation_page(t, Xtr, Xte[:4], max_queries=2)


def test_png_decodes():
    import base64
    import io
    import re

    plt = pytest.importorskip("matplotlib.pyplot")
    from nnkscope.measures.explain import _thumb

    row = np.linspace(0, 1, 64)
    img = plt.imread(io.BytesIO(base64.b64decode(re.search(r"base64,([^\"]+)", _thumb(row, 0, 1, (8, 8)))[1])))
    assert img.shape == (64, 64)
    # dark ink for large values: the first pixel (value 0) is white, the last (value 1) black
    assert img[0, 0] == pytest.approx(1.0) and img[-1, -1] == pytest.approx(0.0)


def test_cli(tmp_path, split, capsys):
    Xtr, ytr, Xte, _ = split
    for name, a in {"tr": Xtr, "y": ytr, "q": Xte[:5], "bad": Xte[:5, :10]}.items():
        np.save(tmp_path / f"{name}.npy", a)
    p = lambda n: str(tmp_path / n)  # noqa: E731
    assert main(["explain", p("tr.npy"), "--labels", p("y.npy"), p("q.npy"), "-o", p("page.html"), "--table",
                 p("t.csv"), "--image-shape", "8x8", "-k", "10"]) == 0
    import pandas as pd

    t = pd.read_csv(p("t.csv"))
    assert t.groupby("query").prediction.first().tolist() == NNKClassifier(k=10).fit(Xtr, ytr).predict(
        Xte[:5]).tolist()
    assert (tmp_path / "page.html").read_text().count("<img") == 5 + len(t)
    assert "mean_reliability" in capsys.readouterr().out
    assert main(["explain", p("tr.npy"), "--labels", p("y.npy"), p("bad.npy"), "-o", p("x.html")]) == 2
    assert "different feature space" in capsys.readouterr().err
    assert main(["explain", p("tr.npy"), "--labels", p("y.npy"), p("q.npy"), "-o", p("x.html"), "--image-shape",
                 "28x28"]) == 2
    assert "784 pixels" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_package_exports_explain_lazily():
    code = ("import sys, nnkscope; assert 'sklearn' not in sys.modules; f = nnkscope.explain; "
            "assert callable(f) and 'explain' in nnkscope.__all__")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert nnkscope.explain is explain
    with pytest.raises(AttributeError):
        nnkscope.no_such_name  # noqa: B018


def test_sentences_of_queries_and_neighbours_are_shown_escaped(split, tmp_path, capsys):
    from nnkscope.measures.explain import read_texts

    Xtr, ytr, Xte, _ = split
    said_tr = [f"train <b>{i}</b> & co" for i in range(len(Xtr))]
    said_q = [f"query \"{i}\" <script>" for i in range(3)]
    t = explain(Xtr, ytr, Xte[:3], k=10, texts_train=said_tr, texts_query=said_q)
    assert t.neighbor_text.tolist() == [said_tr[i] for i in t.neighbor]
    assert t.query_text.tolist() == [said_q[q] for q in t["query"]]
    page = explanation_page(t, Xtr, Xte[:3])
    assert "<script>" not in page and page.count("query &quot;0&quot; &lt;script&gt;") == 1
    for i in t.neighbor:
        assert f"train &lt;b&gt;{i}&lt;/b&gt; &amp; co" in page
    assert page.count("<blockquote>") == 3 + len(t)
    with pytest.raises(InputShapeError, match="texts_train has 3 entries but X_train has"):
        explain(Xtr, ytr, Xte[:3], texts_train=said_tr[:3])
    with pytest.raises(InvalidParameterError, match="entry 1 is a int"):
        explain(Xtr, ytr, Xte[:3], texts_query=["a", 2, "c"])
    # files: one sentence per line, a final newline and CRLF line ends accepted, the count checked
    np.save(tmp_path / "tr.npy", Xtr)
    np.save(tmp_path / "y.npy", ytr)
    np.save(tmp_path / "q.npy", Xte[:3])
    (tmp_path / "tr.txt").write_text("\n".join(said_tr) + "\n", encoding="utf-8")
    (tmp_path / "q.txt").write_bytes("\r\n".join(said_q).encode())
    assert read_texts(tmp_path / "q.txt", 3) == said_q
    p = lambda n: str(tmp_path / n)  # noqa: E731
    assert main(["explain", p("tr.npy"), "--labels", p("y.npy"), p("q.npy"), "-o", p("page.html"), "-k", "10",
                 "--texts-train", p("tr.txt"), "--texts-query", p("q.txt")]) == 0
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "<script>" not in page and page.count("<blockquote>") == 3 + len(t)
    (tmp_path / "short.txt").write_text("one\ntwo\n", encoding="utf-8")
    assert main(["explain", p("tr.npy"), "--labels", p("y.npy"), p("q.npy"), "-o", p("x.html"),
                 "--texts-query", p("short.txt")]) == 2
    err = capsys.readouterr().err
    assert "--texts-query" in err and "has 2 lines but" in err and "3 rows" in err
    assert not (tmp_path / "x.html").exists()
