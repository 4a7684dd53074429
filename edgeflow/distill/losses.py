"""Distillation losses, picked by name: ``soft``, ``feature``, ``attention``.

Each loss is a small Keras layer (so that its adapters are tracked, trained and saved
with the :class:`~edgeflow.distill.Distiller`) with one method, :meth:`compute`, that
maps the teacher's and the student's outputs and intermediate maps to a scalar.
``get(name_or_obj)`` builds one from a name (``"attention"``), a name with a weight
(``"attention:50"``), a dict (``{"name": "feature", "pairs": [...], "weight": 2}``),
a callable ``fn(teacher_logits, student_logits) -> scalar`` or a loss object. The same
names are used by the CLI (``--loss``) and recipes.

How the terms are combined into one training loss is documented in
:class:`~edgeflow.distill.Distiller`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from edgeflow._keras import keras, tf
from edgeflow.errors import EdgeflowError, closest

__all__ = [
    "LOSSES",
    "DistillationLoss",
    "LayerPairLoss",
    "SoftLoss",
    "FeatureLoss",
    "AttentionLoss",
    "CallableLoss",
    "Outputs",
    "get",
    "parse_pairs",
    "attention_map",
]

# The smallest probability whose log is taken when logits must be recovered from a
# softmax output (see Distiller): log(1e-30) = -69, far below any class that matters.
PROB_FLOOR = 1e-30


@dataclass
class Outputs:
    """What one forward pass of teacher and student gives the losses.

    ``*_logits`` are logits (or log-probabilities, equal to logits up to a per-sample
    constant that every softmax ignores); ``*_maps`` hold the outputs of the layers the
    losses asked for, by layer name.
    """

    teacher_logits: tf.Tensor
    student_logits: tf.Tensor
    teacher_maps: dict[str, tf.Tensor] = field(default_factory=dict)
    student_maps: dict[str, tf.Tensor] = field(default_factory=dict)


class DistillationLoss(keras.layers.Layer):
    """Base class: one distillation term, ``weight × value``.

    Subclasses set ``kind`` (``"output"`` terms compare the two models' predictions and
    are mixed with the hard-label loss by α; ``"map"`` terms compare intermediate layers
    and are added with their weight), list the layers they read in
    :meth:`teacher_layers`/:meth:`student_layers`, may create adapters in
    :meth:`build_adapters`, and implement :meth:`compute`.
    """

    kind = "output"

    def __init__(self, weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        weight = float(weight)
        if weight < 0:
            raise EdgeflowError(f"loss weight must be >= 0, got {weight} for {self.name!r}")
        self.weight = weight

    def teacher_layers(self) -> list[str]:
        """Names of the teacher layers whose outputs :meth:`compute` reads."""
        return []

    def student_layers(self) -> list[str]:
        """Names of the student layers whose outputs :meth:`compute` reads."""
        return []

    def build_adapters(self, teacher_shapes: Mapping, student_shapes: Mapping) -> None:
        """Create trainable adapters from the static shapes of the chosen layers (by name)."""

    def compute(self, out: Outputs) -> tf.Tensor:
        """The unweighted value of the term, a float32 scalar (mean over the batch)."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight}


@keras.saving.register_keras_serializable(package="edgeflow")
class SoftLoss(DistillationLoss):
    """Soft labels (Hinton et al., 2015): the teacher's softened distribution as the target.

    With ``p^τ = softmax(z / τ)`` for logits ``z`` at temperature ``τ``::

        soft = τ² · mean_batch KL(p_T^τ ‖ p_S^τ)
             = τ² · mean_batch Σ_k p_T,k^τ · (log p_T,k^τ − log p_S,k^τ)

    The τ² keeps the gradient scale independent of τ. The log-probabilities are taken
    with ``log_softmax`` (no clipping). The Distiller mixes this term with the
    hard-label loss by α.

    Args:
        temperature: τ > 0; higher spreads the teacher's probability over more classes.
        weight: multiplies the term.

    Example:
        >>> loss = SoftLoss(temperature=4.0)
    """

    kind = "output"

    def __init__(self, temperature: float = 4.0, weight: float = 1.0, **kwargs):
        kwargs.setdefault("name", "soft")
        super().__init__(weight=weight, **kwargs)
        temperature = float(temperature)
        if temperature <= 0:
            raise EdgeflowError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def compute(self, out: Outputs) -> tf.Tensor:
        t = self.temperature
        log_p_t = tf.nn.log_softmax(tf.cast(out.teacher_logits, tf.float32) / t, axis=-1)
        log_p_s = tf.nn.log_softmax(tf.cast(out.student_logits, tf.float32) / t, axis=-1)
        kl = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
        return t * t * tf.reduce_mean(kl)

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


