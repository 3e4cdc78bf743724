"""The section of CHANGELOG.md for one version: a release's notes.

    python -m release.changelog 0.1.0            # print the section's body
    python -m release.changelog v0.1.0 --dated   # and fail unless it has a date

A section starts at `## [VERSION]` (Keep a Changelog) and ends at the next `## ` heading or at
the link definitions at the end. Exits 1, saying why, when the version has no section or an
empty one, or (with --dated) when its heading says Unreleased instead of a date.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>.+))?\s*$")
LINK = re.compile(r"^\[[^\]]+\]: ")


class ChangelogError(ValueError):
    pass


def section(text: str, version: str, dated: bool = False) -> str:
    version = version.removeprefix("v")
    lines = text.splitlines()
    start = None
    date = None
    for number, line in enumerate(lines):
        match = HEADING.match(line)
        if match and match.group("version") == version:
            start, date = number + 1, match.group("date")
            break
    if start is None:
        raise ChangelogError(
            f"CHANGELOG.md has no section for {version} (## [{version}] - DATE)"
        )
    body = []
    for line in lines[start:]:
        if line.startswith("## ") or LINK.match(line):
            break
        body.append(line)
    notes = "\n".join(body).strip()
    if not notes:
        raise ChangelogError(f"CHANGELOG.md: the section for {version} is empty")
    if dated and not (date and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date.strip())):
        raise ChangelogError(
            f"CHANGELOG.md: the section for {version} is not dated ({date or 'no date'}):"
            " write the release date before tagging"
        )
    return notes + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", help="0.1.0 or v0.1.0")
    parser.add_argument(
        "--dated", action="store_true", help="require a date in the heading"
    )
    parser.add_argument("--file", type=pathlib.Path, default=ROOT / "CHANGELOG.md")
    args = parser.parse_args()
    try:
        sys.stdout.write(section(args.file.read_text(), args.version, args.dated))
    except ChangelogError as error:
        print(f"changelog: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
