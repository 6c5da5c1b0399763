"""Safe extraction of zip and tar (plain, gz, bz2, xz) archives.

Every member is checked before anything is written: no absolute paths or drive letters, no ``..``
escapes, no links out of the tree, no devices, fifos or other special files. Members are written
into a staging folder next to the target (real paths re-checked as links appear) and merged into
the target only when all of them were written.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mdeaux.data.fetch_error import FetchError

COPY_CHUNK = 1 << 20  # bytes per read when copying a member out of the archive
# An archive may write at most MAX_EXPANSION times its own size plus EXPANSION_SLACK: the datasets' archives
# hold images, PNG depth and .npy maps that expand a few times at most, a decompression bomb a thousand times.
MAX_EXPANSION = 100
EXPANSION_SLACK = 64 << 20


@dataclass
class _Member:
    name: str  # as written in the archive
    rel: tuple[str, ...]  # normalised path below the target
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    link: str = ""  # symlink text, or the normalised hardlink source ("/"-joined)
    mode: int = 0o644
    open: Callable[[], IO[bytes]] | None = None  # files only


def _normalise(archive: Path, member: str, path: str, base: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Resolve ``path`` (relative to ``base``) lexically; refuse anything that leaves the target."""
    text = path.replace("\\", "/")
    if text.startswith("/"):
        raise FetchError(f"{archive}: member {member!r} has an absolute path {path!r}; refusing to extract")
    if re.match(r"^[A-Za-z]:", text):
        raise FetchError(f"{archive}: member {member!r} has a drive letter in {path!r}; refusing to extract")
    parts = list(base)
    for piece in text.split("/"):
        if piece in ("", "."):
            continue
        if piece == "..":
            if not parts:
                raise FetchError(f"{archive}: member {member!r} ({path!r}) leaves the target folder; refusing to extract")
            parts.pop()
        else:
            parts.append(piece)
    return tuple(parts)


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in zf.infolist():
        rel = _normalise(archive, info.filename, info.filename)
        mode = info.external_attr >> 16
        if info.is_dir():
            members.append(_Member(info.filename, rel, "dir"))
        elif info.create_system == 3 and stat.S_ISLNK(mode):
            target = zf.read(info).decode("utf-8")
            _normalise(archive, info.filename, target, rel[:-1])
            members.append(_Member(info.filename, rel, "symlink", link=target))
        elif info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise FetchError(f"{archive}: member {info.filename!r} is a special file; refusing to extract")
        else:
            members.append(_Member(info.filename, rel, "file", mode=(mode & 0o777) or 0o644,
                                   open=lambda info=info: zf.open(info)))
    return members


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in tf.getmembers():
        rel = _normalise(archive, info.name, info.name)
        if info.isdir():
            members.append(_Member(info.name, rel, "dir"))
        elif info.issym():
            _normalise(archive, info.name, info.linkname, rel[:-1])
            members.append(_Member(info.name, rel, "symlink", link=info.linkname))
        elif info.islnk():
            source = _normalise(archive, info.name, info.linkname)
            members.append(_Member(info.name, rel, "hardlink", link="/".join(source)))
        elif info.isfile():
            members.append(_Member(info.name, rel, "file", mode=info.mode & 0o777,
                                   open=lambda info=info: tf.extractfile(info)))
        else:
            raise FetchError(
                f"{archive}: member {info.name!r} is a device, fifo or other special file; refusing to extract"
            )
    return members


def _inside(root: Path, path: Path) -> bool:
    real = os.path.realpath(path)
    return real == str(root) or real.startswith(str(root) + os.sep)


def _write_members(archive: Path, members: list[_Member], root: Path, limit: int) -> None:
    """Write checked members under ``root``; re-check real paths (links extracted earlier) as we go; stop
    when more than ``limit`` bytes would be written (the sizes an archive declares are not trusted)."""
    root = Path(os.path.realpath(root))
    written = 0

    def spend(n: int) -> None:
        nonlocal written
        written += n
        if written > limit:
            raise FetchError(f"{archive} expands to more than {limit:,} bytes ({MAX_EXPANSION} x its size + "
                             f"{EXPANSION_SLACK >> 20} MiB); refusing it as a decompression bomb (if it is genuine, "
                             "raise mdeaux.data.extract.MAX_EXPANSION)")
    for m in members:
        if not m.rel:
            continue  # "./" itself
        dest = root.joinpath(*m.rel)
        if not _inside(root, dest.parent):
            raise FetchError(f"{archive}: member {m.name!r} would be written through a link out of the target")
        if m.kind == "dir":
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
            dest.unlink()  # a later member replaces an earlier one; never write through a link
        if m.kind == "symlink":
            if not _inside(root, dest.parent / m.link):
                raise FetchError(f"{archive}: symlink {m.name!r} -> {m.link!r} resolves outside the target")
            os.symlink(m.link, dest)
        elif m.kind == "hardlink":
            source = root / m.link
            if not _inside(root, source) or not source.is_file():
                raise FetchError(
                    f"{archive}: hard link {m.name!r} -> {m.link!r} does not point to a file extracted earlier"
                )
            spend(source.stat().st_size)
            shutil.copyfile(source, dest)
        else:
            with m.open() as fin, open(dest, "wb") as fout:
                while chunk := fin.read(COPY_CHUNK):
                    spend(len(chunk))
                    fout.write(chunk)
            os.chmod(dest, (m.mode | 0o600) & 0o755)


def _merge_into(src: Path, dst: Path) -> None:
    """Move the content of ``src`` into ``dst``, merging folders and replacing files."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            _merge_into(entry, target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)


def _open_archive(archive: Path) -> zipfile.ZipFile | tarfile.TarFile:
    """A zip (recognised by its leading ``PK`` signature) or a plain/gz/bz2/xz tar."""
    if not archive.is_file():
        raise FetchError(f"archive {archive} does not exist")
    with open(archive, "rb") as fh:
        magic = fh.read(4)
    try:
        if magic in (b"PK\x03\x04", b"PK\x05\x06"):
            return zipfile.ZipFile(archive)
        return tarfile.open(archive, "r:*")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError):
        raise FetchError(
            f"{archive} is not a readable zip or tar (plain, gz, bz2, xz) archive; re-download it or check the source"
        ) from None


def safe_extract(archive: Path, target: Path) -> list[str]:
    """Extract a zip/tar archive into ``target`` after checking every member; returns member names."""
    archive, target = Path(archive), Path(target)
    with _open_archive(archive) as handle:
        try:
            if isinstance(handle, zipfile.ZipFile):
                members = _zip_members(archive, handle)
            else:
                members = _tar_members(archive, handle)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, UnicodeDecodeError) as err:
            raise FetchError(f"{archive} is damaged ({err}); re-download it") from None
        for m in members:
            if not m.rel and m.kind != "dir":
                raise FetchError(f"{archive}: member {m.name!r} has no file name; refusing to extract")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract.", dir=target.parent))
        try:
            try:
                _write_members(archive, members, staging, MAX_EXPANSION * archive.stat().st_size + EXPANSION_SLACK)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
                raise FetchError(f"extracting {archive} failed: {err}") from None
            _merge_into(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return [m.name for m in members]
