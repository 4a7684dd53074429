"""The Distiller: a Keras model that trains a student from a frozen teacher."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from edgeflow._keras import ensure_keras2, keras, tf
from edgeflow.distill import losses as _losses
from edgeflow.errors import EdgeflowError, closest
from edgeflow.prune.magnitude import SPARSE_MIN, kernel_values, lost_structure

__all__ = ["Distiller", "DistillResult", "distill", "logits_source"]


def logits_source(model: keras.Model, role: str = "model"):
    """Where a single-output classifier's logits are: ``(tensor, kind)``.

    ``kind`` is ``"logits"`` when the returned symbolic tensor holds logits: the model
    ends in a layer without activation, or in a separate ``Softmax``/``Activation
    ("softmax")`` layer (then the tensor is that layer's input, the exact logits). It is
    ``"probabilities"`` when the softmax is fused into the last layer
    (``Dense(..., activation="softmax")``): the Distiller then uses
    ``log(max(p, 1e-30))``, which equals the logits up to a per-sample constant that
    softmax ignores, so the softened distributions are exact except for classes whose
    probability is below 1e-30 (their gradient is cut). It is ``"sigmoid"`` for a binary
    classifier ending in one sigmoid unit: the Distiller then uses the two-class
    log-probabilities ``[log(1 − p), log p]`` (floored at 1e-30 alike), so soft labels,
    temperature and the hard loss (binary cross-entropy) work as for two softmax classes.

    Example:
        >>> tensor, kind = logits_source(model)
    """
    if len(model.outputs) != 1:
        raise EdgeflowError(
            f"the {role} has {len(model.outputs)} outputs; distillation supports "
            "single-output classifiers"
        )
    out = model.outputs[0]
    layer = out._keras_history.layer
    act = getattr(layer, "activation", None)
    act_name = getattr(act, "__name__", None) if act is not None else None
    if isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation) and act_name == "softmax"
    ):
        axis = getattr(layer, "axis", -1)
        if axis not in (-1, out.shape.rank - 1):
            raise EdgeflowError(
                f"the {role}'s softmax layer {layer.name!r} normalises axis {axis}; "
                "distillation needs class probabilities on the last axis"
            )
        return layer.input, "logits"
    if act_name == "softmax":
        return out, "probabilities"
    if act_name == "sigmoid" and out.shape[-1] == 1:
        return out, "sigmoid"
    if act is None or act_name == "linear":
        return out, "logits"
    raise EdgeflowError(
        f"the {role}'s output layer {layer.name!r} has activation {act_name!r}: distillation "
        "needs a classifier ending in logits, softmax or one sigmoid unit"
    )


def _layer_output(model: keras.Model, name: str, role: str):
    try:
        layer = model.get_layer(name)
    except ValueError:
        names = [layer.name for layer in model.layers]
        raise EdgeflowError(
            f"the {role} has no layer {name!r}{closest(name, names)} (layers are found by "
            f"name among the {role}'s top-level layers)"
        ) from None
    try:
        return layer.output
    except AttributeError as err:
        raise EdgeflowError(
            f"the {role}'s layer {name!r} is used more than once in the graph; pair a layer "
            "with a single output"
        ) from err


def _static_shape(tensor) -> tuple:
    return tuple(tensor.shape)


@keras.saving.register_keras_serializable(package="edgeflow")
class Distiller(keras.Model):
    """Trains ``student`` from a frozen ``teacher`` with the usual Keras workflow.

    ``compile``/``fit``/``evaluate`` work as for any Keras model (callbacks, ``tf.data``,
    validation data); ``predict`` and ``__call__`` run the student. Each step runs the
    teacher in inference mode (``training=False``: its BatchNormalization statistics do
    not move) under ``tf.stop_gradient``, and applies gradients only to the student's
    trainable weights and the losses' adapters. The training loss is::

        loss = a · L_hard(y, student(x))
             + (1 − a) · Σ_output-terms w_i · L_i      (e.g. soft: τ² · KL(p_T^τ ‖ p_S^τ))
             + Σ_map-terms w_j · L_j                     (feature, attention)

        a = alpha when there is an output term (soft labels), else 1

    so ``alpha`` mixes hard labels with soft labels as in Hinton et al. (α = 0.1 gives
    the soft targets 90 %), and the feature and attention terms are added to it as in
    FitNets and attention transfer. ``L_hard`` is the loss given to ``compile``
    (default: sparse or one-hot categorical cross-entropy, chosen from the labels' shape,
    on the student's logits or probabilities). Sample weights apply to ``L_hard``.

    History keys: ``loss`` (the total), ``hard_loss``, ``<name>_loss`` per term, and the
    compiled metrics of the student (``accuracy``...).

    Side effects: ``fit`` trains ``student`` (the object given) in place, and the
    adapters; the teacher is never changed. :func:`edgeflow.distill.distill` works on a
    copy and returns a plain student.

    Args:
        student: a single-output Keras 2 classifier.
        teacher: a single-output Keras 2 classifier taking the same input.
        losses: names (``"soft"``, ``"feature"``, ``"attention"``, ``"name:weight"``),
            dicts, callables or loss objects (see :mod:`edgeflow.distill.losses`).
        alpha: the weight of the hard-label loss against the output terms, in [0, 1].
        temperature: τ for the ``soft`` loss when it is given by name.
        feature_pairs, attention_pairs: ``{teacher_layer: student_layer}`` for the
            ``feature`` / ``attention`` losses when they are given by name.
        preserve_sparsity: keep the zeros of a pruned student: after every optimizer step
            each masked weight tensor is multiplied by its 0/1 mask (taken from the weights
            at construction, saved with the Distiller). ``"auto"`` (default) masks every
            student weight tensor of rank ≥ 2 that is at least 10 % exact zeros (a magnitude-
            pruned layer; trained dense layers hold no exact zeros); ``True`` masks every
            such tensor that holds any zero; ``False`` none; a list gives the indices into
            ``student.trainable_variables`` to mask.

    Example:
        >>> d = Distiller(student, teacher, ["soft", "attention:10"],
        ...               attention_pairs={"relu2": "s_relu1"})
        >>> d.compile("adam", metrics=["accuracy"])
        >>> d.fit(x, y, epochs=10, validation_data=(x_val, y_val))
        >>> small = d.student
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        losses: Iterable = ("soft",),
        *,
        alpha: float = 0.1,
        temperature: float = 4.0,
        feature_pairs=None,
        attention_pairs=None,
        preserve_sparsity: bool | str | list[int] = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        student = ensure_keras2(student)
        teacher = ensure_keras2(teacher)
        if student is teacher:
            raise EdgeflowError("the student and the teacher are the same model object")
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise EdgeflowError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.temperature = float(temperature)
        self.student = student
        self.teacher = teacher
        self.distill_losses = _losses.get_all(
            losses,
            temperature=temperature,
            feature_pairs=feature_pairs,
            attention_pairs=attention_pairs,
        )
        _check_inputs(student, teacher)
        self._student_net, self._student_kind, s_maps = self._extractor(
            student, "student", [n for loss in self.distill_losses for n in loss.student_layers()]
        )
        # The hard-label loss reads the student's output, which holds logits only when no
        # softmax layer or activation follows them.
        self._output_is_logits = (
            self._student_kind == "logits" and logits_source(student)[0] is student.outputs[0]
        )
        needs_teacher = bool(self.distill_losses)
        t_names = [n for loss in self.distill_losses for n in loss.teacher_layers()]
        if needs_teacher:
            self._teacher_net, self._teacher_kind, t_maps = self._extractor(
                teacher, "teacher", t_names
            )
        else:
            self._teacher_net, self._teacher_kind, t_maps = None, None, {}
        for loss in self.distill_losses:
            loss.build_adapters(t_maps, s_maps)
        self._s_names = list(s_maps)
        self._t_names = list(t_maps)
        self.hard_loss = None
        names = ["loss", "hard_loss", *(f"{loss.name}_loss" for loss in self.distill_losses)]
        self._trackers = [keras.metrics.Mean(name=n) for n in names]
        self._masked = _masked_indices(student, preserve_sparsity)
        self._masks = [
            self.add_weight(
                name=f"sparsity_mask_{i}",
                shape=student.trainable_variables[i].shape,
                initializer="ones",
                trainable=False,
            )
            for i in self._masked
        ]
        for i, mask in zip(self._masked, self._masks, strict=True):
            mask.assign(tf.cast(student.trainable_variables[i] != 0, mask.dtype))
        self.built = True  # every variable exists now: student, teacher and adapters

    @staticmethod
    def _extractor(model: keras.Model, role: str, names: list[str]):
        """A functional model over the same layers: [output, logits, *maps]; and map shapes."""
        logits, kind = logits_source(model, role)
        names = list(dict.fromkeys(names))
        maps = [_layer_output(model, n, role) for n in names]
        net = keras.Model(
            model.inputs, [model.outputs[0], logits, *maps], name=f"{model.name}_distill_view"
        )
        return net, kind, {n: _static_shape(t) for n, t in zip(names, maps, strict=True)}

    # -- Keras API ---------------------------------------------------------------------

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configure training; ``loss`` is the hard-label loss (default: cross-entropy).

        Example:
            >>> distiller.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        """
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        self.hard_loss = keras.losses.get(loss) if loss is not None else None

    def compile_from_config(self, config):
        """Compile again from a saved ``.keras`` file's compile config (Keras calls this)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trained_variables)  # so the saved slots can be restored

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        seen, result = set(), []
        for m in [*self._trackers, *super().metrics]:
            if id(m) not in seen:
                seen.add(id(m))
                result.append(m)
        return result

    @property
    def trained_variables(self) -> list:
        """The variables that receive gradients: the student's and the adapters'."""
        variables = list(self.student.trainable_variables)
        for loss in self.distill_losses:
            variables += loss.trainable_variables
        return variables

    def compute_terms(self, x, y, sample_weight=None, training: bool = False) -> dict:
        """One forward pass: ``{"loss", "hard_loss", "<name>_loss"..., "y_pred"}`` tensors.

        Example:
            >>> terms = distiller.compute_terms(x[:8], y[:8])
            >>> float(terms["loss"])
        """
        x = _in_order(self.student, x)
        y = None if y is None else tf.convert_to_tensor(y)
        student_out, student_logits, *s_maps = self._student_net(x, training=training)
        student_logits = _as_logits(student_logits, self._student_kind)
        hard = self._hard(y, student_out, sample_weight)
        reg = self.student.losses
        if reg:
            hard = hard + tf.add_n([tf.cast(r, hard.dtype) for r in reg])
        terms = {"hard_loss": hard}
        total_output, total_map = tf.constant(0.0), tf.constant(0.0)
        has_output = False
        if self.distill_losses:
            teacher_out, teacher_logits, *t_maps = self._teacher_net(x, training=False)
            teacher_logits = _as_logits(teacher_logits, self._teacher_kind)
            out = _losses.Outputs(
                teacher_logits=tf.stop_gradient(teacher_logits),
                student_logits=student_logits,
                teacher_maps={n: tf.stop_gradient(t) for n, t in zip(self._t_names, t_maps, strict=True)},
                student_maps=dict(zip(self._s_names, s_maps, strict=True)),
            )
            for loss in self.distill_losses:
                value = loss.compute(out)
                terms[f"{loss.name}_loss"] = value
                if loss.kind == "output":
                    has_output = True
                    total_output += loss.weight * value
                else:
                    total_map += loss.weight * value
        a = self.alpha if has_output else 1.0
        terms["loss"] = a * hard + (1.0 - a) * total_output + total_map
        terms["y_pred"] = student_out
        return terms

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trained_variables
        with tf.GradientTape() as tape:
            terms = self.compute_terms(x, y, sample_weight, training=True)
        grads = tape.gradient(terms["loss"], variables)
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        )
        student_vars = self.student.trainable_variables
        for i, mask in zip(self._masked, self._masks, strict=True):
            student_vars[i].assign(student_vars[i] * tf.cast(mask, student_vars[i].dtype))
        return self._update_metrics(terms, y, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        terms = self.compute_terms(x, y, sample_weight, training=False)
        return self._update_metrics(terms, y, sample_weight)

    def _update_metrics(self, terms, y, sample_weight):
        for tracker in self._trackers:
            tracker.update_state(terms[tracker.name])
        if self.compiled_metrics is not None:
            self.compiled_metrics.update_state(y, terms["y_pred"], sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def _hard(self, y, y_pred, sample_weight):
        if y is None:
            raise EdgeflowError("distillation needs labels: give (x, y) data")
        fn = self.hard_loss
        if fn is None and self._student_kind == "sigmoid":
            fn = keras.losses.BinaryCrossentropy()
        if fn is None:
            from_logits = self._output_is_logits
            one_hot = len(y.shape) == len(y_pred.shape) and y.shape[-1] == y_pred.shape[-1] != 1
            cls = (
                keras.losses.CategoricalCrossentropy
                if one_hot
                else keras.losses.SparseCategoricalCrossentropy
            )
            fn = cls(from_logits=from_logits)
        if isinstance(fn, keras.losses.Loss):
            return tf.cast(fn(y, y_pred, sample_weight=sample_weight), tf.float32)
        values = tf.cast(fn(y, y_pred), tf.float32)
        if sample_weight is not None:
            values = values * tf.cast(tf.reshape(sample_weight, tf.shape(values)), tf.float32)
        return tf.reduce_mean(values)

    # -- serialisation -----------------------------------------------------------------

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "losses": [keras.saving.serialize_keras_object(loss) for loss in self.distill_losses],
            "alpha": self.alpha,
            "temperature": self.temperature,
            "preserve_sparsity": list(self._masked),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"), custom_objects)
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"), custom_objects)
        losses = [
            keras.saving.deserialize_keras_object(c, custom_objects) for c in config.pop("losses")
        ]
        return cls(student, teacher, losses, **config)



def _masked_indices(student: keras.Model, preserve) -> list[int]:
    """Indices into ``student.trainable_variables`` whose zeros are kept (see Distiller)."""
    variables = student.trainable_variables
    if isinstance(preserve, (list, tuple)):
        bad = [i for i in preserve if not (isinstance(i, int) and 0 <= i < len(variables))]
        if bad:
            raise EdgeflowError(
                f"preserve_sparsity index {bad[0]!r} is not one of the student's "
                f"{len(variables)} trainable variables"
            )
        return list(preserve)
    if preserve not in (True, False, "auto"):
        raise EdgeflowError(
            f"preserve_sparsity must be 'auto', True, False or a list of indices, got {preserve!r}"
        )
    if preserve is False:
        return []
    least = SPARSE_MIN if preserve == "auto" else 1e-12
    result = []
    for i, v in enumerate(variables):
        if len(v.shape) >= 2 and v.shape.num_elements():
            zeros = float(tf.reduce_mean(tf.cast(v == 0, tf.float32)))
            if zeros >= least:
                result.append(i)
    return result


def _log_probabilities(p):
    return tf.math.log(tf.maximum(tf.cast(p, tf.float32), _losses.PROB_FLOOR))


def _as_logits(tensor, kind: str):
    """Logits (up to a per-sample constant) from what :func:`logits_source` found."""
    if kind == "probabilities":
        return _log_probabilities(tensor)
    if kind == "sigmoid":  # one unit p: the two classes (not p, p)
        return _log_probabilities(tf.concat([1.0 - tensor, tensor], axis=-1))
    return tensor


def _check_inputs(student: keras.Model, teacher: keras.Model) -> None:
    """Student and teacher read the same samples: as many inputs, in the same order, each of
    the same sample shape (several inputs are fed as a list in that order, or a dict by the
    student's input names)."""
    from edgeflow.data import input_names

    if len(student.inputs) != len(teacher.inputs):
        raise EdgeflowError(
            f"the student has {len(student.inputs)} input(s) but the teacher has {len(teacher.inputs)}: "
            "both must read the same samples"
        )
    for i, (s_in, t_in) in enumerate(zip(student.inputs, teacher.inputs, strict=True)):
        s, t = tuple(s_in.shape[1:]), tuple(t_in.shape[1:])
        if len(s) != len(t) or any(a is not None and b is not None and a != b for a, b in zip(s, t, strict=True)):
            which = "" if len(student.inputs) == 1 else f" {i + 1} ({input_names(student)[i]})"
            raise EdgeflowError(
                f"the student takes input{which} of shape {s} but the teacher takes {t}: both must read "
                "the same samples (resize in the data pipeline or rebuild one of them)"
            )


def _in_order(model: keras.Model, x):
    """``x`` as the distill views take it: one tensor, or a list in the model's input order
    (a dict is read by the student's input names; the teacher gets the same list)."""
    if isinstance(x, dict):
        from edgeflow.data import input_names

        x = [x[name] for name in input_names(model)]
    if isinstance(x, (list, tuple)):
        return [tf.convert_to_tensor(v) for v in x]
    return tf.convert_to_tensor(x)


@dataclass
class DistillResult:
    """What :func:`distill` returns.

    Attributes:
        model: the trained student, a plain Keras model with exactly the student's layers
            (no teacher, no adapters), uncompiled.
        history: the Keras history, ``{key: [value per epoch]}`` (``loss``, ``hard_loss``,
            ``<name>_loss``, ``accuracy`` and the ``val_`` keys with validation data).
        losses: the names of the distillation terms used.
        kept_sparse: the student weights whose zeros were kept (``preserve_sparsity``).
        warnings: pruned zeros or weight clusters of the student that training did not keep
            (:func:`edgeflow.prune.magnitude.lost_structure`).
    """

    model: keras.Model
    history: dict[str, list[float]]
    losses: list[str] = field(default_factory=list)
    kept_sparse: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready summary (without the model)."""
        return {"losses": list(self.losses), "kept_sparse": list(self.kept_sparse),
                "history": self.history, "warnings": list(self.warnings)}


def distill(
    student,
    teacher,
    data,
    *,
    losses: Iterable = ("soft",),
    epochs: int = 10,
    batch_size: int = 32,
    temperature: float = 4.0,
    alpha: float = 0.1,
    feature_pairs=None,
    attention_pairs=None,
    optimizer="adam",
    learning_rate: float | None = None,
    metrics: Iterable | None = None,
    validation_data=None,
    callbacks=None,
    verbose: int = 0,
    preserve_sparsity: bool | str = "auto",
    hard_loss=None,
) -> DistillResult:
    """Train a copy of ``student`` from ``teacher`` and return it as a plain Keras model.

    The loss is the :class:`Distiller`'s: ``a · L_hard + (1 − a) · Σ w·L_output +
    Σ w·L_map`` with ``a = alpha`` when a soft term is present (else 1); the soft term is
    ``τ² · KL(p_T^τ ‖ p_S^τ)``.

    Args:
        student: a Keras 2 model, or a ``.keras``/``.h5``/SavedModel path.
        teacher: the same; it is only run, never trained.
        data: ``(x, y)`` arrays, a ``.npz`` file with ``x`` and ``y``, or a ``tf.data.Dataset``
            of ``(x, y)`` (batched, or unbatched and then batched by ``batch_size``).
        losses: loss names (``soft``, ``feature``, ``attention``, ``name:weight``), dicts,
            callables or loss objects; ``()`` trains on the labels alone (fine-tuning).
        epochs, batch_size: as in ``keras.Model.fit``.
        temperature: τ of the soft loss.
        alpha: the hard-label weight against the soft term.
        feature_pairs, attention_pairs: ``{teacher_layer: student_layer}`` for the
            ``feature`` / ``attention`` losses.
        optimizer: a Keras optimizer name or object (an object is used, and changed, as is).
        learning_rate: sets the learning rate of an optimizer given by name.
        metrics: compiled metrics of the student; None (default): the metric of the hard
            loss by :func:`edgeflow.models.default_metrics` (``mae`` for a regression
            ``hard_loss`` such as ``mse``, ``accuracy`` for a cross-entropy, also the default
            hard loss); ``()`` for none.
        validation_data: the same forms as ``data``.
        callbacks: Keras callbacks for ``fit``.
        verbose: Keras ``fit`` verbosity.
        preserve_sparsity: keep a pruned student's zeros (see :class:`Distiller`);
            ``"auto"`` keeps them in every weight tensor that is ≥ 10 % zeros.
        hard_loss: the loss against the labels (a Keras name or object); a cross-entropy
            by name reads ``from_logits`` from the student's last layer. Default: cross-entropy
            on the student's logits or probabilities; for a regression student (array labels
            the one rule of :func:`edgeflow.models.default_loss` reads as regression) that
            rule's loss, mean squared error.

    Returns:
        A :class:`DistillResult`. Neither ``student`` nor ``teacher`` is modified; the
        returned model is a new object with the student's layers and trained weights.

    Example:
        >>> result = distill(student, teacher, (x_train, y_train), losses=["soft"], epochs=20)
        >>> result.model.evaluate(x_test, y_test)
    """
    from edgeflow.models import copy_model, load_model  # a fresh copy: the input stays unchanged

    student = copy_model(load_model(student))
    teacher = load_model(teacher)
    before = kernel_values(student)
    distiller = Distiller(
        student,
        teacher,
        losses,
        alpha=alpha,
        temperature=temperature,
        feature_pairs=feature_pairs,
        attention_pairs=attention_pairs,
        preserve_sparsity=preserve_sparsity,
    )
    if isinstance(optimizer, str) and learning_rate is not None:
        optimizer = keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": learning_rate}})
    elif isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    from edgeflow.models import default_loss, default_metrics

    input_rank = len(student.inputs[0].shape)
    x, y = _fit_data(data, batch_size, input_rank, "training data", student)
    if hard_loss is not None:
        hard_loss = default_loss(student, hard_loss)
    elif y is not None and len(student.outputs) == 1 and default_metrics(student, None, y) == ["mae"]:
        hard_loss = default_loss(student, None, y)  # a regression student: no cross-entropy applies
    if metrics is None:  # the Distiller's default hard loss is a cross-entropy
        metrics = default_metrics(student, hard_loss) if hard_loss is not None else ["accuracy"]
    distiller.compile(optimizer, loss=hard_loss, metrics=list(metrics) if metrics else None)
    fit_kwargs = {"epochs": epochs, "verbose": verbose, "callbacks": callbacks}
    if validation_data is not None:
        vx, vy = _fit_data(validation_data, batch_size, input_rank, "validation data", student)
        fit_kwargs["validation_data"] = vx if vy is None else (vx, vy)
    if y is None:
        history = distiller.fit(x, **fit_kwargs)
    else:
        history = distiller.fit(x, y, batch_size=batch_size, shuffle=True, **fit_kwargs)
    hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    names = [loss.name for loss in distiller.distill_losses]
    student_vars = distiller.student.trainable_variables
    kept = [student_vars[i].name for i in distiller._masked]
    trained = copy_model(distiller.student)
    lost = lost_structure(before, kernel_values(trained), "distill")
    return DistillResult(trained, hist, names, kept, lost)


def _fit_data(data, batch_size: int, input_rank: int, what: str, model=None):
    """``(x, y)`` for ``fit``: arrays, or ``(dataset, None)`` for a batched tf.data pipeline."""
    from edgeflow.data import labelled

    data, y = labelled(data, what, model)
    if y is not None:
        return data, y
    spec = data.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise EdgeflowError(f"the {what} must yield (x, y) pairs (labels are needed)")
    if len(spec[0].shape) == input_rank - 1:
        data = data.batch(batch_size)
    return data, None
