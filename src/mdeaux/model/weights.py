"""Download a backbone's pretrained weights once, into a folder DVC can track and share.

Compute nodes often have no internet, so ``mdeaux weights <backbone>`` runs once on a login node;
``huggingface_hub`` does the talking to the Hub. ``HfApi.model_info(files_metadata=True)`` pins the
commit the revision names and gives each file's size, git blob id and, for LFS files, sha256. We
pick what loading needs (``config.json``, ``model.safetensors`` or its sharded index and shards,
``pytorch_model.bin`` only without safetensors, ``preprocessor_config.json`` when present) and
``hf_hub_download(revision=<commit>, local_dir=...)`` fetches each into ``.<dest>.download-<commit>/``
(resuming a broken transfer with HTTP Range; files completed before a failure serve the next call).
Each file is checked against that metadata (size, and sha256 or git blob id: the library checks
sizes only) and deleted if it fails. The folder, with a ``MANIFEST.json`` (repository, revision,
commit, endpoint, files with sha256 and size), replaces the destination in one rename; inside a DVC
repository ``dvc add`` tracks it. A verified copy of the same commit is left as it is (a commit as
``--revision`` needs no network). ``HF_ENDPOINT`` selects a mirror; ``HF_TOKEN`` goes to
huggingface_hub, which sends it to the endpoint's host only, never to the CDN it redirects to;
nothing here logs it. huggingface_hub is imported only to download, so ``--list`` stays light. (About
450 lines: beyond the library calls, the file selection, manifest checks, ``dvc add``, CLI and errors.)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mdeaux.atomic import atomic_dir, write_json

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"  # huggingface_hub's default; HF_ENDPOINT overrides it
DEFAULT_REVISION = "main"
MANIFEST = "MANIFEST.json"
CONFIG_FILE = "config.json"
# Weight layouts transformers' from_pretrained reads, in the order it prefers them, and whether sharded.
WEIGHT_LAYOUTS = (("model.safetensors", False), ("model.safetensors.index.json", True),
                  ("pytorch_model.bin", False), ("pytorch_model.bin.index.json", True))
OPTIONAL_FILES = ("preprocessor_config.json",)  # image processor settings (mean, std, size); not needed to load
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_OFFLINE = "is this machine online? compute nodes usually are not: run this on a login node, or set HF_ENDPOINT to a mirror"


class WeightsError(RuntimeError):
    """The weights could not be resolved, downloaded, verified or tracked."""


def known_backbones() -> dict[str, str | None]:
    """``{backbone name: Hugging Face repository}`` (None: nothing to download; the tiny ViT is made by the
    ``pretrain`` stage, or random with ``model.weights_dir: null``)."""
    from mdeaux.model.specs import BACKBONES

    return {name: spec.hf_repo for name, spec in BACKBONES.items()}


def repo_of(backbone: str) -> str:
    """The Hugging Face repository holding ``backbone``'s weights."""
    known = known_backbones()
    if backbone not in known:
        raise WeightsError(f"unknown backbone {backbone!r}; known backbones: {', '.join(known)} (see `mdeaux weights --list`)")
    if known[backbone] is None:
        raise WeightsError(f"backbone {backbone!r}: nothing to download: the pretrain stage makes it "
                           "(`dvc repro pretrain` writes models/tiny-pretrained; model.weights_dir null: a random ViT)")
    return known[backbone]


def default_dest(repo: str, root: Path | None = None) -> Path:
    """``<root>/models/<last part of the repo id, lower case>`` (params.yaml: models/dinov2-giant)."""
    return (root if root is not None else Path.cwd()) / "models" / repo.rstrip("/").rsplit("/", 1)[-1].lower()


def resolve_endpoint(endpoint: str | None = None) -> str:
    """``endpoint``, else ``$HF_ENDPOINT``, else https://huggingface.co; without a trailing slash."""
    value = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WeightsError(f"Hugging Face endpoint {value!r} must be an http(s) URL")
    if parts.username or parts.password:
        raise WeightsError("the Hugging Face endpoint must not carry credentials: put the token in HF_TOKEN")
    return value


