"""Wide tables go to an appendix at the end of the report, set to fit the page, so that no table in the PDF runs
wider than its page and the body reads without them; the body says where each one is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from IPython.display import HTML, Markdown, display

WIDE_COLUMNS = 8  # a table with more columns (its index included) goes to the appendix
APPENDIX_CLASS = "lab-appendix"
# Chromium lays every printed page out at the first page's width, so a landscape page would not widen a table: the
# appendix fits its tables to the portrait page with a smaller type and cells that wrap anywhere (long run ids)
APPENDIX_STYLE = (f"<style>.{APPENDIX_CLASS} table {{ font-size: 6.5pt !important; width: 100%; "
                  "table-layout: auto !important; } "
                  f".{APPENDIX_CLASS} td, .{APPENDIX_CLASS} th {{ white-space: normal !important; "
                  f"padding: 2px 3px !important; }} .{APPENDIX_CLASS} td {{ overflow-wrap: anywhere; }}</style>")


def columns(table: Any) -> int:
    """Columns a table shows: a Styler's hidden index does not count, a DataFrame's index does."""
    if isinstance(table, pd.DataFrame):
        return table.shape[1] + table.index.nlevels
    data = table.data
    hidden = getattr(table, "hide_index_", [False])
    return data.shape[1] + (0 if all(hidden) else data.index.nlevels)


def is_wide(table: Any) -> bool:
    return columns(table) >= WIDE_COLUMNS


@dataclass
class Appendix:
    """The report's appendix: place() shows a narrow table where it is and keeps a wide one for show()."""

    tables: list[tuple[str, Any]] = field(default_factory=list)

    def place(self, title: str, table: Any) -> None:
        """Show `table` here when it fits the page; else keep it for the appendix and say so here."""
        if not is_wide(table):
            display(table)
            return
        self.tables.append((title, table))
        display(Markdown(self.pointer(len(self.tables) - 1)))

    def pointer(self, index: int) -> str:
        return f"*{self.tables[index][0]}: Table A{index + 1} in the appendix (too wide for the page).*"

    def html(self, index: int) -> str:
        title, table = self.tables[index]
        return (f'<div class="{APPENDIX_CLASS}"><h3>Table A{index + 1}: {title}</h3>'
                f"{table._repr_html_()}</div>")

    def show(self) -> None:
        """The appendix heading and every kept table, on pages of their own after the report."""
        if not self.tables:
            return
        display(HTML(APPENDIX_STYLE + f'<h2 class="{APPENDIX_CLASS}" id="appendix" style="break-before: page">'
                     "Appendix: wide tables</h2>"))
        for index in range(len(self.tables)):
            display(HTML(self.html(index)))


__all__ = ["APPENDIX_CLASS", "Appendix", "WIDE_COLUMNS", "columns", "is_wide"]
