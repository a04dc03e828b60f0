"""Calibration: prior-shift logit offsets for the test set's class mix (silence and unknown above all).

Takes a student run and the unlabeled test folder; gives ``calibration.json`` for export.
"""