@dataclass(frozen=True)
class RemoteFile:  # one file of a Hub repository at one commit
    name: str
    size: int | None  # None: the endpoint did not say (the file is then refused)
    sha256: str | None  # LFS files: sha256 of the content
    blob_id: str | None  # plain git files: git blob id (sha1 of "blob <size>\0" + content)


@dataclass(frozen=True)
class Snapshot:  # a repository at the commit a revision pointed to when the Hub was asked
    repo: str
    revision: str
    commit: str
    files: dict[str, RemoteFile]


@dataclass(frozen=True)
class _Hub:
    """Calls huggingface_hub for one repository and revision, and turns its errors into ones that say what to do."""
    repo: str
    revision: str
    endpoint: str
    token: str | None = field(repr=False)  # never shown
    retries: int
    timeout: float

    def call(self, fn, file: str | None = None):
        """``fn()``, tried again after a network or server error (``retries`` times)."""
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as err:
                explained = self._explain(err, file)
                if explained is None:
                    raise
                message, transient = explained
                if not transient or attempt == self.retries:
                    raise WeightsError(message + (f" (after {attempt + 1} attempts)" if attempt else "")) from None
                log.warning("%s; trying again (%d/%d)", message, attempt + 1, self.retries)
                time.sleep(min(2.0 ** attempt, 30.0))

    def _explain(self, err: Exception, file: str | None) -> tuple[str, bool] | None:
        """(what went wrong and what to do, whether trying again may help); None: not a Hub or network error."""
        import httpx2
        from huggingface_hub import errors

        if isinstance(err, errors.LocalEntryNotFoundError) and err.__cause__ is not None:
            err = err.__cause__  # hf_hub_download wraps the error of its HEAD request
        what = f"{self.repo!r} at revision {self.revision!r} on {self.endpoint}" + (f", file {file}" if file else "")
        first = (str(err).strip().splitlines() or [""])[0]
        hints = {
            errors.GatedRepoError: f"the repository is gated. Accept its conditions at {self.endpoint}/{self.repo} while "
            "logged in, then " + ("check that HF_TOKEN belongs to that account (it is set but has no access)"
                                  if self.token else "set HF_TOKEN to a read token of that account"),
            errors.RevisionNotFoundError: "the repository has no such branch, tag or commit; check --revision",
            errors.RepositoryNotFoundError: "repository not found; check its name (a private one also answers so "
            "without a valid HF_TOKEN)",
            errors.RemoteEntryNotFoundError: "the Hub listed the file but does not serve it; try again later",
            errors.OfflineModeIsEnabled: "huggingface_hub is in offline mode: unset HF_HUB_OFFLINE",
        }
        for kind, hint in hints.items():  # the first that applies (GatedRepoError is a RepositoryNotFoundError)
            if isinstance(err, kind):
                return f"{what}: {hint}", False
        if isinstance(err, errors.HfHubHTTPError) and err.response is not None:
            return f"{what}: HTTP {err.response.status_code} ({first})", err.response.status_code in (408, 429, 500, 502, 503, 504)
        if isinstance(err, (httpx2.TransportError, errors.LocalEntryNotFoundError, ConnectionError)):
            return f"cannot reach {what}: {type(err).__name__}: {first} ({_OFFLINE})", True
        return (f"{what}: {first}", False) if isinstance(err, OSError) else None  # e.g. the library's size check

    def snapshot(self) -> Snapshot:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, token=self.token, library_name="mdeaux")
        info = self.call(lambda: api.model_info(self.repo, revision=self.revision, files_metadata=True, timeout=self.timeout))
        if not isinstance(info.sha, str) or not _COMMIT.match(info.sha):
            raise WeightsError(f"{self.endpoint} named no commit for {self.repo}@{self.revision} (got {info.sha!r})")
        files = {}
        for sib in info.siblings or []:
            files[sib.rfilename] = RemoteFile(sib.rfilename, sib.lfs.size if sib.lfs else sib.size,
                                              sib.lfs.sha256.lower() if sib.lfs else None,
                                              None if sib.lfs or not sib.blob_id else sib.blob_id.lower())
        return Snapshot(self.repo, self.revision, info.sha, files)

    def download(self, snapshot: Snapshot, name: str, folder: Path) -> None:
        from huggingface_hub import hf_hub_download

        self.call(lambda: hf_hub_download(snapshot.repo, name, revision=snapshot.commit, local_dir=folder,
                                          endpoint=self.endpoint, token=self.token, etag_timeout=self.timeout,
                                          library_name="mdeaux"), file=name)


