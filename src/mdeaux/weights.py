"""Download a backbone's pretrained weights once, into a folder DVC can track and share.

Compute nodes often have no internet, and the backbone loader (``mdeaux.model.backbone``) only
ever reads a local Hugging Face model folder. ``mdeaux weights <backbone>`` is run once on a
machine with internet (a login node):

1. the Hugging Face Hub API (``GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true``)
   names the commit the revision points to and lists the repository's files with their sizes,
   git blob ids and, for LFS files, their sha256;
2. only the files loading needs are fetched, pinned to that commit
   (``{endpoint}/{repo}/resolve/{commit}/{file}``): ``config.json``, the weights as
   ``model.safetensors`` or its sharded index and shards (``pytorch_model.bin`` only when the
   repository has no safetensors), and ``preprocessor_config.json`` when present. ONNX, Flax, TF
   exports and sub-folders are skipped;
3. every file is checked (LFS files: sha256 and size; plain git files: size and git blob id) with
   the resumable downloader of ``mdeaux.fetch``; partial downloads are kept beside the destination
   in ``.<name>.download-<commit>/`` and resumed by the next call;
4. the complete folder, with a ``MANIFEST.json`` (repository, revision, commit, files with sha256
   and size, endpoint, date), replaces the destination in one rename (``mdeaux.atomic``);
5. inside a DVC repository the folder is then tracked with ``dvc add``; ``dvc push`` shares it and
   ``dvc pull`` brings it to the compute nodes.

A destination that already holds a verified copy of the same commit is left as it is.
``HF_ENDPOINT`` (a mirror) and ``HF_TOKEN`` (gated or private repositories, sent as a Bearer header
to the endpoint's host only, never logged) are read from the environment, as the Hugging Face
tools do.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from mdeaux.atomic import atomic_dir, write_json
from mdeaux.fetch import NETWORK_ERRORS, RETRYABLE_STATUS, FetchError, _auth_header, download, file_digests, redact_url

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"  # huggingface_hub's default; HF_ENDPOINT overrides it
DEFAULT_REVISION = "main"
MANIFEST = "MANIFEST.json"
CONFIG_FILE = "config.json"
# Weight layouts transformers' from_pretrained reads, in the order it prefers them (safetensors first).
WEIGHT_LAYOUTS = (
    ("model.safetensors", None),
    ("model.safetensors.index.json", "sharded"),
    ("pytorch_model.bin", None),
    ("pytorch_model.bin.index.json", "sharded"),
)
OPTIONAL_FILES = ("preprocessor_config.json",)  # image processor settings (mean, std, size); not needed to load
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class WeightsError(RuntimeError):
    """The weights could not be resolved, downloaded, verified or tracked."""


# ----------------------------------------------------------------------------------------------
# backbones
# ----------------------------------------------------------------------------------------------
def known_backbones() -> dict[str, str | None]:
    """``{backbone name: Hugging Face repository}`` (None: randomly initialised, nothing to download)."""
    from mdeaux.model.backbone import BACKBONES

    return {name: spec.hf_repo for name, spec in BACKBONES.items()}


def repo_of(backbone: str) -> str:
    """The Hugging Face repository holding ``backbone``'s weights."""
    known = known_backbones()
    if backbone not in known:
        raise WeightsError(f"unknown backbone {backbone!r}; known backbones: {', '.join(known)} (see `mdeaux weights --list`)")
    repo = known[backbone]
    if repo is None:
        raise WeightsError(f"backbone {backbone!r} is a random init, nothing to download")
    return repo


def default_dest(repo: str, root: Path | None = None) -> Path:
    """``<root>/models/<last part of the repo id, lower case>`` (params.yaml: models/dinov2-giant)."""
    name = repo.rstrip("/").rsplit("/", 1)[-1].lower()
    return (root if root is not None else Path.cwd()) / "models" / name


def resolve_endpoint(endpoint: str | None = None) -> str:
    """``endpoint``, else ``$HF_ENDPOINT``, else https://huggingface.co; without a trailing slash."""
    value = endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    if urlsplit(value).scheme not in ("http", "https"):
        raise WeightsError(f"Hugging Face endpoint {redact_url(value)!r} must be an http(s) URL")
    return value.rstrip("/")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


