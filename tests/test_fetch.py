"""Tests of the fetch stage against a local, misbehaving HTTP server and hand-built archives."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mdeaux.data.datasets.indoor_depth import TASKONOMY
from mdeaux.data.datasets.spec import Archive, DatasetSpec
from mdeaux.data.download import download
from mdeaux.data.extract import safe_extract
from mdeaux.data.fetch import fetch_dataset
from mdeaux.data.fetch_error import FetchError

pytestmark = pytest.mark.timeout(60)

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


# ----------------------------------------------------------------------------------------------
# a local server that supports Range and can misbehave
# ----------------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        srv = self.server
        path = self.path
        rng = self.headers.get("Range")
        with srv.lock:
            srv.requests.append({"path": path, "range": rng, "auth": self.headers.get("Authorization")})
            cut = srv.cuts.get(path, 0) > 0
            if cut:
                srv.cuts[path] -= 1
        if srv.auth and self.headers.get("Authorization") != srv.auth:
            return self._status(401)
        if path in srv.status:
            return self._status(srv.status[path])
        data = srv.files.get(path)
        if data is None:
            return self._status(404)
        start = 0
        if rng and not srv.ignore_range:
            match = re.match(r"bytes=(\d+)-$", rng)
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if path in srv.unsized:  # no Content-Length: the body ends where the connection closes
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if cut else body)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:  # promise the full length, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def _status(self, code):
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.files, srv.status, srv.cuts, srv.requests = {}, {}, {}, []  # cuts: path -> responses to cut
    srv.ignore_range, srv.auth, srv.unsized = False, None, set()  # unsized: paths served without Content-Length
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def fast(**kw):
    return {"retries": 3, "backoff": 0.0, "timeout": 5.0, "progress": False, **kw}


# ----------------------------------------------------------------------------------------------
# download
# ----------------------------------------------------------------------------------------------
def test_cut_transfer_is_resumed_with_range(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.cuts["/data.bin"] = 1
    dest = download(server.base + "/data.bin", tmp_path / "data.bin", sha256=SHA, md5=MD5,
                    size=len(PAYLOAD), **fast(progress=True))
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_leftover_part_file_is_resumed(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])
    download(server.base + "/data.bin", tmp_path / "data.bin", sha256=SHA, **fast())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == ["bytes=1000-"]
    assert not (tmp_path / "data.bin.part").exists()


def test_interrupted_run_keeps_part_for_the_next_run(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.cuts["/data.bin"] = 10**6  # every response is cut in half: the last byte never arrives
    with pytest.raises(FetchError, match="resumed next time"):
        download(server.base + "/data.bin", tmp_path / "data.bin", sha256=SHA, **fast(retries=1))
    kept = (tmp_path / "data.bin.part").read_bytes()
    assert kept == PAYLOAD[: len(PAYLOAD) - 1]  # cuts that made progress were not counted as failures
    server.cuts.clear()
    server.requests.clear()
    download(server.base + "/data.bin", tmp_path / "data.bin", sha256=SHA, **fast())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [f"bytes={len(PAYLOAD) - 1}-"]


def test_complete_leftover_part_answered_416_is_accepted(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    download(server.base + "/data.bin", tmp_path / "data.bin", sha256=SHA, **fast())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:5000])
    download(server.base + "/data.bin", tmp_path / "data.bin", sha256=SHA, **fast())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.requests[0]["range"] == "bytes=5000-"


def test_server_ignoring_range_after_a_cut(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.ignore_range = True
    server.cuts["/data.bin"] = 1
    download(server.base + "/data.bin", tmp_path / "data.bin", sha256=SHA, **fast())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def test_wrong_checksum_raises_and_leaves_nothing(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    out = tmp_path / "out"
    wrong = "0" * 64
    with pytest.raises(FetchError) as info:
        download(server.base + "/data.bin", out / "data.bin", sha256=wrong, **fast())
    message = str(info.value)
    assert wrong in message and SHA in message and "/data.bin" in message
    assert list(out.iterdir()) == []


def test_wrong_size_raises(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    with pytest.raises(FetchError, match="expected 5 bytes"):
        download(server.base + "/data.bin", tmp_path / "data.bin", size=5, **fast())
    assert list(tmp_path.iterdir()) == []


def test_the_taskonomy_split_archive_cut_short_without_a_length_is_refused(server, tmp_path):
    # GitHub's raw file server may stream without Content-Length; the spec pins the archive's size and sha256
    archive = next(a for a in TASKONOMY.archives if a.filename == "splits_taskonomy.zip")
    body = zip_bytes({"splits_taskonomy/train_val_test_full.csv": b"id,train,val,test\n" * 600})
    server.files["/s.zip"], server.unsized = body, {"/s.zip"}
    server.cuts["/s.zip"] = 10**6  # every response ends half way, with nothing announcing the length
    dest = tmp_path / "splits_taskonomy.zip"
    with pytest.raises(FetchError, match=r"size: expected 10295 bytes, got \d+"):
        download(server.base + "/s.zip", dest, sha256=archive.sha256, md5=archive.md5, size=archive.size, **fast())
    assert not dest.exists()
    # a whole body of another file (not the published archive) is refused by its checksum as well
    server.cuts.clear()
    with pytest.raises(FetchError, match=archive.sha256):
        download(server.base + "/s.zip", dest, sha256=archive.sha256, md5=None, size=None, **fast())
    assert not dest.exists()


def test_404_fails_fast_without_retry(server, tmp_path):
    started = time.monotonic()
    with pytest.raises(FetchError, match="HTTP 404") as info:
        download(server.base + "/missing.bin", tmp_path / "x.bin", **fast(retries=5, backoff=1.0))
    assert server.base + "/missing.bin" in str(info.value)
    assert len(server.requests) == 1
    assert time.monotonic() - started < 1.0


def test_503_is_retried_a_bounded_number_of_times(server, tmp_path):
    server.status["/busy.bin"] = 503
    with pytest.raises(FetchError, match="after 3 attempts"):
        download(server.base + "/busy.bin", tmp_path / "x.bin", **fast(retries=2))
    assert len(server.requests) == 3


def test_file_url_is_copied_and_verified(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    out = download(src.as_uri(), tmp_path / "out" / "copy.bin", sha256=SHA, md5=MD5, progress=False)
    assert out.read_bytes() == PAYLOAD
    with pytest.raises(FetchError, match="md5"):
        download(src.as_uri(), tmp_path / "out" / "bad.bin", md5="f" * 32, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["copy.bin"]
    with pytest.raises(FetchError, match="does not exist"):
        download((tmp_path / "nope.bin").as_uri(), tmp_path / "out" / "n.bin", progress=False)


def test_malformed_checksum_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="not a hex digest"):
        download("file:///x", tmp_path / "x", sha256="abc", progress=False)


# ----------------------------------------------------------------------------------------------
# safe_extract
# ----------------------------------------------------------------------------------------------
def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: list[tuple[str, str, object]], mode: str = "w") -> Path:
    """members: (name, kind, data-or-linkname) with kind in file/sym/hard/dir/fifo/chr."""
    types = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "dir": tarfile.DIRTYPE,
             "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}
    with tarfile.open(path, mode) as tf:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value))
                continue
            info.type = types[kind]
            if kind in ("sym", "hard"):
                info.linkname = value
            tf.addfile(info)
    return path


BAD_ARCHIVES = {
    "zip-dotdot": lambda p: make_zip(p / "a.zip", {"ok.txt": b"x", "../evil.txt": b"evil"}),
    "zip-absolute": lambda p: make_zip(p / "a.zip", {"ok.txt": b"x", "/abs/evil.txt": b"evil"}),
    "zip-drive": lambda p: make_zip(p / "a.zip", {"ok.txt": b"x", "C:/evil.txt": b"evil"}),
    "zip-backslash": lambda p: make_zip(p / "a.zip", {"ok.txt": b"x", "..\\evil.txt": b"evil"}),
    "tar-symlink-abs": lambda p: make_tar(p / "a.tar", [("ok.txt", "file", b"x"), ("pw", "sym", "/etc/passwd")]),
    "tar-symlink-up": lambda p: make_tar(p / "a.tar.gz", [("ok.txt", "file", b"x"), ("d/up", "sym", "../../outside")], "w:gz"),
    "tar-hardlink-out": lambda p: make_tar(p / "a.tar", [("ok.txt", "file", b"x"), ("h", "hard", "../outside.txt")]),
    "tar-hardlink-abs": lambda p: make_tar(p / "a.tar", [("ok.txt", "file", b"x"), ("h", "hard", "/etc/passwd")]),
    "tar-dotdot": lambda p: make_tar(p / "a.tar.bz2", [("ok.txt", "file", b"x"), ("a/../../evil.txt", "file", b"e")], "w:bz2"),
    "tar-fifo": lambda p: make_tar(p / "a.tar", [("ok.txt", "file", b"x"), ("pipe", "fifo", None)]),
    "tar-device": lambda p: make_tar(p / "a.tar.xz", [("ok.txt", "file", b"x"), ("dev", "chr", None)], "w:xz"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_malicious_archives_are_refused(tmp_path, case):
    src = tmp_path / "src"
    src.mkdir()
    archive = BAD_ARCHIVES[case](src)
    work = tmp_path / "work"
    target = work / "target"
    with pytest.raises(FetchError, match="refusing|outside|leaves") as info:
        safe_extract(archive, target)
    assert str(archive) in str(info.value)
    assert not target.exists() or list(target.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not (work / "evil.txt").exists()
    assert [p.name for p in work.iterdir()] in ([], ["target"]) if work.exists() else True


def test_symlink_through_earlier_symlink_is_refused(tmp_path):
    # "d" -> "." is inside; "x" -> "d/../q" looks inside lexically but really resolves to ../q
    archive = make_tar(tmp_path / "a.tar", [("d", "sym", "."), ("x", "sym", "d/../q")])
    with pytest.raises(FetchError, match="resolves outside"):
        safe_extract(archive, tmp_path / "t")
    assert not (tmp_path / "t").exists()
    # a link that stays inside may be written through: sub/d -> .. is the target itself
    archive = make_tar(tmp_path / "b.tar", [("sub/d", "sym", ".."), ("sub/d/x", "file", b"x")])
    safe_extract(archive, tmp_path / "t2")
    assert (tmp_path / "t2" / "x").read_bytes() == b"x"
    # ... but not one that leads out once a later link exists: a -> b/.. with b -> . is the parent
    archive = make_tar(tmp_path / "c.tar", [("a", "sym", "b/.."), ("b", "sym", "."), ("a/f", "file", b"f")])
    with pytest.raises(FetchError, match="through a link"):
        safe_extract(archive, tmp_path / "t3")
    assert not (tmp_path / "t3").exists() and not (tmp_path / "f").exists()


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tgz"), ("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz")])
def test_good_tar_extracts_with_internal_links(tmp_path, mode, suffix):
    archive = make_tar(tmp_path / f"good{suffix}", [
        ("root", "dir", None), ("root/a.txt", "file", b"alpha"), ("root/sub/b.txt", "file", b"beta"),
        ("root/link", "sym", "sub/b.txt"), ("root/hard", "hard", "root/a.txt"),
    ], mode)
    target = tmp_path / "t"
    (target / "root").mkdir(parents=True)
    (target / "keep.txt").write_text("kept")
    names = safe_extract(archive, target)
    assert names == ["root", "root/a.txt", "root/sub/b.txt", "root/link", "root/hard"]
    assert (target / "root" / "link").read_bytes() == b"beta"
    assert (target / "root" / "hard").read_bytes() == b"alpha"
    assert (target / "keep.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"good{suffix}", "t"]


def test_not_an_archive(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>not found</html>")
    with pytest.raises(FetchError, match="not a readable zip or tar"):
        safe_extract(junk, tmp_path / "t")
    truncated = tmp_path / "cut.zip"
    truncated.write_bytes(zip_bytes({"a.txt": b"a" * 1000})[:60])
    with pytest.raises(FetchError, match="cut.zip"):
        safe_extract(truncated, tmp_path / "t")
    assert not (tmp_path / "t").exists()


# ----------------------------------------------------------------------------------------------
# fetch_dataset
# ----------------------------------------------------------------------------------------------
def toy_spec(*archives: Archive, pinned=()) -> DatasetSpec:
    return DatasetSpec(name="toy", title="Toy", task="depth", archives=archives, reader=lambda raw: iter(()),
                       splits=("train", "test"), test_split="test", pinned_files=pinned)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TOY_ZIP = zip_bytes({"toy/a.txt": b"alpha", "toy/list.txt": b"a.txt\n"})


@pytest.fixture
def mirror(tmp_path):
    folder = tmp_path / "mirror" / "toy"
    folder.mkdir(parents=True)
    (folder / "toy.zip").write_bytes(TOY_ZIP)
    (folder / "extra.bin").write_bytes(b"extra")
    (folder / "SHA256SUMS").write_text(f"{sha(TOY_ZIP)}  toy.zip\n{sha(b'extra')}  extra.bin\n")
    return folder


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_mini_profile_from_mirror(tmp_path, mirror):
    spec = toy_spec(Archive("toy.zip"), Archive("extra.bin", extract=False))
    raw = tmp_path / "raw" / "toy"
    raw.mkdir(parents=True)
    (raw / "stale.txt").write_text("old")
    record = fetch_dataset(spec, raw, profile="mini", mirror_dir=mirror, manual_dir=tmp_path / "manual",
                           progress=False)
    assert (raw / "toy" / "a.txt").read_bytes() == b"alpha"
    assert listing(raw) == ["FETCHED.json", "extra.bin", "toy"]  # stale file gone, zip not kept
    assert json.loads((raw / "FETCHED.json").read_text()) == record
    first, second = record["archives"]
    assert first["filename"] == "toy.zip" and first["extracted"] is True
    assert first["sha256"] == sha(TOY_ZIP) and first["size"] == len(TOY_ZIP)
    assert first["source"] == f"mirror:{mirror.name}/toy.zip"  # no absolute path: the same in every clone
    assert second["extracted"] is False and second["md5"] == hashlib.md5(b"extra").hexdigest()
    assert listing(tmp_path / "raw") == ["toy"]  # no temp dirs left


def test_mini_profile_without_mirror_says_run_synth(tmp_path, mirror):
    spec = toy_spec(Archive("toy.zip"))
    raw = tmp_path / "raw" / "toy"
    with pytest.raises(FetchError, match="mdeaux synth"):
        fetch_dataset(spec, raw, profile="mini", mirror_dir=tmp_path / "nowhere", manual_dir=tmp_path, progress=False)
    with pytest.raises(FetchError, match="mdeaux synth"):
        fetch_dataset(toy_spec(Archive("other.zip")), raw, profile="mini", mirror_dir=mirror,
                      manual_dir=tmp_path, progress=False)
    (mirror / "toy.zip").write_bytes(zip_bytes({"toy/a.txt": b"tampered"}))
    with pytest.raises(FetchError, match=sha(TOY_ZIP)):
        fetch_dataset(spec, raw, profile="mini", mirror_dir=mirror, manual_dir=tmp_path, progress=False)
    assert not raw.exists()
    assert not (tmp_path / "raw").exists() or listing(tmp_path / "raw") == []


def test_unknown_profile(tmp_path):
    with pytest.raises(ValueError, match="'full'.*mini, paper"):
        fetch_dataset(toy_spec(Archive("toy.zip")), tmp_path / "raw", profile="full", mirror_dir=tmp_path,
                      manual_dir=tmp_path)


def test_paper_profile_manual_archive(tmp_path):
    instructions = "Toy is licence-gated: request access at example.org and download toy.zip."
    pinned = (("toy/list.txt", sha(b"a.txt\n")),)
    spec = toy_spec(Archive("toy.zip", manual=instructions), pinned=pinned)
    raw, manual = tmp_path / "raw" / "toy", tmp_path / "manual" / "toy"
    with pytest.raises(FetchError) as info:
        fetch_dataset(spec, raw, profile="paper", mirror_dir=tmp_path, manual_dir=manual, progress=False)
    assert instructions in str(info.value) and str(manual / "toy.zip") in str(info.value)
    assert not raw.exists()

    manual.mkdir(parents=True)
    (manual / "toy.zip").write_bytes(TOY_ZIP)
    record = fetch_dataset(spec, raw, profile="paper", mirror_dir=tmp_path, manual_dir=manual, progress=False)
    assert record["archives"][0]["source"] == "manual:toy/toy.zip"  # data/manual/<dataset>/<file>: no absolute path
    assert record["pinned_files"] == {"toy/list.txt": sha(b"a.txt\n")}
    assert (raw / "toy" / "a.txt").read_bytes() == b"alpha"
    assert (manual / "toy.zip").is_file()  # the user's file is never moved or deleted

    wrong = "1" * 64
    bad = toy_spec(Archive("toy.zip", manual=instructions), pinned=(("toy/list.txt", wrong),))
    before = {p.name: p.read_bytes() for p in (raw / "toy").iterdir()}
    with pytest.raises(FetchError) as info:
        fetch_dataset(bad, raw, profile="paper", mirror_dir=tmp_path, manual_dir=manual, progress=False)
    assert "toy/list.txt" in str(info.value) and wrong in str(info.value) and sha(b"a.txt\n") in str(info.value)
    assert {p.name: p.read_bytes() for p in (raw / "toy").iterdir()} == before
    assert listing(tmp_path / "raw") == ["toy"]


def test_paper_profile_url_download_and_fallback(server, tmp_path):
    server.files["/toy.zip"] = TOY_ZIP
    spec = toy_spec(Archive("toy.zip", urls=(server.base + "/gone.zip", server.base + "/toy.zip"),
                            sha256=sha(TOY_ZIP), size=len(TOY_ZIP)))
    raw = tmp_path / "raw" / "toy"
    record = fetch_dataset(spec, raw, profile="paper", mirror_dir=tmp_path, manual_dir=tmp_path / "manual",
                           progress=False)
    assert record["archives"][0]["source"] == server.base + "/toy.zip"
    assert (raw / "toy" / "a.txt").read_bytes() == b"alpha"
    assert listing(tmp_path / "raw") == ["toy"]


def test_paper_profile_bad_checksum_leaves_raw_dir_alone(server, tmp_path):
    server.files["/toy.zip"] = TOY_ZIP
    spec = toy_spec(Archive("toy.zip", urls=(server.base + "/toy.zip",), sha256="2" * 64))
    raw = tmp_path / "raw" / "toy"
    with pytest.raises(FetchError, match="2" * 64):
        fetch_dataset(spec, raw, profile="paper", mirror_dir=tmp_path, manual_dir=tmp_path / "m", progress=False)
    assert not raw.exists() and listing(tmp_path / "raw") == []
    raw.mkdir()
    (raw / "old.txt").write_text("old")
    with pytest.raises(FetchError):
        fetch_dataset(spec, raw, profile="paper", mirror_dir=tmp_path, manual_dir=tmp_path / "m", progress=False)
    assert listing(raw) == ["old.txt"] and listing(tmp_path / "raw") == ["toy"]


def test_credentials_never_recorded_or_shown(server, tmp_path):
    server.files["/toy.zip"] = TOY_ZIP
    server.auth = "Basic " + base64.b64encode(b"user:secret").decode()
    port = server.server_address[1]
    url = f"http://user:secret@127.0.0.1:{port}/toy.zip"
    spec = toy_spec(Archive("toy.zip", urls=(url,), sha256=sha(TOY_ZIP)))
    raw = tmp_path / "raw" / "toy"
    record = fetch_dataset(spec, raw, profile="paper", mirror_dir=tmp_path, manual_dir=tmp_path / "m", progress=False)
    assert server.requests[-1]["auth"] == server.auth  # the credentials were used ...
    text = (raw / "FETCHED.json").read_text()
    assert "secret" not in text and "user:" not in text  # ... but never written down
    assert record["archives"][0]["source"] == f"http://127.0.0.1:{port}/toy.zip"

    missing = toy_spec(Archive("toy.zip", urls=(f"http://user:secret@127.0.0.1:{port}/nope.zip",), sha256=sha(TOY_ZIP)))
    with pytest.raises(FetchError) as info:
        fetch_dataset(missing, tmp_path / "raw" / "other", profile="paper", mirror_dir=tmp_path,
                      manual_dir=tmp_path / "m", progress=False)
    assert "404" in str(info.value) and "secret" not in str(info.value) and "user:" not in str(info.value)
    server.auth = "Basic " + base64.b64encode(b"user:other").decode()
    with pytest.raises(FetchError) as info:
        download(url, tmp_path / "x.bin", **fast())
    assert "401" in str(info.value) and "secret" not in str(info.value)


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_truncated_archive_is_refused_and_nothing_extracted(tmp_path, kind):
    buf = io.BytesIO()
    payload = bytes(range(256)) * 400
    if kind == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("data/a.bin", payload)
            zf.writestr("data/b.bin", payload[::-1])
    else:
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for name, data in (("data/a.bin", payload), ("data/b.bin", payload[::-1])):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    archive = tmp_path / f"cut.{kind}"
    archive.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(FetchError, match=r"cut\.(zip|tgz).*(not a readable|damaged)"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_decompression_bomb_is_refused_and_leaves_nothing(tmp_path):
    """Issue 13 #6: a 306 KB zip expanded to 314 MB. Extraction stops once an archive writes more than
    MAX_EXPANSION x its size + EXPANSION_SLACK, whatever sizes it declares."""
    from mdeaux.data import extract

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(100 << 20))  # 100 MiB of zeros in about 100 KB
    assert extract.MAX_EXPANSION * bomb.stat().st_size + extract.EXPANSION_SLACK < 100 << 20
    target = tmp_path / "out"
    with pytest.raises(FetchError, match="refusing it as a decompression bomb"):
        safe_extract(bomb, target)
    assert listing(tmp_path) == ["bomb.zip"]  # no target, no staging folder
    fine = make_zip(tmp_path / "fine.zip", {"a/one.bin": bytes(1 << 20)})  # under the slack: any ratio passes
    safe_extract(fine, target)
    assert (target / "a" / "one.bin").stat().st_size == 1 << 20


def test_a_fetch_removes_what_a_killed_fetch_left(tmp_path, mirror):
    """Issue 13 #6: a fetch killed while extracting left its staging folder (here 235 MB of it) that no
    later fetch removed."""
    spec = toy_spec(Archive("toy.zip"))
    raw = tmp_path / "raw" / "toy"
    staging = tmp_path / "raw" / ".toy.k1ll3d.tmp"  # atomic_dir's staging folder of the killed fetch
    (staging / "toy").mkdir(parents=True)
    (staging / "toy" / "a.txt").write_bytes(b"half")
    (tmp_path / "raw" / ".toy.old" / "x").mkdir(parents=True)  # the raw folder it was replacing
    (tmp_path / "raw" / ".toy_other.ab.tmp").mkdir()  # another dataset's: not ours to remove
    fetch_dataset(spec, raw, profile="mini", mirror_dir=mirror, manual_dir=tmp_path / "manual", progress=False)
    assert listing(tmp_path / "raw") == [".toy_other.ab.tmp", "toy"]
    assert (raw / "toy" / "a.txt").read_bytes() == b"alpha"
