"""When a file in the inbox is complete: the sensor's settle logic, pure (time comes in).

A file is complete when it was closed after writing or renamed into place (a push), or
when its size/mtime/inode stayed the same across two checks (all that polling can offer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CREATED, MODIFIED, CLOSED, MOVED, SCANNED = "created", "modified", "closed", "moved", "scanned"


@dataclass
class _Watch:
    signature: tuple[int, int, int] | None  # size, mtime_ns, inode at the last check
    since: float  # when that signature was first seen
    writing: bool  # a push said it is open for writing and no close has come yet
    complete: bool  # closed or renamed into place: no need to wait
    via: str  # "push" or "scan"


def signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class Settler:
    """Decides when a file in the inbox is complete. Pure: time and paths come in from outside.

    A file is complete when it was closed after writing or renamed into place (push), or
    when its size/mtime/inode stayed the same for `settle_seconds` (a file moved in from
    another folder, and every scan). A file being written (or still empty) waits up to
    `open_grace_seconds` of silence before it is trusted anyway (a writer that never closes).
    """

    def __init__(self, settle_seconds: float, open_grace_seconds: float) -> None:
        self.settle_seconds = settle_seconds
        self.open_grace_seconds = open_grace_seconds
        self._watched: dict[Path, _Watch] = {}

    def __len__(self) -> int:
        return len(self._watched)

    def __contains__(self, path: Path) -> bool:
        return path in self._watched

    def notice(self, path: Path, kind: str, now: float) -> None:
        watch = self._watched.get(path)
        via = "scan" if kind == SCANNED else "push"
        if watch is None:
            watch = _Watch(signature(path), now, False, False, via)
            self._watched[path] = watch
        elif kind == SCANNED:
            return  # already followed; a scan adds nothing
        if kind == CREATED:
            # Not "writing" yet: a file moved in from another folder gives only Created and is
            # complete already. A writer's first write (Modified) marks it as being written.
            watch.complete = False
            watch.signature, watch.since = signature(path), now
        elif kind == MODIFIED:
            watch.writing, watch.complete = True, False
            watch.signature, watch.since = signature(path), now
        elif kind in (CLOSED, MOVED):
            watch.writing, watch.complete = False, True

    def forget(self, path: Path) -> None:
        self._watched.pop(path, None)

    def ready(self, now: float) -> list[tuple[Path, str]]:
        """Paths that are complete now, with how they were detected; they are forgotten."""
        done: list[tuple[Path, str]] = []
        for path, watch in list(self._watched.items()):
            current = signature(path)
            if current is None:
                del self._watched[path]  # moved away or deleted before it settled
                continue
            if current != watch.signature:
                watch.signature, watch.since = current, now
                if not watch.complete:
                    continue
            quiet = now - watch.since
            # An empty file is most likely a writer that has not written yet: give it time.
            opened = watch.writing or current[0] == 0
            wait = self.open_grace_seconds if opened else self.settle_seconds
            if watch.complete or quiet >= wait:
                done.append((path, watch.via))
                del self._watched[path]
        return done