def parse_pairs(pairs, what: str = "feature") -> list[tuple[str, str]]:
    """Normalise layer pairs to ``[(teacher_layer, student_layer), ...]``.

    Accepts a dict ``{teacher: student}``, pairs ``[(teacher, student)]``, strings
    ``"teacher:student"`` or one string naming a layer present in both models.

    Example:
        >>> parse_pairs({"conv2": "s_conv1"})
        [('conv2', 's_conv1')]
    """
    if pairs is None:
        return []
    if isinstance(pairs, str):
        pairs = [pairs]
    if isinstance(pairs, Mapping):
        pairs = list(pairs.items())
    result = []
    for item in pairs:
        if isinstance(item, str):
            teacher, sep, student = item.partition(":")
            item = (teacher, student if sep else teacher)
        if (
            not isinstance(item, (tuple, list))
            or len(item) != 2
            or not all(isinstance(n, str) and n for n in item)
        ):
            raise EdgeflowError(
                f"bad {what} layer pair {item!r}: give (teacher_layer, student_layer) names "
                "or 'teacher_layer:student_layer'"
            )
        result.append((item[0], item[1]))
    return result


_DISTANCES: dict[str, Callable] = {
    "mse": lambda a, b: tf.reduce_mean(tf.square(a - b)),
    "l1": lambda a, b: tf.reduce_mean(tf.abs(a - b)),
}


def _resize_to(x: tf.Tensor, size) -> tf.Tensor:
    """Area-resize a (N, H, W, C) map to ``size`` (average pooling for integer ratios)."""
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return tf.image.resize(x, size, method="area")


class LayerPairLoss(DistillationLoss):
    """Base class of the terms that compare pairs of layers (teacher, student) by name."""

    kind = "map"

    def __init__(self, pairs=None, weight: float = 1.0, **kwargs):
        super().__init__(weight=weight, **kwargs)
        self.pairs = parse_pairs(pairs, self.name)
        if not self.pairs:
            raise EdgeflowError(
                f"the {self.name} loss needs layer pairs: {self.name}_pairs={{'teacher_layer': "
                f"'student_layer'}} (CLI: --{self.name}-pair teacher_layer:student_layer)"
            )

    def teacher_layers(self) -> list[str]:
        return [t for t, _ in self.pairs]

    def student_layers(self) -> list[str]:
        return [s for _, s in self.pairs]

    def get_config(self) -> dict:
        return {**super().get_config(), "pairs": [list(p) for p in self.pairs]}


@keras.saving.register_keras_serializable(package="edgeflow")
class FeatureLoss(LayerPairLoss):
    """Feature maps (FitNets-style hints): distance between chosen intermediate layers.

    For each pair ``(t, s)`` of layer names::

        feature = Σ_pairs d(F_T(t), adapter(F_S(s)))
        d = mse: mean over batch and elements of (a − b)²   (or l1: mean |a − b|)

    The adapter is a learned 1×1 ``Conv2D`` (4-D maps) or ``Dense`` (2-D features) that
    maps the student's channels to the teacher's; it is the identity when the channel
    counts already match. When the spatial sizes differ, the teacher's map is
    area-resized to the student's H×W (average pooling for integer ratios; the teacher
    gets no gradient, so the resize only shapes the target). Maps of different rank are
    an error. Adapters are trained with the student and are not part of the returned
    student.

    Args:
        pairs: ``{teacher_layer: student_layer}``, ``[(teacher, student)]`` or
            ``["teacher:student"]``.
        distance: ``"mse"`` (default) or ``"l1"``.
        weight: multiplies the term.

    Example:
        >>> loss = FeatureLoss({"conv2": "s_conv1"})
    """

    def __init__(self, pairs=None, distance: str = "mse", weight: float = 1.0, **kwargs):
        kwargs.setdefault("name", "feature")
        super().__init__(pairs, weight=weight, **kwargs)
        if distance not in _DISTANCES:
            raise EdgeflowError(
                f"unknown feature distance {distance!r}{closest(str(distance), _DISTANCES)}; "
                "valid: " + ", ".join(_DISTANCES)
            )
        self.distance = distance
        self.adapters: list = []

    def build_adapters(self, teacher_shapes: Mapping, student_shapes: Mapping) -> None:
        adapters = []
        for i, (t, s) in enumerate(self.pairs):
            ts, ss = tuple(teacher_shapes[t]), tuple(student_shapes[s])
            if len(ts) != len(ss) or len(ts) not in (2, 4):
                raise EdgeflowError(
                    f"feature pair {t}:{s} has teacher shape {ts} and student shape {ss}: "
                    "pair layers whose outputs are both 4-D (N, H, W, C) or both 2-D (N, D)"
                )
            if ts[-1] == ss[-1]:
                adapters.append(None)
                continue
            name = f"{self.name}_adapter_{i}_{s}"
            if len(ts) == 4:
                layer = keras.layers.Conv2D(ts[-1], 1, name=name)
            else:
                layer = keras.layers.Dense(ts[-1], name=name)
            layer.build(ss)
            adapters.append(layer)
        self.adapters = adapters

    def compute(self, out: Outputs) -> tf.Tensor:
        dist = _DISTANCES[self.distance]
        total = tf.constant(0.0)
        for (t, s), adapter in zip(self.pairs, self._adapters_or_none(), strict=True):
            f_s = tf.cast(out.student_maps[s], tf.float32)
            if adapter is not None:
                f_s = tf.cast(adapter(f_s), tf.float32)
            f_t = tf.cast(out.teacher_maps[t], tf.float32)
            if f_t.shape.rank == 4:
                f_t = _resize_to(f_t, f_s.shape[1:3])
            total += dist(f_t, f_s)
        return total

    def _adapters_or_none(self):
        if len(self.adapters) != len(self.pairs):
            raise EdgeflowError("FeatureLoss.build_adapters must run before compute (use Distiller)")
        return self.adapters

    def get_config(self) -> dict:
        return {**super().get_config(), "distance": self.distance}


