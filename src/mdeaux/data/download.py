"""Download one file over HTTP(S) or from a ``file://`` URL, resuming, retrying and verifying it.

HTTP downloads resume after cut connections (``Range`` requests) and keep a ``.part`` file between
runs, so an interrupted download continues where it stopped; retryable failures (network errors,
HTTP 408, 429 and 5xx) back off exponentially. The finished file must match the expected size,
SHA-256 and MD5 where given before it replaces ``dest``. Credentials in a URL (``user:password@``)
are sent as a Basic ``Authorization`` header that is never forwarded to a redirect target, and are
redacted from every message (``redact_url``).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from tqdm import tqdm

from mdeaux.data.fetch_error import FetchError

CHUNK = 1 << 20  # bytes per read
MAX_BACKOFF = 30.0
RETRYABLE_STATUS = {408, 429}  # plus every 5xx
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)
_HEX = {"sha256": re.compile(r"^[0-9a-fA-F]{64}$"), "md5": re.compile(r"^[0-9a-fA-F]{32}$")}


# -- URLs and checksums ------------------------------------------------------------------------
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


def verify_file(path: Path, what: str, sha256: str | None, md5: str | None, size: int | None,
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


# -- download ----------------------------------------------------------------------------------
def download(url: str, dest: Path, *, sha256: str | None = None, md5: str | None = None,
             size: int | None = None, retries: int = 5, timeout: float = 60.0, backoff: float = 0.5,
             progress: bool = True) -> Path:
    """Fetch ``url`` (http, https or file) to ``dest``, resuming and verifying; returns ``dest``."""
    download_with_digests(url, Path(dest), sha256=sha256, md5=md5, size=size, retries=retries,
                          timeout=timeout, backoff=backoff, progress=progress)
    return Path(dest)


def download_with_digests(url: str, dest: Path, *, sha256: str | None, md5: str | None, size: int | None,
                          retries: int, timeout: float, backoff: float, progress: bool) -> dict:
    """``download`` returning the digests (``file_digests``) of the verified file."""
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
    digests = verify_file(part, f"download of {shown}", sha256, md5, size, delete=True)
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