# ----------------------------------------------------------------------------------------------
# the Hub API
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    """One file of a Hub repository at one commit."""

    name: str
    size: int
    sha256: str | None  # LFS files: sha256 of the content
    blob_id: str | None  # git blob id (sha1 of "blob <size>\0" + content) of plain git files

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class Snapshot:
    """A repository at the commit a revision pointed to when the Hub was asked."""

    repo: str
    revision: str
    commit: str
    files: dict[str, RemoteFile]


class _BearerAuth(urllib.request.BaseHandler):
    """Adds ``Authorization: Bearer <token>`` to requests for the endpoint's own scheme and host.

    Requests that a redirect sends elsewhere (the Hub's CDN with a signed URL) do not get it, and the
    header is unredirected so urllib never copies it onto a redirect itself.
    """

    handler_order = 100

    def __init__(self, endpoint: str, token: str):
        parts = urlsplit(redact_url(endpoint))
        self._origin = (parts.scheme.lower(), parts.netloc.lower())
        self._token = token

    def _add(self, request: urllib.request.Request) -> urllib.request.Request:
        if (request.type.lower(), request.host.lower()) == self._origin and not request.has_header("Authorization"):
            request.add_unredirected_header("Authorization", f"Bearer {self._token}")
        return request

    http_request = https_request = _add


@contextlib.contextmanager
def hub_auth(endpoint: str, token: str | None) -> Iterator[None]:
    """While active, urllib requests (those of ``mdeaux.fetch`` too) to ``endpoint`` carry the token.

    ``mdeaux.fetch.download`` builds its own requests, so the token travels through urllib's
    process-wide opener, installed here and restored afterwards.
    """
    if not token:
        yield
        return
    previous = getattr(urllib.request, "_opener", None)  # what urlopen used before (None: its default)
    urllib.request.install_opener(urllib.request.build_opener(_BearerAuth(endpoint, token)))
    try:
        yield
    finally:
        urllib.request.install_opener(previous)


def _api_url(endpoint: str, repo: str, revision: str) -> str:
    return f"{endpoint}/api/models/{quote(repo, safe='/')}/revision/{quote(revision, safe='')}?blobs=true"


def _api_error(err: urllib.error.HTTPError, repo: str, revision: str, endpoint: str) -> WeightsError:
    code = err.headers.get("X-Error-Code", "") if err.headers else ""
    message = err.headers.get("X-Error-Message", "") if err.headers else ""
    where = f"{repo!r} at revision {revision!r} on {redact_url(endpoint)}"
    detail = f"HTTP {err.code}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if code == "RevisionNotFound":
        hint = "the repository exists but has no such branch, tag or commit; check --revision"
    elif code == "GatedRepo" or err.code == 403:
        hint = ("the repository is gated or private: accept its terms on the website and set HF_TOKEN "
                "to a token of that account")
    elif err.code in (401, 404):
        hint = ("check the repository name and --revision; a private or gated repository also answers "
                "like this without a valid HF_TOKEN")
    else:
        hint = "the Hub refused the request"
    return WeightsError(f"cannot list {where}: {detail} ({hint})")


def _get_json(url: str, *, timeout: float, retries: int, backoff: float, repo: str, revision: str,
              endpoint: str) -> dict:
    request = urllib.request.Request(redact_url(url), headers={"Accept": "application/json", "User-Agent": "mdeaux-weights"})
    basic = _auth_header(url)  # user:password@ in the endpoint, as mdeaux.fetch sends it
    if basic:
        request.add_unredirected_header("Authorization", basic)
    failures = 0
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                body = resp.read()
            break
        except urllib.error.HTTPError as err:
            if not (err.code in RETRYABLE_STATUS or err.code >= 500):
                raise _api_error(err, repo, revision, endpoint) from None
            error = f"HTTP {err.code} {err.reason}"
        except NETWORK_ERRORS as err:
            error = f"{type(err).__name__}: {err}"
        failures += 1
        if failures > retries:
            raise WeightsError(
                f"cannot list {repo!r} at revision {revision!r} on {redact_url(endpoint)} after {failures} "
                f"attempts: {error} (is the machine online? compute nodes usually are not: run this on a login node)"
            )
        time.sleep(min(backoff * 2 ** (failures - 1), 30.0))
    try:
        return json.loads(body)
    except ValueError:
        raise WeightsError(f"the Hub answered {redact_url(url)} with something that is not JSON") from None


