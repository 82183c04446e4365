"""The core glossary: every column of the ``layers``, ``points``, ``neighbors``, ``samples``, ``fits`` and
``train_history`` tables, as :class:`~nnkscope.studies.figures.Term` entries the report links from its figures and
tables.  Kinds add their own terms in their section's ``glossary``; :func:`lookup` resolves derived names
(``mean_*``, ``median_*``, ``*_ci_low`` / ``*_ci_high``)."""

from __future__ import annotations

from .figures import Term, resolve

__all__ = ["CORE", "lookup"]

_NNK = "Shekkizhar & Ortega, Graph construction from data by non-negative kernel regression (ICASSP 2020)"
_DEEPNNK = "Shekkizhar & Ortega, DeepNNK: explaining deep models and their generalization using polytope " \
           "interpolation (2020)"
_GEOM = "Shekkizhar & Ortega, Revisiting local neighborhood methods in machine learning (DSLW 2021)"
_NC = "Papyan, Han & Donoho, Prevalence of neural collapse during the terminal phase of deep learning (PNAS 2020)"
_SEP = "He & Su, A law of data separation in deep learning (PNAS 2023)"
_LV = "Lassance, Gripon & Ortega, Representing deep neural networks latent space geometries with graphs (2021)"

CORE: dict[str, Term] = {
    # keys and identity
    "model": Term("the model (or feature set) measured", "name", "", "nnkscope"),
    "epoch": Term("training epoch at which the layer was measured (0 = initialisation or as loaded)", "0, 1, …",
                  "", "nnkscope"),
    "layer": Term("the measured module (input = the data itself)", "name", "", "nnkscope"),
    "layer_index": Term("position of the layer in the forward pass (0 = input)", "0, 1, …", "", "nnkscope"),
    "node": Term("the point's row in the evaluated set (its node in the NNK graph)", "0 … n−1", "", "nnkscope"),
    "sample": Term("the point's identifier in the user's data (its row), or its node for built-in data",
                   "id", "", "nnkscope"),
    "label": Term("the point's class label", "class", "", "data"),
    "n": Term("number of points measured", "≥ 2", "", "nnkscope"),
    "k": Term("neighbours searched per point before NNK pruning", "≥ 1", "larger = wider neighbourhoods",
              _NNK),
    "kernel": Term("similarity kernel of the graph (cosine or Gaussian)", "name", "", _NNK),
    # NNK graph, per point and its layer means
    "nnk_degree": Term("number of neighbours NNK keeps (nonzero weights) out of the k candidates", "[1, k]",
                       "higher = the point sits in a higher-dimensional local patch", _NNK),
    "interpolation_error": Term("error of reconstructing the point from its NNK neighbours (kernel space)",
                                "[0, 1] for cosine", "lower = better explained by its neighbours", _DEEPNNK),
    "diameter": Term("largest distance between the point's NNK neighbours (kernel-induced)", "≥ 0",
                     "larger = a sparser, wider neighbourhood", _GEOM),
    "local_id": Term("local intrinsic dimension: principal directions needed for 90% of the NNK neighbours' "
                     "variance", "[1, nnk_degree]", "higher = locally higher-dimensional data", _GEOM),
    "first_pc_ratio": Term("share of the neighbours' variance on their first principal direction", "[0, 1]",
                           "higher = locally one-dimensional", _GEOM),
    "curvature": Term("how far the NNK neighbours leave their best local linear subspace", "[0, 1]",
                      "higher = a more curved neighbourhood", _GEOM),
    "solver_status": Term("status of the NNK solve of the point (0 = converged)", "0, 1, 2", "nonzero = check",
                          "nnkscope"),
    "curvature_dim": Term("subspace dimension used for curvature", "≥ 1", "", _GEOM),
    "n_nodes": Term("nodes in the graph", "≥ 2", "", "nnkscope"),
    "solver": Term("NNK solver used", "name", "", _NNK),
    "directed_edges": Term("nonzero NNK weights over all points", "≥ 0", "", _NNK),
    "undirected_edges": Term("edges after symmetrising the NNK graph", "≥ 0", "", _NNK),
    "rule": Term("how the directed NNK weights are symmetrised", "name", "", _NNK),
    "isolated_nodes": Term("points left without any NNK neighbour", "≥ 0", "0 expected", "nnkscope"),
    "nodes_without_candidates": Term("points with no neighbour candidate (all duplicates removed)", "≥ 0",
                                     "0 expected", "nnkscope"),
    "degenerate_solves": Term("NNK solves on a singular kernel matrix", "≥ 0", "0 expected", "nnkscope"),
    "solves_at_iteration_cap": Term("NNK solves stopped at the iteration cap", "≥ 0", "0 expected", "nnkscope"),
    "knn_method": Term("neighbour search used (exact or approximate)", "name", "", "nnkscope"),
    "knn_recall": Term("recall of the neighbour search against exact search on a sample", "[0, 1]",
                       "1 = exact neighbours", "nnkscope"),
    "mean_error": Term("mean NNK interpolation error", "[0, 1] for cosine", "lower = better", _DEEPNNK),
    # labels on the graph
    "homogeneity": Term("share of the point's NNK weight on neighbours with its own label", "[0, 1]",
                        "higher = the point sits among its own class", _DEEPNNK),
    "homogeneity_unweighted": Term("share of the point's NNK neighbours with its own label (unweighted)",
                                   "[0, 1]", "higher = among its own class", _DEEPNNK),
    "homogeneous_fraction_H": Term("fraction of points whose NNK neighbours all share their label", "[0, 1]",
                                   "higher = cleaner class separation", _DEEPNNK),
    "loo_error_nnk": Term("NNK leave-one-out error: the point's label predicted by its NNK neighbours' weighted "
                          "vote is wrong (per point 0/1; per layer the error rate)", "[0, 1]",
                          "lower = labels are locally predictable", _DEEPNNK),
    "loo_soft_error_nnk": Term("1 − the NNK weight share of the point's own label in the leave-one-out vote",
                               "[0, 1]", "lower = confidently right", _DEEPNNK),
    "loo_error_nnk_uniform": Term("leave-one-out error with NNK neighbours voting equally", "[0, 1]",
                                  "lower = better", _DEEPNNK),
    "loo_soft_error_nnk_uniform": Term("soft leave-one-out error, NNK neighbours voting equally", "[0, 1]",
                                       "lower = better", _DEEPNNK),
    "loo_error_kernel": Term("leave-one-out error of the k nearest neighbours weighted by the kernel", "[0, 1]",
                             "lower = better", _DEEPNNK),
    "loo_soft_error_kernel": Term("soft leave-one-out error, kernel-weighted k nearest neighbours", "[0, 1]",
                                  "lower = better", _DEEPNNK),
    "loo_error_uniform": Term("leave-one-out error of the plain k-NN vote", "[0, 1]", "lower = better", _DEEPNNK),
    "loo_soft_error_uniform": Term("soft leave-one-out error of the plain k-NN vote", "[0, 1]", "lower = better",
                                   _DEEPNNK),
    "loo_prediction": Term("label the NNK neighbours' vote predicts for the point", "class", "", _DEEPNNK),
    "loo_fallback_nodes": Term("points whose vote fell back to the k-NN vote (no NNK neighbour)", "≥ 0",
                               "0 expected", "nnkscope"),
    "weighted_unweighted_gap": Term("uniform-vote minus weighted-vote NNK LOO error", "[−1, 1]",
                                    "> 0 = the NNK weights help", _DEEPNNK),
    "dirichlet_energy": Term("label smoothness on the NNK graph: weighted sum of label differences over edges",
                             "≥ 0", "lower = smoother labels", _LV),
    "cross_class_edge_fraction": Term("share of NNK edge weight between different classes", "[0, 1]",
                                      "lower = classes better separated", _LV),
    "label_variation": Term("label variation on the 10-NN graph: normalised weight of edges between classes",
                            "[0, 1]", "lower = smoother labels", _LV),
    # class geometry
    "nc1": Term("neural collapse NC1: within-class scatter relative to between-class scatter, tr(Σ_W Σ_B⁺)/K",
                "≥ 0", "lower = classes collapse to their means", _NC),
    "separation_fuzziness": Term("separation fuzziness D = tr(S_W S_B⁺)", "≥ 0",
                                 "lower = better separated; decays geometrically with depth (equi-separation)",
                                 _SEP),
    "undefined": Term("why a class-geometry metric is NaN at this layer", "text", "", "nnkscope"),
    "rho": Term("equi-separation fit: factor by which separation fuzziness changes per layer", "> 0",
                "< 1 = separation improves with depth", _SEP),
    "r": Term("Pearson correlation of log separation fuzziness with the layer index", "[−1, 1]",
              "≤ −0.95 = follows the law of equi-separation", _SEP),
    "r2": Term("R² of the log-linear equi-separation fit", "[0, 1]", "closer to 1 = more geometric", _SEP),
    "n_layers": Term("layers in the equi-separation fit", "≥ 3", "", _SEP),
    # global dimension and spectrum
    "id_twonn": Term("global intrinsic dimension, TwoNN estimator (ratio of 2nd to 1st neighbour distance)",
                     "≥ 1", "higher = the layer's data spans more dimensions",
                     "Facco et al., Estimating the intrinsic dimension of datasets by a minimal neighborhood "
                     "information (Sci. Rep. 2017)"),
    "id_mle": Term("global intrinsic dimension, maximum-likelihood estimator", "≥ 1",
                   "higher = more dimensions", "Levina & Bickel, Maximum likelihood estimation of intrinsic "
                   "dimension (NeurIPS 2004)"),
    "id_pca": Term("principal components needed for 90% of the variance", "≥ 1", "higher = more dimensions",
                   "Pearson (1901); PCA"),
    "rankme": Term("effective rank: exp of the entropy of the normalised singular values", "[1, min(n, d)]",
                   "higher = less dimensional collapse",
                   "Garrido et al., RankMe: assessing the downstream performance of pretrained self-supervised "
                   "representations by their rank (ICML 2023)"),
    "participation_ratio": Term("(Σλ)² / Σλ² of the covariance eigenvalues", "[1, d]",
                                "higher = variance spread over more directions",
                                "Gao et al., A theory of multineuronal dimensionality (2017)"),
    "stable_rank": Term("‖H‖_F² / ‖H‖₂²: squared Frobenius over squared spectral norm", "[1, rank]",
                        "higher = more directions carry energy",
                        "Rudelson & Vershynin, Sampling from large matrices (J. ACM 2007)"),
    "spectral_alpha": Term("power-law decay exponent α of the covariance eigenvalues", "> 0",
                           "larger = faster decay, lower-dimensional",
                           "Agrawal et al., α-ReQ: assessing representation quality by measuring eigenspectrum "
                           "decay (NeurIPS 2022)"),
    # views and stored neighbourhoods
    "view": Term("how the 2-D picture was computed (spectral embedding of the NNK graph, or PCA)", "name", "",
                 "Belkin & Niyogi, Laplacian eigenmaps (2003)"),
    "view_x": Term("first coordinate of the layer's 2-D picture (spectral embedding of its NNK graph)", "real",
                   "only relative positions matter", "Belkin & Niyogi, Laplacian eigenmaps (2003)"),
    "view_y": Term("second coordinate of the layer's 2-D picture", "real", "only relative positions matter",
                   "Belkin & Niyogi, Laplacian eigenmaps (2003)"),
    "neighbor": Term("an NNK neighbour of the point (its node)", "0 … n−1", "", _NNK),
    "weight": Term("the NNK weight of that neighbour", "> 0", "larger = contributes more", _NNK),
    "rank": Term("the neighbour's rank by weight (0 = heaviest); at most 8 kept", "0 … 7", "", "nnkscope"),
    "instability": Term("1 − Jaccard overlap of the point's NNK neighbours between the last two recorded epochs "
                        "(same layer)", "[0, 1]", "higher = its neighbourhood still moves", "nnkscope"),
    # fingerprints and training
    "unit_id": Term("fingerprint of one measured (model, epoch, layer) unit", "hash", "", "nnkscope"),
    "settings": Term("graph settings of the unit", "text", "", "nnkscope"),
    "data_fingerprint": Term("hash of the evaluated inputs", "hash", "equal = same data", "nnkscope"),
    "labels_fingerprint": Term("hash of the labels", "hash", "equal = same labels", "nnkscope"),
    "model_fingerprint": Term("hash of the model's weights at that epoch", "hash", "equal = same weights",
                              "nnkscope"),
    "nnkscope_version": Term("the nnkscope version that measured the unit", "version", "", "nnkscope"),
    "loss": Term("training loss averaged over the epoch", "≥ 0", "lower = better fit", "nnkscope"),
    "train_error": Term("classification error on the training set after the epoch", "[0, 1]", "lower = better",
                        "nnkscope"),
}


def lookup(column: str, extra: dict | None = None) -> Term | None:
    """The term of ``column`` (``extra`` first, then :data:`CORE`), resolving ``mean_``/``median_`` prefixes and
    ``_ci_low``/``_ci_high``/``_p_value`` suffixes (:func:`~nnkscope.studies.figures.resolve`); None when
    unknown.

    Examples
    --------
    >>> lookup("mean_nnk_degree_ci_low").range
    '[1, k]'
    >>> lookup("no_such_column") is None
    True
    """
    return resolve(column, {**CORE, **(extra or {})})
