"""Tests of `mdeaux weights` (huggingface_hub underneath) against a fake Hugging Face Hub that the test
serves itself on 127.0.0.1: the model API with files metadata, HEAD/GET `/{repo}/resolve/{rev}/{file}`
with the Hub's headers, LFS files redirected to a "CDN" on another host name (localhost)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import huggingface_hub.constants
import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from mdeaux import cli
from mdeaux.model.backbone import build_backbone
from mdeaux.model.specs import BACKBONES, BackboneSpec
from mdeaux.model.weights import (
    MANIFEST,
    RemoteFile,
    Snapshot,
    WeightsError,
    download_weights,
    git_blob_id,
    repo_of,
    select_files,
    verify_folder,
)

pytestmark = pytest.mark.timeout(60)

REPO = "test-org/DINOv2-Tiny"
GATED = "test-org/gated-vit"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
COMMIT2 = "fedcba9876543210fedcba9876543210fedcba98"
TOKEN = "hf_secret_token_123"
LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".msgpack", ".h5")
# a backbone entry whose taps fit the tiny served ViT (4 blocks, 32 wide, patch 14)
SPEC = BackboneSpec(32, (1, 2, 3, 4), False, "project", None, REPO)


# ----------------------------------------------------------------------------------------------
# the fake Hub
# ----------------------------------------------------------------------------------------------
def _lfs(name: str) -> bool:
    return name.endswith(LFS_SUFFIXES)


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _sibling(name: str, data: bytes) -> dict:
    """A file as `GET /api/models/{repo}/revision/{rev}?blobs=true` lists it."""
    if not _lfs(name):
        return {"rfilename": name, "size": len(data), "blobId": _blob_id(data)}
    sha = hashlib.sha256(data).hexdigest()
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
    return {"rfilename": name, "size": len(data), "blobId": _blob_id(pointer),
            "lfs": {"sha256": sha, "size": len(data), "pointerSize": len(pointer)}}


class Hub(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._handle(head=True)

    def do_GET(self):
        self._handle(head=False)

    def _handle(self, head: bool):
        srv = self.server
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        with srv.lock:
            srv.requests.append({"method": self.command, "path": path, "query": parts.query,
                                 "host": self.headers.get("Host"), "auth": self.headers.get("Authorization"),
                                 "range": self.headers.get("Range")})
        if path in srv.fail_once:  # a passing server error
            return self._send(srv.fail_once.pop(path), {}, head)
        api = re.match(r"^/api/models/(.+)/revision/([^/]+)$", path)
        if api:  # model info (public metadata, gated repositories included)
            entry, error = self._lookup(*api.groups())
            if error:
                return self._send(404, error, head)
            commit = entry["refs"].get(api.group(2), api.group(2))
            body = {"id": api.group(1), "sha": commit, "private": False, "gated": "auto" if entry.get("gated") else False,
                    "siblings": [_sibling(n, d) for n, d in sorted(entry["commits"][commit].items())]}
            for sib in body["siblings"]:
                if sib["rfilename"] in srv.no_hash:  # a mirror that lists a file without its hash
                    sib.pop("blobId")
                    sib.pop("lfs", None)
            return self._send(200, {"Content-Type": "application/json"}, head, json.dumps(body).encode())
        if path.startswith("/cdn/"):  # the "CDN" an LFS resolve redirects to (another host name)
            return self._serve(srv.cdn.get(path[len("/cdn/"):]), head, {})
        res = re.match(r"^/(.+)/resolve/([^/]+)/(.+)$", path)
        if not res:
            return self._send(404, {}, head)
        repo, revision, name = res.groups()
        entry, error = self._lookup(repo, revision)
        if error:
            return self._send(404, error, head)
        if entry.get("gated") and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"X-Error-Code": "GatedRepo", "X-Error-Message": f"Access to model {repo} is restricted"},
                              head)
        if path in srv.fail:
            return self._send(srv.fail[path], {}, head)
        commit = entry["refs"].get(revision, revision)
        files = entry["commits"][commit]
        if name not in files:
            return self._send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, head)
        data = srv.served.get((commit, name), files[name])  # a damaged copy on the server, if a test says so
        headers = {"X-Repo-Commit": commit, "ETag": f'"{_blob_id(data)}"'}
        if _lfs(name):  # the Hub redirects LFS files to its CDN; the linked headers describe the file
            sha = hashlib.sha256(data).hexdigest()
            srv.cdn[sha] = data
            return self._send(302, {**headers, "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                                    "Location": f"http://localhost:{srv.server_address[1]}/cdn/{sha}"}, head)
        return self._serve(data, head, headers)

    def _lookup(self, repo, revision):
        entry = self.server.repos.get(repo)
        if entry is None:
            return None, {"X-Error-Code": "RepoNotFound"}
        if revision not in entry["refs"] and revision not in entry["commits"]:
            return None, {"X-Error-Code": "RevisionNotFound"}
        return entry, None

    def _serve(self, data, head, headers):
        if data is None:
            return self._send(404, {}, head)
        srv, start, length = self.server, 0, len(data)
        rng = self.headers.get("Range")
        if rng:
            start = int(re.match(r"bytes=(\d+)-$", rng).group(1))
            headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        key = hashlib.sha256(data).hexdigest()
        if not head and key in srv.short_body:  # the body ends early and says so (Content-Length)
            data = data[:srv.short_body[key]]
            length = len(data)
        self.send_response(206 if rng else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length - start))
        self.end_headers()
        if head:
            return
        if not rng and key in srv.drop_once:  # the connection breaks in the middle of the body, once
            self.wfile.write(data[:srv.drop_once.pop(key)])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data[start:])

    def _send(self, code, headers, head, body=b""):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _model_files(tmp: Path, seed: int = 0, **save_kw) -> dict[str, bytes]:
    """A tiny DINOv2 saved as the Hub's facebook/dinov2-* repositories are (a Dinov2Model checkpoint)."""
    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2,
                          image_size=28, patch_size=14)
    folder = tmp / f"model-{seed}-{len(save_kw)}"
    Dinov2Model(config).save_pretrained(folder, **save_kw)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files["preprocessor_config.json"] = json.dumps({"image_mean": [0.485, 0.456, 0.406], "crop_size": 224}).encode()
    files["README.md"] = b"---\nlicense: apache-2.0\n---\n"
    files["pytorch_model.bin"] = b"a legacy pickle checkpoint that must not be downloaded"
    files["flax_model.msgpack"] = b"flax weights, not needed"
    files["onnx/model.onnx"] = b"onnx export, not needed"
    return files


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return _model_files(tmp_path_factory.mktemp("hub"))


