"""A CycloneDX 1.5 SBOM of the binaries, from Cargo.lock.

Every package of Cargo.lock is a component (`pkg:cargo/NAME@VERSION`, its crates.io checksum as
a SHA-256 hash, its licence from `cargo metadata --offline` where cargo can read it without the
network; `cargo fetch --locked` first when a crate of another platform is not there yet),
and its dependencies, by reference, make the dependency graph. The workspace's
binaries are the metadata component. The output is deterministic: the same Cargo.lock gives the
same bytes, so the same SBOM blob serves every image of a release.

    python -m release.sbom [--lock Cargo.lock] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tomllib
import uuid
from dataclasses import dataclass
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
MEDIA_TYPE = "application/vnd.cyclonedx+json"


@dataclass(frozen=True)
class Crate:
    name: str
    version: str
    source: str | None
    checksum: str | None
    dependencies: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"pkg:cargo/{self.name}@{self.version}"


def read_lock(path: pathlib.Path) -> list[Crate]:
    """The packages of a Cargo.lock; dependencies resolved to `name@version`."""
    packages = tomllib.loads(path.read_text())["package"]
    versions: dict[str, list[str]] = {}
    for package in packages:
        versions.setdefault(package["name"], []).append(package["version"])
    crates = []
    for package in packages:
        deps = []
        for dep in package.get("dependencies", []):
            # "name" when one version is locked, "name version" or "name version (source)" else.
            name, _, rest = dep.partition(" ")
            version = rest.split(" ")[0] if rest else versions[name][0]
            deps.append(f"pkg:cargo/{name}@{version}")
        crates.append(
            Crate(
                package["name"],
                package["version"],
                package.get("source"),
                package.get("checksum"),
                tuple(sorted(deps)),
            )
        )
    return sorted(crates, key=lambda c: (c.name, c.version))


def licences(root: pathlib.Path) -> dict[tuple[str, str], str]:
    """(name, version) -> SPDX expression, from `cargo metadata --offline`; empty if cargo
    cannot answer offline (the SBOM then has no licences, but still every crate)."""
    metadata = ["cargo", "metadata", "--offline", "--locked", "--format-version", "1"]
    run = {"cwd": root, "capture_output": True, "text": True, "timeout": 300}
    try:
        answer = subprocess.run(metadata, check=False, **run)  # type: ignore[call-overload]
        if answer.returncode != 0:
            # A build downloads the crates of its own target only; metadata wants them all.
            subprocess.run(["cargo", "fetch", "--locked"], check=True, **run)  # type: ignore[call-overload]
            answer = subprocess.run(metadata, check=True, **run)  # type: ignore[call-overload]
    except (OSError, subprocess.SubprocessError) as error:
        print(f"sbom: no licences: cargo metadata failed: {error}", file=sys.stderr)
        return {}
    return {
        (p["name"], p["version"]): p["license"]
        for p in json.loads(answer.stdout)["packages"]
        if p.get("license")
    }


def workspace_version(root: pathlib.Path) -> str:
    return str(
        tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["package"][
            "version"
        ]
    )


def generate(
    root: pathlib.Path = ROOT, lock: pathlib.Path | None = None
) -> dict[str, Any]:
    crates = read_lock(lock or root / "Cargo.lock")
    licence = licences(root)
    version = workspace_version(root)
    components = []
    for crate in crates:
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": crate.ref,
            "name": crate.name,
            "version": crate.version,
            "purl": crate.ref,
        }
        if crate.checksum:
            component["hashes"] = [{"alg": "SHA-256", "content": crate.checksum}]
        if (crate.name, crate.version) in licence:
            component["licenses"] = [
                {"expression": licence[(crate.name, crate.version)]}
            ]
        if crate.source is None:
            component["type"] = "application"
        components.append(component)
    main = f"pkg:oci/testpage@{version}"
    members = [c.ref for c in crates if c.source is None]
    # A serial number derived from the content: the same lock file, the same document.
    serial = uuid.uuid5(uuid.NAMESPACE_URL, main + "".join(c.ref for c in crates))
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "component": {
                "type": "container",
                "bom-ref": main,
                "name": "testpage",
                "version": version,
                "description": "testpage and probe, static binaries (FROM scratch images)",
                "licenses": [{"license": {"id": "Apache-2.0"}}],
            },
            "tools": {
                "components": [{"type": "application", "name": "release/sbom.py"}]
            },
        },
        "components": components,
        "dependencies": [{"ref": main, "dependsOn": members}]
        + [{"ref": c.ref, "dependsOn": list(c.dependencies)} for c in crates],
    }


def dumps(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def missing_crates(document: dict[str, Any], crates: list[Crate]) -> list[str]:
    """`name@version` of each crate of the lock file that the SBOM does not list."""
    listed = {(c.get("name"), c.get("version")) for c in document.get("components", [])}
    return [
        f"{c.name}@{c.version}" for c in crates if (c.name, c.version) not in listed
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=pathlib.Path, default=ROOT / "Cargo.lock")
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    data = dumps(generate(ROOT, args.lock))
    if args.out:
        args.out.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
