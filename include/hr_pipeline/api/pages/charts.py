"""Charts as SVG, drawn on the server in plain Python: no chart library, no script, nothing
fetched by the browser, and the same numbers in the markup that a test (or a screen reader)
reads.

Every number is written on the chart, not only encoded as a length or a colour. Each mark carries
its value in ``data-value`` (and its row / column in ``data-row`` / ``data-column``), so the
numbers drawn can be compared with the tables they come from. Labels too long for their room are
shortened with an ellipsis; the whole label stays in the mark's ``<title>`` (a tooltip).

Text widths are estimated (``CHAR_WIDTH`` per character of the 12 px sans-serif font): the layout
leaves room for the widest label it draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hr_pipeline.api.pages.markup import Html, attributes, html, join

FONT_SIZE = 12
CHAR_WIDTH = 7.0  # px per character of a 12 px sans-serif label, a little over the average
ROW_HEIGHT = 26
MAX_LABEL_PX = 260
# A sequential blue scale: the lightest colour for 0, the darkest for the largest value.
LIGHT = (239, 246, 255)
DARK = (8, 69, 148)
BAR_COLOUR = "#3b73b9"
MEAN_COLOUR = "#c2410c"
MAX_COLUMNS = 16  # more categories than this are drawn as horizontal bars


@dataclass(frozen=True)
class Bar:
    label: str
    value: int


def text_width(text: str) -> float:
    return len(text) * CHAR_WIDTH


def fitted_label(text: str, room_px: float) -> str:
    """``text`` shortened with an ellipsis to fit ``room_px``."""
    most = max(1, int(room_px // CHAR_WIDTH))
    return text if len(text) <= most else text[: most - 1] + "…"


def shade(value: float, largest: float) -> str:
    """The scale's colour for ``value`` (0 .. ``largest``)."""
    share = 0.0 if largest <= 0 else max(0.0, min(1.0, value / largest))
    rgb = (round(light + (dark - light) * share) for light, dark in zip(LIGHT, DARK))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def ink_on(value: float, largest: float) -> str:
    """Text colour readable on the cell's shade: white on the dark half of the scale."""
    return "#ffffff" if largest > 0 and value / largest > 0.5 else "#1f2937"


def _svg(width: float, height: float, label: str, content: Html, chart: str) -> Html:
    return html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" '
        'role="img" aria-label="{}" data-chart="{}" font-family="system-ui, sans-serif" '
        'font-size="{}">{}</svg>',
        round(width),
        round(height),
        round(width),
        round(height),
        label,
        chart,
        FONT_SIZE,
        content,
    )


def _text(x: float, y: float, content: str, anchor: str = "start", **attrs: object) -> Html:
    return html(
        '<text x="{}" y="{}" text-anchor="{}" dominant-baseline="middle"{}>{}</text>',
        round(x, 1),
        round(y, 1),
        anchor,
        attributes(**attrs),
        content,
    )


def _label_room(labels: Sequence[str], most: float = MAX_LABEL_PX) -> float:
    return min(most, max([text_width(label) for label in labels] + [40.0]) + 12)


def heatmap(
    chart: str,
    title: str,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    values: Sequence[Sequence[int]],
    cell_width: float = 84,
) -> Html:
    """Rows x columns of cells shaded by value, each with its number written in it."""
    label_px = _label_room(row_labels)
    top = ROW_HEIGHT + 4
    largest = max([v for row in values for v in row] + [0])
    parts = [
        _text(label_px + cell_width * (i + 0.5), ROW_HEIGHT / 2, name, "middle", font_weight="600")
        for i, name in enumerate(column_labels)
    ]
    for r, (name, row) in enumerate(zip(row_labels, values)):
        y = top + r * ROW_HEIGHT
        parts.append(
            html(
                "<g>{}{}</g>",
                html("<title>{}</title>", name),
                _text(4, y + ROW_HEIGHT / 2, fitted_label(name, label_px - 12)),
            )
        )
        for c, value in enumerate(row):
            parts.append(
                _cell(label_px + c * cell_width, y, cell_width, value, largest, name, column_labels[c])
            )
    width = label_px + cell_width * len(column_labels) + 2
    return _svg(width, top + ROW_HEIGHT * len(row_labels) + 2, title, join(parts), chart)


def _cell(x: float, y: float, width: float, value: int, largest: int, row: str, column: str) -> Html:
    rect = html(
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" stroke="#ffffff"/>',
        round(x, 1),
        y,
        round(width, 1),
        ROW_HEIGHT,
        shade(value, largest),
    )
    number = _text(x + width / 2, y + ROW_HEIGHT / 2, f"{value:,}", "middle", fill=ink_on(value, largest))
    return html(
        '<g class="cell" data-row="{}" data-column="{}" data-value="{}"><title>{}, {}: {}</title>{}{}</g>',
        row,
        column,
        value,
        row,
        column,
        f"{value:,}",
        rect,
        number,
    )