def _parse_snapshot(info: dict, repo: str, revision: str, url: str) -> Snapshot:
    shown = redact_url(url)
    commit = info.get("sha")
    if not isinstance(commit, str) or not _COMMIT.match(commit.lower()):
        raise WeightsError(f"{shown}: expected a 40-hex commit in field 'sha', got {commit!r}")
    siblings = info.get("siblings")
    if not isinstance(siblings, list):
        raise WeightsError(f"{shown}: expected a list in field 'siblings', got {type(siblings).__name__}")
    files = {}
    for entry in siblings:
        name = entry.get("rfilename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise WeightsError(f"{shown}: a sibling has no 'rfilename': {entry!r}")
        lfs = entry.get("lfs") or None
        size = lfs.get("size") if lfs else entry.get("size")
        if not isinstance(size, int) or size < 0:
            raise WeightsError(f"{shown}: file {name!r} has no size (was the API asked with blobs=true?)")
        sha256 = None
        if lfs:
            sha256 = str(lfs.get("sha256", "")).lower()
            if not _SHA256.match(sha256):
                raise WeightsError(f"{shown}: LFS file {name!r} has no valid 'lfs.sha256' ({lfs.get('sha256')!r})")
        blob = entry.get("blobId")
        blob_id = blob.lower() if isinstance(blob, str) and re.match(r"^[0-9a-fA-F]{40}$", blob) else None
        files[name] = RemoteFile(name, size, sha256, None if lfs else blob_id)
    return Snapshot(repo, revision, commit.lower(), files)


def repo_snapshot(repo: str, revision: str = DEFAULT_REVISION, *, endpoint: str | None = None,
                  timeout: float = 60.0, retries: int = 5, backoff: float = 0.5) -> Snapshot:
    """Ask the Hub which commit ``revision`` names and which files (sizes, hashes) it holds.

    Call inside ``hub_auth`` for gated or private repositories.
    """
    endpoint = resolve_endpoint(endpoint)
    url = _api_url(endpoint, repo, revision)
    info = _get_json(url, timeout=timeout, retries=retries, backoff=backoff, repo=repo, revision=revision,
                     endpoint=endpoint)
    if not isinstance(info, dict):
        raise WeightsError(f"{redact_url(url)}: expected a JSON object, got {type(info).__name__}")
    return _parse_snapshot(info, repo, revision, url)


def select_files(snapshot: Snapshot) -> tuple[list[str], str | None]:
    """(files to fetch first, the sharded index whose shards follow or None).

    ``config.json`` and one weight layout (safetensors preferred, as transformers does; no ONNX, Flax
    or TF exports), plus ``preprocessor_config.json`` when present. Only top-level files count.
    """
    files = snapshot.files
    where = f"{snapshot.repo}@{snapshot.commit[:12]}"
    if CONFIG_FILE not in files:
        raise WeightsError(f"{where} has no {CONFIG_FILE}: it is not a transformers model repository")
    for name, kind in WEIGHT_LAYOUTS:
        if name in files:
            chosen = [CONFIG_FILE, name] + [f for f in OPTIONAL_FILES if f in files]
            return chosen, name if kind == "sharded" else None
    top = sorted(f for f in files if "/" not in f)
    raise WeightsError(
        f"{where} holds none of the weight files transformers loads ({', '.join(n for n, _ in WEIGHT_LAYOUTS)}); "
        f"its top-level files: {', '.join(top) or 'none'}"
    )


def shards_of(index_path: Path, snapshot: Snapshot) -> list[str]:
    """The shard files a sharded index's ``weight_map`` names; each must be in the repository."""
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError):
        raise WeightsError(f"{index_path.name} of {snapshot.repo}: expected JSON with a 'weight_map' object") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightsError(f"{index_path.name} of {snapshot.repo}: 'weight_map' is empty or not an object")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard.startswith("."):
            raise WeightsError(f"{index_path.name} of {snapshot.repo}: shard name {shard!r} is not a plain file name")
        if shard not in snapshot.files:
            raise WeightsError(
                f"{index_path.name} of {snapshot.repo}@{snapshot.commit[:12]} names shard {shard!r}, "
                "which the repository does not hold"
            )
    return shards


