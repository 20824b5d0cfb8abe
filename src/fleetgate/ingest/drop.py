"""Reading a drop, a folder or a tar archive, into a flat list of entries with safe names.

Nothing in a drop is trusted: every name is checked before it is used as a path, symlinks are
resolved and must stay inside the drop, and tar members are never extracted by name.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fleetgate.errors import InvalidInputError, ItemError, UnsafePathError
from fleetgate.formats.drop_layout import SAFE_SEGMENT


@dataclass
class DropEntry:
    """One item found in a drop.

    `local_path` is a readable file with the item's bytes, or None when the item has no bytes we
    may read (a symlink out of the drop). `problem` is set when the name itself is unsafe.
    """

    relpath: str
    local_path: Path | None
    problem: UnsafePathError | None = None


def check_relpath(relpath: str) -> str:
    """Return the normalised drop-relative path or raise UnsafePathError naming the problem."""
    shown = ascii(relpath)[1:-1]
    if not relpath:
        raise UnsafePathError(shown, "name", "empty name")
    if relpath.startswith("/") or (len(relpath) > 1 and relpath[1] == ":"):
        raise UnsafePathError(shown, "name", "absolute paths are not allowed in a drop")
    if "\\" in relpath:
        raise UnsafePathError(shown, "name", "backslashes are not allowed in names")
    parts = relpath.split("/")
    if ".." in parts:
        raise UnsafePathError(shown, "name", "'..' would escape the drop")
    for part in parts:
        if not SAFE_SEGMENT.match(part):
            raise UnsafePathError(shown, "name", f"segment {ascii(part)} is not a safe name "
                                  "(letters, digits, '.', '_', '-'; at most 128 characters)")
    return "/".join(parts)


def _walk_folder(root: Path) -> Iterator[DropEntry]:
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        names = sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]
        for name in names:
            path = here / name
            rel = path.relative_to(root).as_posix()
            try:
                rel = check_relpath(rel)
            except UnsafePathError as exc:
                yield DropEntry(rel, path if path.is_file() and not path.is_symlink() else None, exc)
                continue
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                if target != real_root and real_root not in target.parents:
                    yield DropEntry(rel, None, UnsafePathError(
                        rel, "symlink", f"points outside the drop (to {ascii(os.readlink(path))[1:-1]})"))
                    continue
                if not target.is_file():
                    yield DropEntry(rel, None, UnsafePathError(rel, "symlink", "does not point to a regular file"))
                    continue
                yield DropEntry(rel, target)
                continue
            mode = path.lstat().st_mode
            if not stat.S_ISREG(mode):
                yield DropEntry(rel, None, UnsafePathError(rel, "type", "not a regular file"))
                continue
            yield DropEntry(rel, path)


def _read_tar(archive: Path, staging: Path) -> Iterator[DropEntry]:
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        # tarfile lists every compression it tried, a line each; the user gets one line
        raise InvalidInputError(f"{archive}: not a readable tar archive ({exc.__class__.__name__})") from exc
    with tar:
        for index, member in _members(tar):
            if member is None:  # the archive ends inside a header: what came before it was read
                rel = f"member-{index:06d}"
                yield DropEntry(rel, None, ItemError(rel, "archive", "the archive ends inside this member's "
                                                                     "header (a truncated upload?)"))
                return
            name = member.name[2:] if member.name.startswith("./") else member.name
            if member.isdir():
                continue
            # Members are written to numbered files, never to their own names, so no name in the
            # archive can place bytes anywhere.
            spool = staging / f"member-{index:06d}"
            try:
                rel = check_relpath(name)
            except UnsafePathError as exc:
                yield DropEntry(exc.path, _spool_member(tar, member, spool), exc)
                continue
            if member.issym() or member.islnk():
                yield DropEntry(rel, None, UnsafePathError(
                    rel, "symlink", f"links are not allowed in tar drops (to {ascii(member.linkname)[1:-1]})"))
                continue
            if not member.isfile():
                yield DropEntry(rel, None, UnsafePathError(rel, "type", "not a regular file"))
                continue
            try:
                local = _spool_member(tar, member, spool)
            except (tarfile.TarError, EOFError) as exc:
                # the archive ends inside this member: its bytes so far go to quarantine with it
                _salvage(tar, member, spool)
                yield DropEntry(rel, spool, ItemError(
                    rel, "data", f"the archive ends inside this member ({exc.__class__.__name__}; a truncated "
                                 "upload?)"))
                return
            yield DropEntry(rel, local)


def _salvage(tar: tarfile.TarFile, member: tarfile.TarInfo, spool: Path) -> None:
    """The bytes of a member the archive ends inside, as far as they go (tarfile refuses a short read whole)."""
    with open(spool, "wb") as out:
        try:
            tar.fileobj.seek(member.offset_data)
            left = member.size
            while left and (chunk := tar.fileobj.read(min(left, 1 << 16))):
                out.write(chunk)
                left -= len(chunk)
        except (OSError, EOFError, tarfile.TarError):
            pass  # a compressed stream ends mid-block: what was written is all there is


def _ends_with_its_marker(tar: tarfile.TarFile) -> bool:
    """Whether an uncompressed archive ends with the end-of-archive blocks (POSIX: two zero blocks). tarfile
    reads a header cut short after the first as the end, so a truncated upload would look whole."""
    raw = tar.fileobj
    if not isinstance(raw, io.BufferedReader):
        return True  # compressed: the decompressor reports a truncated stream itself
    raw.seek(tar.offset)
    return raw.read(tarfile.BLOCKSIZE) == tarfile.NUL * tarfile.BLOCKSIZE


def _members(tar: tarfile.TarFile) -> Iterator[tuple[int, tarfile.TarInfo | None]]:
    """The archive's members with their index; None where a header cannot be read (and nothing after)."""
    members = iter(tar)
    index = 0
    while True:
        try:
            member = next(members)
        except StopIteration:
            if index and not _ends_with_its_marker(tar):
                yield index, None
            return
        except (tarfile.TarError, EOFError):
            yield index, None
            return
        yield index, member
        index += 1


def _spool_member(tar: tarfile.TarFile, member: tarfile.TarInfo, spool: Path) -> Path | None:
    if not member.isfile():
        return None
    source = tar.extractfile(member)
    if source is None:
        return None
    with source, open(spool, "wb") as out:
        while chunk := source.read(1 << 20):
            out.write(chunk)
    return spool


@contextmanager
def open_drop(path: Path) -> Iterator[tuple[str, list[DropEntry]]]:
    """Yield the drop's id and its entries; tar members are spooled to a temporary folder."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path}: no such drop (expected a folder or a .tar)")
    if path.is_dir():
        entries = list(_walk_folder(path))
        yield _drop_id(path, entries), entries
        return
    with tempfile.TemporaryDirectory(prefix="fleetgate-drop-") as tmp:
        entries = list(_read_tar(path, Path(tmp)))
        yield _drop_id(path, entries), entries


def _drop_id(path: Path, entries: list[DropEntry]) -> str:
    """The drop's id: `drop_id` from drop.json when valid, else the folder or archive name."""
    for entry in entries:
        if entry.relpath == "drop.json" and entry.problem is None and entry.local_path is not None:
            try:
                value = json.loads(entry.local_path.read_text("utf-8")).get("drop_id")
            except (ValueError, OSError, AttributeError):
                break
            if isinstance(value, str) and SAFE_SEGMENT.match(value):
                return value
    name = path.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name if SAFE_SEGMENT.match(name) else ascii(name)[1:-1]