@pytest.fixture
def hub(model_files):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.repos = {REPO: {"refs": {"main": COMMIT, COMMIT: COMMIT}, "commits": {COMMIT: dict(model_files)}},
                 GATED: {"refs": {"main": COMMIT}, "commits": {COMMIT: dict(model_files)}, "gated": True}}
    srv.requests, srv.served, srv.fail, srv.cdn, srv.drop_once, srv.short_body = [], {}, {}, {}, {}, {}
    srv.no_hash, srv.fail_once = set(), {}
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def hf_isolated(tmp_path, monkeypatch):
    """No HF token, cache or offline setting of the machine running the tests takes part."""
    for name in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def spec(monkeypatch):
    monkeypatch.setitem(BACKBONES, "test_vit", SPEC)
    return "test_vit"


def fast(hub, **kw):
    return {"endpoint": hub.base, "retries": 0, "timeout": 5.0, "progress": False, **kw}


def files_fetched(hub):
    """Names of the files whose content was sent (GET of a resolve URL or of the CDN)."""
    by_sha = {hashlib.sha256(d).hexdigest(): n for e in hub.repos.values() for c in e["commits"].values()
              for n, d in c.items()}
    names = [r["path"].rsplit("/", 1)[-1] for r in hub.requests if r["method"] == "GET" and "/resolve/" in r["path"]]
    names += [by_sha.get(r["path"][5:], r["path"]) for r in hub.requests if r["path"].startswith("/cdn/")]
    return names


