"""The HTML report in a real headless browser (Chromium, where installed; `.ci/run` installs it when it can)."""

import re
import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("duckdb")
pytest.importorskip("matplotlib")

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROBE = """<script>window.addEventListener('load', () => { const imgs = [...document.images];
document.title = 'IMAGES ' + imgs.length + ' ' + (imgs.every(i => i.complete && i.naturalWidth > 0) ? 'OK'
: 'BROKEN'); });</script>"""


def _chromium(tmp_path, *args):
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args], capture_output=True,
                         text=True, timeout=120)
    return out.stdout


def test_report_renders_in_chromium(tmp_path):
    import matplotlib.image

    from nnkscope.report import write_report
    from nnkscope.studies.registry import resolve_config, run_study

    cfg = resolve_config("training", {"data": {"name": "digits", "n_train": 300, "n_test": 120},
                                      "model": {"width": 16, "depth": 1}, "train": {"epochs": 2}, "k": 8,
                                      "eval_per_class": 10, "epochs": [1, 2]})
    run_study("training", cfg, tmp_path / "run")
    write_report(tmp_path / "run")
    page = (tmp_path / "run" / "report.html").read_text()
    n_images = len(re.findall("<img ", page))
    assert n_images == 4
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</head>", PROBE + "</head>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    assert f"<title>IMAGES {n_images} OK</title>" in dom  # every inlined figure decoded by the browser
    assert "separation fuzziness" in dom
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1300,1000", (tmp_path / "run" / "report.html").as_uri())
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1000, 1300)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50  # text and plots, not a blank page
