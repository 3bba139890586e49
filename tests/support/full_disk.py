"""A full disk for chosen writes: the atomic writes of `shared.fs` into them fail with ENOSPC.

The temp file such a write opens really is created, but the descriptor handed back is
/dev/full, so the write itself fails as on a full filesystem (errno ENOSPC, from the kernel)
and everything above it (the temp file's clean-up, the caller's handling) runs for real.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared import fs


class FullDisk:
    """`full(path)` says which destinations have no room; nothing is full at first."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full: Callable[[Path], bool] = lambda _path: False
        self.refused: list[Path] = []  # the destinations whose writes failed, in order
        real = tempfile.mkstemp

        def mkstemp(*, dir: str | Path, prefix: str, suffix: str) -> tuple[int, str]:
            fd, tmp = real(dir=dir, prefix=prefix, suffix=suffix)
            # shared.fs names a temp file `.<destination name>.<random><suffix>`.
            destination = Path(dir) / prefix[1:-1]
            if self.full(destination):
                self.refused.append(destination)
                os.close(fd)
                fd = os.open("/dev/full", os.O_WRONLY)
            return fd, tmp

        monkeypatch.setattr(fs, "tempfile", SimpleNamespace(mkstemp=mkstemp))

    def fill(self, full: Callable[[Path], bool]) -> None:
        self.full = full

    def free(self) -> None:
        self.full = lambda _path: False


def temp_files(folder: Path) -> list[Path]:
    """Temp files `shared.fs` left in `folder` (none, after any failure)."""
    return sorted(p for p in folder.rglob(".*") if p.is_file())
