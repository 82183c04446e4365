"""A Griffe extension for the docs build: renders nnkscope's docstring conventions as numpy-style Markdown.

Parameters described inline.
nnkscope writes ``name : what it is, in words`` (the numpy layout with a sentence where the type would be), and
Griffe's numpy parser would render that sentence in the *type* column, cut at the line break. This rewrites such
an item to ``name`` followed by the text as its description, before parsing; the type column then shows the
signature's annotation. An item that is a real numpy ``name : type`` (a short type on its own line, the
description indented below) keeps its type. An item naming several parameters (``solver, tau : ...``) is split
into one item per name, because Griffe would give all of them the first one's annotation and default.

Sphinx cross-reference roles (``:func:`~nnkscope.knn```) become inline code (``knn``), and reStructuredText
simple tables (``=====  =====`` borders) are shown as preformatted text, which is how they read in the source.
"""

from __future__ import annotations

import re

import griffe

SECTIONS = {"parameters", "other parameters", "attributes", "keyword arguments"}
ITEM = re.compile(r"^(?P<name>[*\w][\w, *]*?) : (?P<rest>.+)$")
ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):`(~?)([^`]+)`")
NAMES = re.compile(r"^[*\w]+(?:, *[*\w]+)+$")  # "k, kernel, sigma" alone on its line, described below
BORDER = re.compile(r"^\s*=+( +=+)+\s*$")


def _tables_as_text(lines: list[str]) -> list[str]:
    """Fence each reST simple table (top border, header, border, rows, bottom border) as preformatted text."""
    out: list[str] = []
    borders = 0
    for line in lines:
        if BORDER.match(line):
            borders += 1
            if borders == 1:
                out.append("```text")
            out.append(line)
            if borders == 3:
                out.append("```")
                borders = 0
            continue
        out.append(line)
    return out


def _is_type(rest: str, next_line: str | None) -> bool:
    """A numpy type line: short, not a sentence, and followed by its indented description."""
    described_below = next_line is not None and next_line.startswith(" ") and next_line.strip()
    return bool(described_below) and len(rest) <= 40 and not rest.rstrip().endswith((".", ";", ":", ","))


def _body_end(lines: list[str], i: int) -> int:
    """Index after the item starting at line ``i``: its indented lines (blank lines inside included)."""
    j = i + 1
    while j < len(lines) and (lines[j].startswith(" ") or (
            not lines[j].strip() and j + 1 < len(lines) and lines[j + 1].startswith(" "))):
        j += 1
    return j


def inline_to_numpy(text: str) -> str:
    """The docstring with every item of a parameter-like section in numpy's layout, one item per name."""
    lines = text.splitlines()
    out: list[str] = []
    section: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        if nxt is not None and re.fullmatch(r"-{3,}", nxt.strip()):  # a heading: the section runs to the next one
            section = line.strip().lower()
        item, names_only = ITEM.match(line), NAMES.match(line)
        if section not in SECTIONS or line[:1].isspace() or not (item or names_only):
            out.append(line)
            i += 1
            continue
        end = _body_end(lines, i)
        body = lines[i + 1:end]
        if item and _is_type(item["rest"], nxt):
            heads = [f"{name} : {item['rest']}" for name in _names(item["name"])]
        elif item:  # a description where the type goes: it becomes the first line of the description
            heads, body = _names(item["name"]), ["    " + item["rest"], *body]
        else:
            heads = _names(line)
        for head in heads:  # "a, b : ..." as one item per name: each then gets its own annotation and default
            out += [head, *body]
        i = end
    text = "\n".join(_tables_as_text(out))
    return ROLE.sub(lambda m: f"``{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}``", text)  # ~a.b.c shows as c


def _names(names: str) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()]


class InlineParams(griffe.Extension):
    """Rewrites each docstring as it is loaded (before any parsing)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = inline_to_numpy(obj.docstring.value)
