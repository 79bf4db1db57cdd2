"""HTML built in Python with every value escaped: text from the warehouse or a CSV cell is data,
never markup.

``Html`` marks a string that is already markup; anything else that goes through ``escape`` or
into ``element`` / ``html`` is escaped (``&``, ``<``, ``>``, both quotes). Building pages this way
needs no template engine, and a forgotten escape cannot happen silently: ``html`` escapes every
argument that is not ``Html``.
"""

from __future__ import annotations

import html as _html
from collections.abc import Iterable


class Html(str):
    """Markup: written by this package, or built from escaped values."""

    __slots__ = ()


def escape(value: object) -> Html:
    """``value`` as text in HTML (element content or a quoted attribute value)."""
    if isinstance(value, Html):
        return value
    return Html(_html.escape("" if value is None else str(value), quote=True))


def html(template: str, *values: object, **named: object) -> Html:
    """``template`` (markup written here) with ``{}`` / ``{name}`` filled by the escaped values."""
    return Html(template.format(*map(escape, values), **{k: escape(v) for k, v in named.items()}))


def join(parts: Iterable[object], separator: str = "") -> Html:
    """The parts, each escaped unless markup, one after the other."""
    return Html(separator.join(escape(part) for part in parts))


def attributes(**values: object) -> Html:
    """`` name="value"`` for each value not None (``data_x`` is written ``data-x``)."""
    return join(
        html(' {}="{}"', name.rstrip("_").replace("_", "-"), value)
        for name, value in values.items()
        if value is not None
    )


def element(tag: str, content: object = "", **attrs: object) -> Html:
    """``<tag attrs>content</tag>``; ``tag`` is markup written here, never a value."""
    return Html(f"<{tag}{attributes(**attrs)}>{join([content])}</{tag}>")


def table(
    headers: Iterable[object], rows: Iterable[Iterable[object]], numeric: Iterable[int] = (), **attrs
) -> Html:
    """A plain table; the cells of the ``numeric`` column indexes are right-aligned."""
    right = set(numeric)
    head = join(element("th", h, class_="num" if i in right else None) for i, h in enumerate(headers))
    body = join(
        element(
            "tr",
            join(element("td", cell, class_="num" if i in right else None) for i, cell in enumerate(row)),
        )
        for row in rows
    )
    return element("table", Html(f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"), **attrs)
