"""distill: ensemble distillation for small-footprint keyword spotting.

Train large teachers, average their soft labels, distill them into a compact
student that meets the Kaggle TensorFlow Speech Recognition Challenge rules
(TF 1.4 frozen graph, < 5 MB, <= 175 ms on a Raspberry Pi 3), calibrate it for
the test set's class mix, export, check and submit.
"""

__version__ = "0.1.0"

import os as _os

if _os.environ.get("DISTILL_QUIET_TF") == "1":  # a worker process of a quiet distill command: filter its TensorFlow import too
    from distill._entry import install_import_filter as _install_tf_filter

    _install_tf_filter()
