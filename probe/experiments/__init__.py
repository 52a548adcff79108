"""The seed paper's experiments: the figures behind its argument, as functions.

* :mod:`probe.experiments.profile` (Fig. 1): probability of being adversarial along
  the direction from an original image to an adversarial one, for several n.
* :mod:`probe.experiments.slice2d` (Fig. 2): a 2-D slice of input space, labels
  without and with smoothing.
* :mod:`probe.experiments.bsearch` (Fig. 3): where a binary search ends under the
  smoothed oracle, repeated many times, for several n.
* :mod:`probe.experiments.plots`: every matplotlib figure (Fig. 1-5), imported lazily.

Each experiment returns a JSON-able dict (the numbers behind the figure); the
plot functions turn such dicts into PNG files.
"""
