"""The READMEs' examples of program output are what the programs print.

- A console block whose command is `curl ... localhost:8080...` (the `make run` example) is run
  for real: against testpage from target/dist started as `make run` starts it (no VERSION), on
  loopback, with `POD_NAME` and `POD_IP` set to the `x-pod` and `x-pod-ip` the example shows
  (they are the reader's machine's); the output must be the block's, byte for byte, except the
  `date:` header's value.
- A plain block that is one page line, `I am: IP, the version is: V`, must be what testpage
  answers with `POD_IP=IP VERSION=V`.
- In plain blocks, the lines of a `probe load` report (`Code ...`, `Versions: ...`,
  `Warning: ...`) and of `probe watch` (a request's line, `── new version`, `── new pod`, `── version
  ... gone`) must have the shape the real binaries print; the shapes are checked against a real
  run of each first, so they cannot drift from the programs. A `<- note` at the end of a line and
  `...` lines are the README's own.

The tests skip (fail under REQUIRE_DOCKER=1) when target/dist lacks the binaries (`make build`).
"""

import os
import re
import shutil
import subprocess

import pytest
import test_docs  # the README scanner

testlib = test_docs.testlib
README_FILES = test_docs.README_FILES
ROOT = testlib.ROOT

CURL_EXAMPLE = re.compile(r"^curl\b.*\blocalhost:8080\b")
PAGE_LINE = re.compile(r"^I am: (\S+), the version is: (\S+)$")
DATE_HEADER = re.compile(r"^date: .*$", re.MULTILINE)

NUMBER = r"-?\d+"
SHARE = r"\d+\.\d %"
LOAD_LINES = {
    "Code": re.compile(rf"^Code +{NUMBER} : \d+ \(\d+\.\d\d %\)$"),
    "Versions:": re.compile(
        rf"^Versions: \S+ \d+ \({SHARE}\)(  \S+ \d+ \({SHARE}\))*$"
    ),
    "Warning:": re.compile(
        r"^Warning: the split counts \d+ connections: behind a Service it moves in steps of"
        r" \d+\.\d %; --keepalive false \(a new connection per request\) shows the Service's"
        r" split$"
    ),
}
WATCH_LINES = {
    "request": re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  \d{3}  \S+ +\S+ +\d+(\.\d+)?ms$"),
    "new version": re.compile(r"^── new version \S+$"),
    "new pod": re.compile(r"^── new pod \S+ \(\S+\)$"),
    "gone": re.compile(r"^── version \S+ gone: not in the last \d+ answers$"),
}


def blocks(lang_set):
    for path in README_FILES:
        for lang, lines in test_docs.code_blocks(path.read_text()):
            if lang in lang_set:
                yield path, lines


def curl_examples():
    found = []
    for path, lines in blocks(test_docs.CONSOLE_LANGS):
        if not lines or not lines[0][1].startswith("$ "):
            continue
        command = lines[0][1][2:].strip()
        if CURL_EXAMPLE.match(command):
            output = "\n".join(line for _, line in lines[1:]) + "\n"
            found.append((f"{path.relative_to(ROOT)}:{lines[0][0]}", command, output))
    return found


def page_examples():
    found = []
    for path, lines in blocks(test_docs.PLAIN_LANGS):
        if len(lines) == 1 and PAGE_LINE.match(lines[0][1]):
            found.append((f"{path.relative_to(ROOT)}:{lines[0][0]}", lines[0][1]))
    return found


