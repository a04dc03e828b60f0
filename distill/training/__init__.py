"""Training: the fit loop, the distillation loss, teachers and their cross-fitted fold groups,
soft labels on augmented views, pseudo-label selection, and student fitting.

Takes a dataset and architectures from the registries; gives run folders (weights, ``config.json``,
``metrics.json``) and soft-label folders.
"""
