"""A faithful port of the column logic of Go's ``text/tabwriter`` (left-aligned, space padding).

vegeta renders its text and histogram reports through ``tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)``.
Reproducing its *block* rule (a column's width is shared only by consecutive lines that have a
cell in that column) is what makes our report byte-identical to vegeta's, so a script that
parses vegeta's output parses ours.
"""

from __future__ import annotations


def tabwrite(text: str, minwidth: int = 0, padding: int = 2) -> str:
    """Align tab-terminated cells of ``text`` as Go's tabwriter does with padchar ``' '``."""
    lines = text.split("\n")
    # The text after the last newline is an unterminated line, kept as-is if non-empty.
    cells = [line.split("\t") for line in lines]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            row = cells[i]
            parts: list[str] = []
            for j, cell in enumerate(row):
                parts.append(cell)
                if j < len(widths) and j < len(row) - 1:
                    parts.append(" " * (widths[j] - len(cell)))
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(cells[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(cells[this]) - 1:
                width = max(width, len(cells[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(cells))
    return "\n".join(out)