def horizontal_bars(
    chart: str,
    title: str,
    bars: Sequence[Bar],
    reference: tuple[str, float] | None = None,
    plot_width: float = 520,
    label_px: float = MAX_LABEL_PX,
) -> Html:
    """One bar per item, its number at its end; ``reference`` (label, value) is drawn as a
    vertical line across the bars, labelled at the top. Labels get up to ``label_px``."""
    label_px = _label_room([bar.label for bar in bars], label_px)
    top = ROW_HEIGHT if reference else 4
    largest = max([bar.value for bar in bars] + [reference[1] if reference else 0, 1])
    scale = (plot_width - 70) / largest  # room for the number after the longest bar
    parts = []
    for i, bar in enumerate(bars):
        y = top + i * ROW_HEIGHT
        length = bar.value * scale
        parts.append(
            html(
                '<g class="bar" data-row="{}" data-value="{}"><title>{}: {}</title>{}'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>{}</g>',
                bar.label,
                bar.value,
                bar.label,
                f"{bar.value:,}",
                _text(4, y + ROW_HEIGHT / 2, fitted_label(bar.label, label_px - 12)),
                label_px,
                y + 4,
                round(length, 1),
                ROW_HEIGHT - 8,
                BAR_COLOUR,
                _text(label_px + length + 6, y + ROW_HEIGHT / 2, f"{bar.value:,}"),
            )
        )
    height = top + ROW_HEIGHT * max(len(bars), 1) + 4
    if reference:
        parts.append(_reference_line(label_px + reference[1] * scale, top, height, *reference))
    return _svg(label_px + plot_width, height, title, join(parts), chart)


def _reference_line(x: float, top: float, bottom: float, label: str, value: float) -> Html:
    return html(
        '<g class="reference" data-value="{}"><line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" '
        'stroke-width="2" stroke-dasharray="6 3"/>{}</g>',
        f"{value:.2f}",
        round(x, 1),
        round(x, 1),
        top - 4,
        bottom,
        MEAN_COLOUR,
        _text(x, ROW_HEIGHT / 2 - 2, f"{label} {value:,.2f}", "middle", fill=MEAN_COLOUR, font_weight="600"),
    )


def columns(chart: str, title: str, bars: Sequence[Bar], plot_height: float = 220) -> Html:
    """Vertical bars (a few categories, such as years), the number above each and the label
    below; more than ``MAX_COLUMNS`` categories are drawn as horizontal bars, which stay readable."""
    if len(bars) > MAX_COLUMNS:
        return horizontal_bars(chart, title, bars)
    width_each = max(56.0, max([text_width(bar.label) for bar in bars] + [0]) + 16)
    largest = max([bar.value for bar in bars] + [1])
    top, scale = ROW_HEIGHT, (plot_height - ROW_HEIGHT) / largest
    parts = []
    for i, bar in enumerate(bars):
        x, length = i * width_each, bar.value * scale
        parts.append(
            html(
                '<g class="bar" data-row="{}" data-value="{}"><title>{}: {}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>{}{}</g>',
                bar.label,
                bar.value,
                bar.label,
                f"{bar.value:,}",
                round(x + 8, 1),
                round(top + plot_height - ROW_HEIGHT - length, 1),
                round(width_each - 16, 1),
                round(length, 1),
                BAR_COLOUR,
                _text(
                    x + width_each / 2,
                    top + plot_height - ROW_HEIGHT - length - 10,
                    f"{bar.value:,}",
                    "middle",
                ),
                _text(x + width_each / 2, top + plot_height - ROW_HEIGHT + 14, bar.label, "middle"),
            )
        )
    return _svg(width_each * max(len(bars), 1), top + plot_height, title, join(parts), chart)


def split_bar(chart: str, title: str, parts: Sequence[tuple[str, int, str]], width: float = 360) -> Html:
    """One bar split into its parts (label, value, colour), such as a file's loaded and rejected
    rows; each part's number is in the legend beside it."""
    total = sum(value for _, value, _ in parts)
    x, marks, legend = 0.0, [], []
    for i, (label, value, colour) in enumerate(parts):
        length = width * value / total if total else 0
        marks.append(
            html(
                '<rect class="part" data-row="{}" data-value="{}" x="{}" y="2" width="{}" height="16" fill="{}">'
                "<title>{}: {}</title></rect>",
                label,
                value,
                round(x, 1),
                round(length, 1),
                colour,
                label,
                f"{value:,}",
            )
        )
        legend.append(
            html(
                '<rect x="{}" y="26" width="10" height="10" fill="{}"/>{}',
                i * 150,
                colour,
                _text(i * 150 + 14, 31, f"{label} {value:,}"),
            )
        )
        x += length
    return _svg(width, 40, title, join(marks + legend), chart)