def select_files(snapshot: Snapshot) -> tuple[list[str], str | None]:
    """(files to fetch, the sharded index whose shards follow or None): ``config.json``, one weight layout
    (safetensors preferred, as transformers does; top-level files only) and ``preprocessor_config.json``."""
    files, where = snapshot.files, f"{snapshot.repo}@{snapshot.commit[:12]}"
    if CONFIG_FILE not in files:
        raise WeightsError(f"{where} has no {CONFIG_FILE}: it is not a transformers model repository")
    for name, sharded in WEIGHT_LAYOUTS:
        if name in files:
            return [CONFIG_FILE, name] + [f for f in OPTIONAL_FILES if f in files], name if sharded else None
    top = sorted(f for f in files if "/" not in f)
    raise WeightsError(f"{where} holds none of the weight files transformers loads "
                       f"({', '.join(n for n, _ in WEIGHT_LAYOUTS)}); its top-level files: {', '.join(top) or 'none'}")


def shards_of(index_path: Path, snapshot: Snapshot) -> list[str]:
    """The shard files a sharded index's ``weight_map`` names; each must be a top-level file of the repository."""
    try:
        shards = sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError):
        shards = []
    bad = [s for s in shards if not isinstance(s, str) or "/" in s or "\\" in s or s not in snapshot.files]
    if not shards or bad:
        raise WeightsError(f"{index_path.name} of {snapshot.repo}@{snapshot.commit[:12]}: expected a 'weight_map' naming "
                           "top-level files of the repository" + (f"; it names {bad}" if bad else ""))
    return shards


def _hashes(path: Path, blob: bool = False) -> tuple[str, str | None]:
    """(sha256, git blob id when ``blob``) of a file, in one pass."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(f"blob {path.stat().st_size}\0".encode()) if blob else None
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha256.update(chunk)
            if sha1 is not None:
                sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest() if sha1 is not None else None


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    return _hashes(path)[0]


def git_blob_id(path: Path) -> str:
    """The git blob id of a file: sha1 of ``b"blob <size>\\0"`` followed by the content."""
    return _hashes(path, blob=True)[1]


def _problems(path: Path, remote: RemoteFile) -> tuple[list[str], str | None]:
    """(why ``path`` is not ``remote``, empty when it is; its sha256)."""
    if not path.is_file():
        return ["missing"], None
    if path.stat().st_size != remote.size:
        return [f"size: expected {remote.size} bytes, got {path.stat().st_size}"], None
    sha256, blob = _hashes(path, blob=remote.blob_id is not None)
    if remote.sha256 is not None and sha256 != remote.sha256:
        return [f"sha256: expected {remote.sha256}, got {sha256}"], sha256
    if remote.blob_id is not None and blob != remote.blob_id:
        return [f"git blob id: expected {remote.blob_id}, got {blob}"], sha256
    return [], sha256


def read_manifest(folder: Path) -> dict | None:
    """The folder's ``MANIFEST.json`` or None when there is none; a damaged one raises."""
    path = Path(folder) / MANIFEST
    with contextlib.suppress(FileNotFoundError, ValueError):
        manifest = json.loads(path.read_text())
        if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) and "commit" in manifest:
            return manifest
    if path.is_file():
        raise WeightsError(f"{path} is damaged (expected JSON with 'repo', 'commit' and 'files'): delete the folder")
    return None


