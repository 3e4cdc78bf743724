"""Each k8s/ folder that reproduces an article says how it differs from it, in a section of its
own in both languages, and does not quote the article wrongly (the misquotes once found are
listed here so that they cannot come back)."""

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEADINGS = {
    "README.md": "## Differences from the article",
    "README.zh-CN.md": "## 与原文的不同",
}
# Folders built from the tutorials' articles, as k8s/README.md maps them (the others say they
# have none).
ARTICLE_FOLDERS = [
    "000-rolling-update",
    "rolling-update",
    "001-rolling-update-test",
    "002-deploy-demo",
    "002-blue-green",
    "003-zero-downtime",
    "004-strategies",
    "004-rolling-update-8081",
]
MISQUOTES = [
    "ingress-nginx canary annotations",  # the strategies article has none
    "ingress-nginx 金丝雀注解",
    "myapp=ikubernetes/myapp:v2",  # the article wrote `set image ... myapp:v2`
]


@pytest.mark.parametrize("folder", ARTICLE_FOLDERS)
@pytest.mark.parametrize("name", sorted(HEADINGS))
def test_the_folder_lists_its_differences_from_the_article(folder, name):
    text = (ROOT / "k8s" / folder / name).read_text()
    heading = HEADINGS[name]
    assert text.count(heading + "\n") == 1, f"k8s/{folder}/{name}: no `{heading}`"
    section = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    assert section.count("\n- ") + section.count("\n| ") >= 3, section
    for wrong in MISQUOTES:
        assert wrong not in text, f"k8s/{folder}/{name}: {wrong}"


def test_every_folder_with_a_lab_is_an_article_folder_or_says_it_is_not():
    for lab in sorted((ROOT / "k8s").glob("*/lab.yaml")):
        folder = lab.parent.name
        readme = (lab.parent / "README.md").read_text()
        assert folder in ARTICLE_FOLDERS or "Not from a tutorial" in readme, folder


def zh_readmes():
    listed = subprocess.run(
        ["git", "ls-files", "*README.zh-CN.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed]


@pytest.mark.parametrize("readme", zh_readmes(), ids=lambda p: str(p.relative_to(ROOT)))
def test_chinese_code_comments_are_in_chinese(readme):
    """A comment in a code block of a Chinese README is Chinese, or names only a command or an
    output value (`或：make rollback`, `ACCEPTED 应为 True`)."""
    english = []
    inside = False
    for number, line in enumerate(readme.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if inside and "# " in line:
            comment = line.split("# ", 1)[1]
            if not re.search(r"[\u4e00-\u9fff]", comment):
                english.append(f"{number}: {comment}")
    assert not english, "\n".join(english)


POD_WORD = re.compile(r"(?<![\w`/.-])pods?(?![\w`/.:-])")


@pytest.mark.parametrize(
    "readme",
    [ROOT / "README.zh-CN.md", *sorted((ROOT / "k8s").rglob("README.zh-CN.md"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_chinese_prose_writes_pod_as_kubernetes_does(readme):
    """`Pod`, as the Kubernetes docs in Chinese write it; `pod` only inside code."""
    found, inside = [], False
    for number, line in enumerate(readme.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        prose = line.split("`")[::2]
        if not inside and any(POD_WORD.search(part) for part in prose):
            found.append(f"{number}: {line}")
    assert not found, "\n".join(found)