def attention_map(features: tf.Tensor, p: float = 2.0) -> tf.Tensor:
    """Spatial attention of a (N, H, W, C) map: ``A = Σ_c |F_c|^p``, shape (N, H, W).

    Example:
        >>> attention_map(tf.ones((1, 2, 2, 3))).numpy()[0, 0, 0]
        3.0
    """
    return tf.reduce_sum(tf.pow(tf.abs(tf.cast(features, tf.float32)), p), axis=-1)


@keras.saving.register_keras_serializable(package="edgeflow")
class AttentionLoss(LayerPairLoss):
    """Attention transfer (Zagoruyko & Komodakis, 2017) between pairs of 4-D layers.

    For each pair, per sample, with ``A = Σ_c |F_c|^p`` (p = 2) flattened to a vector
    over the H×W positions::

        attention = Σ_pairs mean_batch ‖ A_T/‖A_T‖₂ − A_S/‖A_S‖₂ ‖₂

    (the paper's form with its β/2 folded into ``weight``; each summand lies in [0, 2]).
    The norms are computed as ``sqrt(max(Σ a², 1e-12))`` so all-zero maps give no NaN.
    Channel counts need not match (the channel axis is summed away). When the spatial
    sizes differ, the teacher's attention map is area-resized to the student's H×W
    before it is flattened and normalised (average pooling for integer ratios).

    Args:
        pairs: ``{teacher_layer: student_layer}``, ``[(teacher, student)]`` or
            ``["teacher:student"]``.
        p: the exponent of the attention map.
        weight: multiplies the term.

    Example:
        >>> loss = AttentionLoss({"relu2": "s_relu1"}, weight=10.0)
    """

    def __init__(self, pairs=None, p: float = 2.0, weight: float = 1.0, **kwargs):
        kwargs.setdefault("name", "attention")
        super().__init__(pairs, weight=weight, **kwargs)
        self.p = float(p)

    def build_adapters(self, teacher_shapes: Mapping, student_shapes: Mapping) -> None:
        for t, s in self.pairs:
            ts, ss = tuple(teacher_shapes[t]), tuple(student_shapes[s])
            if len(ts) != 4 or len(ss) != 4:
                raise EdgeflowError(
                    f"attention pair {t}:{s} has shapes {ts} and {ss}: attention transfer "
                    "needs 4-D (N, H, W, C) layer outputs on both sides"
                )

    def compute(self, out: Outputs) -> tf.Tensor:
        total = tf.constant(0.0)
        for t, s in self.pairs:
            a_s = attention_map(out.student_maps[s], self.p)
            a_t = attention_map(out.teacher_maps[t], self.p)
            if a_t.shape[1:3] != a_s.shape[1:3]:
                a_t = _resize_to(a_t[..., None], a_s.shape[1:3])[..., 0]
            a_s = _unit(tf.reshape(a_s, (tf.shape(a_s)[0], -1)))
            a_t = _unit(tf.reshape(a_t, (tf.shape(a_t)[0], -1)))
            diff = tf.reduce_sum(tf.square(a_t - a_s), axis=-1)
            total += tf.reduce_mean(tf.sqrt(tf.maximum(diff, 1e-12)))
        return total

    def get_config(self) -> dict:
        return {**super().get_config(), "p": self.p}