def verify_folder(folder: Path) -> list[str]:
    """Problems of a downloaded folder against its ``MANIFEST.json`` (sizes and sha256); empty: complete."""
    manifest = read_manifest(Path(folder))
    if manifest is None:
        return [f"{Path(folder) / MANIFEST} is missing"]
    return [f"{name}: {p}" for name, e in sorted(manifest["files"].items())
            for p in _problems(Path(folder) / name, RemoteFile(name, int(e.get("size", -1)), e.get("sha256"), None))[0]]


@dataclass(frozen=True)
class WeightsResult:
    dest: Path
    manifest: dict
    changed: bool  # False: the destination already held a verified copy of the same commit


def _existing(dest: Path, repo: str, force: bool) -> dict | None:
    """The manifest of what ``dest`` holds now (None: nothing); refuse to overwrite a foreign folder."""
    if not dest.exists():
        return None
    if not dest.is_dir():
        raise WeightsError(f"{dest} exists and is not a folder: move it away or choose another --dest")
    manifest = read_manifest(dest)
    if manifest is None and any(dest.iterdir()) and not force:
        raise WeightsError(f"{dest} already holds files that `mdeaux weights` did not write (no {MANIFEST}): move them "
                           "away, choose another --dest, or pass --force to replace the folder")
    if manifest is not None and manifest.get("repo") != repo and not force:
        raise WeightsError(f"{dest} holds weights of {manifest.get('repo')!r}, not {repo!r}: choose another --dest or pass --force")
    return manifest


def _unchanged(dest: Path, current: dict | None, commit: str) -> bool:
    """Whether ``dest`` holds a verified copy of ``commit``."""
    if current is None or current.get("commit") != commit:
        return False
    problems = verify_folder(dest)
    if problems:
        log.warning("%s is damaged (%s): downloading it again", dest, "; ".join(problems[:3]))
    else:
        log.info("%s already holds a verified copy of %s@%s: nothing to do", dest, current.get("repo"), commit[:12])
    return not problems


def download_weights(repo: str, dest: Path, *, revision: str = DEFAULT_REVISION, endpoint: str | None = None,
                     token: str | None = None, retries: int = 5, timeout: float = 60.0, progress: bool = True,
                     force: bool = False) -> WeightsResult:
    """Make ``dest`` a verified local copy of ``repo`` at ``revision`` (see the module docstring)."""
    dest = Path(dest).absolute()
    hub = _Hub(repo, revision, resolve_endpoint(endpoint), token or os.environ.get("HF_TOKEN") or None, retries, timeout)
    current = _existing(dest, repo, force)
    if _COMMIT.match(revision) and _unchanged(dest, current, revision):  # a pinned commit: no need to ask the Hub
        return WeightsResult(dest, current, False)
    snapshot = hub.snapshot()
    log.info("%s@%s is commit %s", repo, revision, snapshot.commit)
    if _unchanged(dest, current, snapshot.commit):
        return WeightsResult(dest, current, False)
    from huggingface_hub.utils import disable_progress_bars

    with contextlib.nullcontext() if progress else disable_progress_bars():
        return WeightsResult(dest, _download_snapshot(hub, snapshot, dest), True)


