"""The release, end to end, against any registry: what `.github/workflows/release.yml` publishes
on a tag, minus the signing (keyless signing needs GitHub's OIDC token and the public
transparency log).

1. One image per architecture, linux/amd64 and linux/arm64, by images/Dockerfile
   (images/build-images.sh) from the static binaries in target/dist/x86_64 and
   target/dist/aarch64 (built once, by `make build`), under a local staging name.
2. `docker save`, then every tag of images/variants.tsv (and its misbehaving tags) pushed as
   one OCI index of two image manifests: the same layers (gzip'd deterministically, so every
   tag shares one blob of binaries), and the image config the Dockerfile gives that row (its
   ENV, port and labels; `derive`). Building 20 tags x 2 architectures with `docker build`
   took minutes for what differs only in those fields.
3. A CycloneDX SBOM (release/sbom.py, from Cargo.lock) attached to each index as a referrer.
4. The chart (charts/testpage): `helm package`, `helm push` to oci://REGISTRY/charts.
5. release/verify.py, from the registry's side.

    python -m release.rehearsal --registry HOST[:PORT]/PREFIX/ [--only NAME:TAG ...]
        [--no-build] [--no-chart] [--no-verify] [--summary FILE]

Prints a table of tags, digests and platforms; writes the same as JSON to --summary.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

import yaml

from release import oci, sbom, variants, verify

ROOT = pathlib.Path(__file__).resolve().parent.parent
STAGE = "release-rehearsal.local/"  # local names of the images before they are pushed
BASE = variants.rows()[
    0
]  # the row built by images/Dockerfile; the others are derived from it
ARCHES = {"x86_64": ("amd64", ""), "aarch64": ("arm64", "v8")}


def host_arch() -> str:
    return os.uname().machine.replace("arm64", "aarch64")


def base_ref(arch: str) -> str:
    """The staging name of the one image built per architecture (images/build-images.sh gives
    foreign architectures a `-arm64`/`-amd64` suffix)."""
    suffix = "" if arch == host_arch() else "-" + ARCHES[arch][0]
    return f"{STAGE}{BASE[0]}:{BASE[1]}{suffix}"


def build(arch: str) -> None:
    """images/Dockerfile, once per architecture, for the first row of images/variants.tsv."""
    for binary in ("testpage", "probe"):
        path = ROOT / "target" / "dist" / arch / binary
        if not os.access(path, os.X_OK):
            raise SystemExit(f"rehearsal: {path} missing: run `make build ARCH={arch}`")
    env = {**os.environ, "REGISTRY": STAGE}
    subprocess.run(
        ["images/build-images.sh", "--arch", arch, BASE[0], BASE[1]],
        cwd=ROOT,
        env=env,
        check=True,
    )


def export(refs: list[str], into: pathlib.Path) -> dict[str, tuple[bytes, list[bytes]]]:
    """`docker save` of `refs`: ref -> (config bytes, uncompressed layer tars)."""
    archive = into / "images.tar"
    subprocess.run(["docker", "save", "-o", str(archive), *refs], check=True)
    images: dict[str, tuple[bytes, list[bytes]]] = {}
    with tarfile.open(archive) as tar:

        def read(member: str) -> bytes:
            handle = tar.extractfile(member)
            if handle is None:
                raise SystemExit(f"rehearsal: docker save wrote no {member}")
            return handle.read()

        for entry in json.loads(read("manifest.json")):
            config = read(entry["Config"])
            layers = [uncompressed(read(layer)) for layer in entry["Layers"]]
            diff_ids = json.loads(config)["rootfs"]["diff_ids"]
            if [oci.digest(layer) for layer in layers] != diff_ids:
                raise SystemExit(
                    f"rehearsal: {entry.get('RepoTags')}: layers differ from the config's diff_ids"
                )
            for tag in entry.get("RepoTags") or []:
                images[tag] = (config, layers)
    missing = [r for r in refs if r not in images]
    if missing:
        raise SystemExit(f"rehearsal: docker save did not return {missing}")
    return images


# The fields of an image's run configuration that the OCI image spec defines, and Healthcheck
# (Docker's, which the Dockerfile sets). Docker's own build bookkeeping is left out.
RUN_FIELDS = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal", "Healthcheck",
)  # fmt: skip


def derive(base: dict[str, Any], name: str, tag: str) -> dict[str, Any]:
    """The image config of NAME:TAG from the base image's: the same layers, with the ENV, the
    port and the labels that images/Dockerfile (and build-images.sh, for a misbehaving tag)
    give that row. release/tests check the result against `make images`' own images."""
    env, version = variants.settings(name, tag)
    run = {
        k: base["config"][k] for k in RUN_FIELDS if base["config"].get(k) is not None
    }
    merged = dict(item.split("=", 1) for item in run.get("Env", []))
    merged.update(env)
    run["Env"] = [f"{k}={v}" for k, v in merged.items()]
    run["ExposedPorts"] = {f"{env['PORT']}/tcp": {}}
    run["Labels"] = {
        **(run.get("Labels") or {}),
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.version": version,
    }
    config: dict[str, Any] = {
        key: base[key]
        for key in ("architecture", "os", "variant", "created")
        if key in base
    }
    config["config"] = run
    config["rootfs"] = base["rootfs"]
    config["history"] = [
        h for h in base.get("history", []) if not h.get("empty_layer")
    ] + [
        {
            "created": base.get("created", ""),
            "created_by": f"images/variants.tsv {name}:{tag}: "
            + " ".join(f"{k}={v}" for k, v in env.items()),
            "empty_layer": True,
        }
    ]
    return config


