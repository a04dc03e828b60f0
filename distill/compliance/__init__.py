"""Compliance: every rule of the competition measured on a frozen graph (``export --check-pi``):
size, TF 1.4 op set, the real TF 1.4 runtime in a subprocess, footprint (bytes, MACs) and the Raspberry Pi 3 estimate.

Takes a frozen graph or a run folder; gives a check report and footprint figures.
"""
