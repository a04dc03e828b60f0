"""Export: freeze a student into the competition's frozen GraphDef, make it TF 1.4-loadable, quantize weights.

Takes a student run (and optional calibration offsets); gives ``model.pb``, ``labels.txt`` and a manifest.
"""
