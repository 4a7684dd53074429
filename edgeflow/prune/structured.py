"""Structured pruning: remove whole filters and neurons by rebuilding the functional graph.

How it works:

1. **Channel groups.** Every tensor's last axis is described by "atoms" — (space, index)
   pairs, where a *space* is the set of channels one layer creates (a Conv2D's filters, a
   Dense layer's units, the model input). Layers that only carry channels through
   (BatchNormalization, activations, pooling, DepthwiseConv2D, ...) keep their input's
   atoms; ``Concatenate`` joins them; ``Flatten`` tiles them over the spatial positions;
   ``Add``/``Multiply``/... *unite* the spaces of their inputs, so that layers whose outputs
   are added are pruned as one group (the same channels removed from all of them).
2. **Which groups may shrink.** The model input and any space that reaches a model output
   stay whole. A layer with no rule in ``RULES`` (the data table below) is fine where its
   inputs stay whole, and an error naming it where they would shrink.
3. **Scores** per group from a criterion (``edgeflow.prune.criteria``), summed over the
   group's producing layers; the lowest-scoring channels go.
4. **Rebuild** with ``keras.models.clone_model``: producers get fewer filters/units, and
   every layer gets its weights sliced to the channels kept on its input and output side.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeflow import _progress
from edgeflow._keras import ensure_keras2, keras, tf
from edgeflow.errors import EdgeflowError, closest
from edgeflow.models import copy_model, default_loss
from edgeflow.prune import _util
from edgeflow.prune import criteria as _criteria

__all__ = ["RULES", "Rule", "StructuredResult", "structured", "channel_groups"]


# --- the rule table: how each layer type treats the channel axis ------------------------


def _conv_weights(layer, weights, in_keep, out_keep):
    kernel, *bias = weights
    kernel = np.take(np.take(kernel, in_keep, axis=-2), out_keep, axis=-1)
    return [kernel, *(b[out_keep] for b in bias)]


def _dense_weights(layer, weights, in_keep, out_keep):
    kernel, *bias = weights
    return [kernel[in_keep][:, out_keep], *(b[out_keep] for b in bias)]


def _separable_weights(layer, weights, in_keep, out_keep):
    depthwise, pointwise, *bias = weights
    dm = depthwise.shape[-1]
    rows = (np.asarray(in_keep)[:, None] * dm + np.arange(dm)).ravel()
    return [
        np.take(depthwise, in_keep, axis=-2),
        np.take(np.take(pointwise, rows, axis=-2), out_keep, axis=-1),
        *(b[out_keep] for b in bias),
    ]


def _depthwise_weights(layer, weights, in_keep, out_keep):
    depthwise, *bias = weights
    return [np.take(depthwise, in_keep, axis=-2), *(b[out_keep] for b in bias)]


def _channel_weights(layer, weights, in_keep, out_keep):
    """Per-channel weights (BN γ, β, mean, variance; LayerNorm; PReLU α) on the last axis."""
    n = int(layer.input.shape[-1])
    return [w[..., out_keep] if w.ndim and w.shape[-1] == n else w for w in weights]


def _conv_units(layer):
    k = layer.get_weights()[0]
    return k.reshape(-1, k.shape[-1]).T


def _separable_units(layer):
    k = layer.get_weights()[1]
    return k.reshape(-1, k.shape[-1]).T


@dataclass(frozen=True)
class Rule:
    """How a layer type treats the channel axis.

    kind: ``producer`` (makes a new channel space of ``config[size_key]`` channels),
    ``channelwise`` (carries its input's channels), ``depthwise`` (carries them × depth
    multiplier), ``merge`` (element-wise: unites its inputs' channels), ``concat``,
    ``flatten``, ``reshape`` (only when the last axis is unchanged) or ``mixing`` (mixes
    channels: its input stays whole). ``weights(layer, weights, in_keep, out_keep)``
    slices the layer's weights; ``units(layer)`` gives the ``(units, fan_in)`` matrix
    that weight criteria score.
    """

    kind: str
    size_key: str | None = None
    weights: Callable | None = None
    units: Callable | None = None


L = keras.layers
_CARRY = Rule("channelwise")
RULES: dict[type, Rule] = {
    L.Conv2D: Rule("producer", "filters", _conv_weights, _conv_units),
    L.Conv1D: Rule("producer", "filters", _conv_weights, _conv_units),
    L.Dense: Rule("producer", "units", _dense_weights, _conv_units),
    L.SeparableConv2D: Rule("producer", "filters", _separable_weights, _separable_units),
    L.DepthwiseConv2D: Rule("depthwise", None, _depthwise_weights),
    L.BatchNormalization: Rule("channelwise", None, _channel_weights),
    L.LayerNormalization: Rule("channelwise", None, _channel_weights),
    L.PReLU: Rule("channelwise", None, _channel_weights),
    **dict.fromkeys(
        (L.ReLU, L.Activation, L.LeakyReLU, L.ELU, L.Dropout, L.SpatialDropout2D,
         L.GaussianNoise, L.GaussianDropout, L.MaxPooling2D, L.AveragePooling2D,
         L.MaxPooling1D, L.AveragePooling1D, L.GlobalAveragePooling2D,
         L.GlobalMaxPooling2D, L.GlobalAveragePooling1D, L.GlobalMaxPooling1D,
         L.ZeroPadding2D, L.Cropping2D, L.UpSampling2D, L.ActivityRegularization),
        _CARRY,
    ),
    **dict.fromkeys((L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum, L.Average),
                    Rule("merge")),
    L.Concatenate: Rule("concat"),
    L.Flatten: Rule("flatten"),
    L.Reshape: Rule("reshape"),
    L.Softmax: Rule("mixing"),
}
del L

_NEVER = "never pruned"


# --- the channel-group analysis ----------------------------------------------------------


@dataclass
class _Space:
    size: int
    producer: str | None  # layer that makes these channels (None: the model input)
    fixed: list[str] = field(default_factory=list)  # why the group must stay whole
    blockers: list[str] = field(default_factory=list)  # layers that cannot follow a shrink


@dataclass
class ChannelGroups:
    """The result of the analysis of a model's channel axes."""

    spaces: list[_Space]
    parent: list[int]
    atoms: dict  # tensor key -> (space ids, channel indices)
    layers: list  # (layer, rule or None, input keys, output keys) in topological order
    measure: dict[str, object]  # producer name -> tensor whose activations score it
    batchnorm: dict[str, object] = field(default_factory=dict)  # producer -> BN right after it

    def root(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def groups(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for s in range(len(self.spaces)):
            out.setdefault(self.root(s), []).append(s)
        return out

    def producers(self, root: int) -> list[str]:
        return [self.spaces[s].producer for s in self.groups()[root] if self.spaces[s].producer]

    def why_fixed(self, root: int) -> list[str]:
        return [r for s in self.groups()[root] for r in self.spaces[s].fixed]

    def blockers(self, root: int) -> list[str]:
        return [b for s in self.groups()[root] for b in self.spaces[s].blockers]

    def group_of(self, producer: str) -> int:
        for s, space in enumerate(self.spaces):
            if space.producer == producer:
                return self.root(s)
        raise KeyError(producer)


def _key(tensor):
    layer, node_index, tensor_index = tensor._keras_history
    return (id(layer), node_index, tensor_index)


def _rule(layer) -> Rule | None:
    rule = RULES.get(type(layer))
    if rule is None:
        return None
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    if isinstance(layer, keras.layers.BatchNormalization | keras.layers.LayerNormalization):
        axis = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
        rank = len(layer.input.shape)
        if [a % rank for a in axis] != [rank - 1]:
            return None
    if rule.kind == "producer" and getattr(layer, "groups", 1) != 1:
        return None
    if type(layer) is keras.layers.Activation and getattr(
        layer.activation, "__name__", ""
    ) in ("softmax", "log_softmax"):
        return RULES[keras.layers.Softmax]
    if isinstance(layer, keras.layers.Concatenate):
        rank = len(layer.output.shape)
        if layer.axis % rank != rank - 1:
            return None
    return rule


def channel_groups(model: keras.Model) -> ChannelGroups:
    """Analyse which channels of ``model`` must be pruned together and which must stay.

    Example:
        >>> groups = channel_groups(model)
        >>> [groups.producers(r) for r in groups.groups()]
    """
    spaces: list[_Space] = []
    parent: list[int] = []
    atoms: dict = {}

    def new_space(size, producer=None, fixed=None):
        spaces.append(_Space(int(size), producer, [fixed] if fixed else []))
        parent.append(len(parent))
        return len(spaces) - 1

    def root(s):
        while parent[s] != s:
            s = parent[s]
        return s

    def union(a, b):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[rb] = ra

    def fresh(size, producer=None, fixed=None):
        s = new_space(size, producer, fixed)
        return np.full(size, s, np.int64), np.arange(size, dtype=np.int64)

    def channels(tensor) -> int:
        dim = tensor.shape[-1]
        if dim is None:
            raise EdgeflowError(
                f"tensor {tensor.name} has an unknown channel count: structured pruning needs "
                "static shapes on the last axis"
            )
        return int(dim)

    for tensor in model.inputs:
        atoms[_key(tensor)] = fresh(channels(tensor), None, "they are the model input")

    layers = []
    consumers: dict = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            inputs = tf.nest.flatten(layer.input)
            outputs = tf.nest.flatten(layer.output)
        except AttributeError as err:
            raise EdgeflowError(
                f"layer {layer.name!r} ({type(layer).__name__}) is used more than once in the "
                "model; structured pruning needs each layer called once"
            ) from err
        in_keys = [_key(t) for t in inputs]
        out_keys = [_key(t) for t in outputs]
        for k in in_keys:
            consumers.setdefault(k, []).append(layer)
        rule = _rule(layer) if len(outputs) == 1 else None
        layers.append((layer, rule, in_keys, out_keys))
        ins = [atoms[k] for k in in_keys]
        kind = rule.kind if rule else None
        out = None
        if kind == "producer":
            out = fresh(channels(outputs[0]), layer.name)
        elif kind in ("channelwise", "mixing") and len(ins) == 1:
            out = ins[0]
            if kind == "mixing":
                for s in set(ins[0][0].tolist()):
                    spaces[s].fixed.append(f"{layer.name} mixes its channels")
        elif kind == "depthwise" and len(ins) == 1:
            dm = int(layer.depth_multiplier)
            out = (np.repeat(ins[0][0], dm), np.repeat(ins[0][1], dm))
        elif kind == "merge" and len(ins) >= 2 and len({len(a[0]) for a in ins}) == 1:
            first = ins[0]
            for other in ins[1:]:
                if np.array_equal(first[1], other[1]):
                    for a, b in set(zip(first[0].tolist(), other[0].tolist(), strict=True)):
                        union(a, b)
                else:
                    for s in set(first[0].tolist()) | set(other[0].tolist()):
                        spaces[s].fixed.append(f"{layer.name} merges them in another order")
            out = first
        elif kind == "concat" and ins:
            out = (np.concatenate([a[0] for a in ins]), np.concatenate([a[1] for a in ins]))
        elif kind == "flatten" and len(ins) == 1:
            shape = inputs[0].shape[1:-1]
            if all(d is not None for d in shape):
                positions = int(np.prod(shape)) if len(shape) else 1
                out = (np.tile(ins[0][0], positions), np.tile(ins[0][1], positions))
        elif kind == "reshape" and len(ins) == 1 and channels(inputs[0]) == channels(outputs[0]):
            out = ins[0]
        if out is None:  # no rule: the layer's inputs must stay whole
            what = f"{layer.name} ({type(layer).__name__})"
            for a in ins:
                for s in set(a[0].tolist()):
                    spaces[s].blockers.append(what)
            out_atoms = [fresh(channels(t), None, f"they come from {what}") for t in outputs]
            for k, a in zip(out_keys, out_atoms, strict=True):
                atoms[k] = a
            continue
        atoms[out_keys[0]] = out

    for tensor in model.outputs:
        for s in set(atoms[_key(tensor)][0].tolist()):
            spaces[s].fixed.append("its channels reach the model output")

    # The tensor whose activations score a producer: its output followed through
    # single-consumer channel-wise layers (BN, activation) up to the next mixing point.
    measure, batchnorm = {}, {}
    for layer, rule, _, out_keys in layers:
        if rule is None or rule.kind != "producer":
            continue
        key, tensor = out_keys[0], layer.output
        after = consumers.get(key, ())
        if len(after) == 1 and type(after[0]) is keras.layers.BatchNormalization and _rule(after[0]):
            batchnorm[layer.name] = after[0]
        while len(consumers.get(key, ())) == 1:
            nxt = consumers[key][0]
            nrule = _rule(nxt)
            if nrule is None or nrule.kind != "channelwise" or len(tf.nest.flatten(nxt.input)) != 1:
                break
            tensor, key = nxt.output, _key(nxt.output)
        measure[layer.name] = tensor
    return ChannelGroups(spaces, parent, atoms, layers, measure, batchnorm)


# --- scoring -----------------------------------------------------------------------------


def _score(model, groups: ChannelGroups, roots, criterion, data, loss, num_samples, batch_size):
    """Criterion scores per group root: the sum of the scores of its producers."""
    producers = {r: groups.producers(r) for r in roots}
    scores = {}
    if not criterion.needs_data:
        for r, names in producers.items():
            total = None
            for name in names:
                s = criterion(_folded_units(model.get_layer(name), groups.batchnorm.get(name)))
                total = s if total is None else total + s
            scores[r] = total
        return scores
    names = [n for ns in producers.values() for n in ns]
    tensors = [groups.measure[n] for n in names]
    probe = keras.Model(model.inputs, [*tensors, *model.outputs])
    sums = [None] * len(names)
    count = 0
    loss_fn = None
    if criterion.needs == "gradients":
        loss_fn = keras.losses.get(default_loss(model, loss, _util.labels(data)))
        if hasattr(loss_fn, "reduction"):
            loss_fn = loss_fn.__class__.from_config({**loss_fn.get_config(), "reduction": "none"})
    for x, y in _batches(data, num_samples, batch_size):
        x = tf.convert_to_tensor(x)
        if y is not None and np.ndim(y) == len(model.output_shape) - 1 and model.output_shape[-1] == 1:
            y = np.asarray(y)[..., None]  # labels (n,) for an (n, 1) output, as Keras's fit takes them
        if loss_fn is None:
            acts = probe(x, training=False)[: len(names)]
            parts = [criterion(a.numpy()) * len(x) for a in acts]
        else:
            with tf.GradientTape() as tape:
                outs = probe(x, training=False)
                acts, preds = outs[: len(names)], outs[len(names):]
                per_sample = loss_fn(y, preds[0])
                total_loss = tf.reduce_sum(per_sample)
            grads = tape.gradient(total_loss, acts)
            grads = [tf.zeros_like(a) if g is None else g for a, g in zip(acts, grads, strict=True)]
            parts = [criterion(a.numpy(), g.numpy()) * len(x) for a, g in zip(acts, grads, strict=True)]
        sums = [p if s is None else s + p for s, p in zip(sums, parts, strict=True)]
        count += len(x)
    by_name = {n: s / count for n, s in zip(names, sums, strict=True)}
    for r, ns in producers.items():
        scores[r] = sum(by_name[n] for n in ns)
    return scores


def _folded_units(layer, bn) -> np.ndarray:
    """The ``(units, fan_in)`` weights that weight criteria score, with a following
    BatchNormalization folded in as the converter folds it: W'_j = W_j · γ_j / √(σ²_j + ε).

    Without folding, the BN rescales each filter after the fact and a filter's norm says
    little about its output (a small-norm filter with a large γ matters).
    """
    units = RULES[type(layer)].units(layer)
    if bn is None:
        return units
    params = dict(zip([_util.weight_name(w) for w in bn.weights], bn.get_weights(), strict=True))
    gamma = params.get("gamma", np.ones(units.shape[0], np.float32))
    scale = gamma / np.sqrt(params["moving_variance"] + bn.epsilon)
    return units * np.abs(scale)[:, None]


def _batches(data, num_samples, batch_size):
    if isinstance(data, tf.data.Dataset):
        seen = 0
        for batch in data.as_numpy_iterator():
            x, y = batch[0], batch[1]
            take = min(len(x), num_samples - seen)
            yield x[:take], y[:take]
            seen += take
            if seen >= num_samples:
                return
        return
    x, y = (np.asarray(a) for a in data)
    for start in range(0, min(len(x), num_samples), batch_size):
        stop = min(start + batch_size, num_samples)
        yield x[start:stop], y[start:stop]


# --- one pruning step --------------------------------------------------------------------


def _group_targets(groups: ChannelGroups, ratio) -> dict[int, float]:
    """Group root → fraction of channels to remove, for groups that may shrink."""
    roots = list(groups.groups())
    prunable = {r for r in roots if groups.producers(r) and not groups.why_fixed(r)}
    if isinstance(ratio, dict):
        names = [n for r in roots for n in groups.producers(r)]
        targets: dict[int, float] = {}
        for key, value in ratio.items():
            _check_ratio(value, f"ratio[{key!r}]")
            matched = [n for n in names if n == key or fnmatch.fnmatchcase(n, key)]
            if not matched:
                raise EdgeflowError(
                    f"ratio key {key!r} matches no Conv2D/Dense/SeparableConv2D layer"
                    f"{closest(key, names)}; prunable layers: " + ", ".join(names)
                )
            for name in matched:
                r = groups.group_of(name)
                if r not in prunable:
                    if key == name and value > 0:
                        why = groups.why_fixed(r)
                        raise EdgeflowError(f"layer {name!r} cannot be pruned: {'; '.join(why)}")
                    continue
                targets[r] = max(targets.get(r, 0.0), float(value))
    else:
        _check_ratio(ratio, "ratio")
        targets = dict.fromkeys(prunable, float(ratio))
    for r, value in targets.items():
        blockers = groups.blockers(r)
        if value > 0 and blockers:
            raise EdgeflowError(
                f"cannot prune {', '.join(groups.producers(r))}: layer {blockers[0]} consumes "
                "those channels and structured pruning has no rule for it; leave that group "
                "out with a per-layer ratio dict"
            )
    return targets


def _check_ratio(value, what):
    if not isinstance(value, int | float) or not 0.0 <= float(value) < 1.0:
        raise EdgeflowError(f"{what} must be a fraction of channels in [0, 1), got {value!r}")


def _keep_count(size: int, fraction: float, multiple_of: int) -> int:
    keep = max(1, int(round(size * (1.0 - fraction))))
    if multiple_of > 1:
        keep = min(size, int(math.ceil(keep / multiple_of) * multiple_of))
    return keep


def _rebuild(model, groups: ChannelGroups, masks: dict[int, np.ndarray]) -> keras.Model:
    """A new model with only the kept channels (masks: group root → bool array)."""

    def kept(key):
        spaces, index = groups.atoms[key]
        flags = np.fromiter(
            (masks[groups.root(s)][i] if groups.root(s) in masks else True
             for s, i in zip(spaces.tolist(), index.tolist(), strict=True)),
            bool, count=len(spaces),
        )
        return np.nonzero(flags)[0]

    plan = {}
    for layer, rule, in_keys, out_keys in groups.layers:
        in_keep = [kept(k) for k in in_keys]
        out_keep = [kept(k) for k in out_keys if k in groups.atoms]
        plan[layer.name] = (rule, in_keep, out_keep)

    def clone_fn(layer):
        config = layer.get_config()
        if layer.name not in plan:
            return layer.__class__.from_config(config)
        rule, _, out_keep = plan[layer.name]
        if rule is not None and rule.kind == "producer":
            config[rule.size_key] = len(out_keep[0])
        elif rule is not None and rule.kind == "reshape":
            config["target_shape"] = (*tuple(config["target_shape"])[:-1], len(out_keep[0]))
        return layer.__class__.from_config(config)

    try:
        new = keras.models.clone_model(model, clone_function=clone_fn)
    except Exception as err:
        raise EdgeflowError(f"cannot rebuild {model.name!r} with fewer channels: {err}") from err
    for layer, rule, _, _ in groups.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        _, in_keep, out_keep = plan[layer.name]
        if rule is not None and rule.weights is not None:
            weights = rule.weights(layer, weights, in_keep[0], out_keep[0])
        new.get_layer(layer.name).set_weights(weights)
    return new


def _prune_once(model, keep: dict[str, int], criterion, data, loss, num_samples, batch_size):
    """Prune ``model`` so that the group of each named producer keeps ``keep[name]`` channels."""
    groups = channel_groups(model)
    wanted = {}
    for name, count in keep.items():
        r = groups.group_of(name)
        size = groups.spaces[r].size
        if count < size:
            wanted[r] = count
    masks = {}
    if wanted:
        scores = _score(model, groups, list(wanted), criterion, data, loss, num_samples, batch_size)
        for r, count in wanted.items():
            order = np.argsort(-np.asarray(scores[r]), kind="stable")
            mask = np.zeros(groups.spaces[r].size, bool)
            mask[order[:count]] = True
            masks[r] = mask
    return _rebuild(model, groups, masks)


# --- the public function -----------------------------------------------------------------


@dataclass
class StructuredResult:
    """What ``structured`` returns.

    Attributes:
        model: the new, smaller Keras model (compiled when a loss is known).
        channels: producing layer → (channels kept, channels before).
        params_before, params_after: parameter counts.
        steps: one record per pruning step: ``step``, ``ratio``, ``params`` and the metrics
            after that step's fine-tuning (on ``metrics_on`` data).
        history: the fine-tuning histories, concatenated.
        stopped: why the schedule stopped before the target (``max_accuracy_drop``), else None.
        metrics_on: ``"validation"`` or ``"training"`` (which data the step metrics use).
    """

    model: keras.Model
    channels: dict[str, tuple[int, int]]
    params_before: int
    params_after: int
    steps: list[dict] = field(default_factory=list)
    history: dict = field(default_factory=dict)
    stopped: str | None = None
    metrics_on: str | None = None

    def summary(self) -> dict:
        """A JSON-serialisable record (everything but the model)."""
        return {
            "channels": {k: list(v) for k, v in self.channels.items()},
            "params_before": self.params_before,
            "params_after": self.params_after,
            "steps": self.steps,
            "history": {k: [float(v) for v in vals] for k, vals in self.history.items()},
            "stopped": self.stopped,
            "metrics_on": self.metrics_on,
        }


def structured(
    model: keras.Model,
    ratio: float | dict[str, float] = 0.5,
    *,
    criterion="l1",
    data=None,
    steps: int = 1,
    epochs: int = 0,
    batch_size: int = 32,
    validation_data=None,
    max_accuracy_drop: float | None = None,
    multiple_of: int = 1,
    num_samples: int = 256,
    optimizer="adam",
    loss=None,
    metrics=None,
    callbacks: list | None = None,
    verbose: int = 0,
) -> StructuredResult:
    """Remove whole filters/neurons: return a NEW, smaller functional Keras model.

    Conv2D/Conv1D/SeparableConv2D filters and Dense units are removed, with the weights
    of what is kept copied: the following BatchNormalization, DepthwiseConv2D and the next
    layer's input channels shrink with them; layers joined by ``Add``/``Multiply``/...
    lose the same channels; ``Concatenate`` and ``Flatten`` → ``Dense`` map channels to
    their offsets. The channels of the model input and of the output layer are never
    removed. A layer with no rule in ``RULES`` on a channel that would be removed is an
    error naming it.

    With ``steps`` > 1 the ratio is reached in equal steps, r_k = ratio · k / steps of the
    original channels, each followed by ``epochs`` of fine-tuning; the scores are
    recomputed on the fine-tuned model. With ``max_accuracy_drop``, the schedule stops when the
    first metric falls more than ``max_accuracy_drop`` below the unpruned model's and returns the
    last model within it.

    Args:
        model: a Keras 2 functional or Sequential model. It is not modified.
        ratio: fraction of channels to remove from every prunable group, or
            ``{layer name or glob: fraction}`` for only those layers' groups.
        criterion: ``l1``, ``l2``, ``fpgm``, ``activation``, ``taylor``, ``hessian`` or a
            callable (see ``edgeflow.prune.criteria``). Weight criteria score the kernels
            with a following BatchNormalization folded in (as in the ``.tflite``).
        data: ``(x, y)`` or a tf.data.Dataset: for data criteria and fine-tuning.
        steps, epochs, batch_size: the iterative schedule and its fine-tuning.
        validation_data: ``(x, y)`` for the per-step metrics (default: ``data``).
        max_accuracy_drop: largest allowed fall of the first metric (0.015 = 1.5 points).
        multiple_of: round kept channel counts up to a multiple (SIMD-friendly: 4 or 8).
        num_samples: samples used by data criteria.
        optimizer, loss, metrics: for fine-tuning and the step metrics; ``metrics`` None
            (default): accuracy per class output, MAE per regression output
            (:func:`edgeflow.models.default_metrics`).
        callbacks: Keras callbacks for the fine-tuning.
        verbose: Keras fit verbosity.

    Returns:
        A StructuredResult with the new model and the kept channels per layer.

    Example:
        >>> result = prune.structured(model, 0.5, criterion="l1", data=(x, y), epochs=3)
        >>> result.params_after / result.params_before
        0.27
    """
    model = ensure_keras2(model)
    crit = _criteria.get(criterion)
    if steps < 1 or epochs < 0:
        raise EdgeflowError(f"steps must be >= 1 and epochs >= 0, got steps={steps}, epochs={epochs}")
    if crit.needs_data and data is None:  # checked here, before the progress bar starts
        raise EdgeflowError(
            f"criterion {crit.name!r} scores units on data: pass data=(x, y) "
            "(a few hundred samples are enough)"
        )
    if (epochs or max_accuracy_drop is not None) and data is None:
        raise EdgeflowError("fine-tuning (epochs) and max_accuracy_drop need data=(x, y)")
    if max_accuracy_drop is not None and metrics is not None and not metrics:
        raise EdgeflowError("max_accuracy_drop compares the first metric: pass metrics=('accuracy',)")
    working = copy_model(model)
    groups = channel_groups(working)
    targets = _group_targets(groups, ratio)
    sizes = {r: groups.spaces[r].size for r in targets}
    reps = {r: groups.producers(r)[0] for r in targets}
    params_before = int(model.count_params())

    eval_data = validation_data if validation_data is not None else data
    metrics_on = None if eval_data is None else (
        "validation" if validation_data is not None else "training"
    )
    y = _util.labels(data)
    can_compile = _util.has_loss(model, loss, y)
    baseline = None
    if eval_data is not None and can_compile and (metrics is None or metrics):
        _util.compile_like(working, model, optimizer=optimizer, loss=loss, metrics=metrics, y=y)
        baseline = _evaluate(working, eval_data, batch_size)
        first = next(iter(baseline), None)
        if max_accuracy_drop is not None and first is not None and "accuracy" not in first:
            raise EdgeflowError(
                f"max_accuracy_drop compares an accuracy, but the model's first metric is {first!r} "
                "(lower is better, e.g. a regression model): pass metrics=('accuracy',) for a classifier, "
                "or leave max_accuracy_drop out")

    result_steps = [{"step": 0, "ratio": 0.0, "params": params_before, **(baseline or {})}]
    history: dict = {}
    stopped = None
    current = working
    progress = _progress.bar(range(1, steps + 1), total=steps, desc="structured pruning", unit="step")
    for k in progress:
        fraction = {r: t * k / steps for r, t in targets.items()}
        keep = {reps[r]: _keep_count(sizes[r], f, multiple_of) for r, f in fraction.items()}
        candidate = _prune_once(current, keep, crit, data, loss, num_samples, batch_size)
        if can_compile:
            _util.compile_like(candidate, model, optimizer=optimizer, loss=loss, metrics=metrics, y=y)
        if epochs:
            fit_kwargs, _ = _util.training_data(data, batch_size, model)
            h = candidate.fit(**fit_kwargs, epochs=epochs, verbose=verbose,
                              callbacks=list(callbacks or ()))
            for name, values in h.history.items():
                history.setdefault(name, []).extend(values)
        record = {"step": k, "ratio": max(fraction.values(), default=0.0),
                  "params": int(candidate.count_params())}
        if baseline is not None:
            record.update(_evaluate(candidate, eval_data, batch_size))
        result_steps.append(record)
        progress.set_postfix(
            {name: (f"{value:.4f}" if isinstance(value, float) else value)
             for name, value in record.items()}
        )
        if max_accuracy_drop is not None and baseline is not None:
            first = next(iter(baseline))
            drop = baseline[first] - record[first]
            if drop > max_accuracy_drop:
                stopped = (
                    f"step {k} ({record['ratio']:.0%}) dropped {first} by {drop:.4f} > "
                    f"max_accuracy_drop {max_accuracy_drop}; kept step {k - 1}"
                )
                break
        current = candidate

    channels = {}
    new_groups = channel_groups(current)
    for space in groups.spaces:
        if space.producer:
            after = new_groups.spaces[new_groups.group_of(space.producer)].size
            channels[space.producer] = (after, space.size)
    return StructuredResult(
        model=current,
        channels=channels,
        params_before=params_before,
        params_after=int(current.count_params()),
        steps=result_steps,
        history=history,
        stopped=stopped,
        metrics_on=metrics_on,
    )


def _evaluate(model, data, batch_size) -> dict:
    if isinstance(data, tf.data.Dataset):
        values = model.evaluate(data, verbose=0, return_dict=True)
    else:
        x, y = data
        values = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    values.pop("loss", None)
    return {k: float(v) for k, v in values.items()}
