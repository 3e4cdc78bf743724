"""Checks a published release from the registry's side, as a user would find it.

For every tag of images/variants.tsv (the misbehaving ones too):

- the tag is an index listing linux/amd64 and linux/arm64, and each entry's image config says
  the same platform;
- a CycloneDX SBOM refers to the index (referrers API or its fallback tag) and lists every
  crate of Cargo.lock with its version.

Then, once: the arm64 image of the first testpage tag, its layers pulled from the registry and
unpacked, answers its page under qemu-aarch64-static (and its probe answers too); `docker pull
--platform` resolves the index for both platforms; and, unless --no-chart, `helm pull` of the
chart and `helm template` render the same objects as charts/testpage.

    python -m release.verify --registry HOST[:PORT]/PREFIX/ [--only NAME:TAG ...] [--no-chart]

Exits 1 and names every tag and crate that fails.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import yaml

from release import oci, sbom, variants

ROOT = pathlib.Path(__file__).resolve().parent.parent
PLATFORMS = ("linux/amd64", "linux/arm64")
ARCH_OF = {"linux/amd64": "amd64", "linux/arm64": "arm64"}


@dataclass
class Report:
    """What the checks found: one line per problem, and what was seen, for the summary."""

    problems: list[str] = field(default_factory=list)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    chart: dict[str, Any] = field(default_factory=dict)

    def fail(self, text: str) -> None:
        self.problems.append(text)
        print(f"verify: FAIL {text}", file=sys.stderr)


def check_tag(
    registry: oci.Registry,
    prefix: str,
    name: str,
    tag: str,
    crates: list[sbom.Crate],
    report: Report,
) -> None:
    repository = prefix + name
    where = f"{registry.host}/{repository}:{tag}"
    try:
        index, index_digest, _ = registry.manifest(repository, tag)
    except oci.RegistryError as error:
        report.fail(f"{where}: not found ({error})")
        return
    seen: dict[str, Any] = {"digest": index_digest, "platforms": {}}
    report.tags[f"{name}:{tag}"] = seen
    if index.get("mediaType") not in (oci.INDEX, oci.DOCKER_LIST):
        report.fail(f"{where}: a single-platform manifest, not a multi-arch index")
        return
    for entry in index.get("manifests", []):
        platform = oci.platform_of(entry)
        manifest, _, _ = registry.manifest(repository, entry["digest"])
        config = json.loads(registry.blob(repository, manifest["config"]["digest"]))
        actual = f"{config.get('os')}/{config.get('architecture')}"
        if actual != platform:
            report.fail(f"{where}: the {platform} entry's image is {actual}")
        seen["platforms"][platform] = entry["digest"]
    for platform in PLATFORMS:
        if platform not in seen["platforms"]:
            report.fail(
                f"{where}: no {platform} image (index lists {sorted(seen['platforms'])})"
            )

    sboms = [
        r
        for r in registry.referrers(repository, index_digest)
        if r.get("artifactType") == sbom.MEDIA_TYPE
    ]
    if not sboms:
        report.fail(f"{where}: no CycloneDX SBOM refers to {index_digest}")
        return
    for referrer in sboms:
        artifact, _, _ = registry.manifest(repository, referrer["digest"])
        if (artifact.get("subject") or {}).get("digest") != index_digest:
            report.fail(f"{where}: SBOM {referrer['digest']} has another subject")
        for layer in artifact.get("layers", []):
            document = json.loads(registry.blob(repository, layer["digest"]))
            missing = sbom.missing_crates(document, crates)
            if missing:
                report.fail(
                    f"{where}: SBOM {layer['digest'][:19]} lacks {', '.join(missing)}"
                )
            seen["sbom"] = {
                "digest": layer["digest"],
                "bytes": layer["size"],
                "components": len(document.get("components", [])),
            }


def unpack(
    registry: oci.Registry, repository: str, manifest_digest: str, into: pathlib.Path
) -> dict[str, Any]:
    """Pulls an image's layers from the registry into a folder; returns its config."""
    manifest, _, _ = registry.manifest(repository, manifest_digest)
    for layer in manifest["layers"]:
        data = registry.blob(repository, layer["digest"])
        if layer["mediaType"].endswith("gzip"):
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.extractall(into, filter="data")
    config: dict[str, Any] = json.loads(
        registry.blob(repository, manifest["config"]["digest"])
    )
    return config