@pytest.fixture
def all_logs():
    """Every log record at DEBUG, huggingface_hub's included (its logger does not propagate)."""
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())
    loggers = [logging.getLogger(), logging.getLogger("huggingface_hub")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield records
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


# ----------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------
def test_end_to_end_download_then_load(hub, spec, model_files, tmp_path, monkeypatch, capfd, all_logs):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    dest = tmp_path / "models" / "dinov2-tiny"
    result = download_weights(REPO, dest, **fast(hub))
    assert result.changed and result.dest == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["config.json", "model.safetensors", "preprocessor_config.json", MANIFEST])
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (dest / name).read_bytes() == model_files[name]
    # only the needed files were fetched, each once; no README, pytorch_model.bin, Flax or ONNX
    assert sorted(files_fetched(hub)) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["repo"] == REPO and manifest["revision"] == "main" and manifest["commit"] == COMMIT
    assert manifest["endpoint"] == hub.base
    assert set(manifest["files"]) == {"config.json", "model.safetensors", "preprocessor_config.json"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256(model_files[name]).hexdigest()
        assert entry["size"] == len(model_files[name]) and entry["lfs"] == _lfs(name)
    # the revision was resolved once through the API (with files metadata), then every file pinned to the commit
    api = [r for r in hub.requests if r["path"].startswith("/api/")]
    assert [r["path"] for r in api] == [f"/api/models/{REPO}/revision/main"] and "blobs=" in api[0]["query"]
    resolve = [r for r in hub.requests if "/resolve/" in r["path"]]
    assert resolve and all(r["path"].startswith(f"/{REPO}/resolve/{COMMIT}/") for r in resolve)
    # the token goes to the endpoint's host only, never to the host an LFS redirect points to, and is not logged
    assert any(r["path"].startswith("/cdn/") for r in hub.requests)
    for r in hub.requests:
        on_cdn = r["path"].startswith("/cdn/")
        assert r["host"].startswith("localhost:" if on_cdn else "127.0.0.1:"), r
        assert r["auth"] == (None if on_cdn else f"Bearer {TOKEN}"), r
    out = capfd.readouterr()
    assert all_logs and TOKEN not in "\n".join(all_logs) + out.out + out.err + (dest / MANIFEST).read_text()
    assert not list(dest.parent.glob(".dinov2-tiny*"))  # staging removed, nothing half-written beside it
    assert verify_folder(dest) == []
    # the folder loads with the project's loader, weights equal to the served checkpoint
    backbone = build_backbone(spec, weights_dir=dest)
    reference = Dinov2Model.from_pretrained(dest, local_files_only=True)
    torch.testing.assert_close(backbone.model.embeddings.patch_embeddings.projection.weight,
                               reference.embeddings.patch_embeddings.projection.weight)
    feats = backbone(torch.randn(1, 3, 30, 44))
    assert len(feats) == 4 and feats[0][0].shape == (1, 32, 3, 4)


def test_second_call_downloads_nothing(hub, spec, tmp_path, caplog):
    dest = tmp_path / "w"
    download_weights(REPO, dest, **fast(hub))
    mtime = (dest / MANIFEST).stat().st_mtime_ns
    hub.requests.clear()
    with caplog.at_level(logging.INFO, logger="mdeaux"):
        result = download_weights(REPO, dest, **fast(hub))
    assert not result.changed
    assert [r["path"] for r in hub.requests] == [f"/api/models/{REPO}/revision/main"]  # which commit is main?
    assert (dest / MANIFEST).stat().st_mtime_ns == mtime
    assert "nothing to do" in caplog.text
    # pinned to the commit it needs no network at all
    hub.requests.clear()
    result = download_weights(REPO, dest, **fast(hub, revision=COMMIT, endpoint="http://127.0.0.1:9"))
    assert not result.changed and hub.requests == []


def test_damaged_copy_is_downloaded_again(hub, spec, tmp_path, model_files):
    dest = tmp_path / "w"
    download_weights(REPO, dest, **fast(hub))
    (dest / "model.safetensors").write_bytes(b"truncated")
    assert any("model.safetensors" in p for p in verify_folder(dest))
    result = download_weights(REPO, dest, **fast(hub))
    assert result.changed and (dest / "model.safetensors").read_bytes() == model_files["model.safetensors"]


def _no_partial_files(tmp_path: Path, dest: Path, name: str) -> None:
    assert not dest.exists()
    staging = tmp_path / f".{dest.name}.download-{COMMIT[:12]}"
    assert not (staging / name).exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".incomplete") or p.name.startswith(f".{dest.name}.tmp")]


