"""Studies: what a network has learned, measured layer by layer, epoch by epoch, run against run.

* :mod:`~nnkscope.studies.layerwise` -- every NNK, label and class-geometry metric at every layer
  (:func:`layerwise`), through training (:class:`TrainingCallback`);
* :mod:`~nnkscope.studies.comparison` -- representations against each other across dimensions;
* :mod:`~nnkscope.studies.stability` -- runs (seeds) against each other;
* :mod:`~nnkscope.studies.invariance` -- diameters of augmentation manifolds;
* :mod:`~nnkscope.studies.early_stopping` -- DeepNNK and CW-DeepNNK callbacks;
* :mod:`~nnkscope.studies.width_sweep` -- interpolation geometry of bigger vs smaller models;
* :mod:`~nnkscope.studies.registry` -- the study kinds (one module each in :mod:`~nnkscope.studies.kinds`),
  YAML configs and ``nnkscope study KIND``;
* :mod:`~nnkscope.studies.own` -- your own model, data or saved features in a config, checked before a run starts;
* :mod:`~nnkscope.studies.integrations` -- Lightning and Hugging Face ``Trainer`` callbacks.
"""

from .early_stopping import ChannelwiseEarlyStopping, DeepNNKMonitor, loo_error
from .layerwise import TrainingCallback, layerwise

__all__ = ["layerwise", "TrainingCallback", "DeepNNKMonitor", "ChannelwiseEarlyStopping", "loo_error"]
