"""prune → distill (or fine-tune) → QAT → int8 on the digits, with every stage's figures."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow.distill import chain
from edgeflow.errors import EdgeflowError


@pytest.mark.slow
def test_chain_structured_distill_and_finetune_reach_the_same_size(digits, trained_cnn):
    (x, y), (xt, yt) = digits
    before = [w.copy() for w in trained_cnn.get_weights()]
    runs = {
        recover: chain(trained_cnn, (x[:512], y[:512]), (xt, yt), prune="structured", ratio=0.5,
                       recover=recover, epochs=1, qat_epochs=1)
        for recover in ("distill", "finetune")
    }
    for recover, result in runs.items():
        assert [r.stage for r in result.records] == ["original", "prune", recover, "qat", "int8"]
        original, pruned = result.stage("original"), result.stage("prune")
        assert pruned.params < original.params / 2  # half the filters of every layer
        assert result.stage(recover).params == pruned.params
        assert result.stage("int8").size_bytes == len(result.tflite)
        assert result.stage("int8").size_bytes < pruned.size_bytes  # int8 vs float32
        keras_acc = [r.keras_accuracy for r in result.records[:-1]]
        assert all(0.0 <= a <= 1.0 for a in keras_acc)
        assert 0.0 <= result.stage("int8").tflite_accuracy <= 1.0
        assert result.stage(recover).keras_accuracy > pruned.keras_accuracy  # recovery trains
        assert "convert (int8)" in result.table()
        assert result.to_dict()["stages"][0]["stage"] == "original"
    assert runs["distill"].stage("prune").params == runs["finetune"].stage("prune").params
    assert runs["distill"].stage("int8").tflite_accuracy > 0.5
    for a, b in zip(before, trained_cnn.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the teacher is not modified


def test_chain_rejects_unknown_choices(trained_cnn, digits):
    (x, y), test = digits
    with pytest.raises(EdgeflowError, match="recover must be one of distill, finetune"):
        chain(trained_cnn, (x, y), test, recover="retrain")
    with pytest.raises(EdgeflowError, match="prune must be one of structured, magnitude"):
        chain(trained_cnn, (x, y), test, prune="random")


def test_chain_is_a_recipe_of_the_one_pipeline():
    from edgeflow.distill import chain_recipe

    recipe = chain_recipe(prune="magnitude", target_sparsity=0.6, recover="finetune", epochs=3)
    assert [s.stage for s in recipe.stages] == ["train", "prune", "distill", "qat", "convert"]
    train, prune, recover, qat, convert = recipe.stages
    assert train.epochs == 0  # the original is measured, not trained
    assert (prune.method, prune.target_sparsity, prune.epochs) == ("magnitude", 0.6, 2)
    assert (recover.teacher, recover.losses, recover.epochs) == ("train", (), 3)
    assert qat.preserve_sparsity is True and convert.mode == "int8"
    assert chain_recipe(losses=["soft", "attention:5"]).stages[2].losses == ("soft", "attention:5")


def test_records_sit_below_pipeline_and_distill():
    """pipeline and distill do not import each other at import time; records imports neither."""
    import subprocess
    import sys

    code = (
        "import sys, edgeflow.records, edgeflow.pipeline\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('edgeflow.distill', 'tensorflow')))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
