"""QuantizeConfigs for layers TF-MOT does not annotate, and the table that picks them.

TF-MOT's ``Default8BitQuantizeRegistry`` knows a fixed list of Keras layers. Real
networks hold more: ``Rescaling`` preprocessing, ``Multiply`` (squeeze-excite),
standalone ``BatchNormalization``, ``Conv1D`` and TF ops written as Python operators
(``x + 3.0`` of hard-swish), which Keras records as ``TFOpLambda`` layers. This module
gives each of them a QuantizeConfig that matches what the TFLite int8 kernels expect:

- arithmetic and activations (``ADD``/``MUL``/``SUB``, hard-sigmoid pieces, Rescaling,
  standalone BN which TFLite runs as ``MUL`` + ``ADD``) get their *output* quantized
  (8-bit, per tensor, asymmetric: the same fake-quant TF-MOT uses after ``Add``);
- shape-only ops (reshape, transpose, squeeze, padding) keep the input's scale and get
  no quantizer (TFLite requires equal input/output quantization there);
- ``Conv1D`` quantizes its kernel (symmetric, one range: see ``KernelQuantizeConfig``)
  and its activation, as TF-MOT does for ``Dense``.

``TensorOp`` replaces a single-tensor ``TFOpLambda``: when ``quantize_apply`` clones the
annotated model, Keras passes such a layer its input as a one-element list and it fails
with ``AttributeError: 'list' object has no attribute 'dtype'`` (what stops
``quantize_model`` on MobileNetV3). ``TensorOp`` calls the same TF function with the
same constants, so the float model computes exactly what it did.
"""

from __future__ import annotations

import json

from edgeflow._keras import keras, tf, tfmot

__all__ = [
    "TensorOp",
    "OutputQuantizeConfig",
    "NoOpQuantizeConfig",
    "KernelQuantizeConfig",
    "SHAPE_OPS",
    "TFMOT_ACTIVATIONS",
    "config_for",
    "custom_objects",
]

INPUT = "$input"

# Activations TF-MOT's Default8BitActivationQuantizeConfig handles and that convert to one
# int8 TFLite kernel (checked: each gives a full-int8 model after Conv2D).
TFMOT_ACTIVATIONS = frozenset({
    "relu", "relu6", "swish", "silu", "gelu", "linear", "softmax", "sigmoid", "tanh",
})  # placeholder for the tensor in a TensorOp's recorded arguments

# TF functions (as TFOpLambda records them, without the "tf." prefix) that move data
# without changing values: TFLite keeps the input quantization, so no quantizer.
SHAPE_OPS = frozenset({
    "reshape", "transpose", "squeeze", "expand_dims", "identity", "compat.v1.squeeze",
    "image.resize", "nn.space_to_depth", "nn.depth_to_space", "split", "__operators__.getitem",
    "pad", "compat.v1.pad",
})


@keras.utils.register_keras_serializable(package="edgeflow")
class TensorOp(keras.layers.Layer):
    """One TensorFlow function applied to one tensor with constant arguments.

    ``TensorOp("__operators__.add", kwargs={"y": 3.0})`` computes ``x + 3.0``. It stands in
    for a ``TFOpLambda`` so that TF-MOT can clone and annotate it.

    Args:
        function: the TF symbol without ``tf.`` (``math.multiply``, ``nn.relu6``, …).
        args: positional arguments; the string ``"$input"`` marks the tensor.
        kwargs: keyword arguments; the value ``"$input"`` marks the tensor.

    Example:
        >>> y = TensorOp("math.multiply", kwargs={"y": 1 / 6})(x)
    """

    def __init__(self, function: str, args=None, kwargs=None, **layer_kwargs):
        super().__init__(**layer_kwargs)
        self.function = function
        self.op_args = list(args) if args is not None else [INPUT]
        self.op_kwargs = dict(kwargs or {})
        self._fn = _tf_symbol(function)

    def call(self, inputs):
        args = [inputs if a == INPUT else a for a in self.op_args]
        kwargs = {k: (inputs if v == INPUT else v) for k, v in self.op_kwargs.items()}
        return self._fn(*args, **kwargs)

    def get_config(self):
        return {**super().get_config(), "function": self.function, "args": self.op_args,
                "kwargs": self.op_kwargs}


def _tf_symbol(function: str):
    obj = tf
    for part in function.split("."):
        obj = getattr(obj, part)
    return obj


