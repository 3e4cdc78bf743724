"""Before anything is published: the tag names the version the sources say.

    python -m release.tag_check v0.1.0

Checks that the tag is `v` + the workspace version of Cargo.toml, that charts/testpage has the
same version, and that CHANGELOG.md has a dated section for it (its notes become the release's).
Exits 1 naming every mismatch.
"""

from __future__ import annotations

import pathlib
import re
import sys
import tomllib

from release import changelog

ROOT = pathlib.Path(__file__).resolve().parent.parent


def chart_version(root: pathlib.Path) -> str | None:
    chart = root / "charts" / "testpage" / "Chart.yaml"
    if not chart.exists():
        return None
    match = re.search(r"^version:\s*['\"]?([^'\"\s]+)", chart.read_text(), re.MULTILINE)
    return match.group(1) if match else None


def problems(tag: str, root: pathlib.Path = ROOT) -> list[str]:
    found = []
    if not re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", tag):
        found.append(f"tag {tag!r} is not v<major>.<minor>.<patch>")
    version = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["package"][
        "version"
    ]
    if tag != f"v{version}":
        found.append(f"tag {tag} but Cargo.toml's workspace version is {version}")
    chart = chart_version(root)
    if chart is None:
        found.append("charts/testpage/Chart.yaml has no version")
    elif chart != version:
        found.append(f"charts/testpage is version {chart}, the workspace {version}")
    try:
        changelog.section((root / "CHANGELOG.md").read_text(), tag, dated=True)
    except changelog.ChangelogError as error:
        found.append(str(error))
    return found


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m release.tag_check vX.Y.Z", file=sys.stderr)
        return 2
    found = problems(sys.argv[1])
    for problem in found:
        print(f"tag_check: {problem}", file=sys.stderr)
    if not found:
        print(
            f"tag_check: {sys.argv[1]} matches Cargo.toml, the chart and CHANGELOG.md"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
