"""``tcwide`` teacher: the student's temporal-convolution ResNet, widened, trained as a teacher.

Source: S. Choi et al., "Temporal Convolution for Real-time Keyword Spotting on
Mobile Devices", Interspeech 2019 (TC-ResNet14; the building code is the
``tcresnet`` student's), used as an ensemble member the way T. Furlanello et al.,
"Born-Again Neural Networks", ICML 2018, use the student's own family as teacher.

Why a student-shaped teacher: on the real-audio subset a TC-ResNet-14-w2 trained
on hard labels with SpecAugment (the student's no-teacher twin) scores as well on
test as any 2-D teacher, and it errs differently: three such runs added to the
six-member ensemble lift it from 94.60% to 95.28% on test (README). Trained on
all the data it memorises its training clips (mean top probability 0.96), so
it has to be cross-fitted (``teachers train --folds K``) to teach. As a teacher
it gets the teacher defaults: label smoothing 0.1 and feature masks on.

Measured at the default 98x40 MFCC front-end (MACs of Conv/Dense per 1 s clip):

=======  ==========  ===========
size     parameters  MACs / clip
=======  ==========  ===========
toy      2.0 k       0.09 M
small    135.9 k     3.03 M
14-w2    536.4 k     11.74 M
14-w3    1.20 M      26.1 M      (default)
=======  ==========  ===========

Default size: 1,204,684 parameters, 26.1 M MACs.

These are the figures :func:`distill.compliance.footprint.model_footprint` reports:
``count_params()`` (BatchNorm statistics included) and the MACs of the frozen
inference graph, front-end included.
``tests/architectures/test_contract.py`` checks them.
"""

from __future__ import annotations

from distill.core.registry import TEACHERS
from distill.layers.blocks import resolve_size
from distill.layers.frontend import FrontendConfig
from students.tcresnet import DEFAULT_FRONTEND as _STUDENT_FRONTEND
from students.tcresnet import _TC14
from students.tcresnet import SIZES as STUDENT_SIZES
from students.tcresnet import _scaled, tcresnet_model

DEFAULT_FRONTEND = _STUDENT_FRONTEND  # the front-end is the student's: 98x40 MFCC

SIZES = {
    "toy": STUDENT_SIZES["toy"],
    "small": STUDENT_SIZES["14"],
    "14-w2": STUDENT_SIZES["14-w2"],
    "14-w3": _scaled(_TC14, 3.0),
}
SIZES["default"] = SIZES["14-w3"]


@TEACHERS.register("tcwide")
def build_tcwide(*, size: str = "default", num_classes: int = 12, frontend: FrontendConfig | None = None, seed: int = 0, feature_augment=None):
    """Wide TC-ResNet-14 teacher; ``size`` in toy/small/14-w2/14-w3 (default = 14-w3), front-end default 98x40 MFCC."""
    return tcresnet_model(resolve_size(SIZES, size, "tcwide"), name=f"tcwide_{size.replace('.', '_')}", num_classes=num_classes, frontend=frontend, seed=seed, feature_augment=feature_augment)
