"""The prediction log: the server's predictions as Parquet rows under `<home>/predictions/`.

Each row holds a request's features (dtypes kept), then `prediction`, `model_version`,
`predicted_at` (UTC) and `request_id`: join the true labels on later and the rows are a training
file for the inbox. `append` (the request path) only buffers; `flush` (a background thread, and
shutdown) writes. Parquet cannot be appended to in place (a file is readable only once its footer
is written), so the current file's rows stay in memory and each flush rewrites that file whole,
as a temp file in the same folder then `os.replace`: a reader, or a kill -9 at any moment, finds
the previous complete file or the new one, never half of one. The trade-off: memory holds about
one file's rows (a file is final once its written size reaches `max_bytes`), each flush rewrites
up to that much, and a crash loses the rows since the last flush. Names
(`predictions-<UTC start>-<sequence>.parquet`) sort in time order; a restart starts a new file.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

MIN_BYTES = 64 * 1024  # serve.log_max_bytes' floor
LOG_COLUMNS = ("prediction", "model_version", "predicted_at", "request_id")
NAME = re.compile(r"predictions-(\d{8}T\d{6})-(\d+)\.parquet")
TEMP_SUFFIX = ".tmp"  # with a leading dot: shared.fs.is_temp_name skips it either way


def _sequence(path: Path) -> int | None:
    """The sequence number in a log file's name; None for any other name."""
    match = NAME.fullmatch(path.name)
    return int(match.group(2)) if match else None


