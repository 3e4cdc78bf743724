"""The READMEs' code blocks name only what exists: every `make` target, repository path, image
tag, `probe` subcommand and `probe` flag that a reader is told to type.

Scanned: every README.md and README.zh-CN.md in the repository (not .venv, target or hidden
folders); in each, the fenced blocks marked sh, bash, shell, console or nothing.

- Commands: in sh/bash blocks every line that is not a comment; in console blocks the lines
  after a `$ ` prompt; in plain blocks the `$ ` lines and lines that start with make, probe,
  kubectl, docker or cargo (the rest of a plain block is output or a diagram). `\\` joins lines;
  `&&`, `||`, `|`, `;` and `&` separate commands. A comment's `or: <command>` (`或：<command>` in
  Chinese) is checked as a command too. Placeholders (`<v>`, `URL`, `$VAR`, `...`) are never checked.
- make: each target is a rule in the Makefile; `EXP=x` names a folder k8s/x; `LOAD="..."` is
  given to `probe load` (make client-load) and is checked as its flags.
- Paths: words starting with k8s/, images/, scripts/, testpage/, probes/, lab/ or bench/ (with
  or without a trailing slash, also after `=`), and the files of `kubectl -f`/`-k`, exist in
  the repository (the commands run from its root).
- Images: `NAME:TAG` for every NAME in images/variants.tsv, anywhere in a scanned block (output
  included), is a tag `make images` builds (`-arm64` suffix included; see build-images.sh).
- probe: the subcommand is one `probe --help` lists; each flag is one `probe CMD --help` lists
  (short flags may be grouped: `-ac 8`), or a single-dash spelling the help names in backticks
  (`-qps`, fortio's spelling, which `probe load` accepts).

docker: every `docker run` a README gives, in a command block or in inline code, that names an
image of images/variants.tsv is RUN as written (each distinct command once), its URLs pointed at
a testpage from target/dist on loopback: a `--entrypoint /probe` command must show that
testpage's version and exit 0 on Ctrl-C; an image's own entrypoint must become ready, then exit 0
on SIGTERM. Bounded in time; skipped saying why without Docker or the images.

The probe checks need the binary: target/debug/probe when it is newer than probes/ and the
Cargo files, else `cargo build -q -p probes`; if that fails the probe tests skip saying why
(fail under REQUIRE_DOCKER=1).
"""

import dataclasses
import os
import pathlib
import re
import shutil
import signal
import subprocess

import pytest
import testlib

ROOT = testlib.ROOT
README_NAMES = ("README.md", "README.zh-CN.md")
SKIP_DIRS = {"target", "node_modules"}  # and every folder whose name starts with a dot

SHELL_LANGS = {"sh", "bash", "shell", "zsh"}
CONSOLE_LANGS = {"console", "shell-session"}
PLAIN_LANGS = {""}
# First words that make a line of a plain block a command rather than output.
PLAIN_COMMANDS = {"make", "probe", "kubectl", "docker", "cargo"}

PATH_PREFIXES = ("k8s", "images", "scripts", "testpage", "probes", "lab", "bench")
PATH_WORD = re.compile(rf"^(?:{'|'.join(PATH_PREFIXES)})/")
# Words that precede a command (`do date`, `if kubectl ...`) or prefix one (`sudo make`).
PREFIX_WORDS = {
    "do",
    "then",
    "else",
    "elif",
    "if",
    "while",
    "until",
    "!",
    "time",
    "sudo",
    "env",
}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# `make` options that take the next word as their value.
MAKE_VALUE_OPTIONS = {
    "-C",
    "-f",
    "-I",
    "-o",
    "-W",
    "--file",
    "--makefile",
    "--directory",
}
MAKE_ELSEWHERE = ("-C", "-f", "--file", "--makefile", "--directory")
KUBECTL_FILE_OPTIONS = {"-f", "-k", "--filename", "--kustomize"}
# An image reference: NAME:TAG, optionally after a registry path, never inside a URL
# (`http://my-app:8080`); an all-digit TAG is a port (`testpage:8080`), not a tag.
IMAGE_REF = re.compile(
    r"(?<![\w.:@-])(?<!//)(?:[\w.-]+/)*([a-z0-9][\w.-]*):(\w[\w.-]*)"
)
ALL_CAPS = re.compile(r"^[A-Z][A-Z0-9_]*$")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)")


