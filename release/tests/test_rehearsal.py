"""`make release-rehearsal` against a real registry on loopback, and the two ways a release
must be refused: a tag without one of its architectures, an SBOM without one of the crates."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from release import oci, rehearsal, sbom, variants

from .conftest import ROOT, LocalRegistry

PY = sys.executable


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def rehearsed(registry: LocalRegistry, release_tools: None) -> dict[str, Any]:  # noqa: ARG001
    """The whole rehearsal, once: `make release-rehearsal` into REGISTRY/rehearsal/."""
    summary = ROOT / "target" / "release" / "rehearsal.json"
    summary.unlink(missing_ok=True)
    done = run(
        "make",
        "--no-print-directory",
        "release-rehearsal",
        f"REGISTRY={registry.prefix('rehearsal')}",
        timeout=900,
    )
    log = ROOT / "target" / "release" / "rehearsal.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(done.stdout + done.stderr)
    print(done.stdout[-4000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(summary.read_text())
    return result


def test_rehearsal_publishes_every_tag_for_both_architectures(
    rehearsed: dict[str, Any],
) -> None:
    expected = {f"{n}:{t}" for n, t in variants.tags()}
    assert set(rehearsed["tags"]) == expected
    for key, seen in rehearsed["tags"].items():
        assert set(seen["platforms"]) == {"linux/amd64", "linux/arm64"}, key
        assert seen["index"].startswith("sha256:"), key
        assert seen["sbom"].startswith("sha256:"), key
    assert "-errors" in " ".join(expected)
    assert "-unready" in " ".join(expected)


def test_rehearsal_checked_sbom_run_and_chart(rehearsed: dict[str, Any]) -> None:
    crates = sbom.read_lock(ROOT / "Cargo.lock")
    assert rehearsed["sbom"]["components"] == len(crates)
    notes = "\n".join(rehearsed["verified"]["notes"])
    assert "arm64 testpage:" in notes
    assert "under qemu answered 'I am: 127.0.0.1" in notes
    assert "docker pull --platform linux/arm64" in notes
    assert rehearsed["chart"]
    assert rehearsed["chart"]["digest"].startswith("sha256:")
    assert "objects, as charts/testpage" in notes
    assert rehearsed["verified"]["problems"] == []


def publish_one(registry: LocalRegistry, prefix: str) -> None:
    """testpage:0.9 alone, from the images the rehearsal staged, into a prefix of its own."""
    done = run(
        PY, "-m", "release.rehearsal", "--registry", registry.prefix(prefix),
        "--only", "testpage:0.9", "--no-build", "--no-chart", "--no-verify",
        "--summary", str(ROOT / "target" / "release" / f"{prefix}.json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def verify_one(
    registry: LocalRegistry, prefix: str
) -> subprocess.CompletedProcess[str]:
    return run(
        PY, "-m", "release.verify", "--registry", registry.prefix(prefix),
        "--only", "testpage:0.9", "--no-chart",
    )  # fmt: skip


@pytest.mark.usefixtures("rehearsed")
def test_a_tag_without_arm64_fails_the_rehearsal(registry: LocalRegistry) -> None:
    publish_one(registry, "no-arm64")
    before = verify_one(registry, "no-arm64")
    assert before.returncode == 0, before.stderr
    # The tag's index, rewritten without its arm64 entry (as a release whose arm64 build went
    # missing would push it).
    client = oci.Registry(registry.host)
    index, _, _ = client.manifest("no-arm64/testpage", "0.9")
    index["manifests"] = [
        m for m in index["manifests"] if oci.platform_of(m) != "linux/arm64"
    ]
    client.push_manifest("no-arm64/testpage", "0.9", oci.canonical(index), oci.INDEX)
    after = verify_one(registry, "no-arm64")
    assert after.returncode == 1
    assert (
        "testpage:0.9: no linux/arm64 image (index lists ['linux/amd64'])"
        in after.stderr
    )


@pytest.mark.usefixtures("rehearsed")
def test_an_sbom_without_a_crate_fails_the_rehearsal(registry: LocalRegistry) -> None:
    publish_one(registry, "short-sbom")
    before = verify_one(registry, "short-sbom")
    assert before.returncode == 0, before.stderr
    # A second SBOM for the same index, one crate short (tokio), as a generator that skipped a
    # crate would attach it.
    client = oci.Registry(registry.host)
    _, index_digest, body = client.manifest("short-sbom/testpage", "0.9")
    document = sbom.generate(ROOT)
    tokio = next(c for c in document["components"] if c["name"] == "tokio")
    document["components"].remove(tokio)
    client.attach(
        "short-sbom/testpage",
        oci.descriptor(oci.INDEX, body),
        sbom.MEDIA_TYPE,
        sbom.dumps(document),
    )
    assert len(client.referrers("short-sbom/testpage", index_digest)) == 2
    after = verify_one(registry, "short-sbom")
    assert after.returncode == 1
    assert f"lacks tokio@{tokio['version']}" in after.stderr


def test_verify_fails_on_a_tag_never_pushed(registry: LocalRegistry) -> None:
    done = verify_one(registry, "nothing-here")
    assert done.returncode == 1
    assert "testpage:0.9: not found" in done.stderr


def test_sbom_lists_every_crate_of_the_lock_file_once() -> None:
    crates = sbom.read_lock(ROOT / "Cargo.lock")
    document = sbom.generate(ROOT)
    assert sbom.missing_crates(document, crates) == []
    refs = [c["bom-ref"] for c in document["components"]]
    assert len(refs) == len(set(refs)) == len(crates)
    assert document["bomFormat"] == "CycloneDX"
    assert document["specVersion"] == "1.5"
    # The same lock file gives the same bytes: one blob serves every image.
    assert sbom.dumps(document) == sbom.dumps(sbom.generate(ROOT))


def test_sbom_check_names_what_is_missing(tmp_path: pathlib.Path) -> None:
    lock = tmp_path / "Cargo.lock"
    lock.write_text(
        'version = 4\n\n[[package]]\nname = "a"\nversion = "1.0.0"\ndependencies = ["b"]\n\n'
        '[[package]]\nname = "b"\nversion = "2.0.0"\nsource = "registry+x"\nchecksum = "ab"\n'
    )
    crates = sbom.read_lock(lock)
    assert crates[0].dependencies == ("pkg:cargo/b@2.0.0",)
    document = {
        "components": [
            {"name": "a", "version": "1.0.0"},
            {"name": "b", "version": "2.0.1"},
        ]
    }
    assert sbom.missing_crates(document, crates) == ["b@2.0.0"]


def test_misbehaving_tags_are_a_base_tag_plus_testpage_settings() -> None:
    source = (ROOT / "testpage" / "src" / "config.rs").read_text()
    rows = set(variants.rows())
    bad = variants.misbehaving()
    assert {m.tag.rsplit("-", 1)[1] for m in bad} == {
        "errors",
        "slow",
        "crash",
        "unready",
    }
    for m in bad:
        assert (m.name, m.base) in rows, m
        assert m.tag.startswith(m.base + "-"), m
        for key in m.env:
            assert f'env = "{key}"' in source, f"{m.tag}: testpage reads no {key}"
    listed = run("images/build-images.sh", "--list").stdout.split()
    assert {f"{m.name}:{m.tag}" for m in bad} <= set(listed)


def test_registry_value_needs_its_trailing_slash() -> None:
    assert variants.split_registry("127.0.0.1:5000/a/b/") == ("127.0.0.1:5000", "a/b/")
    assert variants.split_registry("ghcr.io/") == ("ghcr.io", "")
    with pytest.raises(SystemExit):
        variants.split_registry("ghcr.io/you")


@pytest.mark.usefixtures("rehearsed")
def test_derived_configs_match_what_make_images_builds() -> None:
    """Every tag the release derives from the one built image has the run configuration that
    images/Dockerfile and build-images.sh give it: compared with `make images`' own images."""
    prefix = os.environ.get("REGISTRY", "")
    wanted = [f"{prefix}{n}:{t}" for n, t in variants.tags()]
    absent = [
        ref for ref in wanted if run("docker", "image", "inspect", ref).returncode
    ]
    if absent:
        built = run(
            "images/build-images.sh", "--arch", rehearsal.host_arch(), timeout=900
        )
        assert built.returncode == 0, built.stderr
    base_ref = rehearsal.base_ref(rehearsal.host_arch())
    base = json.loads(run("docker", "image", "inspect", base_ref).stdout)[0]
    base_config = {
        "architecture": base["Architecture"],
        "os": base["Os"],
        "config": base["Config"],
        "rootfs": base["RootFS"],
    }
    for (name, tag), ref in zip(variants.tags(), wanted, strict=True):
        docker_config = json.loads(run("docker", "image", "inspect", ref).stdout)[0][
            "Config"
        ]
        derived = rehearsal.derive(base_config, name, tag)["config"]
        for key in (
            "User",
            "Entrypoint",
            "Cmd",
            "Healthcheck",
            "ExposedPorts",
            "WorkingDir",
        ):
            assert (derived.get(key) or None) == (docker_config.get(key) or None), (
                ref,
                key,
            )
        assert dict(e.split("=", 1) for e in derived["Env"]) == dict(
            e.split("=", 1) for e in docker_config["Env"]
        ), ref
        labels = {
            k: v
            for k, v in docker_config["Labels"].items()
            if not k.endswith(".revision")
        }
        assert {
            k: v for k, v in derived["Labels"].items() if not k.endswith(".revision")
        } == labels, ref


def test_summary_gives_release_yml_what_it_signs_and_attests(
    rehearsed: dict[str, Any],
) -> None:
    """release.yml reads `subjects` (the provenance matrix) and `signed` (cosign) from the
    summary: every index, every SBOM and the chart, by digest."""
    host_prefix = rehearsed["registry"]
    subjects = {(s["name"], s["digest"]) for s in rehearsed["subjects"]}
    for key, seen in rehearsed["tags"].items():
        name = host_prefix + key.split(":")[0]
        assert (name, seen["index"]) in subjects, key
        assert f"{name}@{seen['index']}" in rehearsed["signed"], key
        assert f"{name}@{seen['sbom']}" in rehearsed["signed"], key
    chart = rehearsed["chart"]["ref"].rsplit(":", 1)[0]
    assert (chart, rehearsed["chart"]["digest"]) in subjects
    workflow = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert "jq -c .subjects target/release/published.json" in workflow
    assert "jq -r '.signed[]' published.json" in workflow