def test_corrupt_file_on_the_server_is_refused(hub, spec, tmp_path, model_files):
    good = model_files["model.safetensors"]
    hub.served[(COMMIT, "model.safetensors")] = good[:-1] + bytes([good[-1] ^ 0xFF])  # same size, one bit off
    dest = tmp_path / "w"
    with pytest.raises(WeightsError, match=r"model\.safetensors failed verification \(sha256: expected") as err:
        download_weights(REPO, dest, **fast(hub))
    assert hashlib.sha256(good).hexdigest() in str(err.value) and REPO in str(err.value)
    _no_partial_files(tmp_path, dest, "model.safetensors")


@pytest.mark.parametrize("how", ["file", "body"])
def test_truncated_file_on_the_server_is_refused(hub, spec, tmp_path, model_files, how):
    good = model_files["model.safetensors"]
    if how == "file":  # the server holds a shorter file (its headers agree): our size check refuses it
        hub.served[(COMMIT, "model.safetensors")] = good[: len(good) // 2]
        match = r"failed verification \(size: expected"
    else:  # the HEAD announces the full size, the body is shorter: huggingface_hub's consistency check refuses it
        hub.short_body[hashlib.sha256(good).hexdigest()] = len(good) // 2
        match = r"file model\.safetensors: .*size"
    dest = tmp_path / "w"
    with pytest.raises(WeightsError, match=match):
        download_weights(REPO, dest, **fast(hub))
    _no_partial_files(tmp_path, dest, "model.safetensors")


def test_corrupt_plain_git_file_is_caught_by_its_blob_id(hub, spec, tmp_path, model_files):
    hub.served[(COMMIT, "config.json")] = model_files["config.json"].replace(b"32", b"33", 1)
    with pytest.raises(WeightsError, match=r"config\.json failed verification \(git blob id"):
        download_weights(REPO, tmp_path / "w", **fast(hub))
    _no_partial_files(tmp_path, tmp_path / "w", "config.json")


def test_file_without_a_hash_is_refused(hub, spec, tmp_path):
    hub.no_hash.add("model.safetensors")
    with pytest.raises(WeightsError, match=r"no size or hash for test-org/DINOv2-Tiny/model\.safetensors: it cannot be "
                                           r"verified"):
        download_weights(REPO, tmp_path / "w", **fast(hub))
    assert not (tmp_path / "w").exists()


def test_broken_transfer_resumes_with_http_range(hub, spec, tmp_path, model_files, monkeypatch):
    # huggingface_hub writes what it received in chunks of DOWNLOAD_CHUNK_SIZE (10 MB) and resumes after the last
    # chunk written; the served file is 0.2 MB, so chunks of 8 kB here
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 8192)
    good = model_files["model.safetensors"]
    cut = len(good) // 3
    hub.drop_once[hashlib.sha256(good).hexdigest()] = cut
    dest = tmp_path / "w"
    download_weights(REPO, dest, **fast(hub))
    cdn = [r["range"] for r in hub.requests if r["path"].startswith("/cdn/") and r["method"] == "GET"]
    assert len(cdn) == 2 and cdn[0] is None and re.fullmatch(r"bytes=\d+-", cdn[1]), cdn
    assert cut - 8192 < int(cdn[1][6:-1]) <= cut  # the rest only, not the whole file again
    assert (dest / "model.safetensors").read_bytes() == good and verify_folder(dest) == []


def test_failed_call_keeps_verified_files_for_the_next(hub, spec, tmp_path):
    hub.fail[f"/{REPO}/resolve/{COMMIT}/preprocessor_config.json"] = 403
    dest = tmp_path / "w"
    with pytest.raises(WeightsError, match=r"'test-org/DINOv2-Tiny' at revision 'main'.*preprocessor_config\.json: HTTP 403"):
        download_weights(REPO, dest, **fast(hub))
    assert not dest.exists()
    hub.fail.clear()
    hub.requests.clear()
    download_weights(REPO, dest, **fast(hub))
    assert files_fetched(hub) == ["preprocessor_config.json"]  # config and weights were kept from the first call
    assert verify_folder(dest) == [] and not list(tmp_path.glob(".w.*"))


