"""A griffe extension for the API reference: the Sphinx roles of nnx's docstrings as inline code.

The docstrings cross-reference with ``:class:`~nnx.errors.ShapeError``` and the like;
mkdocstrings renders Markdown, where such a role would show as it is written.
``~`` keeps the last part of the dotted name, as Sphinx does.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|mod|meth|attr|data|exc|obj):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


class SphinxRoles(griffe.Extension):
    """Rewrite each docstring's roles once, when griffe builds its object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value)
