"""Representation similarity: one registry of measures between two representations of the same inputs.

``similarity(A, B, measure, **options)`` evaluates a measure by name (``similarity_ci(A, B, measure, n_boot=...,
n_perm=...)`` adds a bootstrap interval over points and a permutation p-value against chance); :data:`MEASURES` maps
each name to a :class:`Measure` that states what it promises (``higher_is_similar``, ``invariances``,
``same_points``, ``range``, ``identity``, ``reference``); ``similarity_matrix(layers_a, layers_b, measure)`` fills a
layer x layer table for two models. Linear and debiased CKA also stream over row blocks of on-disk arrays
(:func:`streaming_cka`), so N = 10^6 points take ``O(d^2)`` memory.

=====================  ==========================================================  ===========================
name                   definition                                                  invariant to
=====================  ==========================================================  ===========================
linear_cka             Kornblith et al. 2019                                       translation, scaling, orth.
debiased_cka           unbiased HSIC (Song et al. 2012), linear kernels            translation, scaling, orth.
rbf_cka                RBF kernels, sigma = 0.8 x median distance                  translation, scaling, orth.
svcca                  top-99%-variance SVD directions, mean CCA (Raghu 2017)      translation, scaling, orth.
pwcca                  projection-weighted CCA (Morcos et al. 2018)                translation, scaling
procrustes             angular shape distance (Williams et al. 2021), radians      translation, scaling, orth.
rsa                    Spearman of correlation-distance RDMs                       scaling
mutual_knn             shared cosine k-NN fraction (Huh et al. 2024)               scaling, orth.
cknna                  k-NN-masked centred kernel alignment (Huh et al. 2024)      scaling, orth.
nnk_jaccard            mean NNK-neighbour Jaccard of the two NNK graphs            scaling, orth.
nnk_edge_agreement     weighted edge agreement of the two NNK graphs               scaling, orth.
=====================  ==========================================================  ===========================

(scaling = isotropic scaling, orth. = orthogonal maps; only CCA without truncation would also be invariant to every
invertible linear map, and no default here is.)  Every measure needs the same N inputs row by row and refuses a
constant representation.
"""

from __future__ import annotations

import numpy as np

from ._registry import INVARIANCES, MEASURES, Measure, register, similarity, similarity_matrix
from .cca import MIN_RATIO, canonical_correlations, pwcca, svcca
from .intervals import NO_INTERVAL, similarity_ci
from .kernel import debiased_cka, linear_cka, rbf_cka
from .neighbours import cknna, mutual_knn, nnk_edge_agreement, nnk_graph_of, nnk_jaccard
from .shape import procrustes, rdm, rsa
from .streaming import CKAStream, row_blocks, streaming_cka

__all__ = ["similarity", "similarity_matrix", "MEASURES", "Measure", "INVARIANCES", "register", "linear_cka",
           "debiased_cka", "rbf_cka", "svcca", "pwcca", "canonical_correlations", "procrustes", "rsa", "rdm",
           "mutual_knn", "cknna", "nnk_jaccard", "nnk_edge_agreement", "streaming_cka", "CKAStream", "row_blocks",
           "MIN_RATIO", "similarity_ci", "NO_INTERVAL"]

_RIGID = frozenset({"translation", "isotropic_scaling", "orthogonal"})
_DIRECTIONS = frozenset({"isotropic_scaling", "orthogonal"})  # cosine geometry: a common shift changes directions

for _m in (
    Measure("linear_cka", linear_cka, True, _RIGID, True, (0.0, 1.0), 1.0, "Kornblith et al. 2019"),
    Measure("debiased_cka", debiased_cka, True, _RIGID, True, (-1.0, 1.0), 1.0,
            "Song et al. 2012 (unbiased HSIC); Nguyen et al. 2021"),
    Measure("rbf_cka", rbf_cka, True, _RIGID, True, (0.0, 1.0), 1.0, "Kornblith et al. 2019 (RBF kernel)"),
    Measure("svcca", svcca, True, _RIGID, True, (0.0, 1.0), 1.0, "Raghu et al. 2017"),
    Measure("pwcca", pwcca, True, frozenset({"translation", "isotropic_scaling"}), True, (0.0, 1.0), 1.0,
            "Morcos et al. 2018"),
    Measure("procrustes", procrustes, False, _RIGID, True, (0.0, np.pi / 2), 0.0, "Williams et al. 2021"),
    Measure("rsa", rsa, True, frozenset({"isotropic_scaling"}), True, (-1.0, 1.0), 1.0, "Kriegeskorte et al. 2008"),
    Measure("mutual_knn", mutual_knn, True, _DIRECTIONS, True, (0.0, 1.0), 1.0, "Huh et al. 2024"),
    Measure("cknna", cknna, True, _DIRECTIONS, True, (-np.inf, np.inf), 1.0, "Huh et al. 2024"),
    Measure("nnk_jaccard", nnk_jaccard, True, _DIRECTIONS, True, (0.0, 1.0), 1.0, "nnkscope (NNK graphs)",
            prepare=nnk_graph_of),
    Measure("nnk_edge_agreement", nnk_edge_agreement, True, _DIRECTIONS, True, (0.0, 1.0), 1.0,
            "nnkscope (NNK graphs)", prepare=nnk_graph_of),
):
    register(_m)
del _m
