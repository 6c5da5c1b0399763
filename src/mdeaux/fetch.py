"""The fetch stage: get a dataset's archives, verify them and unpack them into ``data/raw/<ds>/``.

Sources by profile:

* ``mini``: the synthetic mirror ``data/mirror/<ds>/`` written by ``mdeaux synth``, checked against
  its ``SHA256SUMS``;
* ``paper``: a hand-placed file in ``data/manual/<ds>/`` if present, else the spec's URLs (tried in
  order), else the spec's manual instructions are shown.

HTTP downloads resume after cut connections (``Range`` requests) and keep a ``.part`` file between
runs, so an interrupted fetch continues where it stopped. Archives are extracted only after every
member was checked (no absolute paths, no ``..`` escapes, no links out of the tree, no devices),
and the new ``data/raw/<ds>/`` replaces the old one as a whole, only when everything succeeded.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit, urlunsplit

from tqdm import tqdm

from mdeaux.atomic import atomic_dir, write_json
from mdeaux.datasets.spec import Archive, DatasetSpec

PROFILES = ("mini", "paper")
CHUNK = 1 << 20
MAX_BACKOFF = 30.0
RETRYABLE_STATUS = {408, 429}  # plus every 5xx
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)
_HEX = {"sha256": re.compile(r"^[0-9a-fA-F]{64}$"), "md5": re.compile(r"^[0-9a-fA-F]{32}$")}


class FetchError(RuntimeError):
    """A source could not be fetched, verified or extracted."""


# ----------------------------------------------------------------------------------------------
# URLs and checksums
# ----------------------------------------------------------------------------------------------
def redact_url(url: str) -> str:
    """``url`` without ``user:password@`` (safe for logs, errors and records)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _auth_header(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return None
    token = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


def file_digests(path: Path) -> dict:
    """``{"sha256", "md5", "size"}`` of a file, read in chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest(), "size": size}


def _check_expected(sha256: str | None, md5: str | None, size: int | None) -> None:
    for name, value in (("sha256", sha256), ("md5", md5)):
        if value is not None and not _HEX[name].match(value):
            raise ValueError(f"expected {name} {value!r} is not a hex digest ({_HEX[name].pattern})")
    if size is not None and size < 0:
        raise ValueError(f"expected size {size} is negative")


def _verify(path: Path, what: str, sha256: str | None, md5: str | None, size: int | None,
            *, delete: bool) -> dict:
    """Digests of ``path``; on a size or checksum mismatch delete it (if ``delete``) and raise."""
    found = file_digests(path)
    problems = []
    if size is not None and found["size"] != size:
        problems.append(f"size: expected {size} bytes, got {found['size']}")
    for name, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None and found[name] != expected.lower():
            problems.append(f"{name}: expected {expected.lower()}, got {found[name]}")
    if problems:
        if delete:
            path.unlink(missing_ok=True)
        raise FetchError(
            f"{what} failed verification ({'; '.join(problems)})"
            + ("; the partial file was deleted" if delete else "")
            + ". The source is corrupt or not the expected file: fetch it again or replace it."
        )
    return found


# ----------------------------------------------------------------------------------------------
# download
# ----------------------------------------------------------------------------------------------
def download(url: str, dest: Path, *, sha256: str | None = None, md5: str | None = None,
             size: int | None = None, retries: int = 5, timeout: float = 60.0, backoff: float = 0.5,
             progress: bool = True) -> Path:
    """Fetch ``url`` (http, https or file) to ``dest``, resuming and verifying; returns ``dest``."""
    _download(url, Path(dest), sha256=sha256, md5=md5, size=size, retries=retries, timeout=timeout,
              backoff=backoff, progress=progress)
    return Path(dest)


def _download(url: str, dest: Path, *, sha256: str | None, md5: str | None, size: int | None,
              retries: int, timeout: float, backoff: float, progress: bool) -> dict:
    """``download`` returning the digests of the verified file."""
    _check_expected(sha256, md5, size)
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    shown = redact_url(url)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        _copy_local(_file_url_path(url), part, dest.name, progress)
    elif scheme in ("http", "https"):
        _http_to_part(url, part, size=size, retries=retries, timeout=timeout, backoff=backoff,
                      progress=progress, name=dest.name)
    else:
        raise FetchError(f"cannot download {shown}: unsupported scheme {scheme!r} (use http, https or file)")
    digests = _verify(part, f"download of {shown}", sha256, md5, size, delete=True)
    os.replace(part, dest)
    return digests


def _file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise FetchError(f"file URL {redact_url(url)} names host {parts.netloc!r}; expected file:///absolute/path")
    return Path(urllib.request.url2pathname(parts.path))


def _copy_local(src: Path, part: Path, name: str, progress: bool) -> None:
    if not src.is_file():
        raise FetchError(f"{src} does not exist or is not a file")
    with open(src, "rb") as fin, open(part, "wb") as fout, _bar(name, src.stat().st_size, 0, progress) as bar:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            bar.update(len(chunk))


def _bar(name: str, total: int | None, initial: int, progress: bool) -> tqdm:
    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, leave=False)


class _Restart(Exception):
    """The server's answer means the .part file must be discarded and the transfer restarted."""


def _http_to_part(url: str, part: Path, *, size: int | None, retries: int, timeout: float,
                  backoff: float, progress: bool, name: str) -> None:
    """Fill ``part`` with the full body of ``url``; retries resume with ``Range``.

    Failures count against ``retries`` unless the attempt moved a resumed transfer forward (a long
    download over a flaky link may need more cuts than ``retries`` when each one makes progress).
    """
    shown = redact_url(url)
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            part.unlink()
            offset = 0
        if size is not None and offset == size and offset > 0:
            return  # a leftover .part is already complete: just verify it
        state: dict = {}
        try:
            _http_attempt(url, part, offset, timeout, progress, name, state)
            return
        except urllib.error.HTTPError as err:
            if err.code == 416:
                total = _content_range(err.headers.get("Content-Range", ""))[2]
                if offset > 0 and total == offset:
                    return  # the .part holds the whole file
                part.unlink(missing_ok=True)
                error = f"HTTP 416 for a resume at byte {offset} (file has {total} bytes): restarting"
            elif err.code in RETRYABLE_STATUS or err.code >= 500:
                error = f"HTTP {err.code} {err.reason}"
            else:
                raise FetchError(
                    f"download of {shown} failed: HTTP {err.code} {err.reason}; this is not retried — "
                    "check the URL (and credentials or access rights)"
                ) from None
        except _Restart as restart:
            part.unlink(missing_ok=True)
            error = str(restart)
        except NETWORK_ERRORS as err:
            error = f"{type(err).__name__}: {err}"
            if state.get("appending") and part.exists() and part.stat().st_size > offset:
                failures -= 1  # a resumed transfer moved forward: don't count this cut
        failures += 1
        if failures > retries:
            kept = f"; {part.stat().st_size} bytes are kept in {part} and resumed next time" if part.exists() else ""
            raise FetchError(f"download of {shown} failed after {failures} attempts: {error}{kept}")
        time.sleep(min(backoff * 2 ** (failures - 1), MAX_BACKOFF))


def _http_attempt(url: str, part: Path, offset: int, timeout: float, progress: bool, name: str,
                  state: dict) -> None:
    """One request; appends to ``part`` (206) or rewrites it (200). Raises on a short body."""
    request = urllib.request.Request(redact_url(url), headers={"User-Agent": "mdeaux-fetch"})
    auth = _auth_header(url)
    if auth:
        request.add_unredirected_header("Authorization", auth)  # never forwarded to a redirect target
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if resp.status == 206:
            start, end, total = _content_range(resp.headers.get("Content-Range", ""))
            if start != offset:
                raise _Restart(f"server answered a resume at byte {offset} with range start {start}")
            if expected is None and end is not None:
                expected = end - start + 1
            mode, initial = "ab", offset
            state["appending"] = True
        else:  # 200: the whole file (the server ignores ranges or none was asked)
            total, mode, initial = expected, "wb", 0
        received = 0
        with open(part, mode) as fh, _bar(name, total, initial, progress) as bar:
            while chunk := resp.read(CHUNK):
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if expected is not None and received < expected:
            raise http.client.IncompleteRead(b"", expected - received)


def _content_range(value: str) -> tuple[int | None, int | None, int | None]:
    """``bytes a-b/n`` or ``bytes */n`` -> (a, b, n); unknown parts are None."""
    match = re.match(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", value)
    if not match:
        return None, None, None
    start, end, total = match.groups()
    return (int(start) if start else None, int(end) if end else None,
            int(total) if total and total != "*" else None)


# ----------------------------------------------------------------------------------------------
# safe extraction
# ----------------------------------------------------------------------------------------------
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


def _write_members(archive: Path, members: list[_Member], root: Path) -> None:
    """Write checked members under ``root``; re-check real paths (links extracted earlier) as we go."""
    root = Path(os.path.realpath(root))
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
            shutil.copyfile(source, dest)
        else:
            with m.open() as fin, open(dest, "wb") as fout:
                shutil.copyfileobj(fin, fout, CHUNK)
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
                _write_members(archive, members, staging)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
                raise FetchError(f"extracting {archive} failed: {err}") from None
            _merge_into(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return [m.name for m in members]


# ----------------------------------------------------------------------------------------------
# fetch_dataset
# ----------------------------------------------------------------------------------------------
def read_sha256sums(mirror_dir: Path) -> dict[str, str]:
    """``{filename: sha256}`` from ``<mirror_dir>/SHA256SUMS`` (``sha256sum`` output format)."""
    sums_path = Path(mirror_dir) / "SHA256SUMS"
    if not sums_path.is_file():
        raise FetchError(
            f"no synthetic mirror at {mirror_dir} ({sums_path} is missing): run `mdeaux synth` "
            "(or `dvc repro synth`) to build it, then fetch again"
        )
    sums = {}
    for lineno, line in enumerate(sums_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
        if not match:
            raise FetchError(f"{sums_path}:{lineno}: expected '<sha256 hex>  <filename>', got {line!r}")
        sums[match.group(2)] = match.group(1).lower()
    return sums


def _fetch_local(path: Path, kind: str, sha256: str | None, md5: str | None,
                 size: int | None) -> tuple[Path, dict]:
    digests = _verify(path, f"{kind} archive {path}", sha256, md5, size, delete=False)
    return path, {"source": f"{kind}:{path}", **digests}


def _fetch_urls(archive: Archive, downloads: Path, retries: int, progress: bool) -> tuple[Path, dict]:
    dest = downloads / archive.filename
    errors = []
    for url in archive.urls:
        try:
            digests = _download(url, dest, sha256=archive.sha256, md5=archive.md5, size=archive.size,
                                retries=retries, timeout=60.0, backoff=0.5, progress=progress)
            return dest, {"source": redact_url(url), **digests}
        except FetchError as err:
            errors.append(str(err))
    raise FetchError(f"could not fetch {archive.filename} from any of its URLs:\n  " + "\n  ".join(errors))


def _resolve(archive: Archive, profile: str, mirror_dir: Path, manual_dir: Path, sums: dict[str, str],
             downloads: Path, retries: int, progress: bool) -> tuple[Path, dict]:
    """Where ``archive`` comes from: (a verified local file, its record fields)."""
    if profile == "mini":
        path = mirror_dir / archive.filename
        if archive.filename not in sums or not path.is_file():
            raise FetchError(
                f"the synthetic mirror {mirror_dir} has no verified {archive.filename} "
                f"({'file missing' if not path.is_file() else 'no SHA256SUMS entry'}): "
                "run `mdeaux synth` (or `dvc repro synth`) to rebuild it"
            )
        return _fetch_local(path, "mirror", sums[archive.filename], None, None)
    manual = manual_dir / archive.filename
    if manual.is_file():
        return _fetch_local(manual, "manual", archive.sha256, archive.md5, archive.size)
    if archive.urls:
        return _fetch_urls(archive, downloads, retries, progress)
    if archive.manual:
        raise FetchError(f"{archive.manual.rstrip()}\n\nExpected file: {manual}")
    raise FetchError(f"{archive.filename} has no URL and no manual instructions, and {manual} does not exist")


def _check_pinned(spec: DatasetSpec, tree: Path) -> dict[str, str]:
    checked = {}
    for rel, expected in spec.pinned_files:
        path = tree / rel
        if not path.is_file():
            raise FetchError(f"{spec.name}: pinned file {rel} (sha256 {expected}) is missing from the extracted archive")
        actual = file_digests(path)["sha256"]
        if actual != expected.lower():
            raise FetchError(
                f"{spec.name}: pinned file {rel} has sha256 {actual}, expected {expected.lower()}: "
                "the archive is not the published version"
            )
        checked[rel] = actual
    return checked


def fetch_dataset(spec: DatasetSpec, raw_dir: Path, *, profile: str, mirror_dir: Path, manual_dir: Path,
                  retries: int = 5, progress: bool = True) -> dict:
    """Fetch, verify and unpack ``spec``'s archives into ``raw_dir`` (replaced as a whole); returns the record."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    raw_dir, mirror_dir, manual_dir = Path(raw_dir), Path(mirror_dir), Path(manual_dir)
    sums = read_sha256sums(mirror_dir) if profile == "mini" else {}
    # .part files of interrupted downloads live here between runs (resumed next time)
    downloads = raw_dir.parent / f".{raw_dir.name}.downloads"
    records = []
    try:
        with atomic_dir(raw_dir) as tree:
            for archive in spec.archives:
                path, fields = _resolve(archive, profile, mirror_dir, manual_dir, sums, downloads, retries, progress)
                if archive.extract:
                    safe_extract(path, tree)
                    if path.parent == downloads:
                        path.unlink()
                elif path.parent == downloads:
                    os.replace(path, tree / archive.filename)
                else:
                    shutil.copyfile(path, tree / archive.filename)
                records.append({"filename": archive.filename, **fields, "extracted": archive.extract})
            record = {"dataset": spec.name, "profile": profile, "archives": records}
            if profile == "paper" and spec.pinned_files:
                record["pinned_files"] = _check_pinned(spec, tree)
            write_json(tree / "FETCHED.json", record)
    finally:
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    return record


__all__ = ["FetchError", "PROFILES", "download", "fetch_dataset", "file_digests", "read_sha256sums",
           "redact_url", "safe_extract"]
