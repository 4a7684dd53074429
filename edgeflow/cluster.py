"""Weight clustering on TF-MOT: each kernel keeps only ``k`` distinct values (centroids).

Clustering alone saves nothing in an int8 ``.tflite`` (each weight is still a byte); with
TFLM's table compression (:mod:`edgeflow.tflite.lut`, ``edgeflow export --lut``) a kernel
of ``k`` clusters is stored as ``ceil(log2 k)``-bit indices plus a table: 16 clusters halve
its flash, 4 clusters quarter it. The int8 conversion keeps the clusters: quantizing a
kernel maps each centroid to one int8 value (per output channel after batch-norm folding),
so each channel holds at most ``k`` values — the table layout TFLM decodes.

Stages, as in TF-MOT: ``cluster_weights`` (k-means on each kernel, centroids initialised
``kmeans++``, ``linear``, ``density`` or ``random``), fine-tuning the centroids on data,
``strip_clustering``; optionally cluster-preserving quantization-aware training
(``Default8BitClusterPreserveQuantizeScheme``), which also keeps the zeros of a pruned
model (sparsity- and cluster-preserving QAT) when ``preserve_sparsity`` holds.

Example:
    >>> result = edgeflow.cluster.cluster(model, 16, data=(x, y), epochs=2)
    >>> result.distinct_values
    {'conv1': 16, 'conv2': 16, 'fc1': 16, 'logits': 16}
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np

from edgeflow._keras import ensure_keras2, keras
from edgeflow.errors import EdgeflowError, closest
from edgeflow.models import copy_model
from edgeflow.prune import _util

__all__ = ["ClusterResult", "cluster", "INITS", "distinct_values"]

#: centroid initialisations by name (TF-MOT ``CentroidInitialization``)
INITS = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED",
         "random": "RANDOM"}
#: a kernel with at least this fraction of exact zeros counts as pruned (sparsity preserved)
SPARSE = 0.1


@dataclass
class ClusterResult:
    """What :func:`cluster` returns.

    Attributes:
        model: the clustered model (plain Keras); with ``qat=True`` the cluster-preserving
            QAT model (convert it like any QAT model).
        clusters: layer name → number of clusters (layers left alone are not listed).
        distinct_values: layer name → distinct values in its kernel after clustering
            (at most the clusters; one more with preserved zeros).
        preserve_sparsity: whether the zeros of a pruned model were kept.
        skipped_layers: ``"layer: reason"`` for layers with weights left unclustered.
        history: Keras fit history of the fine-tuning (and ``qat_history`` of QAT).
    """

    model: keras.Model
    clusters: dict[str, int]
    distinct_values: dict[str, int]
    preserve_sparsity: bool
    skipped_layers: list[str] = field(default_factory=list)
    history: dict = field(default_factory=dict)
    qat_history: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """A JSON-serialisable record (everything but the model)."""
        def plain(h):
            return {k: [float(v) for v in vals] for k, vals in h.items()}

        return {
            "clusters": self.clusters,
            "distinct_values": self.distinct_values,
            "preserve_sparsity": self.preserve_sparsity,
            "skipped_layers": self.skipped_layers,
            "history": plain(self.history),
            "qat_history": plain(self.qat_history),
        }


def distinct_values(model: keras.Model) -> dict[str, int]:
    """Layer name → number of distinct values in its kernel(s) (layers with kernels only)."""
    out = {}
    for layer in _util.iter_layers(model):
        ks = _util.kernels(layer)
        if ks:
            out[layer.name] = int(max(len(np.unique(np.asarray(k))) for k in ks))
    return out


def _clusters_per_layer(model, clusters: int, per_layer: dict | None) -> dict[str, int]:
    names = [layer.name for layer in _util.iter_layers(model) if _util.kernels(layer)]
    targets = dict.fromkeys(names, int(clusters))
    for key, value in (per_layer or {}).items():
        matched = [n for n in names if n == key or fnmatch.fnmatchcase(n, key)]
        if not matched:
            raise EdgeflowError(f"per_layer key {key!r} matches no layer with weights"
                                f"{closest(key, names)}; layers: " + ", ".join(names))
        for name in matched:
            targets[name] = int(value)
    for name, k in targets.items():
        if k != 0 and not 2 <= k <= 256:
            raise EdgeflowError(f"{name}: {k} clusters; use 2 to 256 (0 leaves the layer alone)")
    return {n: k for n, k in targets.items() if k}


def _is_sparse(model) -> bool:
    values = [np.asarray(k) for layer in _util.iter_layers(model) for k in _util.kernels(layer)]
    total = sum(v.size for v in values)
    return total > 0 and sum(int((v == 0).sum()) for v in values) / total >= SPARSE


def cluster(
    model: keras.Model,
    clusters: int = 16,
    *,
    per_layer: dict[str, int] | None = None,
    init: str = "kmeans++",
    data=None,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    qat: bool = False,
    qat_epochs: int | None = None,
    preserve_sparsity: bool | None = None,
    loss=None,
    metrics=None,
    verbose: int = 0,
) -> ClusterResult:
    """Cluster every kernel of ``model`` into ``clusters`` values with TF-MOT.

    Args:
        model: a Keras 2 model. It is not modified.
        clusters: centroids per kernel (2-256; 16 → 4-bit tables, 4 → 2-bit).
        per_layer: ``{layer name or glob: clusters}`` overriding ``clusters``; 0 leaves a
            layer alone (``{"conv*": 8, "logits": 0}``).
        init: centroid initialisation: ``kmeans++`` (default), ``linear``, ``density``,
            ``random``.
        data: ``(x, y)`` arrays or a ``tf.data.Dataset`` to fine-tune the centroids (and for
            QAT). None: cluster without training.
        epochs: fine-tuning epochs with clustering; ``qat_epochs`` (default ``epochs``) of
            cluster-preserving QAT when ``qat``.
        learning_rate: Adam's rate for both (small: the centroids only move a little).
        qat: follow with cluster-preserving quantization-aware training (needs ``data``).
        preserve_sparsity: keep the zeros of a pruned model (clustering and QAT); default:
            when at least 10 % of the kernel weights are exactly zero.
        loss, metrics: for training; the loss defaults as in ``edgeflow.models.default_loss``,
            the metrics (None) as in ``edgeflow.models.default_metrics`` (accuracy per class
            output, MAE per regression output).

    Returns:
        A ClusterResult. Raises EdgeflowError for bad arguments, a Keras 3 model, a glob
        that matches no layer, or ``qat`` without data.

    Example:
        >>> result = cluster(model, 16, per_layer={"logits": 0}, data=(x, y), epochs=2)
    """
    from edgeflow._keras import tfmot

    model = ensure_keras2(model)
    if init not in INITS:
        raise EdgeflowError(f"unknown centroid initialisation {init!r}{closest(str(init), INITS)}; "
                            "valid: " + ", ".join(INITS))
    if qat and data is None:
        raise EdgeflowError("cluster-preserving QAT needs training data: pass data=(x, y)")
    targets = _clusters_per_layer(model, clusters, per_layer)
    # the data checked against the model (shapes, finite values, labels) before any work
    fit_kwargs = None if data is None else _util.training_data(data, batch_size, model)[0]
    if preserve_sparsity is None:
        preserve_sparsity = _is_sparse(model)
    ck = tfmot.clustering.keras
    centroid_init = getattr(ck.CentroidInitialization, INITS[init])
    skipped: list[str] = []

    def wrap(layer):
        k = targets.get(layer.name)
        if not k:
            return layer  # a layer of the throw-away copy: reused with its weights
        try:
            return ck.cluster_weights(layer, number_of_clusters=k, cluster_centroids_init=centroid_init,
                                      preserve_sparsity=preserve_sparsity)
        except ValueError as err:
            skipped.append(f"{layer.name}: {str(err).splitlines()[0]}")
            return layer

    working = copy_model(model)
    try:
        with ck.cluster_scope():
            wrapped = keras.models.clone_model(working, clone_function=wrap)
    except (ValueError, TypeError) as err:
        raise EdgeflowError(f"TF-MOT cannot cluster this model: {str(err).splitlines()[0]}") from err
    history: dict = {}
    if fit_kwargs is not None:
        _util.compile_like(wrapped, model, optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                           metrics=metrics)
        history = dict(wrapped.fit(**fit_kwargs, epochs=epochs, verbose=verbose).history)
    stripped = copy_model(ck.strip_clustering(wrapped))
    for name in skipped:
        targets.pop(name.split(":")[0], None)
    result = ClusterResult(stripped, targets, {n: v for n, v in distinct_values(stripped).items()
                                               if n in targets}, bool(preserve_sparsity), skipped,
                           history)
    if qat:
        result.model, result.qat_history = _cluster_preserving_qat(
            stripped, model, data, qat_epochs if qat_epochs is not None else epochs, batch_size,
            learning_rate, preserve_sparsity, loss, metrics, verbose)
    elif _util.has_loss(model, loss):
        _util.compile_like(stripped, model, optimizer="adam", loss=loss, metrics=metrics)
    return result


def _cluster_preserving_qat(model, source, data, epochs, batch_size, learning_rate, preserve_sparsity,
                            loss, metrics, verbose):
    from edgeflow._keras import tfmot

    qk = tfmot.quantization.keras
    scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
        preserve_sparsity=bool(preserve_sparsity))
    try:
        qat_model = qk.quantize_apply(qk.quantize_annotate_model(model), scheme)
    except (ValueError, RuntimeError) as err:
        raise EdgeflowError(f"cluster-preserving QAT cannot wrap this model: {str(err).splitlines()[0]}; "
                            "convert the clustered model without QAT") from err
    fit_kwargs, _ = _util.training_data(data, batch_size)
    _util.compile_like(qat_model, source, optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                       metrics=metrics)
    history = dict(qat_model.fit(**fit_kwargs, epochs=epochs, verbose=verbose).history)
    return qat_model, history
