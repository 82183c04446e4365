"""The report's contents without a browser: computed takeaways, page-wide colours, the glossary, the point
explorer's data against the run's tables, several runs overlaid, bad input (missing or corrupt tables) and where
the report may write."""

import base64
import json
import re
import shutil
import zlib

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("duckdb")
pytest.importorskip("plotly")

from nnkscope.cli import main  # noqa: E402
from nnkscope.errors import InvalidParameterError  # noqa: E402
from nnkscope.report import write_report  # noqa: E402
from nnkscope.report.page import PALETTE  # noqa: E402
from nnkscope.store import RunStore  # noqa: E402
from nnkscope.studies.glossary import lookup  # noqa: E402

SPEC = re.compile(r"<script type='application/json' id='([^']+)-spec'>(.*?)</script>", re.S)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from nnkscope.studies.registry import resolve_config, run_study

    root = tmp_path_factory.mktemp("report")
    cfg = resolve_config("training", {"data": {"name": "digits", "n_train": 300, "n_test": 120},
                                      "model": {"width": 16, "depth": 1}, "train": {"epochs": 2}, "k": 8,
                                      "eval_per_class": 10, "epochs": [1, 2]})
    run_study("training", cfg, root / "run")
    return root / "run"


def _specs(page: str) -> dict:
    return {fid: json.loads(body.replace("<\\/", "</")) for fid, body in SPEC.findall(page)}


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())


def test_page_sections_takeaways_colours_glossary(run, tmp_path):
    out = tmp_path / "r.html"
    page = write_report(run, out=str(out)).read_text()
    # nothing fetched: no script source; Plotly (whose code names URLs) is inline once, as text started from a blob
    before_plotly = page.split('<script type="text/plain" id="plotly-src">')[0]
    assert page.count("<script src") == 0 and page.count('id="plotly-src"') == 1 and "https://" not in before_plotly
    layers = RunStore(run, create=False).read("layers")
    last = layers[layers.epoch == 2].sort_values("layer_index")
    a, b = last.iloc[0], last.iloc[-1]
    # the LOO takeaway states the numbers of the table and its threshold
    assert re.search(rf"NNK LOO error (falls|rises|stays)[^<]*{a.loo_error_nnk:.3f}[^<]*{b.loo_error_nnk:.3f}", page)
    assert "threshold r &lt;= -0.95" in page
    specs = _specs(page)
    figs = [s for fid, s in specs.items() if fid.startswith("sec-0-f")]
    assert len(figs) == 4  # across layers, through training, distributions, training curve
    # the explanations section follows: test points' predictions, reliability, points and their neighbours
    assert len([fid for fid in specs if re.fullmatch(r"sec-\d+-f\d+", fid)]) == 4 + 3
    assert "Why each test point got its prediction" in page
    # one colour per legend key across the whole page, in order of first appearance from the palette
    colours = {}
    for s in figs:
        for t in s["data"]:
            c = (t.get("marker") or {}).get("color")
            assert c is not None and t["legendgroup"]
            assert colours.setdefault(t["legendgroup"], c) == c
            assert t["hovertemplate"]
    assert sorted(colours.values()) == sorted(PALETTE[:len(colours)])
    assert {"epoch 1", "epoch 2", "layer input", "layer blocks.0"} <= set(colours)
    # log axes where He & Su use them: separation fuzziness and NC1
    across = figs[0]["layout"]
    titles = [a["text"] for a in across["annotations"]]
    logs = {titles[int(k[5:] or 1) - 1] for k, v in across.items() if k.startswith("yaxis") and v.get("type") == "log"}
    assert logs == {"separation fuzziness D (log)", "NC1 (log)"}
    # every glossary row shown has a definition, and every column of the tables has a row
    rows = dict(re.findall(r"<tr id='g-([^']+)'><th>[^<]*</th><td>([^<]*)</td>", page))
    assert "not defined yet" not in " ".join(rows.values())
    for col in layers.columns:
        if layers[col].dtype != object or col in ("model", "layer", "kernel", "undefined", "view"):
            assert re.sub(r"[^A-Za-z0-9_-]", "_", col) in rows, col
    # every in-page link resolves
    ids = set(re.findall(r"id='([^']+)'", page)) | set(re.findall(r'id="([^"]+)"', page))
    assert all(h in ids for h in re.findall(r"href='#([^']+)'", page))


def test_glossary_lookup_resolves_derived_columns():
    t = lookup("mean_diameter_ci_high")
    assert t.definition.startswith("upper end of the 95% percentile-bootstrap interval")
    assert t.definition.endswith("largest distance between the point's NNK neighbours (kernel-induced)")
    assert lookup("loo_error_nnk").source.startswith("Shekkizhar & Ortega, DeepNNK")
    assert lookup("nothing_like_this") is None