@dataclasses.dataclass
class Facts:
    """What exists: the Makefile's targets, the files under `root`, the image tags built, and
    probe's subcommands with their flags (None: not known, so probe is not checked)."""

    targets: set
    root: pathlib.Path
    images: dict  # image name -> the tags built for it
    probe: dict | None = None  # subcommand -> {spelling: takes a value}; "" = top level


@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str  # make, path, image, probe
    line: int
    message: str

    def __str__(self):
        return f"line {self.line}: {self.kind}: {self.message}"


# ---------------------------------------------------------------- what exists


def make_targets(makefile_text):
    """The explicit targets of a Makefile: `name:` rules (not `X := value`, `.PHONY`, patterns
    or targets built from variables)."""
    targets = set()
    rule = re.compile(
        r"^([A-Za-z0-9][\w.-]*(?:[ \t]+[A-Za-z0-9][\w.-]*)*)[ \t]*::?(?!=)"
    )
    for line in makefile_text.splitlines():
        match = rule.match(line)
        if match:
            targets.update(match.group(1).split())
    return targets


def all_make_targets():
    """The targets of the Makefile and of the files it includes (mk/*.mk)."""
    texts = [(ROOT / "Makefile").read_text()]
    texts += [path.read_text() for path in sorted((ROOT / "mk").glob("*.mk"))]
    return set().union(*(make_targets(text) for text in texts))


def built_images(variants_text):
    """name -> tags that `make images` / `make images-arm64` build, from images/variants.tsv."""
    images = {}
    for line in variants_text.splitlines():
        # `#!` rows are the misbehaving tags, built from a base tag by ENV alone.
        if line.startswith("#!\t") and not line.startswith("#!\tNAME"):
            line = line[3:]
        elif not line.strip() or line.startswith("#"):
            continue
        name, tag = line.split("\t")[:2]
        images.setdefault(name, set()).update({tag, f"{tag}-arm64"})
    return images


def help_commands(text):
    """The subcommands a clap `--help` lists under Commands:."""
    commands, inside = set(), False
    for line in text.splitlines():
        if line.startswith("Commands:"):
            inside = True
        elif inside and not line.strip():
            break
        elif inside:
            match = re.match(r"^\s+([\w-]+)(\s|$)", line)
            if match:
                commands.add(match.group(1))
    return commands


def help_flags(text):
    """{spelling: takes a value} for every option a clap `--help` lists, plus the single-dash
    spellings of long options that the help names in backticks (`-qps`)."""
    flags, inside = {}, False
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            inside = line == "Options:"
            continue
        if not inside or not re.match(r"^\s+-", line):
            continue
        column = re.split(r"\s{2,}", line.strip())[
            0
        ]  # `-c, --connections <CONNECTIONS>`
        for spelling in column.split(", "):
            flags[spelling.split(" ")[0]] = "<" in column
    for alias in re.findall(r"`(-[A-Za-z][\w-]+)`", text):
        if "--" + alias[1:] in flags:
            flags[alias] = flags["--" + alias[1:]]
    return flags


def probe_spec(probe):
    """{subcommand: flags} from the binary's own --help; "" holds the top-level flags."""

    def help_text(*args):
        return subprocess.run(
            [str(probe), *args, "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout

    top = help_text()
    spec = {"": help_flags(top)}
    for command in help_commands(top):
        # `probe help CMD` takes subcommand names, not flags.
        spec[command] = None if command == "help" else help_flags(help_text(command))
    return spec


# ---------------------------------------------------------------- the scanner


def code_blocks(text):
    """(language, [(line number, line)]) for every fenced block."""
    blocks, fence, lang, lines = [], None, "", []
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence, lang, lines = match.group(1), match.group(2).lower(), []
        elif (
            match
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
        ):
            if not match.group(2):
                blocks.append((lang, lines))
                fence = None
        else:
            lines.append((number, line))
    return blocks


def joined(lines, start):
    """The logical line starting at lines[start], `\\` continuations joined (a console's `> `
    continuation prompt dropped); returns (text, index of the next line)."""
    text, index = lines[start][1], start + 1
    while text.rstrip().endswith("\\") and index < len(lines):
        more = lines[index][1].strip()
        more = more.removeprefix("> ")
        text = text.rstrip()[:-1] + " " + more
        index += 1
    return text, index


def command_lines(lang, lines):
    """(line number, command text) for the commands of a block, comments included."""
    commands, index = [], 0
    while index < len(lines):
        number, line = lines[index]
        stripped = line.strip()
        prompt = stripped.startswith("$ ") or stripped == "$"
        if lang in SHELL_LANGS:
            take = bool(stripped) and not stripped.startswith("#")
        elif prompt:
            take = True
        elif lang in PLAIN_LANGS:
            take = stripped.split(" ", 1)[0] in PLAIN_COMMANDS
        else:
            take = False
        if not take:
            # A full comment line of a shell block may still offer `# or: command`.
            if lang in SHELL_LANGS and stripped.startswith("#"):
                commands.append((number, stripped))
            index += 1
            continue
        text, index = joined(lines, index)
        text = text.strip()
        commands.append((number, text[1:].strip() if prompt else text))
    return commands


def comment_start(text):
    """Index of the `#` that starts a shell comment (outside quotes, at a word's start)."""
    quote, escaped = None, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1].isspace()):
            return index
    return len(text)


