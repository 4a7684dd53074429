"""Operator reordering: the exact order is the best of all topological orders, the
heuristic is valid, and reorder_for_arena never raises TFLM's arena and keeps outputs."""

from __future__ import annotations

import numpy as np
import pytest
from _models import small_resnet

from edgeflow._keras import keras
from edgeflow.errors import EdgeflowError
from edgeflow.tflite import parse
from edgeflow.tflite.schedule import (
    _Graph,
    best_order,
    live_set_bound,
    peak_live_bytes,
    reorder,
    reorder_for_arena,
)


def _branches() -> keras.Model:
    """Two branches of very different widths joined by Concatenate: the order matters."""
    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    wide = L.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    wide = L.Conv2D(2, 1, activation="relu")(wide)
    thin = L.Conv2D(2, 3, padding="same", activation="relu")(inputs)
    thin = L.Conv2D(24, 1, activation="relu")(thin)
    thin = L.Conv2D(2, 1, activation="relu")(thin)
    x = L.Concatenate()([thin, wide])
    x = L.Flatten()(L.MaxPooling2D()(x))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(x))


@pytest.fixture(scope="module")
def branchy(digits):
    from edgeflow.convert import convert

    (x_tr, _), (x_te, _) = digits
    keras.utils.set_random_seed(0)
    resnet = convert(small_resnet(), "int8", x_tr[:64])
    keras.utils.set_random_seed(0)
    return {"resnet": resnet, "branches": convert(_branches(), "int8", x_tr[:64])}, x_te[:16]


def _topological_orders(graph: _Graph):
    def walk(done, order):
        if len(order) == graph.n:
            yield list(order)
            return
        for v in range(graph.n):
            if not done & (1 << v) and not graph.preds[v] & ~done:
                order.append(v)
                yield from walk(done | (1 << v), order)
                order.pop()

    yield from walk(0, [])


@pytest.mark.parametrize("name", ["resnet", "branches"])
def test_exact_order_has_the_smallest_peak_of_all_topological_orders(branchy, name):
    data = branchy[0][name]
    graph = _Graph(parse(data))
    peaks = [graph.peak(order) for order in _topological_orders(graph)]
    assert len(peaks) > 1
    schedule = best_order(data)
    assert schedule.peak_live_bytes == min(peaks) >= live_set_bound(data)
    heuristic = best_order(data, max_states=1)
    assert heuristic.method in ("heuristic", "original")
    assert heuristic.peak_live_bytes >= min(peaks)
    assert sorted(heuristic.order) == list(range(graph.n))


@pytest.mark.parametrize("name", ["resnet", "branches"])
def test_reorder_for_arena_never_raises_the_arena_and_keeps_outputs(branchy, name):
    from edgeflow.runtime import tflm

    models, x = branchy
    data = models[name]
    graph = _Graph(parse(data))
    worst = max(_topological_orders(graph), key=graph.peak)
    bad = reorder(data, worst)
    assert peak_live_bytes(bad) == graph.peak(worst)
    assert np.array_equal(tflm.predict(bad, x), tflm.predict(data, x))
    out, result = reorder_for_arena(bad)
    assert result.arena_before == tflm.measure_arena(bad).arena_bytes
    assert result.arena_after == tflm.measure_arena(out).arena_bytes <= result.arena_before
    assert result.peak_live_after <= result.peak_live_before
    assert np.array_equal(tflm.predict(out, x), tflm.predict(data, x))
    if name == "branches":  # the worst order of the branches costs TFLM 1.5 KB more
        assert result.written and result.method == "exact" and out != bad
        assert result.arena_after < result.arena_before
        assert result.peak_live_after < result.peak_live_before
    if not result.written:
        assert out == bad


def test_reorder_refuses_an_order_that_reads_before_it_writes(branchy):
    data = branchy[0]["resnet"]
    n = len(parse(data).ops)
    with pytest.raises(EdgeflowError, match="runs before an operator whose output it reads"):
        reorder(data, list(reversed(range(n))))
    with pytest.raises(EdgeflowError, match="each of the"):
        reorder(data, [0, 0])


def test_offline_plan_reaches_the_live_bound_where_tflm_leaves_holes(digits):
    """A chain whose layers widen and narrow: TFLM's greedy plan leaves a hole, edgeflow's
    offline plan (OfflineMemoryAllocation metadata) does not; TFLM uses it, outputs stay."""
    from edgeflow.convert import convert
    from edgeflow.runtime import tflm
    from edgeflow.tflite import slim
    from edgeflow.tflite._schema import schema
    from edgeflow.tflite.placement import METADATA_NAME, best_offsets

    (x_tr, _), (x_te, _) = digits
    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for width in (8, 24, 8, 24, 8, 24):
        x = L.Conv2D(width, 3, padding="same", activation="relu")(x)
    data = convert(keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(x))), "int8", x_tr[:64])
    plan = best_offsets(data)
    assert (plan.tflm_peak_bytes, plan.peak_bytes, plan.live_bound) == (3584, 3072, 3072)
    out, result = reorder_for_arena(data)
    assert result.written and result.offline_plan and result.method == "original"
    assert result.plan_after == 3072 < result.plan_before == 3584
    measured = tflm.measure_arena(out)
    assert result.arena_after == measured.arena_bytes == result.arena_before - 512
    assert measured.breakdown["non_persistent"] == 3072
    assert np.array_equal(tflm.predict(out, x_te[:16]), tflm.predict(data, x_te[:16]))
    kept = slim(out, for_tflm=True)[0]
    names = [schema.Model.GetRootAs(kept, 0).Metadata(i).Name().decode()
             for i in range(schema.Model.GetRootAs(kept, 0).MetadataLength())]
    assert names == [METADATA_NAME] and tflm.measure_arena(kept).breakdown["non_persistent"] == 3072
