"""A local stand-in for the Hugging Face Hub's HTTP API, for tests (loopback only).

No package offers a Hub server, so this speaks just enough of the Hub's API for the real
``huggingface_hub`` client (``HfApi(endpoint=...)`` / ``HF_ENDPOINT``), for
``transformers.AutoModel*.from_pretrained(repo_id)`` and for ``datasets.load_dataset(repo_id)``:

- ``POST /api/repos/create``, ``GET /api/whoami-v2``, ``POST /api/validate-yaml``
- ``POST /api/{type}s/{id}/preupload/{rev}``: upload mode per file (``lfs`` for binary or
  large files, like the Hub's default ``.gitattributes``; ``regular`` otherwise)
- ``POST /{prefix}{id}.git/info/lfs/objects/batch`` + ``PUT``/verify of LFS objects (the
  "basic" transfer of the git-LFS batch API; Xet is not spoken, so uploads need
  ``HF_HUB_DISABLE_XET=1``, and downloads fall back to plain HTTP since no ``X-Xet-Hash``
  header is ever sent)
- ``POST /api/{type}s/{id}/commit/{rev}`` (ndjson): all operations land in one new commit
  or, on any error, none does (the Hub's atomic commit)
- ``GET /api/{type}s/{id}[/revision/{rev}]`` (info with ``sha`` and ``siblings``),
  ``/tree/{rev}[/{path}]``, ``/paths-info/{rev}``, ``/refs``
- ``HEAD``/``GET /{prefix}{id}/resolve/{rev}/{path}`` with ``ETag``, ``X-Repo-Commit``,
  ``Content-Length``, ``X-Linked-Etag``/``X-Linked-Size`` for LFS files, and ``Range``.

Errors carry the Hub's ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) so the client raises its usual exception types. Writes need
``Authorization: Bearer <token>``; :meth:`FakeHub.fail` injects HTTP errors per route.

Bounded: request bodies over ``max_body`` and stores over ``max_bytes`` get 413, and the
server shuts itself down after ``lifetime_s`` seconds even if a test forgets to stop it.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeHub", "git_blob_sha1"]

_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".parquet", ".arrow", ".png", ".jpg", ".npz", ".h5",
                 ".onnx", ".msgpack", ".zip", ".gz", ".tar")
_LFS_MIN_SIZE = 10 * 1024 * 1024
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO_ID = r"[A-Za-z0-9][\w.-]*/[\w.-]+|[A-Za-z0-9][\w.-]*"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class _File:
    sha256: str
    size: int
    lfs: bool
    git_oid: str  # git blob id: of the content, or of the LFS pointer for LFS files


@dataclass
class _Commit:
    oid: str
    parent: str | None
    title: str
    files: dict[str, _File]
    date: str


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, _Commit] = field(default_factory=dict)
    head: str = ""

    def commit_at(self, rev: str) -> _Commit | None:
        if rev in ("main", "refs/heads/main"):
            return self.commits[self.head]
        if rev in self.commits:
            return self.commits[rev]
        if len(rev) >= 7 and re.fullmatch(r"[0-9a-f]+", rev):
            hits = [c for oid, c in self.commits.items() if oid.startswith(rev)]
            return hits[0] if len(hits) == 1 else None
        return None


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern
    status: int
    message: str
    times: int | None


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra or {}
        self.headers = headers or {}


class FakeHub:
    """Start with ``with FakeHub(tmp_path, token=...) as hub:``; ``hub.url`` is the endpoint."""

    def __init__(self, root: str | Path, *, token: str, user: str = "tester", max_body: int = 256 * 2**20,
                 max_bytes: int = 1024 * 2**20, lifetime_s: float = 600.0):
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        self.token, self.user = token, user
        self.max_body, self.max_bytes, self.lifetime_s = max_body, max_bytes, lifetime_s
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) for debugging and assertions
        self.bodies_seen: list[bytes] = []  # every request body and header block, to check what was sent
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._stored = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._timer: threading.Timer | None = None

    # ---- lifecycle ----
    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ---- test controls ----
    def fail(self, method: str, path_regex: str, status: int, *, message: str = "injected failure",
             times: int | None = None) -> None:
        """Answer requests whose method and path match with ``status`` (``times`` times, or always)."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, message, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The content of every file of a revision, read from the store (not over HTTP)."""
        with self._lock:
            repo = self.repos[(repo_type, repo_id)]
            commit = repo.commit_at(revision)
            return {p: self._read(f.sha256) for p, f in commit.files.items()}

    def history(self, repo_id: str, repo_type: str = "model") -> list[str]:
        with self._lock:
            repo = self.repos[(repo_type, repo_id)]
            out, oid = [], repo.head
            while oid:
                out.append(oid)
                oid = repo.commits[oid].parent
            return out

    # ---- storage ----
    def _obj(self, sha256: str) -> Path:
        return self.root / "objects" / sha256

    def _read(self, sha256: str) -> bytes:
        return self._obj(sha256).read_bytes()

    def _store(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self._obj(sha)
        if not path.exists():
            with self._lock:
                if self._stored + len(data) > self.max_bytes:
                    raise _HubError(413, "fake hub storage limit reached")
                self._stored += len(data)
            tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha

    def _new_commit(self, repo: _Repo, files: dict[str, _File], title: str) -> _Commit:
        parent = repo.head or None
        seed = json.dumps([parent, title, sorted((p, f.git_oid) for p, f in files.items()), time.time_ns()])
        oid = hashlib.sha1(seed.encode()).hexdigest()
        date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        commit = _Commit(oid=oid, parent=parent, title=title, files=files, date=date)
        repo.commits[oid] = commit
        repo.head = oid
        return commit

    def _file_entry(self, data: bytes, path: str, lfs: bool) -> _File:
        sha = self._store(data)
        git_oid = git_blob_sha1(_lfs_pointer(sha, len(data)) if lfs else data)
        return _File(sha256=sha, size=len(data), lfs=lfs, git_oid=git_oid)

    @staticmethod
    def _wants_lfs(path: str, size: int, sample: bytes) -> bool:
        return path.lower().endswith(_LFS_SUFFIXES) or size >= _LFS_MIN_SIZE or b"\0" in sample

    # ---- routing ----
    def handle(self, h: _Handler, method: str) -> None:
        split = urlsplit(h.path)
        raw_path, query = split.path, parse_qs(split.query)
        body = h.read_body() if method in ("POST", "PUT") else b""
        with self._lock:
            self.bodies_seen.append(str(h.headers).encode() + h.path.encode() + body)
            fault = next((f for f in self._faults if f.method in (method, "*") and f.pattern.search(raw_path)), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
        try:
            if fault is not None:
                raise _HubError(fault.status, fault.message)
            status, headers, payload = self._route(h, method, raw_path, query, body)
        except _HubError as exc:
            headers = {"X-Error-Message": exc.message, **exc.headers}
            if exc.code:
                headers["X-Error-Code"] = exc.code
            status, payload = exc.status, {"error": exc.message, **exc.extra}
        self.requests.append((method, raw_path, status))
        h.respond(status, headers, payload, head=method == "HEAD")

    def _authorized(self, h: _Handler) -> bool:
        return h.headers.get("authorization", "") == f"Bearer {self.token}"

    def _require_auth(self, h: _Handler) -> None:
        if not self._authorized(h):
            raise _HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, h: _Handler, repo_type: str, repo_id: str) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self._authorized(h)):
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _route(self, h, method, raw_path, query, body):
        p = raw_path
        if method == "POST" and p == "/api/repos/create":
            return self._create_repo(h, json.loads(body or b"{}"))
        if method == "GET" and p == "/api/whoami-v2":
            self._require_auth(h)
            return 200, {}, {"type": "user", "name": self.user, "auth": {"accessToken": {"role": "write"}}}
        if method == "POST" and p == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body or b"{}"))
        m = re.fullmatch(r"/_lfs/([0-9a-f]{64})", p)
        if m and method == "PUT":
            return self._lfs_put(h, m.group(1), body)
        if p == "/_lfs/verify" and method == "POST":
            info = json.loads(body)
            if not self._obj(info["oid"]).exists():
                raise _HubError(404, f"LFS object {info['oid']} was not uploaded")
            return 200, {}, {"success": True}
        m = re.fullmatch(rf"/(datasets/|spaces/)?({_REPO_ID})\.git/info/lfs/objects/batch", p)
        if m and method == "POST":
            return self._lfs_batch(h, json.loads(body))
        m = re.fullmatch(rf"/api/(model|dataset|space)s/({_REPO_ID})(?:/(.*))?", p)
        if m:
            return self._api(h, method, m.group(1), m.group(2), m.group(3) or "", query, body)
        m = re.fullmatch(rf"/(datasets/|spaces/)?({_REPO_ID})/resolve/([^/]+)/(.+)", p)
        if m and method in ("GET", "HEAD"):
            repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(m.group(1) or "", "model")
            return self._resolve(h, method, repo_type, m.group(2), unquote(m.group(3)), unquote(m.group(4)))
        raise _HubError(404, f"no route for {method} {p}")

    # ---- handlers ----
    def _create_repo(self, h, payload):
        self._require_auth(h)
        repo_type = payload.get("type") or "model"
        name, org = payload.get("name"), payload.get("organization") or self.user
        repo_id = f"{org}/{name}"
        if not name or not re.fullmatch(_REPO_ID, repo_id):
            raise _HubError(400, f"invalid repo name {repo_id!r}")
        url = f"{self.url}/{_PREFIX[repo_type]}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                raise _HubError(409, "You already created this repo", extra={"url": url})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=private)
            attrs = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in _LFS_SUFFIXES).encode()
            self._new_commit(repo, {".gitattributes": self._file_entry(attrs, ".gitattributes", False)},
                             "initial commit")
            self.repos[(repo_type, repo_id)] = repo
        return 200, {}, {"url": url, "name": repo_id, "id": repo_id}

    def _validate_yaml(self, payload):
        import yaml

        content = payload.get("content", "")
        m = re.match(r"^---\n(.*?)\n---", content, re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
        except yaml.YAMLError as exc:
            raise _HubError(400, "invalid YAML", extra={"errors": [{"message": str(exc)}]}) from None
        if meta is not None and not isinstance(meta, dict):
            raise _HubError(400, "metadata is not a mapping", extra={"errors": [{"message": "not a mapping"}]})
        return 200, {}, {"errors": [], "warnings": []}

    def _lfs_batch(self, h, payload):
        self._require_auth(h)
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self._obj(obj["oid"]).exists():
                entry["actions"] = {"upload": {"href": f"{self.url}/_lfs/{obj['oid']}"},
                                    "verify": {"href": f"{self.url}/_lfs/verify"}}
            objects.append(entry)
        return 200, {}, {"transfer": "basic", "objects": objects}

    def _lfs_put(self, h, oid, body):
        if hashlib.sha256(body).hexdigest() != oid:
            raise _HubError(400, "uploaded content does not match its sha256")
        self._store(body)
        return 200, {"ETag": f'"{oid}"'}, {}

    def _api(self, h, method, repo_type, repo_id, rest, query, body):
        if method == "POST" and rest.startswith("preupload/"):
            return self._preupload(h, self._repo(h, repo_type, repo_id), json.loads(body))
        if method == "POST" and rest.startswith("commit/"):
            return self._commit(h, self._repo(h, repo_type, repo_id), unquote(rest[len("commit/"):]), body)
        if method == "POST" and rest.startswith("paths-info/"):
            repo = self._repo(h, repo_type, repo_id)
            commit = self._commit_or_404(repo, unquote(rest[len("paths-info/"):]))
            form = parse_qs(body.decode()) if body else {}
            if h.headers.get("content-type", "").startswith("application/json"):
                form = {k: v if isinstance(v, list) else [v] for k, v in json.loads(body).items()}
            out = []
            for path in form.get("paths", []):
                path = path.strip("/")
                entries = self._tree(commit, "", recursive=True)
                out += [e for e in entries if e["path"] == path]
            return 200, {}, out
        if method != "GET":
            raise _HubError(405, f"{method} not supported on {rest or 'info'}")
        repo = self._repo(h, repo_type, repo_id)
        if rest == "" or rest.startswith("revision/"):
            rev = unquote(rest[len("revision/"):]) if rest else "main"
            return 200, {}, self._info(repo, self._commit_or_404(repo, rev))
        if rest.startswith("tree/"):
            rev, _, sub = rest[len("tree/"):].partition("/")
            commit = self._commit_or_404(repo, unquote(rev))
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            entries = self._tree(commit, unquote(sub).strip("/"), recursive=recursive)
            if sub and not entries:
                raise _HubError(404, f"{sub} not found", "EntryNotFound")
            return 200, {}, entries
        if rest == "refs":
            return 200, {}, {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head}],
                             "tags": [], "converts": []}
        raise _HubError(404, f"unsupported API route {rest!r}")

    def _commit_or_404(self, repo: _Repo, rev: str) -> _Commit:
        commit = repo.commit_at(rev)
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    def _info(self, repo: _Repo, commit: _Commit) -> dict:
        siblings = []
        for path, f in sorted(commit.files.items()):
            s = {"rfilename": path, "size": f.size, "blobId": f.git_oid}
            if f.lfs:
                s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": len(_lfs_pointer(f.sha256, f.size))}
            siblings.append(s)
        card = None
        if "README.md" in commit.files:
            import yaml

            m = re.match(r"^---\n(.*?)\n---", self._read(commit.files["README.md"].sha256).decode(), re.S)
            card = yaml.safe_load(m.group(1)) if m else None
        return {"id": repo.repo_id, "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                "author": repo.repo_id.split("/")[0], "sha": commit.oid, "private": repo.private,
                "disabled": False, "gated": False, "lastModified": commit.date, "createdAt": commit.date,
                "tags": (card or {}).get("tags", []), "cardData": card, "siblings": siblings,
                "downloads": 0, "likes": 0}

    def _tree(self, commit: _Commit, sub: str, *, recursive: bool) -> list[dict]:
        prefix = f"{sub}/" if sub else ""
        files, dirs = [], set()
        for path, f in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            parts = rest.split("/")
            for i in range(1, len(parts)):
                if recursive or i == 1:
                    dirs.add(prefix + "/".join(parts[:i]))
            if recursive or len(parts) == 1:
                e = {"type": "file", "oid": f.git_oid, "size": f.size, "path": path}
                if f.lfs:
                    e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(_lfs_pointer(f.sha256, f.size))}
                files.append(e)
        folders = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                   for d in sorted(dirs)]
        return folders + files

    def _preupload(self, h, repo: _Repo, payload):
        self._require_auth(h)
        head = repo.commits[repo.head]
        out = []
        for f in payload.get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            lfs = self._wants_lfs(f["path"], int(f["size"]), sample)
            old = head.files.get(f["path"])
            oid = None
            if old is not None:
                oid = old.sha256 if old.lfs else git_blob_sha1(self._read(old.sha256))
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        return 200, {}, {"files": out, "commitOid": repo.head}

    def _commit(self, h, repo: _Repo, rev: str, body: bytes):
        self._require_auth(h)
        if rev not in ("main", "refs/heads/main"):
            raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        with self._lock:
            if header.get("parentCommit") and not repo.head.startswith(header["parentCommit"]):
                raise _HubError(412, "A commit has happened since. Please refresh and try again.")
            # Build the new tree completely before touching the branch: any error leaves it as it was.
            files = dict(repo.commits[repo.head].files)
            for line in lines[1:]:
                key, v = line["key"], line["value"]
                if key == "file":
                    data = base64.b64decode(v["content"]) if v.get("encoding") == "base64" else v["content"].encode()
                    files[v["path"]] = self._file_entry(data, v["path"], False)
                elif key == "lfsFile":
                    if not self._obj(v["oid"]).exists():
                        raise _HubError(422, f"LFS object for {v['path']} was never uploaded")
                    size = self._obj(v["oid"]).stat().st_size
                    files[v["path"]] = _File(sha256=v["oid"], size=size, lfs=True,
                                             git_oid=git_blob_sha1(_lfs_pointer(v["oid"], size)))
                elif key == "deletedFile":
                    if files.pop(v["path"], None) is None:
                        raise _HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = v["path"].rstrip("/") + "/"
                    for path in [p for p in files if p.startswith(prefix)]:
                        del files[path]
                else:
                    raise _HubError(400, f"unsupported commit operation {key!r}")
            commit = self._new_commit(repo, files, header.get("summary") or "commit")
        base = f"{self.url}/{_PREFIX[repo.repo_type]}{repo.repo_id}"
        return 200, {}, {"commitUrl": f"{base}/commit/{commit.oid}", "commitOid": commit.oid,
                         "success": True, "pullRequestUrl": None}

    def _resolve(self, h, method, repo_type, repo_id, rev, path):
        repo = self._repo(h, repo_type, repo_id)
        commit = self._commit_or_404(repo, rev)
        f = commit.files.get(path)
        if f is None:
            raise _HubError(404, f"{path} does not exist at {rev}", "EntryNotFound",
                            headers={"X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{f.sha256 if f.lfs else f.git_oid}"',
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if f.lfs:
            headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
        data = self._read(f.sha256)
        status = 200
        rng = h.headers.get("range")
        if rng and method == "GET":
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m:
                raise _HubError(416, f"bad range {rng}")
            if m.group(1) == "":  # suffix range: the last N bytes
                start, end = max(0, f.size - int(m.group(2))), f.size - 1
            else:
                start = int(m.group(1))
                end = min(int(m.group(2)), f.size - 1) if m.group(2) else f.size - 1
            if start >= f.size and f.size > 0:
                raise _HubError(416, f"range {rng} beyond {f.size} bytes")
            data, status = data[start:end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        return status, headers, data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: FakeHub

    def log_message(self, *args) -> None:  # keep test output clean; FakeHub.requests has the log
        pass

    def read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                if total > self.server_hub.max_body:
                    raise _HubError(413, "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("content-length") or 0)
        if n > self.server_hub.max_body:
            raise _HubError(413, "request body too large")
        return self.rfile.read(n)

    def respond(self, status: int, headers: dict, payload, *, head: bool) -> None:
        headers = dict(headers)
        if isinstance(payload, (bytes, bytearray)):
            data = bytes(payload)
        else:
            data = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        try:
            self.server_hub.handle(self, method)
        except _HubError as exc:  # raised while reading the body
            self.close_connection = True
            self.respond(exc.status, {"X-Error-Message": exc.message}, {"error": exc.message}, head=False)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")