def test_kept_files_are_verified_before_reuse(hub, spec, tmp_path, model_files):
    hub.fail[f"/{REPO}/resolve/{COMMIT}/preprocessor_config.json"] = 403
    with pytest.raises(WeightsError, match="HTTP 403"):
        download_weights(REPO, tmp_path / "w", **fast(hub))
    kept = tmp_path / f".w.download-{COMMIT[:12]}" / "model.safetensors"
    data = bytearray(kept.read_bytes())
    data[100] ^= 0xFF  # damaged while waiting (same size)
    kept.write_bytes(bytes(data))
    hub.fail.clear()
    hub.requests.clear()
    download_weights(REPO, tmp_path / "w", **fast(hub))
    assert sorted(files_fetched(hub)) == ["model.safetensors", "preprocessor_config.json"]
    assert (tmp_path / "w" / "model.safetensors").read_bytes() == model_files["model.safetensors"]


def test_partial_file_of_a_killed_call_is_not_used(hub, spec, tmp_path, model_files):
    """A killed process leaves huggingface_hub's temporary file: the next call starts that file over, cleanly."""
    downloads = tmp_path / f".w.download-{COMMIT[:12]}" / ".cache" / "huggingface" / "download"
    downloads.mkdir(parents=True)
    (downloads / "model.safetensors.0a1b2c3d.incomplete").write_bytes(model_files["model.safetensors"][:1000] + b"junk")
    download_weights(REPO, tmp_path / "w", **fast(hub))
    assert verify_folder(tmp_path / "w") == [] and not list(tmp_path.glob(".w.*"))


def test_server_error_of_the_api_is_retried(hub, spec, tmp_path, caplog):
    hub.fail_once[f"/api/models/{REPO}/revision/main"] = 502
    with caplog.at_level(logging.WARNING, logger="mdeaux"):
        assert download_weights(REPO, tmp_path / "w", **fast(hub, retries=1)).changed
    assert "HTTP 502" in caplog.text and "trying again (1/1)" in caplog.text
    hub.fail_once[f"/api/models/{REPO}/revision/main"] = 502
    with pytest.raises(WeightsError, match=r"'test-org/DINOv2-Tiny' at revision 'main' on .*: HTTP 502"):
        download_weights(REPO, tmp_path / "w2", **fast(hub))


def test_unknown_repo_or_revision_says_what_to_check(hub, spec, tmp_path):
    with pytest.raises(WeightsError, match=r"'test-org/DINOv2-Tiny' at revision 'v9' on http://127.*no such branch, tag "
                                           r"or commit; check --revision"):
        download_weights(REPO, tmp_path / "w", **fast(hub, revision="v9"))
    with pytest.raises(WeightsError, match=r"'nobody/nothing' at revision 'main'.*not found; check its name.*HF_TOKEN"):
        download_weights("nobody/nothing", tmp_path / "w", **fast(hub))
    assert not (tmp_path / "w").exists() and not list(tmp_path.glob(".w.*"))


def test_gated_repo_needs_hf_token(hub, spec, tmp_path, monkeypatch, capfd, all_logs):
    dest = tmp_path / "w"
    with pytest.raises(WeightsError, match=rf"'{GATED}' at revision 'main'.*gated. Accept its conditions at "
                                           rf"{hub.base}/{GATED}.*set HF_TOKEN"):
        download_weights(GATED, dest, **fast(hub))
    monkeypatch.setenv("HF_TOKEN", "hf_of_another_account")
    with pytest.raises(WeightsError, match=r"gated.*HF_TOKEN belongs to that account \(it is set but has no access\)") as err:
        download_weights(GATED, dest, **fast(hub))
    assert "hf_of_another_account" not in str(err.value)
    assert not dest.exists()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert download_weights(GATED, dest, **fast(hub)).changed and verify_folder(dest) == []
    out = capfd.readouterr()
    assert TOKEN not in "\n".join(all_logs) + out.out + out.err