def test_explorer_data_matches_the_tables(run):
    from nnkscope.report.explore import explorer_data
    from nnkscope.studies.kinds.layerwise import _png

    store = RunStore(run, create=False)
    data = explorer_data(store)
    pts, nb, samples = store.read("points"), store.read("neighbors"), store.read("samples")
    assert len(data["views"]) == pts.groupby(["epoch", "layer"]).ngroups == 6
    for i, v in enumerate(data["views"]):
        sub = pts[(pts.epoch == v["epoch"]) & (pts.layer == v["layer"])].sort_values("node")
        np.testing.assert_allclose(data["x"][i], sub.view_x, rtol=1e-3)
        # every NNK neighbour is kept (degree <= 8 here), heaviest first
        assert [len(n) for n in data["nbr"][i]] == np.minimum(sub.nnk_degree, 8).tolist()
        g = nb[(nb.epoch == v["epoch"]) & (nb.layer == v["layer"]) & (nb.node == 0)].sort_values("weight",
                                                                                                   ascending=False)
        assert data["nbr"][i][0] == g.neighbor.tolist()
    # instability: 1 - Jaccard of the neighbour sets of the two epochs, by hand for one point
    e1, e2 = (data["views"].index(next(v for v in data["views"] if v["epoch"] == e and v["layer"] == "blocks.0"))
              for e in (1, 2))
    a, b = set(data["nbr"][e1][3]), set(data["nbr"][e2][3])
    assert data["metrics"]["instability"][e2][3] == pytest.approx(1 - len(a & b) / len(a | b), abs=1e-4)
    assert data["metrics"]["instability"][e1][3] is None
    # the thumbnails are the evaluated 8x8 images: decode the PNG by hand
    raw = base64.b64decode(samples.thumbnail.iloc[0])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[16:24] == (8).to_bytes(4, "big") * 2
    idat = raw[raw.index(b"IDAT") + 4: raw.index(b"IEND") - 8]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(8, 9)
    assert (rows[:, 0] == 0).all()
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    back = np.frombuffer(zlib.decompress(base64.b64decode(_png(grey))[41:-12 - 4]), np.uint8).reshape(8, 9)[:, 1:]
    np.testing.assert_array_equal(back, grey)
    assert len(samples) == 100 and samples.label.tolist() == pts[(pts.epoch == 1) & (
        pts.layer == "input")].sort_values("node").label.astype(str).tolist()
    # the worst points by soft LOO error are the top of that column at the last view
    w = next(w for w in data["worst"] if w["metric"] == "loo_soft_error_nnk")
    last = pts[(pts.epoch == 2) & (pts.layer == data["views"][w["view"]]["layer"])].sort_values("node")
    assert w["values"][0] == pytest.approx(last.loo_soft_error_nnk.max(), rel=1e-3)


def test_several_runs_overlay(run, tmp_path, capsys):
    shutil.copytree(run, tmp_path / "b")
    assert main(["report", str(run), str(tmp_path / "b")]) == 2
    assert "needs an output file" in capsys.readouterr().err
    assert main(["report", str(run), str(tmp_path / "b"), "-o", str(tmp_path / "both.html")]) == 0
    page = (tmp_path / "both.html").read_text()
    across = next(s for fid, s in _specs(page).items() if fid.endswith("-f0"))
    groups = {t["legendgroup"] for t in across["data"]}
    assert {"run: epoch 2", "b: epoch 2"} <= groups
    assert len(across["data"]) == 2 * len(_specs(write_report(run).read_text())[next(
        fid for fid in _specs(write_report(run).read_text()) if fid.endswith("-f0"))]["data"])
    assert "<th title=" in page and ">run<a class='q'" in page  # tables gain a run column
    assert page.count("class='explorer'") == 2
    assert not (tmp_path / "b" / "report.html").exists()


