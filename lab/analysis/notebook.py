"""What the report notebooks (04-analysis, 05-compare) put on the page: prose, figures and the print style.

One definition for both, so the two reports show and print alike and a fix to one helper reaches both.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import HTML, Markdown, display

PRINT_STYLE = ("<style>@page { size: A4; margin: 12mm; } @media print { "
               "img, table, .jp-OutputArea-child { break-inside: avoid; } img { max-width: 100%; } "
               ".jp-OutputArea-output, .jp-RenderedHTMLCommon { overflow: visible !important; } "
               ".jp-RenderedHTMLCommon table { font-size: 7pt; } }</style>")


def page_style() -> None:
    """A4 pages for the PDF, no figure or table split across two, tables small enough to fit."""
    display(HTML(PRINT_STYLE))


def say(text: str) -> None:
    """Markdown where the cell is."""
    display(Markdown(text))


def show(frame: pd.DataFrame, formatter: dict | None = None) -> None:
    """A table without its index, numbers to three decimals unless `formatter` says otherwise, '-' for missing."""
    display(frame.style.format(formatter, precision=3, na_rep="-").hide(axis="index"))


def figure(fig) -> None:
    """Show a figure where the cell is (not at its end) and free it; None (nothing to draw) shows nothing."""
    if fig is not None:
        display(fig)
        plt.close(fig)


__all__ = ["PRINT_STYLE", "figure", "page_style", "say", "show"]
