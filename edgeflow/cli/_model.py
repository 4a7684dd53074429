"""The model options every command that reads a Keras model shares.

``--unsafe`` lets code from the model file run (Lambda layers) and is needed by
``--custom-objects FILE.py`` (the file runs to define the model's custom layers);
``--loss`` names the training loss of the commands that train. :func:`loading` reads
them once and collects the Keras 3 → Keras 2 translation records made while a command
runs, for its text and ``--json`` output.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import click


def model_options(command):
    """Add ``--unsafe`` and ``--custom-objects`` to a command (arguments ``unsafe``,
    ``custom_objects``)."""
    command = click.option(
        "--custom-objects", metavar="FILE.py",
        help="Python file defining the model's custom layers (CUSTOM_OBJECTS dict, or every class "
        "and function it defines); it runs, so it needs --unsafe.")(command)
    return click.option(
        "--unsafe", is_flag=True,
        help="Allow code to run: Lambda layers in the model file, --custom-objects.")(command)


def loss_option(command):
    """Add ``--loss`` (argument ``loss``) to a command that trains."""
    return click.option(
        "--loss", metavar="NAME",
        help="Training loss (a Keras name such as mse, binary_crossentropy, "
        "sparse_categorical_crossentropy). Default: picked from the last layer and the labels.",
    )(command)


@dataclass
class Loading:
    """How a command loads models: ``safe_mode`` and ``custom_objects`` for
    :func:`edgeflow.models.load_model`, and the translations made so far."""

    safe_mode: bool
    custom_objects: dict | None
    translations: list = field(default_factory=list)

    def text(self) -> str:
        """One line per Keras 3 model translated ('' when none)."""
        return "\n".join(record.summary() for record in self.translations)

    def payload(self) -> dict:
        """``{"translations": [...]}`` for ``--json`` when a model was translated, else ``{}``."""
        return {"translations": [r.to_dict() for r in self.translations]} if self.translations else {}


@contextmanager
def loading(unsafe: bool, custom_objects: str | None):
    """Read ``--unsafe``/``--custom-objects`` (an error before any work) and collect the
    translation records made inside the block."""
    from edgeflow import keras3
    from edgeflow.models import read_custom_objects

    objects = read_custom_objects(custom_objects, safe_mode=not unsafe) if custom_objects else None
    with keras3.recording() as records:
        yield Loading(not unsafe, objects, records)
