"""edgeflow.data.labelled: the one reader of labelled training data (prune, QAT, distill)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflow._keras import tf
from edgeflow.data import labelled
from edgeflow.errors import EdgeflowError


def test_pairs_files_and_datasets(tmp_path):
    x, y = np.arange(12, dtype=np.float32).reshape(3, 4), np.array([0, 1, 0])
    got_x, got_y = labelled([x.tolist(), y.tolist()])
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    got_x, got_y = labelled(tmp_path / "d.npz")
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    assert labelled(ds) == (ds, None)


def test_missing_labels_and_wrong_types_are_clear(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(EdgeflowError, match="QAT data '.*x.npy' holds no labels"):
        labelled(tmp_path / "x.npy", "QAT data")
    with pytest.raises(EdgeflowError, match="training data must be .* not int"):
        labelled(3)
    with pytest.raises(EdgeflowError, match="does not exist"):
        labelled(tmp_path / "missing.npz")


def test_a_corrupt_npz_is_one_clear_error(tmp_path):
    """Every reader of arrays goes through one opener: a damaged .npz is an EdgeflowError, not
    numpy's ValueError (which the CLI would have reported as an internal error)."""
    bad = tmp_path / "d.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(EdgeflowError, match=r"^cannot read .*d\.npz as \.npy/\.npz data: "):
        labelled(bad)


def test_labelled_inputs_are_checked_by_in_input_order_with_its_lines():
    """check_labelled (prune, QAT, distill, cluster) refuses bad inputs with the lines of
    in_input_order (quantize, recipes): one check, one wording."""
    from edgeflow._keras import keras
    from edgeflow.data import check_labelled, in_input_order

    img, imu = keras.Input((4, 4, 1), name="img"), keras.Input((6,), name="imu")
    h = keras.layers.Concatenate()([keras.layers.Flatten()(img), imu])
    model = keras.Model([img, imu], keras.layers.Dense(3, activation="softmax")(h))
    x_img, x_imu, y = np.zeros((5, 4, 4, 1), np.float32), np.zeros((5, 6), np.float32), np.zeros(5)
    cases = {
        "no imu": ({"img": x_img},
                   "the QAT data has no array x:imu for input 'imu': the model's inputs are img, imu; "
                   "save one array per input as x:<input name>"),
        "extra": ({"img": x_img, "imu": x_imu, "imv": x_imu},
                  "the QAT data has array x:imv but the model has no input 'imv' (did you mean "
                  "'imu'?); its inputs are img, imu"),
        "one array": ([x_img],
                      "the model has 2 inputs (img, imu) but the QAT data gives 1 array(s): save one "
                      "array per input as x:<input name>"),
        "imu shape": ([x_img, x_imu[:, :5]],
                      "the QAT data for input 'imu' has samples of shape (5,) but the input is (N, 6): "
                      "reshape the data to the model's input"),
        "short imu": ([x_img, x_imu[1:]],
                      "the QAT data: x:img has 5 samples but x:imu has 4: every input needs one row "
                      "per sample"),
    }
    for name, (x, line) in cases.items():
        for check, args in ((check_labelled, (model, x, y)), (in_input_order, (model, x))):
            with pytest.raises(EdgeflowError) as err:
                check(*args, "QAT data")
            assert str(err.value) == line, name
    one = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(EdgeflowError) as err:
        check_labelled(one, np.zeros((5, 3), np.float32), y, "QAT data")
    assert str(err.value) == ("data samples have shape (3,) but the model input is (N, 4): reshape "
                              "the data to the model's input")
    with pytest.raises(EdgeflowError) as err:
        check_labelled(model, [x_img, x_imu], y[1:], "QAT data")
    assert str(err.value) == "the QAT data has 5 samples but 4 labels: they must match"
    with pytest.raises(EdgeflowError) as err:
        check_labelled(model, [x_img, x_imu], [y, y], "QAT data")
    assert str(err.value) == "the model has 1 output(s) but the QAT data gives 2 label array(s)"
    got = check_labelled(model, {"imu": x_imu, "img": x_img}, y, "QAT data")
    assert [a.shape for a in got] == [(5, 4, 4, 1), (5, 6)]  # in input order
    np.testing.assert_array_equal(check_labelled(one, [np.ones((5, 4), np.float32)], y), np.ones((5, 4)))


def test_prune_cluster_and_distill_refuse_nan_data_with_one_line():
    """The API of every training stage reads its data through labelled/check_labelled and
    names it the same way, so bad values give the same line, before any training."""
    from edgeflow._keras import keras
    from edgeflow.cluster import cluster
    from edgeflow.distill import distill
    from edgeflow.prune import magnitude

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="fc"),
                              keras.layers.Dense(3, activation="softmax", name="out")])
    x, y = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
    x[2, 1] = np.inf
    runs = {"prune": lambda: magnitude(model, 0.5, data=(x, y), epochs=1),
            "cluster": lambda: cluster(model, 4, data=(x, y), epochs=1, qat=True),
            "distill": lambda: distill(model, model, (x, y), epochs=1)}
    for name, run in runs.items():
        with pytest.raises(EdgeflowError) as err:
            run()
        assert str(err.value) == ("the training data holds 1 NaN or infinite value(s) (first in "
                                  "sample 2): remove or replace them before converting or training"), name
