"""``edgeflow cluster``: TF-MOT weight clustering (k values per kernel), for table compression."""

from __future__ import annotations

import click

from edgeflow.cli._output import finish, force_option, json_option
from edgeflow.ranges import option_type

# edgeflow.cluster.INITS, named here so that `edgeflow --help` does not import TensorFlow
INIT_NAMES = ("kmeans++", "linear", "density", "random")


def _layer_clusters(pairs: tuple[str, ...]) -> dict[str, int]:
    from edgeflow.errors import EdgeflowError
    from edgeflow.ranges import check

    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value.strip().isdigit():
            raise EdgeflowError(f"--layer {pair!r}: write NAME=CLUSTERS, e.g. --layer 'conv*=8' "
                                "(0 leaves the layer alone)")
        values[name] = int(value)
        if values[name]:
            check("clusters", values[name], f"--layer {pair!r}")
    return values


@click.command()
@click.argument("model")
@click.option("-o", "--output", required=True, help="Output Keras model (.keras).")
@click.option("--clusters", type=option_type("clusters"), default=16, show_default=True,
              help="Values per kernel (16: 4-bit tables with export --lut, 4: 2-bit).")
@click.option("--layer", "layers", multiple=True, metavar="NAME=CLUSTERS",
              help="Per-layer clusters (name or glob; 0 leaves a layer alone); repeat it.")
@click.option("--init", type=click.Choice(INIT_NAMES), default="kmeans++", show_default=True,
              help="Centroid initialisation.")
@click.option("--data", help=".npz with x and y: fine-tune the centroids (needed for --qat).")
@click.option("--epochs", type=option_type("epochs"), default=2, show_default=True)
@click.option("--qat", is_flag=True, help="Then cluster-preserving quantization-aware training.")
@click.option("--preserve-sparsity/--no-preserve-sparsity", default=None,
              help="Keep the zeros of a pruned model [default: when >= 10 % of weights are 0].")
@click.option("--batch-size", type=option_type("batch_size"), default=32, show_default=True)
@click.option("--learning-rate", type=option_type("learning_rate"), default=1e-4, show_default=True)
@click.option("--unsafe", is_flag=True, help="Allow loading Lambda layers (runs code from the file).")
@force_option
@json_option
def cluster(model, output, clusters, layers, init, data, epochs, qat, preserve_sparsity, batch_size,
            learning_rate, unsafe, force, as_json):
    """Cluster MODEL's kernels (.keras, .h5 or SavedModel) and write the clustered Keras model."""
    from pathlib import Path

    from edgeflow import _io
    from edgeflow.cluster import cluster as run
    from edgeflow.data import OPTION_DATA, labelled
    from edgeflow.errors import EdgeflowError
    from edgeflow.models import load_model, save_model

    if not output.endswith(".keras"):
        raise EdgeflowError(f"write the clustered model to a .keras file, not {Path(output).name!r}")
    per_layer = _layer_clusters(layers)
    if qat and not data:
        raise EdgeflowError("--qat trains: pass --data FILE.npz with x and y")
    _io.check_file(output, force=force, example="clustered.keras")
    keras_model = load_model(model, safe_mode=not unsafe)
    arrays = labelled(data, OPTION_DATA["--data"], keras_model) if data else None
    result = run(keras_model, clusters, per_layer=per_layer or None, init=init, data=arrays,
                 epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, qat=qat,
                 preserve_sparsity=preserve_sparsity)
    path = save_model(result.model, output)
    values = sorted(set(result.clusters.values()))
    text = (f"wrote {path} ({len(result.clusters)} layers clustered into "
            f"{'/'.join(map(str, values)) or 'no'} values{'; cluster-preserving QAT' if qat else ''}"
            f"{'; zeros kept' if result.preserve_sparsity else ''})")
    if result.skipped_layers:
        text += f"; left alone: {'; '.join(result.skipped_layers)}"
    finish("cluster", {"output": str(path), "qat": qat, **result.summary()}, text=text, model=model,
           outputs=[path], summary=text)