# ----------------------------------------------------------------------------------------------
# verification
# ----------------------------------------------------------------------------------------------
def git_blob_id(path: Path) -> str:
    """The git blob id of a file: sha1 of ``b"blob <size>\\0"`` followed by the content."""
    sha1 = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha1.update(chunk)
    return sha1.hexdigest()


def _problems(path: Path, remote: RemoteFile) -> list[str]:
    """Why ``path`` is not ``remote`` (empty: it is)."""
    if not path.is_file():
        return ["missing"]
    size = path.stat().st_size
    if size != remote.size:
        return [f"size: expected {remote.size} bytes, got {size}"]
    if remote.sha256 is not None:
        found = file_digests(path)["sha256"]
        if found != remote.sha256:
            return [f"sha256: expected {remote.sha256}, got {found}"]
    elif remote.blob_id is not None:
        found = git_blob_id(path)
        if found != remote.blob_id:
            return [f"git blob id: expected {remote.blob_id}, got {found}"]
    return []


def read_manifest(folder: Path) -> dict | None:
    """The folder's ``MANIFEST.json`` or None when there is none; a damaged one raises."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise WeightsError(f"{path} is not valid JSON: delete the folder and download again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or "commit" not in manifest:
        raise WeightsError(f"{path}: expected an object with 'repo', 'commit' and 'files'")
    return manifest


def verify_folder(folder: Path) -> list[str]:
    """Problems of a downloaded folder against its ``MANIFEST.json`` (sizes and sha256); empty: complete."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"{folder / MANIFEST} is missing"]
    problems = []
    for name, entry in sorted(manifest["files"].items()):
        remote = RemoteFile(name, int(entry.get("size", -1)), entry.get("sha256"), None)
        problems += [f"{name}: {p}" for p in _problems(folder / name, remote)]
    return problems


# ----------------------------------------------------------------------------------------------
# download
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightsResult:
    dest: Path
    manifest: dict
    changed: bool  # False: the destination already held a verified copy of the same commit


def _staging_dir(dest: Path, commit: str) -> Path:
    return dest.parent / f".{dest.name}.download-{commit[:12]}"


def _fetch_one(remote: RemoteFile, snapshot: Snapshot, endpoint: str, staging: Path, *, retries: int,
               timeout: float, backoff: float, progress: bool) -> None:
    """Put a verified copy of ``remote`` into ``staging`` (kept from an earlier call, or downloaded)."""
    path = staging / remote.name
    if path.is_file():
        if not _problems(path, remote):
            log.info("  %s: already downloaded and verified (%s)", remote.name, _human(remote.size))
            return
        path.unlink()
    url = f"{endpoint}/{quote(snapshot.repo, safe='/')}/resolve/{snapshot.commit}/{quote(remote.name)}"
    log.info("  %s: downloading %s%s", remote.name, _human(remote.size),
             f", sha256 {remote.sha256[:12]}..." if remote.lfs else "")
    try:
        download(url, path, sha256=remote.sha256, size=remote.size, retries=retries, timeout=timeout,
                 backoff=backoff, progress=progress)
    except FetchError as err:
        raise WeightsError(f"{snapshot.repo}@{snapshot.commit[:12]} file {remote.name}: {err}") from None
    if remote.blob_id is not None:
        found = git_blob_id(path)
        if found != remote.blob_id:
            path.unlink()
            raise WeightsError(
                f"{snapshot.repo}@{snapshot.commit[:12]} file {remote.name} failed verification (git blob id: "
                f"expected {remote.blob_id}, got {found}); the file was deleted. Download again."
            )