def test_network_down_says_where_to_run(spec, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WeightsError, match=rf"cannot reach '{REPO}' at revision 'main' on http://127.0.0.1:{port}.*login node"):
        download_weights(REPO, tmp_path / "w", endpoint=f"http://127.0.0.1:{port}", retries=0, progress=False)
    assert not (tmp_path / "w").exists()


def test_endpoint_with_credentials_is_refused(hub, spec, tmp_path):
    with pytest.raises(WeightsError, match="must not carry credentials: put the token in HF_TOKEN"):
        download_weights(REPO, tmp_path / "w", **fast(hub, endpoint=hub.base.replace("http://", "http://u:s3cret@")))


def test_new_commit_on_main_replaces_the_folder(hub, spec, tmp_path, model_files):
    dest = tmp_path / "w"
    download_weights(REPO, dest, **fast(hub))
    changed = dict(model_files, **{"preprocessor_config.json": b'{"crop_size": 518}'})
    hub.repos[REPO]["commits"][COMMIT2] = changed
    hub.repos[REPO]["refs"]["main"] = COMMIT2
    result = download_weights(REPO, dest, **fast(hub))
    assert result.changed and result.manifest["commit"] == COMMIT2
    assert (dest / "preprocessor_config.json").read_bytes() == b'{"crop_size": 518}'
    assert not list(tmp_path.glob(".w.*"))


def test_sharded_checkpoint(hub, spec, tmp_path):
    files = _model_files(tmp_path, seed=1, max_shard_size="20KB")
    assert "model.safetensors.index.json" in files and "model.safetensors" not in files
    shards = set(json.loads(files["model.safetensors.index.json"])["weight_map"].values())
    hub.repos[REPO]["commits"][COMMIT] = files
    dest = tmp_path / "w"
    download_weights(REPO, dest, **fast(hub))
    assert {p.name for p in dest.iterdir()} == shards | {"config.json", "model.safetensors.index.json",
                                                        "preprocessor_config.json", MANIFEST}
    assert len(shards) > 1 and build_backbone(spec, weights_dir=dest).embed_dim == 32


