"""Which folders syngen owns, and how it replaces one: syngen writes, replaces and deletes only what it made.

A folder is syngen's when it holds the marker file ``.syngen``. :func:`claim` writes it into an output folder at
the first run (and into one an older syngen made, recognized by the files it left); it is never deleted, not even
by ``--fresh``. A folder syngen rebuilds whole (``OUT/dataset``, an export format's folder) is built beside the
old one and swapped in with :func:`replacing`, which writes the marker into the new folder and refuses to replace
a folder that is not syngen's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from syngen.errors import UsageError

MARKER = ".syngen"
# what an older syngen (before the marker) left in an output folder: any of these makes the folder syngen's
OLDER_OUTPUT = ("run.json", "stages/*/fingerprint.json")
SHOWN = 5  # foreign entries a refusal names

__all__ = ["MARKER", "ForeignFolder", "check_replaceable", "claim", "foreign_entries", "is_owned", "replacing"]


class ForeignFolder(UsageError):
    """A folder syngen would write into or replace that it did not make."""


def is_owned(folder: Path) -> bool:
    """Whether ``folder`` holds syngen's marker."""
    return (folder / MARKER).is_file()


def foreign_entries(folder: Path, allowed: Iterable[str] = ()) -> list[str]:
    """The names in ``folder`` (sorted; folders end in ``/``) other than the marker and ``allowed``; [] for a
    missing folder."""
    if not folder.is_dir():
        return []
    skip = {MARKER, *allowed}
    return sorted(p.name + "/" * p.is_dir() for p in folder.iterdir() if p.name not in skip)


def claim(folder: Path, older: Iterable[str] = OLDER_OUTPUT) -> None:
    """Make ``folder`` (created when missing) syngen's by writing its marker, when it holds the marker already,
    is empty, or holds a file matching one of the glob patterns ``older`` (made by an older syngen). Any other
    folder raises :class:`ForeignFolder` naming it and its first entries, and is left untouched."""
    if is_owned(folder):
        return
    entries = foreign_entries(folder)
    if entries and not any(next(folder.glob(pattern), None) for pattern in older):
        raise ForeignFolder(_refusal(folder, entries, "write into"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).touch()


@contextmanager
def replacing(final: Path, older: Iterable[str] = ()) -> Iterator[Path]:
    """Yields a new empty folder beside ``final`` to build its replacement in (``.<name>.tmp``); when the block
    ends without an error, the marker is written into it and it replaces ``final`` with two renames. ``final``
    must be missing, syngen's, or hold only names in ``older`` (what an older syngen wrote there); any other
    raises :class:`ForeignFolder` before anything is built. A kill at any moment leaves ``final`` as it was or
    replaced: the next call undoes what it left. On an error the new folder is removed and ``final`` kept."""
    recover(final)
    check_replaceable(final, older)
    building = _aside(final, "tmp")
    building.mkdir(parents=True)
    try:
        yield building
        (building / MARKER).touch()
        old = _aside(final, "old")
        if final.exists():
            final.rename(old)
        building.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def check_replaceable(final: Path, older: Iterable[str] = ()) -> None:
    """Raises :class:`ForeignFolder` unless :func:`replacing` may replace ``final``: missing, syngen's, or holding
    only names in ``older``. Call it before long work whose result goes there."""
    if final.exists() and not is_owned(final):
        if not final.is_dir():
            raise ForeignFolder(_refusal(final.parent, [final.name], "replace"))
        if entries := foreign_entries(final, older):
            raise ForeignFolder(_refusal(final, entries, "replace"))


def recover(final: Path) -> None:
    """Undoes what a killed :func:`replacing` of ``final`` left: a half-built folder, or a swap cut between its
    two renames."""
    shutil.rmtree(_aside(final, "tmp"), ignore_errors=True)
    old = _aside(final, "old")
    if old.exists():
        if final.exists():
            shutil.rmtree(old)
        else:
            old.rename(final)


def _aside(final: Path, kind: str) -> Path:
    return final.with_name(f".{final.name}.{kind}")


def _refusal(folder: Path, entries: list[str], verb: str) -> str:
    shown = ", ".join(entries[:SHOWN]) + (f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")
    return (
        f"{folder} holds files syngen did not write ({shown}) and no {MARKER} marker, so syngen will not {verb} "
        f"it: syngen writes, replaces and deletes only what it made. Choose a new or empty folder with --out, or, "
        f"if this folder is meant for syngen's output, move those files away (or create {folder / MARKER} to let "
        "syngen use it; --fresh still deletes only what syngen wrote)."
    )