def test_missing_and_corrupt_tables_mark_their_section(run, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    (bad / "report.html").unlink(missing_ok=True)
    part = next((bad / "fits").rglob("part.parquet"))
    part.write_bytes(b"not parquet")
    before = _snapshot(tmp_path)
    page = write_report(bad).read_text()
    assert re.search(r"<p class='unavailable'><b>Unavailable.</b> FileFormatError: [^<]*fits[^<]*corrupt", page)
    assert "Points: explore each layer" in page and "class='explorer'" in page  # the rest still drawn
    after = _snapshot(tmp_path)
    assert [p for p in after if p not in before] == [(p, m) for p, m in after if p == "bad/report.html"]
    shutil.rmtree(bad / "layers")
    page = write_report(bad).read_text()
    assert "table &#x27;layers&#x27; is missing" in page
    with pytest.raises(InvalidParameterError, match="needs an output file"):
        write_report([run, bad])


def test_legacy_sections_still_render(tmp_path, monkeypatch):
    """A kind not yet converted: figures as (title, png), summary lines, an HTML table."""
    from nnkscope.report import collect_sections
    from nnkscope.studies import registry

    store = RunStore(tmp_path / "legacy", params={"study": "legacy"})
    store.write("legacy_t", pd.DataFrame({"x": [1.0]}))
    kind = registry.KINDS["layerwise"].__class__(
        name="legacy", defaults={}, tables=("legacy_t",), run=lambda *a: None,
        section=lambda s: {"title": "Legacy", "figures": [("a figure", "iVBORw0KGgo=")], "summary": ["one line"],
                           "table": "<table><tr><th>x</th></tr><tr><td>1</td></tr></table>"})
    monkeypatch.setitem(registry.KINDS, "legacy", kind)
    secs = collect_sections(store)
    assert [s["title"] for s in secs] == ["Legacy"] and secs[0]["takeaways"] == ["one line"]
    page = write_report(tmp_path / "legacy").read_text()
    assert "data:image/png;base64,iVBORw0KGgo=" in page and "<li>one line</li>" in page
    assert "<table><tr><th>x</th>" in page


def test_samples_of_sentences_and_feature_rows(tmp_path):
    """Text runs keep their sentences, feature runs the head of each row; the explorer maps them to the nodes."""
    from nnkscope.report.explore import explorer_data
    from nnkscope.studies.kinds.layerwise import SAMPLE_FEATURES, _write_samples
    from nnkscope.studies.layerwise import measure_layers

    y, r = np.repeat([0, 1, 2], 10), np.random.default_rng(0)
    feats = {f"l{i}": np.eye(3)[y] * (i + 1) + r.normal(size=(30, 3)) for i in range(2)}
    texts = [f"sentence number {i}" for i in range(30)]
    store = RunStore(tmp_path / "t")
    measure_layers(feats, y, store, model_name="enc", k=5, samples=np.arange(30)[::-1].copy())
    _write_samples(store, "enc", y, np.arange(30), texts=texts)
    data = explorer_data(store)
    assert data["sample_kind"] == "text"
    assert data["samples"]["enc"] == texts[::-1]  # node i is sample 29 - i
    rows = r.normal(size=(30, 20))
    store = RunStore(tmp_path / "f")
    measure_layers(feats, y, store, model_name="f", k=5)
    _write_samples(store, "f", y, np.arange(30), rows=rows)
    s = store.read("samples")
    assert s.features[0] == " ".join(f"{v:.3g}" for v in rows[0, :SAMPLE_FEATURES]) + " …"
    assert explorer_data(store)["samples"]["f"][0] == s.features[0]


def test_explorer_is_bounded(run, monkeypatch):
    from nnkscope.report import explore

    store = RunStore(run, create=False)
    n = len(store.read("points"))
    monkeypatch.setattr(explore, "MAX_VIEW_POINTS", n - 1)  # too many: the last epoch only
    assert {v["epoch"] for v in explore.explorer_data(store)["views"]} == {2}
    monkeypatch.setattr(explore, "MAX_VIEW_POINTS", n // 2 - 1)  # still too many: unavailable, with the reason
    with pytest.raises(InvalidParameterError, match="exceed the explorer"):
        explore.explorer_data(store)


def test_sections_registered_by_table(tmp_path, monkeypatch):
    """registry.SECTIONS (table -> section) draws whichever kind wrote the table; a failing one is marked."""
    from nnkscope.report import collect_sections
    from nnkscope.studies import registry

    store = RunStore(tmp_path / "s", params={"study": "none"})
    store.write("extra", pd.DataFrame({"x": [1.0]}))

    def broken(s):
        raise ValueError("no good")

    monkeypatch.setattr(registry, "SECTIONS", {"extra": lambda s: {"title": "Extra", "takeaways": ["t"],
                                                                    "figures": [], "table": s.read("extra")},
                                               "missing": broken}, raising=False)
    assert [s["title"] for s in collect_sections(store)] == ["Extra"]
    monkeypatch.setattr(registry, "SECTIONS", {"extra": broken}, raising=False)
    assert collect_sections(store)[0]["unavailable"].startswith("ValueError: no good")
