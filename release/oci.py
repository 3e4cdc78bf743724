"""A small client of the OCI distribution API: the calls the release makes and checks.

Blobs are pushed in one request (POST for an upload, PUT with the digest), manifests by tag or
by digest, and referrers are found through the referrers API, or, where the registry does not
have it (CNCF distribution 2.x), through the fallback tag `sha256-<hex>` that the OCI
distribution spec defines: an index listing the referring manifests.

Loopback registries are spoken to over plain HTTP, others over HTTPS (`plain_http` overrides).
Credentials, when a registry asks for them: REGISTRY_USERNAME and REGISTRY_PASSWORD, for Basic
or for the Bearer token flow.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = f"{INDEX}, {MANIFEST}, {DOCKER_LIST}, {DOCKER_MANIFEST}"


class RegistryError(RuntimeError):
    """A request the registry refused, with its status and what it said."""


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes a manifest is pushed as (and so its digest): compact, keys in order."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Reference:
    """`host[:port]/path/name[:tag]` split into the registry and the repository."""

    host: str
    repository: str
    tag: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        host, _, rest = text.partition("/")
        if not rest or not re.fullmatch(r"[a-z0-9._/-]+(:[A-Za-z0-9._-]+)?", rest):
            raise ValueError(f"not a registry reference: {text!r}")
        repository, _, tag = rest.partition(":")
        return cls(host, repository, tag or None)

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}" + (f":{self.tag}" if self.tag else "")


def is_loopback(host: str) -> bool:
    name = (
        host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    )
    return name in ("localhost", "::1") or name.startswith("127.")


class Registry:
    """One registry host; repositories are named per call."""

    def __init__(
        self, host: str, plain_http: bool | None = None, timeout: float = 60.0
    ):
        self.host = host
        plain = is_loopback(host) if plain_http is None else plain_http
        self.base = f"{'http' if plain else 'https'}://{host}"
        self.timeout = timeout
        self.token: str | None = None

    # ------------------------------------------------------------ transport

    def _credentials(self) -> tuple[str, str] | None:
        user = os.environ.get("REGISTRY_USERNAME")
        password = os.environ.get("REGISTRY_PASSWORD")
        return (user, password) if user and password else None

    def _authenticate(self, challenge: str) -> bool:
        """Answers a 401's challenge; True when a retry may succeed."""
        creds = self._credentials()
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic" and creds:
            self.token = (
                "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            )
            return True
        if scheme.lower() != "bearer":
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {k: v for k, v in fields.items() if k in ("service", "scope")}
        request = urllib.request.Request(
            fields["realm"] + "?" + urllib.parse.urlencode(query)
        )
        if creds:
            basic = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {basic}")
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            body = json.load(answer)
        self.token = "Bearer " + (body.get("token") or body["access_token"])
        return True

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
    ) -> tuple[int, dict[str, str], bytes]:
        """Sends one request (a full URL or a path under the host); returns status, headers
        (lower-case names) and body. Statuses outside `ok` raise RegistryError."""
        url = path if path.startswith("http") else self.base + path
        for attempt in range(2):
            request = urllib.request.Request(url, data=data, method=method)
            for key, value in (headers or {}).items():
                request.add_header(key, value)
            if self.token:
                request.add_header("Authorization", self.token)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    status, got, body = answer.status, answer.headers, answer.read()
            except urllib.error.HTTPError as error:
                status, got, body = error.code, error.headers, error.read()
                challenge = got.get("WWW-Authenticate", "")
                if (
                    status == 401
                    and attempt == 0
                    and challenge
                    and self._authenticate(challenge)
                ):
                    continue
            lower = {k.lower(): v for k, v in got.items()}
            if status not in ok:
                raise RegistryError(
                    f"{method} {url}: {status} {body[:300].decode(errors='replace')}"
                )
            return status, lower, body
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ blobs

    def has_blob(self, repository: str, blob_digest: str) -> bool:
        status, _, _ = self.request(
            "HEAD", f"/v2/{repository}/blobs/{blob_digest}", ok=(200, 404)
        )
        return status == 200

    def push_blob(self, repository: str, data: bytes) -> str:
        """Uploads `data` unless the repository has it; returns its digest."""
        blob_digest = digest(data)
        if self.has_blob(repository, blob_digest):
            return blob_digest
        _, headers, _ = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        location = urllib.parse.urljoin(self.base + "/", headers["location"])
        joiner = "&" if "?" in location else "?"
        self.request(
            "PUT",
            f"{location}{joiner}digest={blob_digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return blob_digest

    def blob(self, repository: str, blob_digest: str) -> bytes:
        _, _, body = self.request("GET", f"/v2/{repository}/blobs/{blob_digest}")
        if digest(body) != blob_digest:
            raise RegistryError(
                f"{repository}@{blob_digest}: the blob's content has another digest"
            )
        return body

    # ------------------------------------------------------------ manifests

    def push_manifest(
        self, repository: str, reference: str, body: bytes, media_type: str
    ) -> str:
        """PUTs a manifest or index under a tag or its digest; returns its digest."""
        self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            data=body,
            headers={"Content-Type": media_type},
        )
        return digest(body)

    def manifest(
        self, repository: str, reference: str
    ) -> tuple[dict[str, Any], str, bytes]:
        """The manifest or index at a tag or digest: parsed, its digest, its bytes."""
        _, _, body = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}
        )
        got = digest(body)
        if reference.startswith("sha256:") and got != reference:
            raise RegistryError(
                f"{repository}@{reference}: the manifest has another digest"
            )
        return json.loads(body), got, body

    def manifest_or_none(
        self, repository: str, reference: str
    ) -> dict[str, Any] | None:
        status, _, body = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": ACCEPT},
            ok=(200, 404),
        )
        return json.loads(body) if status == 200 else None

    def tags(self, repository: str) -> list[str]:
        status, _, body = self.request(
            "GET", f"/v2/{repository}/tags/list", ok=(200, 404)
        )
        return sorted(json.loads(body).get("tags") or []) if status == 200 else []

    # ------------------------------------------------------------ referrers

    def referrers(self, repository: str, subject: str) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose `subject` is `subject`: the referrers API where
        the registry has it, else the fallback tag."""
        try:
            status, headers, body = self.request(
                "GET",
                f"/v2/{repository}/referrers/{subject}",
                headers={"Accept": INDEX},
            )
            if status == 200 and headers.get("content-type", "").startswith(INDEX):
                manifests: list[dict[str, Any]] = json.loads(body).get("manifests", [])
                return manifests
        except RegistryError:
            pass  # no referrers API (404, or another refusal): the fallback tag says
        index = self.manifest_or_none(repository, fallback_tag(subject))
        return index.get("manifests", []) if index else []

    def attach(
        self,
        repository: str,
        subject: dict[str, Any],
        artifact_type: str,
        payload: bytes,
        annotations: dict[str, str] | None = None,
    ) -> str:
        """Pushes `payload` as an artifact whose subject is `subject` (a descriptor) and lists
        it under the fallback tag too; returns the artifact manifest's digest."""
        self.push_blob(repository, EMPTY_BLOB)
        self.push_blob(repository, payload)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": artifact_type,
            "config": descriptor(EMPTY, EMPTY_BLOB),
            "layers": [descriptor(artifact_type, payload)],
            "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
            "annotations": annotations or {},
        }
        body = canonical(manifest)
        artifact = self.push_manifest(repository, digest(body), body, MANIFEST)
        entry = descriptor(
            MANIFEST,
            body,
            artifactType=artifact_type,
            annotations=manifest["annotations"],
        )
        # The fallback tag, kept by every client that writes it (what oras and cosign do for
        # registries without the referrers API): read, add this artifact once, write back.
        tag = fallback_tag(subject["digest"])
        index = self.manifest_or_none(repository, tag) or {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [],
        }
        if all(m["digest"] != artifact for m in index["manifests"]):
            index["manifests"].append(entry)
            self.push_manifest(repository, tag, canonical(index), INDEX)
        return artifact


def fallback_tag(subject_digest: str) -> str:
    """The referrers tag schema of the OCI distribution spec: `sha256:abc` -> `sha256-abc`."""
    algorithm, _, hexdigest = subject_digest.partition(":")
    return f"{algorithm}-{hexdigest}"


def platform_of(entry: dict[str, Any]) -> str:
    """`os/architecture` of an index entry (the variant left out: linux/arm64, not .../v8)."""
    platform = entry.get("platform") or {}
    return f"{platform.get('os', '?')}/{platform.get('architecture', '?')}"
