"""Multiply-accumulate counts per operator, from tensor shapes alone.

Formulas (``prod(t)`` is the number of elements of tensor ``t``; batch included):

- ``CONV_2D``: ``prod(output) * Kh * Kw * Cin_per_group``, filter shape ``[Cout, Kh, Kw, Cin_g]``
- ``CONV_3D``: ``prod(output) * Kd * Kh * Kw * Cin``, filter shape ``[Kd, Kh, Kw, Cin, Cout]``
- ``DEPTHWISE_CONV_2D``: ``prod(output) * Kh * Kw``, filter shape ``[1, Kh, Kw, Cout]``
- ``FULLY_CONNECTED``: ``prod(output) * K``, weights ``[units, K]``
- ``TRANSPOSE_CONV``: ``prod(input) * Kh * Kw * Cout``, filter ``[Cout, Kh, Kw, Cin]`` (every
  input element is scattered into a ``Kh×Kw×Cout`` window)
- ``BATCH_MATMUL``: ``prod(output) * K``, ``K`` the contracted axis of the left operand
  (``lhs[-1]``, or ``lhs[-2]`` with ``adj_x``)
- element-wise arithmetic (``ADD``, ``SUB``, ``MUL``, ``DIV``, ``SQUARED_DIFFERENCE``,
  ``MAXIMUM``, ``MINIMUM``): one per output element, ``prod(output)``

Every other operator (pooling, activations, reshapes, softmax, ...) counts 0: they do
comparisons, look-ups or copies rather than multiply-accumulates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ELEMENTWISE = frozenset(
    {"ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM"}
)
#: Operators whose MACs are counted (the rest count 0).
COUNTED = frozenset(
    {"CONV_2D", "CONV_3D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV",
     "BATCH_MATMUL"}
) | ELEMENTWISE


def _prod(shape: Sequence[int]) -> int:
    return math.prod(max(int(d), 1) for d in shape)


def op_macs(
    name: str,
    input_shapes: Sequence[Sequence[int] | None],
    output_shapes: Sequence[Sequence[int] | None],
    *,
    adj_x: bool = False,
) -> int:
    """MACs of one operator from its input and output shapes (``None`` for an omitted input).

    Example:
        >>> op_macs("CONV_2D", [(1, 8, 8, 1), (16, 3, 3, 1), (16,)], [(1, 8, 8, 16)])
        9216
    """
    out = output_shapes[0] if output_shapes else None
    try:
        if name == "CONV_2D":
            _, kh, kw, cin = input_shapes[1]
            return _prod(out) * kh * kw * cin
        if name == "CONV_3D":
            kd, kh, kw, cin, _ = input_shapes[1]
            return _prod(out) * kd * kh * kw * cin
        if name == "DEPTHWISE_CONV_2D":
            _, kh, kw, _ = input_shapes[1]
            return _prod(out) * kh * kw
        if name == "FULLY_CONNECTED":
            return _prod(out) * int(input_shapes[1][-1])
        if name == "TRANSPOSE_CONV":
            cout, kh, kw, _ = input_shapes[1]
            return _prod(input_shapes[2]) * kh * kw * cout
        if name == "BATCH_MATMUL":
            lhs = input_shapes[0]
            k = lhs[-2] if adj_x else lhs[-1]
            return _prod(out) * int(k)
        if name in ELEMENTWISE:
            return _prod(out)
    except (TypeError, ValueError, IndexError):
        return 0  # an unexpected shape (e.g. a dynamic or omitted tensor): not counted
    return 0