def uncompressed(layer: bytes) -> bytes:
    """A layer as a plain tar: `docker save` gives plain tars from Docker's classic image store,
    and the stored (gzip) blobs from the containerd one."""
    if layer[:2] == b"\x1f\x8b":
        return gzip.decompress(layer)
    if layer[:4] == b"\x28\xb5\x2f\xfd":
        raise SystemExit(
            "rehearsal: docker save gave a zstd layer; rebuild with gzip or none"
        )
    return layer


class Publisher:
    """Pushes images as indexes and attaches the SBOM, sharing blobs between tags."""

    def __init__(self, registry: oci.Registry, prefix: str, revision: str):
        self.registry = registry
        self.prefix = prefix
        self.revision = revision
        self.gzipped: dict[str, bytes] = {}

    def gzip(self, layer: bytes) -> bytes:
        key = oci.digest(layer)
        if key not in self.gzipped:
            # mtime=0 and a fixed level: the same tar always gives the same blob.
            self.gzipped[key] = gzip.compress(layer, compresslevel=9, mtime=0)
        return self.gzipped[key]

    def image(self, repository: str, config: bytes, layers: list[bytes]) -> bytes:
        """Pushes one platform's image; returns its manifest."""
        blobs = [self.gzip(layer) for layer in layers]
        for blob in blobs:
            self.registry.push_blob(repository, blob)
        self.registry.push_blob(repository, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": oci.MANIFEST,
            "config": oci.descriptor(oci.CONFIG, config),
            "layers": [oci.descriptor(oci.LAYER_GZIP, blob) for blob in blobs],
        }
        body = oci.canonical(manifest)
        self.registry.push_manifest(repository, oci.digest(body), body, oci.MANIFEST)
        return body

    def index(
        self, name: str, tag: str, bases: dict[str, tuple[bytes, list[bytes]]]
    ) -> dict[str, Any]:
        repository = self.prefix + name
        entries = []
        version = ""
        for arch, (architecture, variant) in ARCHES.items():
            base_config, layers = bases[arch]
            derived = derive(json.loads(base_config), name, tag)
            if (derived.get("os"), derived.get("architecture")) != (
                "linux",
                architecture,
            ):
                raise SystemExit(
                    f"rehearsal: {base_ref(arch)} is {derived.get('os')}/"
                    f"{derived.get('architecture')}, not linux/{architecture}"
                )
            body = self.image(repository, oci.canonical(derived), layers)
            version = derived["config"]["Labels"]["org.opencontainers.image.version"]
            platform = {"os": "linux", "architecture": architecture}
            if variant:
                platform["variant"] = variant
            entries.append(oci.descriptor(oci.MANIFEST, body, platform=platform))
        index = {
            "schemaVersion": 2,
            "mediaType": oci.INDEX,
            "manifests": entries,
            "annotations": {
                "org.opencontainers.image.source": "https://github.com/testpage/testpage",
                "org.opencontainers.image.revision": self.revision,
                "org.opencontainers.image.version": version,
                "org.opencontainers.image.licenses": "Apache-2.0",
            },
        }
        body = oci.canonical(index)
        self.registry.push_manifest(repository, tag, body, oci.INDEX)
        return oci.descriptor(oci.INDEX, body)