def _strings_for_objects(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns as strings: one Parquet column cannot hold mixed types, strings can."""
    objects = {name: "string" for name, dtype in frame.dtypes.items() if dtype == "object"}
    return frame.astype(objects) if objects else frame  # "string" keeps a missing value null


def _prediction_array(predictions: Sequence[Any]) -> pa.Array:
    """The predictions as given: numbers stay numbers, labels become strings as in pandas."""
    values = np.asarray(predictions)
    if values.dtype == object:  # mixed or missing labels: strings, as for object features
        return pa.Array.from_pandas(pd.Series(values).astype("string"))
    array = pa.array(values)
    # Large strings, as pandas' own str columns give: every append then has the same type.
    return array.cast(pa.large_string()) if pa.types.is_string(array.type) else array


def _to_table(
    features: pd.DataFrame, predictions: Sequence[Any], version: str, request_id: str, now: float
) -> pa.Table:
    """One request's rows as an Arrow table: the features, then the log's own columns."""
    if clash := [name for name in LOG_COLUMNS if name in features.columns]:
        raise ValueError(f"feature columns {clash} clash with the prediction log's own")
    table = pa.Table.from_pandas(_strings_for_objects(features), preserve_index=False)
    rows, stamp = table.num_rows, round(now * 1_000_000)
    # Arrow arrays, not DataFrame.assign: a fraction of the cost, and this runs on every request.
    columns = {
        "prediction": _prediction_array(predictions),
        "model_version": pa.array([str(version)] * rows, pa.large_string()),
        "predicted_at": pa.array([stamp] * rows, pa.timestamp("us", tz="UTC")),
        "request_id": pa.array([str(request_id)] * rows, pa.large_string()),
    }
    for name, column in columns.items():
        table = table.append_column(name, column)
    return table


class PredictionLog:
    """Buffers predictions in memory and flushes them atomically to size-rotated Parquet files."""

    def __init__(
        self, folder: Path, max_bytes: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        if max_bytes < MIN_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_BYTES}, not {max_bytes}")
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._clock = clock
        self.folder.mkdir(parents=True, exist_ok=True)
        # A temp file still here is a write a kill interrupted: its rows died with that process.
        for stale in self.folder.glob(f".predictions-*{TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)
        self._sequence = max(filter(None, map(_sequence, self.folder.iterdir())), default=0)
        self._lock = threading.Lock()  # guards the buffers below; never held across disk I/O
        # One flush at a time: an older snapshot must never replace a newer one on disk.
        self._flush_lock = threading.Lock()
        self._path: Path | None = None  # the current file, named when its first rows arrive
        self._schema: pa.Schema | None = None
        self._tables: list[pa.Table] = []  # the current file's rows, written or not
        self._closed: list[tuple[Path, list[pa.Table]]] = []  # ended by a column change, unwritten
        self._dirty = False  # rows arrived since the last flush

    def append(
        self, features: pd.DataFrame, predictions: Sequence[Any], version: str, request_id: str
    ) -> None:
        """Buffer one request's rows: no disk I/O, since this runs on the request path."""
        if len(predictions) != len(features):
            raise ValueError(f"{len(predictions)} predictions for {len(features)} rows")
        if len(features) == 0:
            return
        now = self._clock()
        table = _to_table(features, predictions, version, request_id, now)  # outside the lock
        with self._lock:
            schema = self._merged(table.schema)
            if schema is None:  # other columns: the current file ends here rather than fail
                log.warning("Prediction log: new columns or types; starting a new file")
                if self._tables and self._path is not None:
                    self._closed.append((self._path, self._tables))
                self._path, self._tables, schema = None, [], table.schema
            if self._path is None:
                self._path = self._next_path(now)
            self._schema = schema
            self._tables.append(table)
            self._dirty = True

    def flush(self) -> Path | None:
        """Write the rows new since the last flush; the file written, or None if nothing was."""
        with self._flush_lock:
            with self._lock:  # snapshot only: the encoding and the write happen outside it
                if not self._dirty:
                    return None
                closed, self._closed = self._closed, []
                path, tables = self._path, list(self._tables)
                self._dirty = False
            written = None
            try:
                for closed_path, closed_tables in closed:
                    self._write(closed_path, closed_tables)
                    written = closed_path
                if path is not None and tables:
                    combined, size = self._write(path, tables)
                    self._settle(path, len(tables), combined, size)
                    written = path
            except BaseException as error:
                with self._lock:  # the rows are still in memory: the next flush tries again
                    self._closed[:0] = closed
                    self._dirty = True
                if not isinstance(error, OSError):
                    raise
                # Logged, not raised: the server's flush loop must outlive a full disk.
                log.warning("Prediction log: could not write to %s: %s", self.folder, error)
                return None
            return written

    def close(self) -> None:
        """The final flush."""
        self.flush()

    def files(self) -> list[Path]:
        """The log's files, oldest first."""
        found = [(seq, p) for p in self.folder.iterdir() if (seq := _sequence(p)) is not None]
        return [path for _, path in sorted(found)]

    def _merged(self, schema: pa.Schema) -> pa.Schema | None:
        """The current file's schema widened to take `schema`; None if it cannot be."""
        if self._schema is None:
            return schema
        if self._schema.names != schema.names:
            return None
        try:  # e.g. an int column that arrives as float once a value is missing
            return pa.unify_schemas([self._schema, schema], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None

    def _next_path(self, now: float) -> Path:
        """A new file's path: its start time, then the next sequence number."""
        self._sequence += 1
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S")
        return self.folder / f"predictions-{stamp}-{self._sequence:06d}.parquet"

    def _write(self, path: Path, tables: list[pa.Table]) -> tuple[pa.Table, int]:
        """Write `tables` as `path` atomically; the table written and the file's size."""
        table = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                pq.write_table(table, handle)
                handle.flush()
                os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
                size = os.fstat(handle.fileno()).st_size
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return table, size

    def _settle(self, path: Path, count: int, combined: pa.Table, size: int) -> None:
        """After writing `count` tables as `path`: compact them, or end the file once full."""
        with self._lock:
            if self._path != path:  # the columns changed meanwhile: it is in _closed, whole
                return
            rest = self._tables[count:]  # appended during the write
            if size < self.max_bytes:
                # One table for the written rows keeps the next flush's concatenation short.
                self._tables = [combined, *rest]
                return
            log.info("Prediction log: %s is complete (%d bytes)", path.name, size)
            self._tables = rest  # the file is final: its rows leave memory
            first = rest[0].column("predicted_at")[0].as_py().timestamp() if rest else 0.0
            self._path = self._next_path(first) if rest else None