def is_constant(value) -> bool:
    """True when ``value`` can be stored in a layer config (JSON numbers, strings, lists)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class _NoWeights(tfmot.quantization.keras.QuantizeConfig):
    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_config(self):
        return {}


@keras.utils.register_keras_serializable(package="edgeflow")
class OutputQuantizeConfig(_NoWeights):
    """Quantize only the layer's output: 8 bits, per tensor, asymmetric, moving-average range.

    For a float range [min, max] the fake-quant uses scale = (max - min) / 255 and
    zero point = round(-128 - min / scale), exactly what the int8 TFLite tensor gets.
    """

    def get_output_quantizers(self, layer):
        return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]


@keras.utils.register_keras_serializable(package="edgeflow")
class NoOpQuantizeConfig(_NoWeights):
    """No quantizer: the output keeps its input's quantization (reshape, padding, …)."""

    def get_output_quantizers(self, layer):
        return []


@keras.utils.register_keras_serializable(package="edgeflow")
class KernelQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Quantize a kernel (per tensor, symmetric) and the layer's activation (``Conv1D``).

    TFLite runs ``Conv1D`` as ``EXPAND_DIMS`` + ``CONV_2D``. Per-channel fake-quant on the
    rank-3 kernel does not survive the expand (the converter fails with "'tfl.reshape' op
    requires 'output' type ... cast compatible": quantized axis 1 vs 3), so the kernel gets
    one symmetric range: scale = max|w| / 127. The activation gets TF-MOT's usual
    moving-average output range.
    """

    def __init__(self, weight_attr: str = "kernel"):
        self.weight_attr = weight_attr

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, self.weight_attr),
                 tfmot.quantization.keras.quantizers.LastValueQuantizer(
                     num_bits=8, per_axis=False, symmetric=True, narrow_range=True))]

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False))]

    def set_quantize_weights(self, layer, quantize_weights):
        setattr(layer, self.weight_attr, quantize_weights[0])

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"weight_attr": self.weight_attr}


def config_for(layer):
    """The QuantizeConfig edgeflow gives ``layer``; ``None`` to use TF-MOT's own; or a reason.

    Returns:
        ``(config, reason)``: ``config`` is a QuantizeConfig, ``"tfmot"`` (TF-MOT's registry
        handles it) or ``None`` (leave the layer in float); ``reason`` explains the choice.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry,
    )

    layers = keras.layers
    if isinstance(layer, layers.InputLayer):
        return "tfmot", "input"
    if isinstance(layer, layers.BatchNormalization):
        # edgeflow.quantize._graph splits every BN TF-MOT cannot fold before annotation.
        return "tfmot", "folded into the preceding convolution"
    if isinstance(layer, layers.Activation):
        name = getattr(layer.activation, "__name__", "")
        if name in TFMOT_ACTIVATIONS:
            return "tfmot", "activation known to TF-MOT"
        return None, f"activation {name or layer.activation!r} has no int8 QAT config"
    if registry.Default8BitQuantizeRegistry().supports(layer):
        return "tfmot", "in TF-MOT's registry"
    if isinstance(layer, TensorOp):
        if layer.function.startswith("keras.activations."):
            return None, (f"activation {layer.function.rsplit('.', 1)[-1]}: no int8 QAT config "
                          "(hard_sigmoid, elu, selu, softplus convert to float ops)")
        if layer.function in SHAPE_OPS:
            return NoOpQuantizeConfig(), f"tf.{layer.function} moves data: keeps input scale"
        return OutputQuantizeConfig(), f"tf.{layer.function}: output quantized"
    if isinstance(layer, (layers.Rescaling, layers.Multiply, layers.Subtract, layers.Maximum,
                          layers.Minimum, layers.Average, layers.PReLU, layers.ELU)):
        return OutputQuantizeConfig(), f"{type(layer).__name__}: output quantized"
    if isinstance(layer, (layers.ZeroPadding1D, layers.ZeroPadding2D, layers.Reshape,
                          layers.Permute, layers.Cropping1D, layers.Cropping2D,
                          layers.MaxPooling1D, layers.RepeatVector, layers.UpSampling1D,
                          layers.Dropout, layers.GaussianNoise, layers.Flatten)):
        return NoOpQuantizeConfig(), f"{type(layer).__name__} moves data: keeps input scale"
    if type(layer) is layers.Conv1D:
        return KernelQuantizeConfig("kernel"), "Conv1D: per-tensor kernel range (TF-MOT #362)"
    if isinstance(layer, layers.Layer) and not layer.weights and type(layer).__name__ == "TFOpLambda":
        return None, f"TF op {layer.get_config().get('function')} with several tensor inputs"
    return None, f"{type(layer).__name__} is not in TF-MOT's list and edgeflow has no config for it"


def custom_objects() -> dict:
    """The classes a saved QAT model from edgeflow needs when it is loaded again.

    Example:
        >>> with tfmot.quantization.keras.quantize_scope(custom_objects()):
        ...     model = keras.models.load_model("qat.h5")
    """
    return {c.__name__: c for c in (TensorOp, OutputQuantizeConfig, NoOpQuantizeConfig,
                                    KernelQuantizeConfig)}
