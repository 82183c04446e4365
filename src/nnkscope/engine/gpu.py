"""Optional accelerator path for the candidate search: brute-force windows on a torch device.

The device only proposes each query's window of ``k + 1 + margin`` nearest rows of the same centred float32 copy
faiss searches (float32 matrix products and ``topk``, at full float32 precision: TF32 is switched off for the
call); the exact float64 re-ranking, the check that the window provably holds the top k, the window widening and
the float64 fallback stay on the CPU exactly as for faiss (:mod:`nnkscope.engine.neighbors`), so the candidates
are the same as exact search on any device.  torch is
imported only when a :class:`TorchSearch` is used; ``device="cuda"`` needs a GPU (``torch.cuda.is_available()``),
``"cpu"`` runs the same code anywhere (what the tests use when no GPU is present).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._runtime import require
from ..errors import InvalidParameterError

__all__ = ["TorchSearch", "gpu_available"]


def _torch():
    return require("torch", "TorchSearch")


def gpu_available() -> bool:
    """True when torch is installed and sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class TorchSearch:
    """Exact search whose candidate windows come from a torch device (``"cuda"``, ``"cuda:1"``, ``"cpu"``).

    ``db_chunk`` database rows are held on the device at a time (bounds its memory to about
    ``4 * (db_chunk * d + block_size * db_chunk)`` bytes); queries go in blocks of ``block_size``.

    Examples
    --------
    >>> from nnkscope import knn
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> bool((knn(X, 5, method=TorchSearch("cpu")).indices == knn(X, 5).indices).all())
    True
    """

    device: str = "cuda"
    block_size: int = 8192
    db_chunk: int = 262144
    margin: int = 8

    name = "torch"

    def searcher(self, space):
        return _TorchIndex(space, self)


class _TorchIndex:
    """Database rows on the device; ``search`` mimics faiss's ``(squared L2 distances, indices)`` of the best
    ``width``, exact in its own float32 arithmetic (so the float32 error bound of the CPU check applies)."""

    exact = True

    def __init__(self, space, spec: TorchSearch):
        torch = _torch()
        if spec.device.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidParameterError(f"TorchSearch(device={spec.device!r}) but torch sees no CUDA device; use "
                                        "device='cpu' or the default faiss search")
        self.torch, self.spec = torch, spec
        self.chunks = []
        for lo in range(0, len(space.Xs), spec.db_chunk):
            # a copy: the rows may be a read-only memory map, which torch refuses to wrap
            x = torch.from_numpy(np.array(space.Xs[lo:lo + spec.db_chunk])).to(spec.device)
            self.chunks.append((lo, x, (x * x).sum(1)))

    def search(self, Q: np.ndarray, width: int):
        torch = self.torch
        precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")  # TF32 would void the float32 error bound
        try:
            return self._search(Q, width)
        finally:
            torch.set_float32_matmul_precision(precision)

    def _search(self, Q: np.ndarray, width: int):
        torch = self.torch
        with torch.no_grad():
            q = torch.from_numpy(np.ascontiguousarray(Q, dtype=np.float32)).to(self.spec.device)
            best_d = best_i = None
            for lo, x, xx in self.chunks:
                # squared distances up to the per-query constant |q|^2 (added after the top-k: same ranking)
                score = -2.0 * (q @ x.T) + xx[None, :]
                w = min(width, x.shape[0])
                d, i = torch.topk(score, w, dim=1, largest=False, sorted=True)
                i = i + lo
                if best_d is not None:
                    d, order = torch.topk(torch.cat([best_d, d], 1), min(width, best_d.shape[1] + w), dim=1,
                                          largest=False, sorted=True)
                    i = torch.gather(torch.cat([best_i, i], 1), 1, order)
                best_d, best_i = d, i
            best_d = best_d + (q * q).sum(1, keepdim=True)
            return best_d.cpu().numpy(), best_i.cpu().numpy().astype(np.int64)
