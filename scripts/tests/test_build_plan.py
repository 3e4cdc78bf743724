"""`make images` on the machines attendees bring: images/build-plan.sh picks the host toolchain or
docker buildx from `uname`, and images/build-images.sh tags the result the way the manifests
expect. The machine is faked with a `uname` (and `docker`, `cargo`) on PATH."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASH = shutil.which("bash")


def machine(tmp_path, system, arch, tools=()):
    """A bin directory for a machine whose uname says system/arch and that has `tools`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.jsonl"
    (bin_dir / "uname").write_text(
        f'#!{BASH}\ncase "$1" in -s) echo {system} ;; -m) echo {arch} ;; *) echo {system} ;; esac\n'
    )
    for tool in tools:
        (bin_dir / tool).write_text(
            f"#!{sys.executable}\nimport json, os, sys\n"
            f"open({str(log)!r}, 'a').write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + '\\n')\n"
        )
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    return bin_dir, log


def run(bin_dir, *args, system_path=False):
    path = str(bin_dir) + (":/usr/bin:/bin" if system_path else "")
    return subprocess.run(
        [BASH, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
        timeout=30,
        check=False,
    )


PLANS = [
    ("Darwin", "arm64", ("docker",), "", "buildx linux/arm64"),
    ("Darwin", "arm64", ("docker",), "x86_64", "buildx linux/amd64"),
    ("Darwin", "x86_64", ("docker",), "", "buildx linux/amd64"),
    ("Linux", "x86_64", ("cargo", "docker"), "", "host"),
    ("Linux", "aarch64", ("cargo",), "", "host"),
    ("Linux", "aarch64", ("docker",), "", "buildx linux/arm64"),
]


@pytest.mark.parametrize(("system", "arch", "tools", "want", "plan"), PLANS)
def test_plan(tmp_path, system, arch, tools, want, plan):
    bin_dir, _ = machine(tmp_path, system, arch, tools)
    done = run(bin_dir, "images/build-plan.sh", *([want] if want else []))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == plan


def test_mac_without_docker_says_what_to_install(tmp_path):
    bin_dir, _ = machine(tmp_path, "Darwin", "arm64")
    done = run(bin_dir, "images/build-plan.sh")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "Docker Desktop" in done.stderr


def test_unknown_architecture_is_refused(tmp_path):
    bin_dir, _ = machine(tmp_path, "Linux", "riscv64", ("cargo",))
    assert run(bin_dir, "images/build-plan.sh").returncode == 2


def test_native_tags_on_an_arm64_mac_carry_no_suffix(tmp_path):
    # uname -m says arm64 on macOS: the native build is aarch64 and keeps the plain tags the
    # manifests name (testpage:0.9, not testpage:0.9-arm64).
    bin_dir, _ = machine(tmp_path, "Darwin", "arm64")
    done = run(
        bin_dir,
        "images/build-images.sh",
        "--list",
        "--arch",
        "aarch64",
        system_path=True,
    )
    assert done.returncode == 0, done.stderr
    assert "testpage:0.9" in done.stdout.split()
    assert "-arm64" not in done.stdout
    cross = run(
        bin_dir,
        "images/build-images.sh",
        "--list",
        "--arch",
        "x86_64",
        system_path=True,
    )
    assert "testpage:0.9-arm64" not in cross.stdout.split()


def test_buildx_builds_from_the_build_dockerfile_and_loads(tmp_path):
    bin_dir, log = machine(tmp_path, "Darwin", "arm64", ("docker",))
    done = run(
        bin_dir,
        "images/build-images.sh",
        "--buildx",
        "--arch",
        "aarch64",
        "hello",
        system_path=True,
    )
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2  # hello:v1 and hello:v2
    for call, tag, version in zip(calls, ("v1", "v2"), ("1", "2"), strict=True):
        assert call[:6] == [
            "docker",
            "buildx",
            "build",
            "--load",
            "--platform",
            "linux/arm64",
        ]
        assert call[call.index("-f") + 1] == "images/Dockerfile.build"
        assert f"VERSION={version}" in call
        assert "PORT=9090" in call
        assert call[call.index("-t") + 1] == f"hello:{tag}"
        assert call[-1] == "."
