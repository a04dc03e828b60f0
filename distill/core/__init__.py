"""Small shared utilities every stage uses: errors, atomic writes, progress, configs, labels, metrics, registries.

Takes nothing from the rest of distill; everything else may import from here.
"""