def answer(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as got:
        return got.status, {k.lower(): v for k, v in got.headers.items()}, got.read()


def check_arm64_runs(
    registry: oci.Registry, prefix: str, name: str, tag: str, report: Report
) -> None:
    """The arm64 image, pulled back, answers its page under qemu-aarch64-static."""
    where = f"{registry.host}/{prefix}{name}:{tag} (linux/arm64)"
    platforms = report.tags.get(f"{name}:{tag}", {}).get("platforms", {})
    if "linux/arm64" not in platforms:
        report.fail(f"{where}: nothing to run")
        return
    with tempfile.TemporaryDirectory(prefix="release-arm64-") as tmp:
        rootfs = pathlib.Path(tmp) / "rootfs"
        rootfs.mkdir()
        config = unpack(registry, prefix + name, platforms["linux/arm64"], rootfs)
        env = dict(item.split("=", 1) for item in config["config"].get("Env", []))
        entry = config["config"]["Entrypoint"][0].lstrip("/")
        ready = pathlib.Path(tmp) / "ready"
        env.update(
            POD_IP="127.0.0.1", READY_FILE=str(ready), PATH=os.environ.get("PATH", "")
        )
        command = [
            "qemu-aarch64-static",
            str(rootfs / entry),
            "--listen",
            "127.0.0.1:0",
        ]
        with subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        ) as proc:
            try:
                addr = wait_ready(ready, proc)
                status, headers, body = answer(f"http://{addr}/")
                version = env.get("VERSION", "")
                template = env.get("MESSAGE") or "I am: {ip}, the version is: {version}"
                expected = template.replace("{ip}", "127.0.0.1").replace(
                    "{version}", version
                ).replace("{color}", env.get("COLOR", "")) + (
                    "" if env.get("NEWLINE") == "false" else "\n"
                )
                if (
                    status != 200
                    or body.decode() != expected
                    or headers.get("x-version") != version
                ):
                    report.fail(
                        f"{where}: answered {status} {body!r}, expected {expected!r}"
                    )
                probe = subprocess.run(
                    [
                        "qemu-aarch64-static",
                        str(rootfs / "probe"),
                        "http",
                        f"http://{addr}/readyz",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                if probe.returncode != 0:
                    report.fail(f"{where}: its probe says {probe.stdout}{probe.stderr}")
                report.notes.append(
                    f"arm64 {name}:{tag} under qemu answered {body.decode().strip()!r}"
                )
            except (RuntimeError, OSError) as error:
                report.fail(f"{where}: {error}")
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def wait_ready(
    ready: pathlib.Path, proc: subprocess.Popen[bytes], limit: float = 30.0
) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(
                f"exited with {proc.returncode} before it was ready: {err[-500:]}"
            )
        try:
            match = re.search(r"^addr=(\S+)$", ready.read_text(), re.MULTILINE)
            if match:
                return match.group(1)
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"not ready within {limit:.0f} s")


def check_docker_pull(
    registry: oci.Registry, prefix: str, name: str, tag: str, report: Report
) -> None:
    """`docker pull --platform` resolves the index to an image of each platform."""
    ref = f"{registry.host}/{prefix}{name}:{tag}"
    for platform in PLATFORMS:
        pulled = subprocess.run(
            ["docker", "pull", "--quiet", "--platform", platform, ref],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if pulled.returncode != 0:
            report.fail(
                f"docker pull --platform {platform} {ref}: {pulled.stderr.strip()}"
            )
            continue
        arch = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", ref],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if arch != platform:
            report.fail(f"docker pull --platform {platform} {ref}: got {arch}")
        else:
            report.notes.append(f"docker pull --platform {platform} {ref}: {arch}")
    subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)


def rendered(helm: str, chart: str) -> list[tuple[str, str, str]]:
    """The objects `helm template` renders, as (kind, name, YAML) sorted."""
    out = subprocess.run(
        [helm, "template", "release", chart, "--namespace", "rehearsal"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(out) if doc]
    return sorted(
        (o["kind"], o["metadata"]["name"], yaml.safe_dump(o, sort_keys=True))
        for o in objects
    )


def check_chart(registry: oci.Registry, prefix: str, helm: str, report: Report) -> None:
    chart_dir = ROOT / "charts" / "testpage"
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    ref = f"oci://{registry.host}/{prefix}charts/{meta['name']}"
    plain = ["--plain-http"] if registry.base.startswith("http:") else []
    with tempfile.TemporaryDirectory(prefix="release-chart-") as tmp:
        pulled = subprocess.run(
            [helm, "pull", ref, "--version", str(meta["version"]), "-d", tmp, *plain],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if pulled.returncode != 0:
            report.fail(f"helm pull {ref}: {pulled.stderr.strip()}")
            return
        (archive,) = pathlib.Path(tmp).glob("*.tgz")
        remote, local = rendered(helm, str(archive)), rendered(helm, str(chart_dir))
        if remote != local:
            only_remote = {o[:2] for o in remote} ^ {o[:2] for o in local}
            report.fail(
                f"helm template of {ref} differs from charts/testpage: {sorted(only_remote) or 'in content'}"
            )
        report.notes.append(
            f"chart {ref}:{meta['version']}: {len(remote)} objects, as charts/testpage"
        )
        report.chart = {"ref": f"{ref}:{meta['version']}", "objects": len(remote)}


def verify(
    registry: oci.Registry,
    prefix: str,
    only: list[str] | None = None,
    chart: bool = True,
    helm: str | None = None,
) -> Report:
    report = Report()
    crates = sbom.read_lock(ROOT / "Cargo.lock")
    wanted = variants.tags(only)
    for name, tag in wanted:
        check_tag(registry, prefix, name, tag, crates, report)
    runnable = next(((n, t) for n, t in wanted if n == "testpage"), wanted[0])
    check_arm64_runs(registry, prefix, *runnable, report)
    check_docker_pull(registry, prefix, *runnable, report)
    if chart:
        check_chart(registry, prefix, helm or "helm", report)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True, help="HOST[:PORT]/PREFIX/")
    parser.add_argument("--only", action="append", help="NAME:TAG (repeatable)")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--helm", default=os.environ.get("HELM", "helm"))
    args = parser.parse_args()
    host, prefix = variants.split_registry(args.registry)
    report = verify(oci.Registry(host), prefix, args.only, not args.no_chart, args.helm)
    for note in report.notes:
        print(f"verify: {note}")
    if report.problems:
        print(f"verify: {len(report.problems)} problem(s)", file=sys.stderr)
        return 1
    print(
        f"verify: {len(report.tags)} tags checked, all linux/amd64 + linux/arm64 with a complete SBOM"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
