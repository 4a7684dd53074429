"""Reading YAML people write (recipes, device profiles): safe, and bounded.

``yaml.safe_load`` builds no Python objects beyond plain data, but an "alias bomb" (a few
lines whose anchors refer to anchors nine levels deep) stands for billions of nodes: the
loader shares them, and the first walk over the data (validation, a copy) runs for minutes
into a MemoryError. So a document is refused, before anything walks it, when the file is
larger than :data:`MAX_BYTES` or its nodes, with every alias expanded, number more than
:data:`MAX_NODES`. The expanded count is computed on the composed node graph with one
visit per distinct node, so the check itself is linear in the file.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from edgeflow.errors import EdgeflowError

__all__ = ["load", "MAX_BYTES", "MAX_NODES"]

MAX_BYTES = 1 << 20  # 1 MiB: a recipe or a board profile is a few kilobytes
MAX_NODES = 100_000  # scalars, lists and mappings once every alias is expanded


def load(source: str | Path, what: str | None = None):
    """Parse YAML text, or the file at a ``Path``, into plain data (``yaml.safe_load``).

    Args:
        source: the text, or a ``Path`` to read (UTF-8).
        what: how errors name the document (default: the path, or "the YAML text").

    Raises:
        EdgeflowError: one line: the file is over 1 MiB, expands to over 100,000 nodes
            (an alias bomb), or is not valid YAML (with the line).

    Example:
        >>> load("a: &x [1, 2]\\nb: *x")
        {'a': [1, 2], 'b': [1, 2]}
    """
    if isinstance(source, Path):
        what = what or str(source)
        try:
            size = source.stat().st_size
            if size > MAX_BYTES:
                raise EdgeflowError(f"{what} is {size:,} bytes; a YAML file edgeflow reads is at most "
                                    f"{MAX_BYTES:,} bytes")
            text = source.read_text(encoding="utf-8")
        except OSError as err:
            raise EdgeflowError(f"cannot read {what}: {err.strerror or err}") from err
        except UnicodeDecodeError as err:
            raise EdgeflowError(f"{what} is not UTF-8 text: {err.reason} at byte {err.start}") from err
    else:
        what, text = what or "the YAML text", source
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise EdgeflowError(f"{what} is over {MAX_BYTES:,} bytes; a YAML document edgeflow reads is smaller")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded = _expanded_size(node)
        if expanded > MAX_NODES:
            raise EdgeflowError(
                f"{what}: its aliases (*name) expand to more than {MAX_NODES:,} nodes (or refer to "
                "themselves): write the values out, or use fewer nested aliases")
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise EdgeflowError(f"{what}:{where} is not valid YAML ({problem})") from err
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of the document with every alias expanded (a shared node counts each time it
    is reached), capped at ``MAX_NODES + 1`` (also for an anchor that contains itself);
    each distinct node is visited once (children before parents)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being counted
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if key in open_ and not children_done:  # an anchor inside itself: endless
            return MAX_NODES + 1
        kids = _children(node)
        if children_done or not kids:
            open_.discard(key)
            sizes[key] = min(MAX_NODES + 1, 1 + sum(sizes.get(id(k), 1) for k in kids))
            continue
        open_.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