def helm_path() -> str:
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    found = subprocess.run(
        ["scripts/helm.sh"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        raise SystemExit(f"rehearsal: no helm: {found.stderr.strip()}")
    return found.stdout.strip().splitlines()[-1]


def push_chart(
    registry: oci.Registry, prefix: str, helm: str, workdir: pathlib.Path
) -> dict[str, str]:
    chart = ROOT / "charts" / "testpage"
    if not (chart / "Chart.yaml").exists():
        raise SystemExit(
            "rehearsal: charts/testpage/Chart.yaml not found (--no-chart to leave it out)"
        )
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    release_version = sbom.workspace_version(ROOT)
    if str(meta["version"]) != release_version:
        raise SystemExit(
            f"rehearsal: charts/testpage is version {meta['version']}, the workspace {release_version}:"
            " a release publishes both under one version"
        )
    subprocess.run(
        [helm, "package", str(chart), "-d", str(workdir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    archive = workdir / f"{meta['name']}-{meta['version']}.tgz"
    plain = ["--plain-http"] if registry.base.startswith("http:") else []
    pushed = subprocess.run(
        [helm, "push", str(archive), f"oci://{registry.host}/{prefix}charts", *plain],
        capture_output=True,
        text=True,
        check=False,
    )
    if pushed.returncode != 0:
        raise SystemExit(f"rehearsal: helm push: {pushed.stderr.strip()}")
    output = pushed.stdout + pushed.stderr
    digest = next((w for w in output.split() if w.startswith("sha256:")), "?")
    return {
        "ref": f"{registry.host}/{prefix}charts/{meta['name']}:{meta['version']}",
        "digest": digest,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True, help="HOST[:PORT]/PREFIX/")
    parser.add_argument(
        "--only", action="append", help="NAME:TAG (repeatable); default every tag"
    )
    parser.add_argument(
        "--no-build", action="store_true", help="reuse the staged local images"
    )
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument(
        "--summary",
        type=pathlib.Path,
        default=ROOT / "target" / "release" / "rehearsal.json",
    )
    args = parser.parse_args()
    started = time.monotonic()
    host, prefix = variants.split_registry(args.registry)
    registry = oci.Registry(host)
    wanted = variants.tags(args.only)
    revision = (
        subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        or "unknown"
    )

    if not args.no_build:
        for arch in ARCHES:
            build(arch)
    helm = None if args.no_chart else helm_path()

    summary: dict[str, Any] = {
        "registry": args.registry,
        "tags": {},
        "sbom": {},
        "chart": None,
    }
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        workdir = pathlib.Path(tmp)
        saved = export([base_ref(arch) for arch in ARCHES], workdir)
        bases = {arch: saved[base_ref(arch)] for arch in ARCHES}
        document = sbom.dumps(sbom.generate(ROOT))
        summary["sbom"] = {
            "bytes": len(document),
            "components": len(json.loads(document)["components"]),
            "digest": oci.digest(document),
        }
        publisher = Publisher(registry, prefix, revision)
        for name, tag in wanted:
            index = publisher.index(name, tag, bases)
            artifact = registry.attach(
                prefix + name,
                index,
                sbom.MEDIA_TYPE,
                document,
                {"org.opencontainers.image.title": "sbom.cdx.json"},
            )
            summary["tags"][f"{name}:{tag}"] = {
                "index": index["digest"],
                "sbom": artifact,
            }
            print(
                f"rehearsal: pushed {host}/{prefix}{name}:{tag} {index['digest']} (amd64, arm64) + SBOM"
            )
        if helm:
            summary["chart"] = push_chart(registry, prefix, helm, workdir)
            print(
                f"rehearsal: pushed chart {summary['chart']['ref']} {summary['chart']['digest']}"
            )

    status = 0
    if not args.no_verify:
        report = verify.verify(registry, prefix, args.only, helm is not None, helm)
        for key, seen in report.tags.items():
            summary["tags"].setdefault(key, {})["platforms"] = seen.get("platforms", {})
        summary["verified"] = {"problems": report.problems, "notes": report.notes}
        for note in report.notes:
            print(f"verify: {note}")
        status = 1 if report.problems else 0
    # For release.yml: one attestation subject per image digest and the chart; every index,
    # SBOM and the chart signed by digest.
    subjects = {
        (f"{host}/{prefix}{key.split(':')[0]}", seen["index"])
        for key, seen in summary["tags"].items()
    }
    signed = {f"{name}@{digest}" for name, digest in subjects}
    signed |= {
        f"{host}/{prefix}{key.split(':')[0]}@{seen['sbom']}"
        for key, seen in summary["tags"].items()
    }
    if summary["chart"]:
        chart_name = summary["chart"]["ref"].rsplit(":", 1)[0]
        subjects.add((chart_name, summary["chart"]["digest"]))
        signed.add(f"{chart_name}@{summary['chart']['digest']}")
    summary["subjects"] = [{"name": n, "digest": d} for n, d in sorted(subjects)]
    summary["signed"] = sorted(signed)
    summary["seconds"] = round(time.monotonic() - started, 1)
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=1) + "\n")
    print_table(summary)
    if status:
        print(
            f"rehearsal: FAILED: {len(summary['verified']['problems'])} problem(s) above",
            file=sys.stderr,
        )
    return status


def print_table(summary: dict[str, Any]) -> None:
    print(f"\n{'tag':<28} {'index digest':<20} platforms")
    for key, seen in summary["tags"].items():
        platforms = ", ".join(sorted(seen.get("platforms", {}))) or "(not verified)"
        print(f"{key:<28} {seen['index'][:19]:<20} {platforms}")
    s = summary["sbom"]
    print(
        f"SBOM: CycloneDX 1.5, {s['components']} crates, {s['bytes']} bytes, {s['digest'][:19]}"
    )
    if summary["chart"]:
        print(f"chart: {summary['chart']['ref']} {summary['chart']['digest']}")
    print(f"{len(summary['tags'])} tags in {summary['seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
