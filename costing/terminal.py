"""How wide the table output may be: the terminal's width (`$COLUMNS` first), within the layout's bounds."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap

NARROW_BELOW = 132  # the full review tables need 132 columns: under that they drop their secondary columns
MIN_WIDTH = 60


def output_width(widest: int) -> int:
    """$COLUMNS when set, else the terminal's width on a TTY, else `widest` (a pipe or a file), capped at `widest`."""
    cols = os.environ.get("COLUMNS", "").strip()
    if cols.isdigit() and int(cols) > 0:
        width = int(cols)
    elif sys.stdout.isatty():
        width = shutil.get_terminal_size((widest, 24)).columns
    else:
        width = widest
    return max(MIN_WIDTH, min(widest, width))


def wrap(text: str, width: int, indent: str = "", hang: str = "    ") -> str:
    """`text` wrapped to `width` with a hanging indent; a word longer than the line (a URL) is left whole."""
    return textwrap.fill(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent + hang,
        break_long_words=False,
        break_on_hyphens=False,
    )
