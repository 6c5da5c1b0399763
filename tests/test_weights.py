"""Tests of `mdeaux weights` against a fake Hugging Face Hub served on 127.0.0.1 by the test itself."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from mdeaux import cli
from mdeaux.model.backbone import BACKBONES, BackboneSpec, build_backbone
from mdeaux.weights import (
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
COMMIT = "0123456789abcdef0123456789abcdef01234567"
COMMIT2 = "fedcba9876543210fedcba9876543210fedcba98"
TOKEN = "hf_secret_token_123"
LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".msgpack", ".h5")
# a backbone entry whose taps fit the tiny served ViT (4 blocks, 32 wide, patch 14)
SPEC = BackboneSpec(32, (1, 2, 3, 4), False, "project", None, REPO)


# ----------------------------------------------------------------------------------------------
# the fake Hub
# ----------------------------------------------------------------------------------------------
def _sibling(name: str, data: bytes) -> dict:
    entry = {"rfilename": name, "size": len(data)}
    if name.endswith(LFS_SUFFIXES):
        sha = hashlib.sha256(data).hexdigest()
        entry["blobId"] = hashlib.sha1(f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}".encode()).hexdigest()
        entry["lfs"] = {"sha256": sha, "size": len(data), "pointerSize": 134}
    else:
        entry["blobId"] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return entry


class Hub(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        with srv.lock:
            srv.requests.append({"path": path, "query": parts.query, "host": self.headers.get("Host"),
                                 "auth": self.headers.get("Authorization"), "range": self.headers.get("Range")})
        api = re.match(r"^/api/models/(.+)/revision/([^/]+)$", path)
        if api:
            repo, revision = api.groups()
            if repo not in srv.repos or revision not in srv.repos[repo]["refs"]:
                code = "RepoNotFound" if repo not in srv.repos else "RevisionNotFound"
                return self._send(404, b'{"error": "not found"}', {"X-Error-Code": code})
            entry = srv.repos[repo]
            commit = entry["refs"][revision]
            body = {"id": repo, "sha": commit,
                    "siblings": [_sibling(n, d) for n, d in sorted(entry["commits"][commit].items())]}
            return self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
        if path.startswith("/cdn/"):  # the "CDN" an LFS resolve redirects to
            return self._serve(srv.cdn.get(path[len("/cdn/"):]))
        res = re.match(r"^/(.+)/resolve/([0-9a-f]{40})/(.+)$", path)
        if res:
            repo, commit, name = res.groups()
            if path in srv.fail:
                return self._send(srv.fail[path], b"")
            files = srv.repos.get(repo, {}).get("commits", {}).get(commit, {})
            if name not in files:
                return self._send(404, b"")
            data = srv.served.get((commit, name), files[name])
            if name.endswith(LFS_SUFFIXES) and srv.redirect_lfs:
                key = hashlib.sha256(data).hexdigest()
                srv.cdn[key] = data
                return self._send(302, b"", {"Location": f"http://localhost:{srv.server_address[1]}/cdn/{key}"})
            return self._serve(data)
        return self._send(404, b"")

    def _serve(self, data):
        if data is None:
            return self._send(404, b"")
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(re.match(r"bytes=(\d+)-$", rng).group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def _send(self, code, body, headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
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
    srv.repos = {REPO: {"refs": {"main": COMMIT, COMMIT: COMMIT}, "commits": {COMMIT: dict(model_files)}}}
    srv.requests, srv.served, srv.fail, srv.cdn = [], {}, {}, {}
    srv.redirect_lfs = True
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def spec(monkeypatch):
    monkeypatch.setitem(BACKBONES, "test_vit", SPEC)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return "test_vit"


def fast(hub, **kw):
    return {"endpoint": hub.base, "retries": 1, "backoff": 0.0, "timeout": 5.0, "progress": False, **kw}


def resolves(hub):
    return [r for r in hub.requests if "/resolve/" in r["path"] or r["path"].startswith("/cdn/")]


# ----------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------
def test_end_to_end_download_then_load(hub, spec, model_files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    dest = tmp_path / "models" / "dinov2-tiny"
    result = download_weights(REPO, dest, **fast(hub))
    assert result.changed and result.dest == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["config.json", "model.safetensors", "preprocessor_config.json", MANIFEST])
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (dest / name).read_bytes() == model_files[name]
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["repo"] == REPO and manifest["revision"] == "main" and manifest["commit"] == COMMIT
    assert manifest["endpoint"] == hub.base
    assert manifest["files"]["model.safetensors"] == {
        "sha256": hashlib.sha256(model_files["model.safetensors"]).hexdigest(),
        "size": len(model_files["model.safetensors"]), "lfs": True}
    assert manifest["files"]["config.json"]["sha256"] == hashlib.sha256(model_files["config.json"]).hexdigest()
    assert TOKEN not in (dest / MANIFEST).read_text()
    # pinned to the commit, never to the moving branch; API asked with blobs=true
    assert all(f"/resolve/{COMMIT}/" in r["path"] for r in resolves(hub) if "/resolve/" in r["path"])
    api = [r for r in hub.requests if r["path"].startswith("/api/")]
    assert api[0]["path"] == f"/api/models/{REPO}/revision/main" and api[0]["query"] == "blobs=true"
    # the token goes to the Hub's host only, not to the host an LFS redirect points to
    for r in hub.requests:
        expected = None if r["path"].startswith("/cdn/") else f"Bearer {TOKEN}"
        assert r["auth"] == expected, r
    assert any(r["path"].startswith("/cdn/") for r in hub.requests)
    assert not list(dest.parent.glob(".dinov2-tiny.download-*"))  # staging removed
    assert verify_folder(dest) == []
    # the folder loads with the project's loader, weights equal to the served checkpoint
    backbone = build_backbone(spec, weights_dir=dest)
    reference = Dinov2Model.from_pretrained(dest, local_files_only=True)
    torch.testing.assert_close(backbone.model.embeddings.patch_embeddings.projection.weight,
                               reference.embeddings.patch_embeddings.projection.weight)
    feats = backbone(torch.randn(1, 3, 30, 44))
    assert len(feats) == 4 and feats[0][0].shape == (1, 32, 3, 4)


def test_second_call_is_a_noop(hub, spec, tmp_path, caplog):
    dest = tmp_path / "w"
    download_weights(REPO, dest, **fast(hub))
    mtime = (dest / MANIFEST).stat().st_mtime_ns
    hub.requests.clear()
    with caplog.at_level(logging.INFO, logger="mdeaux"):
        result = download_weights(REPO, dest, **fast(hub))
    assert not result.changed
    assert resolves(hub) == []  # only the API was asked which commit main is
    assert (dest / MANIFEST).stat().st_mtime_ns == mtime
    assert "nothing to do" in caplog.text
    # pinned to the commit it needs no network at all
    hub.requests.clear()
    result = download_weights(REPO, dest, **fast(hub, revision=COMMIT, endpoint="http://127.0.0.1:9"))
    assert not result.changed and hub.requests == []


def test_endpoint_credentials_are_sent_but_never_recorded(hub, spec, tmp_path):
    endpoint = hub.base.replace("http://", "http://user:s3cret@")
    result = download_weights(REPO, tmp_path / "w", **fast(hub, endpoint=endpoint))
    assert result.manifest["endpoint"] == hub.base and "s3cret" not in (tmp_path / "w" / MANIFEST).read_text()
    basic = "Basic " + base64.b64encode(b"user:s3cret").decode()
    hub_requests = [r for r in hub.requests if not r["path"].startswith("/cdn/")]
    assert hub_requests and all(r["auth"] == basic for r in hub_requests)


def test_damaged_copy_is_downloaded_again(hub, spec, tmp_path, model_files):
    dest = tmp_path / "w"
    download_weights(REPO, dest, **fast(hub))
    (dest / "model.safetensors").write_bytes(b"truncated")
    assert any("model.safetensors" in p for p in verify_folder(dest))
    result = download_weights(REPO, dest, **fast(hub))
    assert result.changed and (dest / "model.safetensors").read_bytes() == model_files["model.safetensors"]


def test_corrupt_file_on_the_server(hub, spec, tmp_path, model_files):
    good = model_files["model.safetensors"]
    hub.served[(COMMIT, "model.safetensors")] = good[:-1] + bytes([good[-1] ^ 0xFF])  # same size, one bit off
    dest = tmp_path / "w"
    with pytest.raises(WeightsError, match=r"model\.safetensors.*sha256: expected") as err:
        download_weights(REPO, dest, **fast(hub))
    assert hashlib.sha256(good).hexdigest() in str(err.value)
    assert not dest.exists()
    staging = tmp_path / f".w.download-{COMMIT[:12]}"
    assert not (staging / "model.safetensors").exists() and not (staging / "model.safetensors.part").exists()


def test_corrupt_plain_git_file_is_caught_by_its_blob_id(hub, spec, tmp_path, model_files):
    hub.served[(COMMIT, "config.json")] = model_files["config.json"].replace(b"32", b"33", 1)
    with pytest.raises(WeightsError, match=r"config\.json.*git blob id"):
        download_weights(REPO, tmp_path / "w", **fast(hub))
    assert not (tmp_path / "w").exists()


def test_interrupted_download_resumes_with_what_was_verified(hub, spec, tmp_path):
    hub.fail[f"/{REPO}/resolve/{COMMIT}/preprocessor_config.json"] = 503
    dest = tmp_path / "w"
    with pytest.raises(WeightsError, match="503"):
        download_weights(REPO, dest, **fast(hub))
    assert not dest.exists()
    hub.fail.clear()
    hub.requests.clear()
    download_weights(REPO, dest, **fast(hub))
    fetched = {r["path"].rsplit("/", 1)[-1] for r in hub.requests if "/resolve/" in r["path"]}
    assert fetched == {"preprocessor_config.json"}  # config and weights were kept from the first call
    assert verify_folder(dest) == []


def test_kept_files_are_verified_before_reuse(hub, spec, tmp_path, model_files):
    hub.fail[f"/{REPO}/resolve/{COMMIT}/preprocessor_config.json"] = 404
    with pytest.raises(WeightsError, match="HTTP 404"):
        download_weights(REPO, tmp_path / "w", **fast(hub))
    kept = tmp_path / f".w.download-{COMMIT[:12]}" / "model.safetensors"
    data = bytearray(kept.read_bytes())
    data[100] ^= 0xFF  # damaged while waiting (same size)
    kept.write_bytes(bytes(data))
    hub.fail.clear()
    hub.requests.clear()
    download_weights(REPO, tmp_path / "w", **fast(hub))
    fetched = {r["path"].rsplit("/", 1)[-1] for r in hub.requests if "/resolve/" in r["path"]}
    assert fetched == {"model.safetensors", "preprocessor_config.json"}
    assert (tmp_path / "w" / "model.safetensors").read_bytes() == model_files["model.safetensors"]


def test_api_404_names_repo_and_revision(hub, spec, tmp_path):
    with pytest.raises(WeightsError, match=r"test-org/DINOv2-Tiny.*revision 'v9'.*RevisionNotFound"):
        download_weights(REPO, tmp_path / "w", **fast(hub, revision="v9"))
    with pytest.raises(WeightsError, match=r"'nobody/nothing' at revision 'main'.*404"):
        download_weights("nobody/nothing", tmp_path / "w", **fast(hub))
    assert not (tmp_path / "w").exists()


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
    shards = json.loads(files["model.safetensors.index.json"])["weight_map"].values()
    hub.repos[REPO]["commits"][COMMIT] = files
    dest = tmp_path / "w"
    download_weights(REPO, dest, **fast(hub))
    assert set(shards) <= {p.name for p in dest.iterdir()} and len(set(shards)) > 1
    assert build_backbone(spec, weights_dir=dest).embed_dim == 32


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
    with pytest.raises(WeightsError, match="random init, nothing to download"):
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


def _git_dvc_repo(path: Path, scm: bool) -> None:
    path.mkdir()
    if scm:
        subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run([shutil.which("dvc"), "init", "-q", *([] if scm else ["--no-scm"])], cwd=path, check=True)
    (path / "params.yaml").write_text("profile: mini\n")


needs_dvc = pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None, reason="needs git and dvc")


@needs_dvc
def test_cli_dvc_add_in_a_git_dvc_repo(hub, spec, tmp_path, monkeypatch, capsys):
    repo = tmp_path / "proj"
    _git_dvc_repo(repo, scm=True)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HF_ENDPOINT", hub.base)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert cli.main(["weights", spec, "--no-progress", "--check"]) == 0
    dest = repo / "models" / "dinov2-tiny"  # default: models/<repo name in lower case>
    dvc_file = repo / "models" / "dinov2-tiny.dvc"
    assert verify_folder(dest) == [] and dvc_file.is_file()
    assert "path: dinov2-tiny" in dvc_file.read_text()
    out = capsys.readouterr()
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