def simple_commands(code):
    """The words of each simple command in `code`, quotes removed; split at && || | ; &."""
    commands, words, word, quote, escaped, started = [], [], "", None, False, False
    index = 0

    def end_word():
        nonlocal word, started
        if started:
            words.append(word)
        word, started = "", False

    while index < len(code):
        char = code[index]
        if escaped:
            word, started, escaped = word + char, True, False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
            else:
                word += char
        elif char in "'\"":
            quote, started = char, True
        elif char.isspace():
            end_word()
        elif char in "|;&" and not (char == "&" and word.endswith((">", "<"))):
            end_word()
            if words:
                commands.append(words)
            words = []
            if code[index : index + 2] in ("&&", "||"):
                index += 1
        else:
            word, started = word + char, True
        index += 1
    end_word()
    if words:
        commands.append(words)
    return commands


def is_placeholder(word):
    """`<v>`, `$VAR`, `...`, `URL`, `k8s/<experiment>/`, `target/dist/ARCH/`: not real names."""
    if any(mark in word for mark in ("<", ">", "$", "...", "…", "{", "}")):
        return True
    return any(
        ALL_CAPS.match(part) for part in re.split(r"[/=]", word) if len(part) > 1
    )


class Scanner:
    def __init__(self, facts):
        self.facts = facts
        self.problems = []
        self.line = 0
        self.checked = {"make": 0, "path": 0, "image": 0, "probe": 0}

    def report(self, kind, message):
        self.problems.append(Problem(kind, self.line, message))

    def scan(self, text):
        for lang, lines in code_blocks(text):
            if lang not in SHELL_LANGS | CONSOLE_LANGS | PLAIN_LANGS:
                continue
            for number, line in lines:
                self.line = number
                self.images(line)
            for number, command in command_lines(lang, lines):
                self.line = number
                cut = comment_start(command)
                code, comment = command[:cut], command[cut:]
                alternative = re.search(r"(?:\bor:|或：)\s*(.+)", comment)
                for part in (code, alternative.group(1) if alternative else ""):
                    for words in simple_commands(part):
                        self.command(words)
        return self.problems

    # ---- one simple command

    def command(self, words):
        while words and (words[0] in PREFIX_WORDS or ASSIGNMENT.match(words[0])):
            words = words[1:]
        if not words:
            return
        for word in words:
            self.paths(word)
        name = os.path.basename(words[0])
        if name == "make":
            self.make(words[1:])
        elif name == "kubectl":
            self.kubectl(words[1:])
        for index, word in enumerate(words):
            before = words[index - 1] if index else ""
            if os.path.basename(word) == "probe" and (
                index == 0 or before == "--" or IMAGE_REF.fullmatch(before)
            ):
                self.probe(words[index + 1 :])
                break

    def paths(self, word):
        candidates = [word] + ([word.split("=", 1)[1]] if "=" in word else [])
        for candidate in candidates:
            if PATH_WORD.match(candidate):
                self.path(candidate, candidate)

    def path(self, relative, shown):
        if is_placeholder(relative):
            return
        self.checked["path"] += 1
        relative = relative.rstrip("/")
        found = (
            list(self.facts.root.glob(relative))
            if any(c in relative for c in "*?[")
            else (self.facts.root / relative).exists()
        )
        if not found:
            self.report("path", f"`{shown}`: no such file or folder in the repository")

    def make(self, args):
        targets, index, elsewhere = [], 0, False
        while index < len(args):
            arg = args[index]
            index += 1
            if arg in MAKE_VALUE_OPTIONS or arg.startswith(MAKE_ELSEWHERE):
                # Another folder or Makefile (-C, -f): its targets are not ours to check.
                elsewhere = elsewhere or arg.startswith(MAKE_ELSEWHERE)
                index += arg in MAKE_VALUE_OPTIONS
            elif arg in ("-j", "-l") and index < len(args) and args[index].isdigit():
                index += 1
            elif arg.startswith("-"):
                continue
            elif ASSIGNMENT.match(arg):
                self.make_variable(*arg.split("=", 1))
            else:
                targets.append(arg)
        for target in targets:
            if elsewhere or is_placeholder(target):
                continue
            self.checked["make"] += 1
            if target not in self.facts.targets:
                self.report("make", f"`make {target}`: no such target in the Makefile")

    def make_variable(self, name, value):
        if name == "EXP" and value and not is_placeholder(value):
            self.path(f"k8s/{value}", f"EXP={value}")
        elif name == "LOAD":
            for words in simple_commands(value):
                self.probe(["load", *words], shown="make client-load LOAD=")

    def kubectl(self, args):
        for index, arg in enumerate(args):
            name, eq, value = arg.partition("=")
            if name not in KUBECTL_FILE_OPTIONS:
                continue
            value = value if eq else (args[index + 1] if index + 1 < len(args) else "")
            if (
                value
                and value != "-"
                and "://" not in value
                and not PATH_WORD.match(value)
            ):
                self.path(value, f"kubectl {name} {value}")

    def images(self, line):
        for match in IMAGE_REF.finditer(line):
            name, tag = match.group(1), match.group(2).rstrip(".")
            if name not in self.facts.images or tag.isdigit():
                continue
            self.checked["image"] += 1
            if tag not in self.facts.images[name]:
                built = ", ".join(sorted(self.facts.images[name]))
                self.report(
                    "image",
                    f"`{name}:{tag}`: images/variants.tsv builds no such tag (built: {built})",
                )

    def probe(self, args, shown="probe"):
        spec = self.facts.probe
        if spec is None:
            return
        if not args or is_placeholder(args[0]):
            return
        self.checked["probe"] += 1
        if args[0].startswith("-"):
            command, flags, rest = "", spec[""], args
        elif args[0] not in spec:
            self.report(
                "probe", f"`probe {args[0]}`: no such subcommand (`probe --help`)"
            )
            return
        else:
            command, flags, rest = args[0], spec[args[0]], args[1:]
        if flags is None:
            return
        where = f"{shown} {command}".strip() if shown == "probe" else shown
        index = 0
        while index < len(rest):
            word = rest[index]
            index += 1
            if word == "--":
                break
            if not word.startswith("-") or re.match(r"^-[\d.]", word):
                continue  # an argument (a negative number too), not a flag
            name, eq, _ = word.partition("=")
            if is_placeholder(name):
                continue
            if name in flags:
                index += flags[name] and not eq
            elif word.startswith("--"):
                self.report(
                    "probe",
                    f"`{where}` has no flag `{name}` (`probe {command} --help`)",
                )
            else:  # grouped short flags: -ac 8
                for offset, char in enumerate(word[1:], 1):
                    short = "-" + char
                    if short not in flags:
                        within = f" in `{word}`" if len(word) > 2 else ""
                        self.report(
                            "probe",
                            f"`{where}` has no flag `{short}`{within} (`probe {command} --help`)",
                        )
                        break
                    if flags[short]:
                        index += offset == len(word) - 1
                        break