def _fetch(hub: _Hub, snapshot: Snapshot, remote: RemoteFile, staging: Path) -> str:
    """Put a verified copy of ``remote`` into ``staging`` (kept from an earlier call or downloaded); its sha256."""
    path = staging / remote.name
    if remote.size is None or not (remote.sha256 or remote.blob_id):
        raise WeightsError(f"{hub.endpoint} gave no size or hash for {snapshot.repo}/{remote.name}: it cannot be verified")
    for kept in (path.is_file(), False):
        log.info("  %s: %s", remote.name, "checking the copy kept from an earlier call" if kept
                 else f"downloading {remote.size / 1e6:.1f} MB")
        hub.download(snapshot, remote.name, staging)
        problems, sha256 = _problems(path, remote)
        if not problems:
            return sha256
        path.unlink(missing_ok=True)
        log.warning("  %s failed verification (%s) and was deleted", remote.name, problems[0])
        if not kept:
            raise WeightsError(f"{snapshot.repo}@{snapshot.commit[:12]} file {remote.name} failed verification "
                               f"({problems[0]}); the file was deleted. Run the command again; if it fails again, "
                               f"{hub.endpoint} serves a damaged file.")


def _download_snapshot(hub: _Hub, snapshot: Snapshot, dest: Path) -> dict:
    names, index = select_files(snapshot)
    staging = dest.parent / f".{dest.name}.download-{snapshot.commit[:12]}"
    staging.mkdir(parents=True, exist_ok=True)
    sha256 = {}
    try:
        if index is not None:  # the index names the shards: fetch it first
            sha256[index] = _fetch(hub, snapshot, snapshot.files[index], staging)
            names = names + shards_of(staging / index, snapshot)
        remotes = [snapshot.files[n] for n in names]
        log.info("%d file(s), %.1f MB, for %s", len(remotes), sum(r.size or 0 for r in remotes) / 1e6, dest)
        for remote in remotes:
            if remote.name not in sha256:
                sha256[remote.name] = _fetch(hub, snapshot, remote, staging)
    except BaseException:
        if sha256:
            log.warning("the verified files %s stay in %s: the next call reuses them", ", ".join(sha256), staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest = {"repo": snapshot.repo, "revision": snapshot.revision, "commit": snapshot.commit, "endpoint": hub.endpoint,
                "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                "files": {r.name: {"sha256": sha256[r.name], "size": r.size, "lfs": r.sha256 is not None} for r in remotes},
                "written_by": "mdeaux weights"}
    with atomic_dir(dest) as tmp:
        for remote in remotes:
            os.replace(staging / remote.name, tmp / remote.name)
        write_json(tmp / MANIFEST, manifest)
    for stale in dest.parent.glob(f".{dest.name}.download-*"):  # this staging and leftovers of other commits
        shutil.rmtree(stale, ignore_errors=True)
    log.info("%s: %d file(s) verified, %s written", dest, len(remotes), MANIFEST)
    return manifest


def dvc_root_of(path: Path) -> Path | None:
    """The nearest folder above ``path`` holding a ``.dvc/`` directory (None: not in a DVC repository)."""
    here = Path(path).absolute().parent
    return next((folder for folder in (here, *here.parents) if (folder / ".dvc").is_dir()), None)


def dvc_add(dest: Path, root: Path) -> Path:
    """``dvc add <dest>`` in the DVC repository ``root``; returns the written ``<dest>.dvc``."""
    rel = Path(dest).absolute().relative_to(root.absolute())
    dvc = shutil.which("dvc") or shutil.which("dvc", path=str(Path(sys.executable).parent))
    if dvc is None:
        raise WeightsError("dvc is not installed or not on PATH (pip install dvc): install it, or pass --no-dvc and "
                           "track the folder yourself")
    dvc_file, parent, git = f"{rel.as_posix()}.dvc", rel.parent.as_posix(), shutil.which("git")
    if git and subprocess.run([git, "-C", str(root), "check-ignore", "-q", dvc_file], capture_output=True, check=False).returncode == 0:
        raise WeightsError(
            f"git ignores {dvc_file} in {root}, so DVC cannot track {rel} (its .dvc file must be committed). Ignore the "
            f"folder's content instead of the folder, e.g. in .gitignore replace '/{parent}/' by '/{parent}/*' and "
            f"'!/{parent}/*.dvc', or pass --no-dvc")
    log.info("running: dvc add %s (in %s)", rel.as_posix(), root)
    try:
        subprocess.run([dvc, "add", rel.as_posix()], cwd=root, check=True)
    except subprocess.CalledProcessError as err:
        raise WeightsError(f"`dvc add {rel.as_posix()}` failed with exit code {err.returncode} (see its output above)") from None
    return root / dvc_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mdeaux weights``."""
    add = parser.add_argument
    add("backbone", nargs="?", help="backbone name (see --list), e.g. dinov2_vitg14")
    add("--list", action="store_true", help="list the known backbones and their repositories")
    add("--dest", type=Path, help="target folder (default: models/<repository name in lower case>)")
    add("--revision", default=DEFAULT_REVISION, help="branch, tag or commit (default: main; a commit makes reruns offline)")
    add("--endpoint", help=f"Hub URL or mirror (default: $HF_ENDPOINT, else {DEFAULT_ENDPOINT})")
    add("--no-dvc", action="store_true", help="do not run `dvc add` on the folder")
    add("--check", action="store_true", help="load the folder with the backbone loader afterwards (ViT-g: 4.5 GB)")
    add("--force", action="store_true", help="replace a destination holding other files or another repository's weights")
    add("--retries", type=int, default=5, help="retries of a Hub request after a network or server error (default 5)")
    add("--no-progress", action="store_true", help="no progress bars")


def command(args: argparse.Namespace) -> None:
    """``mdeaux weights``: see ``add_arguments`` and the module docstring."""
    if args.list:
        known = known_backbones()
        for name, repo in known.items():
            target = f"{repo}  -> {default_dest(repo, Path('.')).as_posix()}" if repo else "(nothing to download: made by the pretrain stage, models/tiny-pretrained)"
            print(f"{name:<{max(map(len, known))}}  {target}")
        return
    if not args.backbone:
        raise WeightsError("name a backbone (e.g. `mdeaux weights dinov2_vitg14`) or pass --list")
    repo, dest = repo_of(args.backbone), args.dest
    if dest is None:
        from mdeaux.paths import repo_root

        try:
            dest = default_dest(repo, repo_root())
        except FileNotFoundError:
            dest = default_dest(repo, Path.cwd())
    result = download_weights(repo, dest, revision=args.revision, endpoint=args.endpoint, retries=args.retries,
                              progress=not args.no_progress, force=args.force)
    dest, commit = result.dest, result.manifest["commit"]
    if args.check:
        from mdeaux.model.backbone import build_backbone

        started, model = time.perf_counter(), build_backbone(args.backbone, weights_dir=dest)
        log.info("check: %s loads from %s (width %d, taps %s, %.1f M parameters) in %.1f s", args.backbone, dest,
                 model.embed_dim, list(model.out_indices), sum(p.numel() for p in model.parameters()) / 1e6,
                 time.perf_counter() - started)
    root = None if args.no_dvc else dvc_root_of(dest)
    if root is None:
        log.info("%s is not tracked with DVC (%s)", dest, "--no-dvc" if args.no_dvc else
                 "not inside a DVC repository: copy the folder to the compute nodes")
        return
    if result.changed or not Path(f"{dest}.dvc").is_file():
        dvc_add(dest, root)
    else:
        log.info("%s is unchanged and already tracked by %s.dvc", dest, dest.name)
    rel = dest.relative_to(root.absolute())
    to_add = [f"{rel.as_posix()}.dvc"] + [(rel.parent / ".gitignore").as_posix()] * (dest.parent / ".gitignore").is_file()
    git = f"  git add {' '.join(to_add)} && git commit -m 'Backbone weights {repo}@{commit[:12]}'\n"
    print(f"\n{repo}@{commit[:12]} is in {rel.as_posix()} and tracked by DVC. Next steps:\n"
          + (git if (root / ".git").exists() else "") + "  dvc push    # copy the weights to the DVC remote\n"
          f"  dvc pull {rel.as_posix()}.dvc    # then on each compute node (it only needs to reach the DVC remote)")