def test_file_selection():
    def snap(*names):
        return Snapshot(REPO, "main", COMMIT, {n: RemoteFile(n, 1, None, None) for n in names})

    both = snap("config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "onnx/model.onnx")
    assert select_files(both) == (["config.json", "model.safetensors"], None)
    legacy = snap("config.json", "pytorch_model.bin", "preprocessor_config.json")
    assert select_files(legacy) == (["config.json", "pytorch_model.bin", "preprocessor_config.json"], None)
    sharded = snap("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")
    assert select_files(sharded)[1] == "model.safetensors.index.json"
    with pytest.raises(WeightsError, match="none of the weight files.*tf_model.h5"):
        select_files(snap("config.json", "tf_model.h5"))
    with pytest.raises(WeightsError, match="no config.json"):
        select_files(snap("model.safetensors"))


def test_foreign_destination_is_not_overwritten(hub, spec, tmp_path):
    dest = tmp_path / "w"
    dest.mkdir()
    (dest / "mine.txt").write_text("hand-placed")
    with pytest.raises(WeightsError, match="did not write.*--force"):
        download_weights(REPO, dest, **fast(hub))
    assert (dest / "mine.txt").is_file()
    download_weights(REPO, dest, **fast(hub, force=True))
    assert not (dest / "mine.txt").exists() and verify_folder(dest) == []


def test_backbone_names():
    assert repo_of("dinov2_vitg14") == "facebook/dinov2-giant"
    with pytest.raises(WeightsError, match="nothing to download: the pretrain stage makes it"):
        repo_of("tiny")
    with pytest.raises(WeightsError, match="unknown backbone 'vit_x'.*dinov2_vitg14"):
        repo_of("vit_x")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_blob_id_matches_git(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'{"hidden_size": 32}\n\x00binary')
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout
    assert git_blob_id(path) == expected.strip()


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------
def test_cli_list_and_tiny(capsys):
    assert cli.main(["weights", "--list"]) == 0
    out = capsys.readouterr().out
    assert "dinov2_vitg14" in out and "facebook/dinov2-giant  -> models/dinov2-giant" in out
    assert "LiheYoung/depth-anything-large-hf" in out and "tiny" in out
    assert cli.main(["weights", "tiny"]) == 1


def test_list_imports_nothing_heavy():
    """`mdeaux weights --list` answers without torch, transformers or huggingface_hub (the backbone table
    is data in model/specs.py; the model package face imports nothing)."""
    code = textwrap.dedent("""
        import sys
        from mdeaux import cli
        assert cli.main(["weights", "--list"]) == 0
        print("heavy", [m for m in ("torch", "transformers", "huggingface_hub", "httpx2") if m in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "facebook/dinov2-giant" in out and "heavy []" in out, out


def _git_dvc_repo(path: Path, scm: bool) -> None:
    path.mkdir()
    if scm:
        subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run([shutil.which("dvc"), "init", "-q", *([] if scm else ["--no-scm"])], cwd=path, check=True)
    (path / "params.yaml").write_text("profile: mini\n")


needs_dvc = pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None, reason="needs git and dvc")


@needs_dvc
def test_cli_dvc_add_in_a_git_dvc_repo(hub, spec, tmp_path, monkeypatch, capfd):
    repo = tmp_path / "proj"
    _git_dvc_repo(repo, scm=True)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HF_ENDPOINT", hub.base)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert cli.main(["weights", spec, "--no-progress", "--check", "--retries", "0"]) == 0
    dest = repo / "models" / "dinov2-tiny"  # default: models/<repo name in lower case>
    dvc_file = repo / "models" / "dinov2-tiny.dvc"
    assert verify_folder(dest) == [] and dvc_file.is_file()
    assert "path: dinov2-tiny" in dvc_file.read_text()
    out = capfd.readouterr()
    assert "git add models/dinov2-tiny.dvc models/.gitignore && git commit" in out.out and "dvc push" in out.out
    assert TOKEN not in out.out + out.err
    # a second run changes nothing and does not run dvc again
    stamp = dvc_file.stat().st_mtime_ns
    assert cli.main(["weights", spec, "--no-progress"]) == 0
    assert dvc_file.stat().st_mtime_ns == stamp


@needs_dvc
def test_cli_git_ignored_destination_is_explained(hub, spec, tmp_path, monkeypatch):
    repo = tmp_path / "proj"
    _git_dvc_repo(repo, scm=True)
    (repo / ".gitignore").write_text("/models/\n")
    monkeypatch.chdir(repo)
    with pytest.raises(WeightsError, match=r"git ignores models/dinov2-tiny\.dvc.*'/models/\*'"):
        cli.main(["-v", "weights", spec, "--endpoint", hub.base, "--no-progress"])
    (repo / ".gitignore").write_text("/models/*\n!/models/*.dvc\n")
    assert cli.main(["weights", spec, "--endpoint", hub.base, "--no-progress"]) == 0
    assert (repo / "models" / "dinov2-tiny.dvc").is_file()


@needs_dvc
def test_cli_no_dvc_and_outside_dvc(hub, spec, tmp_path, monkeypatch, caplog):
    repo = tmp_path / "proj"
    _git_dvc_repo(repo, scm=False)
    monkeypatch.chdir(repo)
    assert cli.main(["weights", spec, "--endpoint", hub.base, "--no-progress", "--no-dvc", "--dest", "w"]) == 0
    assert verify_folder(repo / "w") == [] and not (repo / "w.dvc").exists()
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.chdir(outside)
    with caplog.at_level(logging.INFO, logger="mdeaux"):
        assert cli.main(["weights", spec, "--endpoint", hub.base, "--no-progress", "--dest", "w"]) == 0
    assert "not inside a DVC repository" in caplog.text and not (outside / "w.dvc").exists()


def test_cli_missing_dvc_is_a_clear_error(hub, spec, tmp_path, monkeypatch, caplog):
    (tmp_path / ".dvc").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    assert cli.main(["weights", spec, "--endpoint", hub.base, "--no-progress", "--dest", "w"]) == 1
    assert "dvc is not installed" in caplog.text
    assert os.path.isdir(tmp_path / "w")  # the download itself succeeded
