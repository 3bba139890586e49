"""Reading an arriving CSV (plain, or gzip-compressed) into text cells, each row with its line;
writing the bad rows of an accepted file into the quarantine.

Whole-file problems raise `Rejected`: size, gzip, encoding, quoting, the header, ragged rows,
no data rows. Typing the cells is `consumer.validate`'s job.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shared.fs import atomic_write_text, unique_destination

_GZIP_MAGIC = b"\x1f\x8b"
# Rows held as Python lists before they become one pandas frame of (Arrow) strings: Python
# strings cost about three times the memory, so a file at the size limit stays affordable.
_CHUNK_ROWS = 50_000


class Rejected(ValueError):
    """The file cannot be used; `str(error)` is the reason shown to people."""


@dataclass(frozen=True)
class Cells:
    """Every column of the file as text (header names stripped), one row per data row."""

    frame: pd.DataFrame
    lines: np.ndarray  # the line each row starts on, as an editor numbers them (header: 1)


def is_gzip_name(name: str) -> bool:
    return name.lower().endswith(".csv.gz")


def _gunzip(path: Path, max_bytes: int) -> bytes:
    """The decompressed content, read no further than one byte past the limit (a gzip bomb)."""
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise Rejected(
            f"not a valid gzip file: {error}: compress it again (gzip file.csv) and drop it again"
        ) from None
    if len(raw) > max_bytes:
        raise Rejected(
            f"file decompresses to more than {max_bytes:,} bytes, over the limit "
            "(dataset.max_file_bytes): split it into smaller files"
        )
    return raw


def _read_text(path: Path, max_bytes: int) -> str:
    size = path.stat().st_size
    if size > max_bytes:
        raise Rejected(
            f"file is {size:,} bytes, over the {max_bytes:,}-byte limit "
            "(dataset.max_file_bytes): split it into smaller files"
        )
    if size == 0:
        raise Rejected("file is empty: expected a header row and at least one data row")
    with path.open("rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    # By name, and by content too: an archived copy renamed to x.csv-1.gz is still gzip.
    raw = _gunzip(path, max_bytes) if compressed or is_gzip_name(path.name) else path.read_bytes()
    if not raw:
        raise Rejected("file is empty once decompressed: expected a header row and data rows")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Rejected(
            f"file is not UTF-8 text (bad byte at offset {error.start}): "
            "save it as UTF-8 CSV and drop it again"
        ) from None


def _header(record: list[str], expected: list[str]) -> list[str]:
    names = [field.strip() for field in record]
    while names and not names[-1]:  # a spreadsheet's trailing comma names no column
        names.pop()
    missing = [c for c in expected if c not in names]
    if missing:
        header = ",".join(record)
        for delimiter, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if len(names) == 1 and delimiter in header:
                raise Rejected(
                    f"file uses {label} between columns, expected commas "
                    f"(header was {header[:80]!r})"
                )
        raise Rejected(
            f"missing column(s) {', '.join(missing)}; found {', '.join(names) or 'none'}"
        )
    twice = [c for c in expected if names.count(c) > 1]
    if twice:
        raise Rejected(f"column(s) {', '.join(twice)} appear more than once in the header")
    return names


def _fit(record: list[str], width: int, line: int) -> list[str]:
    """The row cut to the header's width, when only empty fields stick out; else `Rejected`."""
    if len(record) > width:
        if not any(field.strip() for field in record[width:]):
            return record[:width]  # trailing commas on every row: nothing is lost
        raise Rejected(
            f"line {line} has {len(record)} fields, the header has {width} (a trailing comma, "
            "or a decimal comma such as 12,50?): remove the extra commas or quote those values"
        )
    raise Rejected(
        f"line {line} has {len(record)} field(s), the header has {width}: every row needs a "
        "field for each column (an empty field is fine)"
    )


def read_cells(path: Path, expected: list[str], max_bytes: int) -> Cells:
    """The file's rows as text, with line numbers; `Rejected` when the file is unusable.

    Rows with no value at all (blank lines, a spreadsheet's rows of bare commas) are skipped.
    A `.csv.gz` (or any gzip content) is decompressed on the fly, up to `max_bytes`.
    """
    text = _read_text(path, max_bytes)
    # newline="": "\r\n", "\n" and "\r" all end a line, the way an editor counts them.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    chunks: list[pd.DataFrame] = []
    rows: list[list[str]] = []
    lines: list[int] = []
    previous = 0  # the line the previous record ended on
    try:
        for record in reader:
            line, previous = previous + 1, reader.line_num
            if not "".join(record).strip():  # no value at all (one C call per row)
                continue
            if header is None:
                header = _header(record, expected)
                continue
            if len(record) != len(header):
                record = _fit(record, len(header), line)
            rows.append(record)
            lines.append(line)
            if len(rows) >= _CHUNK_ROWS:
                chunks.append(pd.DataFrame(rows, columns=header, dtype=str))
                rows = []
    except csv.Error as error:
        raise Rejected(
            f"file is not well-formed CSV (line {reader.line_num}: {error}): check quoting"
        ) from None
    if header is None:
        raise Rejected("file has no header row: expected columns " + ", ".join(expected))
    if not lines:
        raise Rejected("file has a header but no data rows")
    if rows:
        chunks.append(pd.DataFrame(rows, columns=header, dtype=str))
    frame = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
    return Cells(frame, np.asarray(lines, dtype=np.int64))


def write_bad_rows(bad_rows: pd.DataFrame, folder: Path, name: str) -> Path:
    """`folder/<name>.rows.csv` (line, reason, the row's cells), written atomically.

    Writing the same rows again (a retried run) reuses the file; different rows under the
    same name get a new one (`unique_destination`): nothing is overwritten.
    """
    text = bad_rows.to_csv(index=False)
    path = folder / f"{name}.rows.csv"
    if path.exists() and path.read_text(encoding="utf-8") != text:
        path = unique_destination(folder, path.name)
    atomic_write_text(path, text)
    return path