def _check_space(staging: Path, remotes: list[RemoteFile]) -> None:
    needed = sum(r.size for r in remotes if not (staging / r.name).is_file())
    free = shutil.disk_usage(staging).free
    if needed > free:
        raise WeightsError(f"{_human(needed)} still to download but only {_human(free)} free in {staging.parent}")


def _existing(dest: Path, repo: str, force: bool) -> dict | None:
    """The manifest of what ``dest`` holds now (None: nothing); refuse to overwrite a foreign folder."""
    if not dest.exists():
        return None
    if not dest.is_dir():
        raise WeightsError(f"{dest} exists and is not a folder: move it away or choose another --dest")
    manifest = read_manifest(dest)
    if manifest is None and any(dest.iterdir()) and not force:
        raise WeightsError(
            f"{dest} already holds files that `mdeaux weights` did not write (no {MANIFEST}): move them away, "
            "choose another --dest, or pass --force to replace the folder"
        )
    if manifest is not None and manifest.get("repo") != repo and not force:
        raise WeightsError(
            f"{dest} holds weights of {manifest.get('repo')!r}, not {repo!r}: choose another --dest or pass --force"
        )
    return manifest


def download_weights(repo: str, dest: Path, *, revision: str = DEFAULT_REVISION, endpoint: str | None = None,
                     token: str | None = None, retries: int = 5, timeout: float = 60.0, backoff: float = 0.5,
                     progress: bool = True, force: bool = False) -> WeightsResult:
    """Make ``dest`` a verified local copy of ``repo`` at ``revision`` (see the module docstring)."""
    dest = Path(dest).absolute()
    endpoint = resolve_endpoint(endpoint)
    token = token if token is not None else os.environ.get("HF_TOKEN") or None
    current = _existing(dest, repo, force)
    if current is not None and _COMMIT.match(revision.lower()) and current.get("commit") == revision.lower():
        problems = verify_folder(dest)  # a pinned commit already here: no need to ask the Hub
        if not problems:
            log.info("%s already holds a verified copy of %s@%s: nothing to do", dest, repo, revision[:12])
            return WeightsResult(dest, current, False)
    with hub_auth(endpoint, token):
        snapshot = repo_snapshot(repo, revision, endpoint=endpoint, timeout=timeout, retries=retries, backoff=backoff)
        log.info("%s@%s is commit %s", repo, revision, snapshot.commit)
        if current is not None and current.get("commit") == snapshot.commit:
            log.info("verifying the copy in %s", dest)
            problems = verify_folder(dest)
            if not problems:
                log.info("%s already holds a verified copy of commit %s: nothing to do", dest, snapshot.commit[:12])
                return WeightsResult(dest, current, False)
            log.warning("%s is damaged (%s): downloading it again", dest, "; ".join(problems[:3]))
        elif current is not None:
            log.info("%s holds commit %s; %s now points to %s: replacing it", dest,
                     str(current.get("commit"))[:12], revision, snapshot.commit[:12])
        manifest = _download_snapshot(snapshot, dest, endpoint, retries=retries, timeout=timeout,
                                      backoff=backoff, progress=progress)
    return WeightsResult(dest, manifest, True)


