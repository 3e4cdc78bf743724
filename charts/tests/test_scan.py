"""checkov (PyPI, installed by `make chart-test` into target/tools/checkov) on the default
render: every check it fails is fixed in the chart or justified in the chart's README, by check
and kind, and the README justifies nothing that passes."""

import json
import re
import subprocess

import pytest
import testlib
from conftest import CHART, ROOT

CHECKOV = ROOT / "target" / "tools" / "checkov" / "bin" / "checkov"
OUT = ROOT / "target" / "chart"
ROW = re.compile(r"^\| `(CKV2?_K8S_\d+)` \| ([A-Za-z, ]+) \|")


@pytest.fixture(scope="module")
def findings(helm):
    if not CHECKOV.exists():
        testlib.skip_or_fail(f"checkov: not installed at {CHECKOV} (make chart-test)")
    OUT.mkdir(parents=True, exist_ok=True)
    render = subprocess.run(
        [helm, "template", "testpage", str(CHART), "--namespace", "testpage"],
        capture_output=True,
        text=True,
        check=True,
    )
    manifest = OUT / "default.yaml"
    manifest.write_text(render.stdout)
    scan = subprocess.run(
        [CHECKOV, "--quiet", "--compact", "--skip-download", "--framework"]
        + ["kubernetes", "-f", manifest, "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    # checkov exits 1 when a check fails; its JSON report is what counts.
    report = json.loads(scan.stdout)
    report = report[0] if isinstance(report, list) else report
    (OUT / "checkov.json").write_text(json.dumps(report, indent=1) + "\n")
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] >= 4
    return {
        (check["check_id"], check["resource"].split(".")[0])
        for check in report["results"]["failed_checks"]
    }


def justified(readme):
    rows = set()
    for line in (CHART / readme).read_text().splitlines():
        match = ROW.match(line)
        if match:
            for kind in match.group(2).split(","):
                rows.add((match.group(1), kind.strip()))
    return rows


@pytest.mark.parametrize("readme", ["README.md", "README.zh-CN.md"])
def test_every_finding_is_justified(findings, readme):
    rows = justified(readme)
    assert rows, f"no checkov table in {readme}"
    assert sorted(findings - rows) == [], "findings the README does not justify"
    assert sorted(rows - findings) == [], "justified in the README, but checkov passes"
