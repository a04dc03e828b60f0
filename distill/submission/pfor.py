"""pfor converters that let ``tf.vectorized_map`` batch the shipped single-clip graph (``GraphPredictor``'s ``vectorized``).

pfor has no converter for the audio ops ``AudioSpectrogram`` and ``Mfcc`` (both
take a batch on their channel axis) and folds the batch of a
``DepthwiseConv2dNative`` with a constant filter into its channels; the
converters here batch all three. They use TensorFlow's private pfor registry,
installed only while a function is traced.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ["audio_pfor_converters"]


@contextlib.contextmanager
def audio_pfor_converters() -> Iterator[bool]:
    """Install pfor converters for AudioSpectrogram / Mfcc / a batch-folding depthwise conv while tracing.

    pfor (``tf.vectorized_map``) has no converter for the two audio ops, so it
    would run them in a while loop, one clip at a time; both take several
    signals on their channel axis, so a batch is one call. Its
    ``DepthwiseConv2dNative`` converter folds the batch into the channels (a
    single image of B*C channels, which TF shards over rows only); with a
    loop-invariant filter folding into the batch axis computes the same thing
    faster. The registry is private TF API: if it is missing the block runs
    without these converters (vectorized_map then falls back to while loops)
    and yields False. Entries are restored on exit.
    """
    try:
        from tensorflow.python.ops.parallel_for import pfor as P

        registry = P._pfor_converter_registry
        wrap, create_op = P.wrap, P._create_op
        flatten, unflatten = P._flatten_first_two_dims, P._unflatten_first_dim
        not_implemented = P.ConversionNotImplementedError  # pfor then falls back to a while loop for the op
    except (ImportError, AttributeError):
        yield False
        return
    import tensorflow as tf

    def spectrogram(pfor_input):
        x = pfor_input.stacked_input(0)  # [B, samples, channels]
        n = pfor_input.pfor.loop_len_vector
        shape = tf.shape(x)
        flat = tf.reshape(tf.transpose(x, [1, 0, 2]), tf.stack([shape[1], -1]))  # [samples, B * channels]
        out = create_op("AudioSpectrogram", [flat], [o.dtype for o in pfor_input.outputs],
                        attrs=pfor_input.op.node_def.attr).outputs[0]  # [B * channels, frames, bins]
        return wrap(unflatten(out, n), True)

    def mfcc(pfor_input):
        pfor_input.stack_inputs(stack_indices=[0])
        if pfor_input.inputs[1].is_stacked:  # a per-clip sample rate: leave it to the while-loop fallback
            raise not_implemented("Mfcc with a per-iteration sample rate")
        n = pfor_input.pfor.loop_len_vector
        out = create_op("Mfcc", [flatten(pfor_input.stacked_input(0)), pfor_input.unstacked_input(1)],
                        [o.dtype for o in pfor_input.outputs], attrs=pfor_input.op.node_def.attr).outputs[0]
        return wrap(unflatten(out, n), True)

    original_depthwise = registry.get("DepthwiseConv2dNative")

    def depthwise(pfor_input):
        if pfor_input.inputs[1].is_stacked or pfor_input.get_attr("data_format") != b"NHWC":
            if original_depthwise is None:
                raise not_implemented("DepthwiseConv2dNative with a per-iteration filter")
            return original_depthwise(pfor_input)
        n = pfor_input.pfor.loop_len_vector
        out = create_op("DepthwiseConv2dNative", [flatten(pfor_input.stacked_input(0)), pfor_input.unstacked_input(1)],
                        [o.dtype for o in pfor_input.outputs], attrs=pfor_input.op.node_def.attr).outputs[0]
        return wrap(unflatten(out, n), True)

    ours = {"AudioSpectrogram": spectrogram, "Mfcc": mfcc, "DepthwiseConv2dNative": depthwise}
    saved = {name: registry.get(name) for name in ours}
    registry.update(ours)
    try:
        yield True
    finally:
        for name, fn in saved.items():
            if fn is None:
                registry.pop(name, None)
            else:
                registry[name] = fn