def _unit(v: tf.Tensor) -> tf.Tensor:
    return v * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(v), axis=-1, keepdims=True), 1e-12))


@keras.saving.register_keras_serializable(package="edgeflow")
class CallableLoss(DistillationLoss):
    """Wraps ``fn(teacher_logits, student_logits) -> scalar`` as an output term.

    Example:
        >>> loss = CallableLoss(lambda t, s: tf.reduce_mean(tf.square(t - s)), name="logit_mse")
    """

    kind = "output"

    def __init__(self, fn: Callable, weight: float = 1.0, **kwargs):
        kwargs.setdefault("name", getattr(fn, "__name__", "custom").strip("<>") or "custom")
        super().__init__(weight=weight, **kwargs)
        self.fn = fn

    def compute(self, out: Outputs) -> tf.Tensor:
        return tf.cast(self.fn(out.teacher_logits, out.student_logits), tf.float32)

    def get_config(self) -> dict:
        return {**super().get_config(), "fn": keras.saving.serialize_keras_object(self.fn)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["fn"] = keras.saving.deserialize_keras_object(config["fn"])
        return cls(**config)


LOSSES: dict[str, type[DistillationLoss]] = {
    "soft": SoftLoss,
    "feature": FeatureLoss,
    "attention": AttentionLoss,
}


def get(identifier, **defaults) -> DistillationLoss:
    """Return a distillation loss from a name, ``"name:weight"``, a dict, a callable or an object.

    ``defaults`` are passed to the loss class when its constructor accepts them and the
    identifier does not set them; ``<name>_pairs`` becomes ``pairs`` of that loss (the
    Distiller passes ``temperature``, ``feature_pairs`` and ``attention_pairs`` this way).

    Example:
        >>> get("attention:50", attention_pairs={"relu2": "s_relu1"}).weight
        50.0
    """
    if isinstance(identifier, DistillationLoss):
        return identifier
    if isinstance(identifier, str):
        name, sep, weight = identifier.partition(":")
        config: dict = {"name": name.strip()}
        if sep:
            try:
                config["weight"] = float(weight)
            except ValueError:
                raise EdgeflowError(
                    f"bad loss {identifier!r}: write NAME or NAME:WEIGHT, e.g. attention:50"
                ) from None
        identifier = config
    if isinstance(identifier, Mapping):
        config = dict(identifier)
        name = config.pop("name", None)
        if name not in LOSSES:
            raise EdgeflowError(
                f"unknown distillation loss {name!r}{closest(str(name), LOSSES)}; valid losses "
                "are " + ", ".join(LOSSES)
            )
        cls = LOSSES[name]
        accepted = inspect.signature(cls.__init__).parameters
        for key, value in defaults.items():
            key = "pairs" if key == f"{name}_pairs" else key
            if key in accepted and key not in config and value is not None:
                config[key] = value
        unknown = [k for k in config if k not in accepted]
        if unknown:
            valid = [k for k in accepted if k not in ("self", "kwargs")]
            raise EdgeflowError(
                f"the {name!r} loss has no option {unknown[0]!r}"
                f"{closest(unknown[0], valid)}; its options are " + ", ".join(valid)
            )
        return cls(**config)
    if callable(identifier):
        return CallableLoss(identifier)
    raise EdgeflowError(
        f"cannot use {identifier!r} as a distillation loss: give a name ("
        + ", ".join(LOSSES)
        + "), a dict with 'name', a callable fn(teacher_logits, student_logits) or a "
        "DistillationLoss"
    )


def get_all(identifiers: Iterable | str | None, **defaults) -> list[DistillationLoss]:
    """``get`` for each identifier; rejects two losses with the same name."""
    if identifiers is None:
        return []
    if isinstance(identifiers, (str, Mapping, DistillationLoss)) or callable(identifiers):
        identifiers = [identifiers]
    losses = [get(i, **defaults) for i in identifiers]
    names = [loss.name for loss in losses]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise EdgeflowError(
            f"the distillation loss {dup!r} is given twice: give each loss once "
            "(list several layer pairs in one feature/attention loss)"
        )
    return losses