def _download_snapshot(snapshot: Snapshot, dest: Path, endpoint: str, *, retries: int, timeout: float,
                       backoff: float, progress: bool) -> dict:
    first, index = select_files(snapshot)
    staging = _staging_dir(dest, snapshot.commit)
    staging.mkdir(parents=True, exist_ok=True)
    kw = dict(retries=retries, timeout=timeout, backoff=backoff, progress=progress)
    try:
        names = list(first)
        if index is not None:  # the index names the shards: fetch it first
            _fetch_one(snapshot.files[index], snapshot, endpoint, staging, **kw)
            names += shards_of(staging / index, snapshot)
        remotes = [snapshot.files[n] for n in names]
        total = sum(r.size for r in remotes)
        log.info("downloading %d file(s), %s, into %s", len(remotes), _human(total), dest)
        _check_space(staging, remotes)
        for remote in remotes:
            _fetch_one(remote, snapshot, endpoint, staging, **kw)
    except BaseException:
        kept = [p.name for p in staging.iterdir()] if staging.is_dir() else []
        if kept:
            log.warning("kept the verified or partial files %s in %s: the next call resumes from them",
                        ", ".join(sorted(kept)), staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest = {
        "repo": snapshot.repo,
        "revision": snapshot.revision,
        "commit": snapshot.commit,
        "endpoint": redact_url(endpoint),
        "downloaded_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "files": {r.name: {"sha256": file_digests(staging / r.name)["sha256"] if not r.lfs else r.sha256,
                           "size": r.size, "lfs": r.lfs} for r in remotes},
        "written_by": "mdeaux weights",
    }
    with atomic_dir(dest) as tmp:
        for remote in remotes:
            os.replace(staging / remote.name, tmp / remote.name)
        write_json(tmp / MANIFEST, manifest)
    shutil.rmtree(staging, ignore_errors=True)
    for stale in dest.parent.glob(f".{dest.name}.download-*"):  # leftovers of other commits
        shutil.rmtree(stale, ignore_errors=True)
    log.info("%s: %d file(s) verified, %s", dest, len(remotes), MANIFEST)
    return manifest


# ----------------------------------------------------------------------------------------------
# DVC
# ----------------------------------------------------------------------------------------------
def dvc_root_of(path: Path) -> Path | None:
    """The nearest folder above ``path`` holding a ``.dvc/`` directory (None: not in a DVC repository)."""
    here = Path(path).absolute().parent
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _dvc_command() -> list[str]:
    found = shutil.which("dvc") or shutil.which("dvc", path=str(Path(sys.executable).parent))
    if found is None:
        raise WeightsError(
            "dvc is not installed or not on PATH (pip install dvc): install it, or pass --no-dvc and "
            "track the folder yourself"
        )
    return [found]


def _git_ignored(root: Path, rel: str) -> bool:
    """Whether git ignores ``rel`` in ``root`` (False when git or the git repository is missing)."""
    git = shutil.which("git")
    if git is None:
        return False
    result = subprocess.run([git, "-C", str(root), "check-ignore", "-q", rel], capture_output=True)
    return result.returncode == 0