def scan(text, facts):
    return Scanner(facts).scan(text)


# ---------------------------------------------------------------- fixtures


def readmes():
    found = []
    for name in README_NAMES:
        for path in ROOT.rglob(name):
            parts = path.relative_to(ROOT).parts[:-1]
            if any(part.startswith(".") or part in SKIP_DIRS for part in parts):
                continue
            found.append(path)
    return sorted(found)


README_FILES = readmes()


def project_facts(probe=None):
    return Facts(
        targets=all_make_targets(),
        root=ROOT,
        images=built_images((ROOT / "images" / "variants.tsv").read_text()),
        probe=probe,
    )


def newest_source():
    sources = [ROOT / "Cargo.toml", ROOT / "Cargo.lock"]
    sources += [path for path in (ROOT / "probes").rglob("*") if path.is_file()]
    return max(path.stat().st_mtime for path in sources if path.exists())


@pytest.fixture(scope="session")
def probe_binary():
    """target/debug/probe, built with `cargo build -q -p probes` unless newer than the sources."""
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    binary = target / "debug" / "probe"
    if binary.exists() and binary.stat().st_mtime >= newest_source():
        return binary
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        testlib.skip_or_fail(
            f"{cargo} not found: cannot build probe for the README check"
        )
    try:
        build = subprocess.run(
            [cargo, "build", "-q", "--locked", "-p", "probes"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired:
        testlib.skip_or_fail("`cargo build -p probes` did not finish within 900 s")
    if build.returncode != 0 or not binary.exists():
        last = (build.stderr.strip().splitlines() or ["no output"])[-1]
        testlib.skip_or_fail(f"`cargo build -p probes` failed: {last}")
    return binary


@pytest.fixture(scope="session")
def real_probe_spec(probe_binary):
    return probe_spec(probe_binary)


# ---------------------------------------------------------------- the scanner on synthetic text

PROBE_HELP = """\
Usage: probe <COMMAND>

Commands:
  watch  Request a URL every interval
  load   Load a URL like `fortio load`
  help   Print this message or the help of the given subcommand(s)

Options:
  -h, --help     Print help
  -V, --version  Print version
"""

LOAD_HELP = """\
Usage: probe load [OPTIONS] <URL>

Arguments:
  <URL>  URL to load

Options:
  -c, --connections <CONNECTIONS>  Concurrent connections (workers) [default: 8]
      --qps <QPS>                  Target requests per second (`-qps` as fortio spells it works too)
  -t, --duration <DURATION>        Duration
      --keepalive <BOOL>           Reuse connections [default: true] [possible values: true, false]
  -a, --save                       Also write the JSON report (fortio's -a)
  -h, --help                       Print help
"""

WATCH_HELP = """\
Options:
      --interval <INTERVAL>  Time between requests
  -h, --help                 Print help
"""


@pytest.fixture
def facts(tmp_path):
    (tmp_path / "k8s" / "demo").mkdir(parents=True)
    (tmp_path / "k8s" / "demo" / "deployment-0.9.yaml").write_text("")
    (tmp_path / "scripts").mkdir()
    return Facts(
        targets=make_targets(
            "deploy: ## Apply\n\ttrue\nwatch upgrade client-load:\n\ttrue\nX := 1\n"
        ),
        root=tmp_path,
        images={"testpage": {"0.9", "0.9-arm64"}, "hello": {"v1", "v1-arm64"}},
        probe={
            "": help_flags(PROBE_HELP),
            "watch": help_flags(WATCH_HELP),
            "load": help_flags(LOAD_HELP),
            "help": None,
        },
    )


def problems(text, facts):
    return [str(problem) for problem in scan(text, facts)]


def test_help_parsing():
    assert help_commands(PROBE_HELP) == {"watch", "load", "help"}
    assert help_flags(LOAD_HELP) == {
        "-c": True,
        "--connections": True,
        "--qps": True,
        "-qps": True,
        "-t": True,
        "--duration": True,
        "--keepalive": True,
        "-a": False,
        "--save": False,
        "-h": False,
        "--help": False,
    }


def test_the_makefile_parser_reads_rules_not_assignments():
    targets = make_targets((ROOT / "Makefile").read_text())
    assert {"test", "validate", "lab-short", "install", "client-load"} <= targets
    assert {"release-rehearsal", "chart-test"} <= all_make_targets()
    assert not {"SHELL", "PHONY", ".PHONY", "EXP", "LOAD"} & targets


def test_a_missing_make_target_is_reported(facts):
    text = "```sh\nmake deploy watch EXP=demo\nmake deploi EXP=demo   # typo\n```\n"
    assert problems(text, facts) == [
        "line 3: make: `make deploi`: no such target in the Makefile"
    ]


def test_a_missing_path_is_reported(facts):
    text = (
        "```sh\n"
        "kubectl apply -k k8s/demo/ && kubectl apply -f k8s/demo/deployment-0.9.yaml\n"
        "kubectl apply -f k8s/demo/deployment-1.0.yaml | cat\n"
        "kubectl apply -k k8s/gone   # or: make deploy EXP=gone\n"
        "kubectl delete -f deploy.yaml\n"
        "```\n"
    )
    assert problems(text, facts) == [
        "line 3: path: `k8s/demo/deployment-1.0.yaml`: no such file or folder in the repository",
        "line 4: path: `k8s/gone`: no such file or folder in the repository",
        "line 4: path: `EXP=gone`: no such file or folder in the repository",
        "line 5: path: `kubectl -f deploy.yaml`: no such file or folder in the repository",
    ]


def test_an_unknown_probe_flag_or_subcommand_is_reported(facts):
    text = (
        "```console\n"
        "$ probe load -a -c 8 -qps 500 -t 60s http://localhost:30031/\n"
        "Code 200 : 29996 (99.99 %)\n"
        "$ probe load -qps=500 --keepalive false -ac 8 --qps -1 URL\n"
        "$ probe load -x -c 8 \\\n"
        ">   --rate 5 URL\n"
        "$ probe watch --count 3 URL && probe sip URL\n"
        "$ probe --help; probe help load; probe <command> --help\n"
        "```\n"
        "```sh\n"
        'make client-load URL=http://svc/ LOAD="-c 4 --qps 100 -n 9"\n'
        "kubectl exec deployment/client -- /probe watch --intervall 1s URL\n"
        "```\n"
    )
    assert problems(text, facts) == [
        "line 5: probe: `probe load` has no flag `-x` (`probe load --help`)",
        "line 5: probe: `probe load` has no flag `--rate` (`probe load --help`)",
        "line 7: probe: `probe watch` has no flag `--count` (`probe watch --help`)",
        "line 7: probe: `probe sip`: no such subcommand (`probe --help`)",
        "line 11: probe: `make client-load LOAD=` has no flag `-n` (`probe load --help`)",
        "line 12: probe: `probe watch` has no flag `--intervall` (`probe watch --help`)",
    ]


def test_an_image_tag_that_is_not_built_is_reported(facts):
    text = (
        "```sh\n"
        "kubectl set image deployment app app=testpage:0.9 && docker run testpage:0.9-arm64\n"
        "# change the image to hello:v2 in the manifest, then\n"
        "docker run --rm docker.io/you/testpage:1.0 /probe watch URL\n"
        "curl http://testpage:8080/ testpage:8080\n"
        "```\n"
        "```\n"
        "NAME   IMAGES\n"
        "app    hello:v3\n"
        "```\n"
    )
    assert problems(text, facts) == [
        "line 3: image: `hello:v2`: images/variants.tsv builds no such tag (built: v1, v1-arm64)",
        (
            "line 4: image: `testpage:1.0`: images/variants.tsv builds no such tag"
            " (built: 0.9, 0.9-arm64)"
        ),
        "line 9: image: `hello:v3`: images/variants.tsv builds no such tag (built: v1, v1-arm64)",
    ]


def test_output_prose_other_languages_and_placeholders_are_not_commands(facts):
    text = (
        "```\n"
        "k8s/        one folder per experiment\n"
        "exit     0 when every request finished\n"
        "```\n"
        "```yaml\n"
        "command: [make, nothing]\n"
        "```\n"
        "```console\n"
        "$ make upgrade TO=<v> EXP=<experiment>\n"
        "make nothing   (output, no prompt)\n"
        "$ make <target> && probe <cmd> --help && ls k8s/<experiment>/ target/dist/ARCH/\n"
        "$ kubectl apply -f https://example.com/x.yaml && kubectl apply -f k8s/...\n"
        "```\n"
    )
    assert problems(text, facts) == []


# ---------------------------------------------------------------- the repository's READMEs


def checked(probe=None):
    scanner = Scanner(project_facts(probe))
    for path in README_FILES:
        scanner.scan(path.read_text())
    return scanner.checked


def test_the_readmes_are_found_and_checked():
    names = {str(path.relative_to(ROOT)) for path in README_FILES}
    assert {
        "README.md",
        "README.zh-CN.md",
        "k8s/README.md",
        "k8s/README.zh-CN.md",
    } <= names
    # The scan must have seen something of every kind, or it checks nothing.
    counts = checked()
    assert counts["make"], counts
    assert counts["path"], counts
    assert counts["image"], counts


def test_the_readmes_probe_commands_are_checked(real_probe_spec):
    assert checked(real_probe_spec)["probe"]


@pytest.mark.parametrize("readme", README_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_names_only_what_exists(readme):
    found = scan(readme.read_text(), project_facts())
    assert not found, f"{readme.relative_to(ROOT)}:\n" + "\n".join(map(str, found))


@pytest.mark.parametrize("readme", README_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_probe_commands_exist(readme, real_probe_spec):
    found = [
        problem
        for problem in scan(readme.read_text(), project_facts(real_probe_spec))
        if problem.kind == "probe"
    ]
    assert not found, f"{readme.relative_to(ROOT)}:\n" + "\n".join(map(str, found))


# ---------------------------------------------------------------- the docker commands, run

# `docker run` options that take the next word as their value (those the READMEs use and the
# common others), so that the image is the first word after the options.
DOCKER_VALUE_OPTIONS = {
    "--network",
    "--net",
    "--entrypoint",
    "--tmpfs",
    "--memory",
    "-m",
    "--cpus",
    "--name",
    "-p",
    "--publish",
    "-e",
    "--env",
    "-v",
    "--volume",
    "-u",
    "--user",
    "--platform",
    "--mount",
}
INLINE_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
URL_HOST_PORT = re.compile(r"^(https?|wss?)://[^/\s]+")


@dataclasses.dataclass(frozen=True)
class DockerRun:
    """A `docker run` a README gives: its words, the image and what runs in it."""

    words: tuple
    line: int
    image: str  # NAME:TAG
    entrypoint: str  # "" for the image's own (testpage)
    args: tuple  # after the image

    def with_target(self, host_port, name):
        """The command as written, with every URL's host:port replaced by `host_port`, and a
        `--name` so that the test can reach and remove the container."""
        words = [
            URL_HOST_PORT.sub(lambda m: f"{m.group(1)}://{host_port}", word)
            for word in self.words
        ]
        return words[:2] + ["--name", name] + words[2:]


def prose_without_fences(text):
    """(line number, line) of the lines outside fenced blocks."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None and match and match.group(1)[0] == fence[0]:
            fence = None if not match.group(2) else fence
        elif fence is None:
            out.append((number, line))
    return out


def docker_run_commands(text, images):
    """Every `docker run` of a README: in its command blocks and in inline code (a span may
    wrap onto the next line). Spans that name no image of `images` are option notes (`docker
    run --cpus 0.01`), not commands, and are left out."""
    found = []
    for lang, lines in code_blocks(text):
        if lang in SHELL_LANGS | CONSOLE_LANGS | PLAIN_LANGS:
            for number, command in command_lines(lang, lines):
                code = command[: comment_start(command)]
                found += [(number, words) for words in simple_commands(code)]
    prose = prose_without_fences(text)
    numbers = [number for number, _ in prose]
    joined_prose = "\n".join(line for _, line in prose)
    for match in INLINE_CODE.finditer(joined_prose):
        number = numbers[joined_prose.count("\n", 0, match.start())]
        found += [(number, words) for words in simple_commands(match.group(1))]
    runs = []
    for number, words in found:
        while words and (words[0] in PREFIX_WORDS or ASSIGNMENT.match(words[0])):
            words = words[1:]
        if words[:2] != ["docker", "run"]:
            continue
        index, entrypoint = 2, ""
        while index < len(words) and words[index].startswith("-"):
            option, eq, value = words[index].partition("=")
            if option in DOCKER_VALUE_OPTIONS and not eq:
                value = words[index + 1] if index + 1 < len(words) else ""
                index += 1
            if option == "--entrypoint":
                entrypoint = value
            index += 1
        image = words[index] if index < len(words) else ""
        match = IMAGE_REF.fullmatch(image)
        if not match or match.group(1) not in images:
            continue
        runs.append(
            DockerRun(
                tuple(words), number, image, entrypoint, tuple(words[index + 1 :])
            )
        )
    return runs


def test_docker_runs_are_found_in_blocks_and_wrapped_inline_code():
    text = (
        "Without Rust: `docker run --rm --network host --entrypoint /probe\n"
        "testpage:0.9 watch http://localhost:30021/`, or measured under `docker run\n"
        "--cpus 0.01` (options only).\n"
        "```sh\n"
        "docker run --rm -p 8080:8080 hello:v1   # the page\n"
        "```\n"
    )
    runs = docker_run_commands(text, {"testpage", "hello"})
    assert [(run.line, run.image, run.entrypoint, run.args) for run in runs] == [
        (5, "hello:v1", "", ()),
        (1, "testpage:0.9", "/probe", ("watch", "http://localhost:30021/")),
    ]
    assert runs[1].with_target("127.0.0.1:5", "n")[:4] == [
        "docker",
        "run",
        "--name",
        "n",
    ]
    assert runs[1].with_target("127.0.0.1:5", "n")[-1] == "http://127.0.0.1:5/"


def readme_docker_runs():
    images = built_images((ROOT / "images" / "variants.tsv").read_text())
    runs = {}
    for path in README_FILES:
        for run in docker_run_commands(path.read_text(), images):
            where = f"{path.relative_to(ROOT)}:{run.line}"
            runs.setdefault(run.words, (where, run))
    return sorted(runs.values(), key=lambda pair: pair[0])


DOCKER_RUNS = readme_docker_runs()


def test_the_readmes_give_docker_commands():
    # The workshop's "no Rust" command, in README.md and k8s/README.md, in both languages.
    assert any(run.entrypoint == "/probe" for _, run in DOCKER_RUNS), DOCKER_RUNS


@pytest.fixture(scope="module")
def local_testpage(tmp_path_factory):
    """testpage from target/dist on 127.0.0.1, VERSION=docs-check; yields host:port."""
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    ready = tmp_path_factory.mktemp("docs") / "ready"
    env = {**os.environ, "VERSION": "docs-check", "READY_FILE": str(ready)}
    with testlib.Process(
        [testlib.DIST / "testpage", "--listen", "127.0.0.1:0", "--drain", "0"],
        env=env,
        stderr=subprocess.DEVNULL,
    ) as proc:
        yield testlib.ready_addr(ready, proc)


def docker_exec_ok(name, *args):
    return (
        subprocess.run(
            ["docker", "exec", name, *args],
            capture_output=True,
            timeout=10,
            check=False,
        ).returncode
        == 0
    )


@pytest.mark.parametrize(
    ("where", "run"), DOCKER_RUNS, ids=[where for where, _ in DOCKER_RUNS]
)
def test_readme_docker_command_runs(where, run, local_testpage):
    """The command as written (URLs pointed at a local testpage), bounded in time: a probe
    command shows the local testpage's version and ends with exit 0 on Ctrl-C; an image run
    with its own entrypoint serves until ready, then drains on SIGTERM and exits 0."""
    testlib.skip_or_fail(testlib.docker_problem())
    if subprocess.run(
        ["docker", "image", "inspect", run.image], capture_output=True, check=False
    ).returncode:
        testlib.skip_or_fail(f"image {run.image} not built: run `make images`")
    name = f"docs-check-{os.getpid()}-{abs(hash(run.words)) % 10**8}"
    words = run.with_target(local_testpage, name)
    try:
        with testlib.Process(
            words,
            stop_signal=signal.SIGINT,
            grace=15,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            if run.entrypoint == "/probe":
                # A watch runs until Ctrl-C: give it three requests' time.
                try:
                    out, _ = proc.communicate(timeout=4)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGINT)
                    out, _ = proc.communicate(timeout=15)
                assert proc.poll() == 0, f"{where}: {' '.join(words)}\n{out}"
                assert "docs-check" in out, f"{where}: {' '.join(words)}\n{out}"
            else:
                testlib.wait_until(
                    lambda: (
                        proc.poll() is not None
                        or docker_exec_ok(name, "/probe", "http", "/readyz")
                    ),
                    30,
                    f"{where}: {' '.join(words)} ready",
                    interval=0.3,
                )
                assert proc.poll() is None, f"{where}: exited {proc.poll()}"
                subprocess.run(
                    ["docker", "kill", "--signal", "TERM", name],
                    capture_output=True,
                    timeout=10,
                    check=False,
                )
                out, _ = proc.communicate(timeout=20)
                assert proc.poll() == 0, f"{where}: {' '.join(words)}\n{out}"
    finally:
        subprocess.run(
            ["docker", "rm", "-f", name], capture_output=True, timeout=30, check=False
        )


def test_the_misbehaving_tags_count_as_built():
    images = built_images((ROOT / "images" / "variants.tsv").read_text())
    assert {"0.9", "0.9-errors", "0.9-unready"} <= images["testpage"]
    assert "v2.0.0-slow" in images["my-app"]
    assert "NAME" not in images