def report_lines():
    """(where, kind, line) for every probe load or watch line of a plain block."""
    found = []
    for path, lines in blocks(test_docs.PLAIN_LANGS):
        for number, line in lines:
            text = re.sub(r"\s+<- .*$", "", line).rstrip()
            where = f"{path.relative_to(ROOT)}:{number}"
            kind = next((k for k in LOAD_LINES if text.startswith(k + " ")), None)
            if kind:
                found.append((where, LOAD_LINES[kind], text))
            elif text.startswith("── ") or re.match(r"^\d\d:\d\d:\d\d\.\d{3} ", text):
                kind = next(
                    (k for k, shape in WATCH_LINES.items() if shape.match(text)), None
                )
                found.append(
                    (where, WATCH_LINES.get(kind, WATCH_LINES["request"]), text)
                )
    return found


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    """Starts testpage from target/dist on 127.0.0.1 with `env` added; returns host:port."""
    testlib.skip_or_fail(testlib.binaries_problem("testpage", "probe"))
    started = []

    def start(**env):
        ready = tmp_path_factory.mktemp("examples") / "ready"
        full = {k: v for k, v in os.environ.items() if k not in ("VERSION", "POD_NAME")}
        full.update(env, READY_FILE=str(ready))
        proc = testlib.Process(
            [testlib.DIST / "testpage", "--listen", "127.0.0.1:0", "--drain", "0"],
            env=full,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        return testlib.ready_addr(ready, proc)

    yield start
    for proc in started:
        proc.close()


def test_the_readmes_have_examples_of_each_kind():
    assert curl_examples()
    assert page_examples()
    assert report_lines()


@pytest.mark.parametrize(("where", "command", "expected"), curl_examples())
def test_curl_example_is_what_make_run_answers(where, command, expected, serve):
    if shutil.which("curl") is None:
        testlib.skip_or_fail("curl not found (Debian: apt-get install curl)")
    pod = re.search(r"^x-pod: (.*)$", expected, re.MULTILINE).group(1)
    ip = re.search(r"^x-pod-ip: (.*)$", expected, re.MULTILINE).group(1)
    addr = serve(POD_NAME=pod, POD_IP=ip)
    words = command.replace("localhost:8080", addr).split()
    out = subprocess.run(
        words, capture_output=True, text=True, timeout=10, check=True
    ).stdout.replace("\r\n", "\n")
    assert DATE_HEADER.search(out), out
    assert DATE_HEADER.sub("date: …", out) == DATE_HEADER.sub("date: …", expected), (
        where
    )


@pytest.mark.parametrize(("where", "line"), page_examples())
def test_page_example_is_what_testpage_answers(where, line, serve):
    ip, version = PAGE_LINE.match(line).groups()
    addr = serve(POD_IP=ip, VERSION=version)
    status, _, body = testlib.http_get(f"http://{addr}/")
    assert (status, body.decode()) == (200, line + "\n"), where


def test_the_shapes_are_the_programs(serve):
    """A real `probe load` (two kept-alive connections to two versions) and `probe watch` run
    print lines of every shape the README lines are checked against."""
    probe = testlib.DIST / "probe"
    first, second = serve(VERSION="0.8"), serve(VERSION="0.9")
    load = subprocess.run(
        [probe, "load", "-c", "2", "--qps", "100", "-t", "1s", f"http://{first}/"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    for kind, shape in LOAD_LINES.items():
        if kind == "Versions:":
            continue
        assert any(shape.match(line) for line in load), (kind, load)
    two = "Versions: 0.8 60 (60.0 %)  0.9 40 (40.0 %)"
    assert LOAD_LINES["Versions:"].match(two)
    assert any(LOAD_LINES["Versions:"].match(line) for line in load), load
    watch = []
    for addr in (first, second):
        watch += subprocess.run(
            [probe, "watch", "--count", "2", "--interval", "10ms", f"http://{addr}/"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.splitlines()
    for kind in ("request", "new version", "new pod"):
        assert any(WATCH_LINES[kind].match(line) for line in watch), (kind, watch)


def test_report_codes_are_in_the_programs_order():
    """`probe load` lists its codes in ascending order (`-1` first), as fortio does."""
    for path, lines in blocks(test_docs.PLAIN_LANGS):
        codes = []
        for number, line in lines + [(0, "...")]:
            match = re.match(r"^Code +(-?\d+) :", line)
            if match:
                codes.append(int(match.group(1)))
                continue
            assert codes == sorted(codes), f"{path.relative_to(ROOT)}:{number}: {codes}"
            codes = []


@pytest.mark.parametrize(
    ("where", "shape", "line"), report_lines(), ids=[w for w, _, _ in report_lines()]
)
def test_report_line_has_the_programs_shape(where, shape, line):
    assert shape.match(line), f"{where}: {line!r} is not what probe prints"