def dvc_add(dest: Path, root: Path) -> Path:
    """``dvc add <dest>`` in the DVC repository ``root``; returns the written ``<dest>.dvc``."""
    dest = Path(dest).absolute()
    try:
        rel = dest.relative_to(root.absolute())
    except ValueError:
        raise WeightsError(f"{dest} is not inside the DVC repository {root}") from None
    command = _dvc_command()
    dvc_file = f"{rel.as_posix()}.dvc"
    if _git_ignored(root, dvc_file):
        raise WeightsError(
            f"git ignores {dvc_file} in {root}, so DVC cannot track {rel} (its .dvc file must be committed). "
            f"Ignore the folder's content instead of the folder, e.g. in .gitignore replace '/{rel.parent.as_posix()}/' "
            f"by '/{rel.parent.as_posix()}/*' and '!/{rel.parent.as_posix()}/*.dvc', or pass --no-dvc"
        )
    log.info("running: dvc add %s (in %s)", rel.as_posix(), root)
    try:
        subprocess.run([*command, "add", rel.as_posix()], cwd=root, check=True)
    except subprocess.CalledProcessError as err:
        raise WeightsError(f"`dvc add {rel.as_posix()}` failed with exit code {err.returncode} (see its output above)") from None
    return root / dvc_file


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mdeaux weights``."""
    parser.add_argument("backbone", nargs="?", help="backbone name (see --list), e.g. dinov2_vitg14")
    parser.add_argument("--list", action="store_true", help="list the known backbones and their repositories")
    parser.add_argument("--dest", type=Path,
                        help="target folder (default: models/<repository name in lower case>, e.g. models/dinov2-giant)")
    parser.add_argument("--revision", default=DEFAULT_REVISION,
                        help="branch, tag or commit of the repository (default: main; a commit makes reruns offline)")
    parser.add_argument("--endpoint", help=f"Hub URL or mirror (default: $HF_ENDPOINT, else {DEFAULT_ENDPOINT})")
    parser.add_argument("--no-dvc", action="store_true", help="do not run `dvc add` on the folder")
    parser.add_argument("--check", action="store_true",
                        help="load the folder with the backbone loader afterwards (ViT-g: 4.5 GB in memory)")
    parser.add_argument("--force", action="store_true",
                        help="replace a destination holding other files or another repository's weights")
    parser.add_argument("--retries", type=int, default=5, help="retries per file, resumed with HTTP Range (default 5)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _print_list() -> None:
    known = known_backbones()
    width = max(len(n) for n in known)
    for name, repo in known.items():
        target = f"{repo}  -> {default_dest(repo, Path('.')).as_posix()}" if repo else "(random init, nothing to download)"
        print(f"{name:<{width}}  {target}")


def _check_load(backbone: str, dest: Path) -> None:
    from mdeaux.model.backbone import build_backbone

    started = time.perf_counter()
    model = build_backbone(backbone, weights_dir=dest)
    count = sum(p.numel() for p in model.parameters())
    log.info("check: %s loads from %s (width %d, taps %s, %.1f M parameters) in %.1f s", backbone, dest,
             model.embed_dim, list(model.out_indices), count / 1e6, time.perf_counter() - started)


def command(args: argparse.Namespace) -> None:
    """``mdeaux weights``: see ``add_arguments`` and the module docstring."""
    if args.list:
        _print_list()
        return
    if not args.backbone:
        raise WeightsError("name a backbone (e.g. `mdeaux weights dinov2_vitg14`) or pass --list")
    repo = repo_of(args.backbone)
    if args.dest is not None:
        dest = args.dest
    else:
        from mdeaux.paths import repo_root

        try:
            root = repo_root()
        except FileNotFoundError:
            root = Path.cwd()
        dest = default_dest(repo, root)
    result = download_weights(repo, dest, revision=args.revision, endpoint=args.endpoint, retries=args.retries,
                              progress=not args.no_progress, force=args.force)
    dest = result.dest
    if args.check:
        _check_load(args.backbone, dest)
    commit = result.manifest["commit"]
    if args.no_dvc:
        log.info("--no-dvc: %s is not tracked with DVC", dest)
        return
    root = dvc_root_of(dest)
    if root is None:
        log.info("%s is not inside a DVC repository: not tracked with DVC (copy the folder to the compute nodes)", dest)
        return
    dvc_file = Path(f"{dest}.dvc")
    if result.changed or not dvc_file.is_file():
        dvc_file = dvc_add(dest, root)
    else:
        log.info("%s is unchanged and already tracked by %s", dest, dvc_file)
    rel = dest.relative_to(root.absolute())
    to_add = [f"{rel.as_posix()}.dvc"]
    if (dest.parent / ".gitignore").is_file():
        to_add.append((rel.parent / ".gitignore").as_posix())
    git = f"  git add {' '.join(to_add)} && git commit -m 'Backbone weights {repo}@{commit[:12]}'\n"
    print(
        f"\n{repo}@{commit[:12]} is in {rel.as_posix()} and tracked by DVC. Next steps:\n"
        + (git if (root / ".git").exists() else "")
        + "  dvc push    # copy the weights to the DVC remote\n"
        f"  dvc pull {rel.as_posix()}.dvc    # then on each compute node (it only needs to reach the DVC remote)"
    )


__all__ = ["DEFAULT_ENDPOINT", "MANIFEST", "RemoteFile", "Snapshot", "WeightsError", "WeightsResult", "add_arguments",
           "command", "default_dest", "download_weights", "dvc_add", "dvc_root_of", "git_blob_id", "hub_auth",
           "known_backbones", "read_manifest", "repo_of", "repo_snapshot", "resolve_endpoint", "select_files",
           "shards_of", "verify_folder"]
