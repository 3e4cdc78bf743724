"""The tags a release publishes: every row of images/variants.tsv and its misbehaving rows
("#!": a base tag's image with more ENV)."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE = ROOT / "images" / "variants.tsv"


DEFAULT_MESSAGE = "I am: {ip}, the version is: {version}"
DEFAULT_CONTENT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Variant:
    """A row of the table: what images/Dockerfile's build arguments make of it."""

    name: str
    tag: str
    version: str
    port: int
    message: str
    color: str
    newline: str
    content_type: str

    def env(self) -> dict[str, str]:
        """The ENV the Dockerfile sets from the row (READY_FILE and PATH are the same for all)."""
        return {
            "VERSION": self.version,
            "PORT": str(self.port),
            "MESSAGE": DEFAULT_MESSAGE if self.message == "-" else self.message,
            "COLOR": "" if self.color == "-" else self.color,
            "NEWLINE": self.newline,
            "CONTENT_TYPE": (
                DEFAULT_CONTENT_TYPE if self.content_type == "-" else self.content_type
            ),
        }


@dataclass(frozen=True)
class Misbehaving:
    name: str
    tag: str
    base: str
    env: dict[str, str]
    what: str


def table_rows(table: pathlib.Path = TABLE) -> list[Variant]:
    """The tutorial variants, in the table's order."""
    out = []
    for line in table.read_text().splitlines():
        if line and not line.startswith("#"):
            name, tag, version, port, message, color, newline, ctype, _ = line.split(
                "\t"
            )
            out.append(
                Variant(name, tag, version, int(port), message, color, newline, ctype)
            )
    return out


def rows(table: pathlib.Path = TABLE) -> list[tuple[str, str]]:
    """(name, tag) of the tutorial variants, in the table's order."""
    return [(v.name, v.tag) for v in table_rows(table)]


def settings(
    name: str, tag: str, table: pathlib.Path = TABLE
) -> tuple[dict[str, str], str]:
    """The image environment of NAME:TAG as the Dockerfile and build-images.sh make it, in
    their order, and the version label: a row's ENV, or a misbehaving tag's base ENV with
    VERSION set to the tag and its own settings after."""
    for variant in table_rows(table):
        if (variant.name, variant.tag) == (name, tag):
            return variant.env(), variant.version
    for bad in misbehaving(table):
        if (bad.name, bad.tag) == (name, tag):
            env, _ = settings(bad.name, bad.base, table)
            return {**env, "VERSION": bad.tag, **bad.env}, bad.tag
    raise KeyError(f"{name}:{tag} is not in images/variants.tsv")


def port(name: str, tag: str, table: pathlib.Path = TABLE) -> int:
    return int(settings(name, tag, table)[0]["PORT"])


def misbehaving(table: pathlib.Path = TABLE) -> list[Misbehaving]:
    out = []
    for line in table.read_text().splitlines():
        if not line.startswith("#!\t"):
            continue
        _, name, tag, base, env, what = line.split("\t")
        if name == "NAME":
            continue
        pairs = dict(word.split("=", 1) for word in env.split())
        out.append(Misbehaving(name, tag, base, pairs, what))
    return out


def tags(
    only: list[str] | None = None, table: pathlib.Path = TABLE
) -> list[tuple[str, str]]:
    """Every (name, tag) a release publishes, or those of `only` (`NAME:TAG` each), which must
    be among them."""
    every = rows(table) + [(m.name, m.tag) for m in misbehaving(table)]
    if not only:
        return every
    chosen = [tuple(item.split(":", 1)) for item in only]
    unknown = [f"{n}:{t}" for n, t in chosen if (n, t) not in every]
    if unknown:
        raise SystemExit(f"not in images/variants.tsv: {', '.join(unknown)}")
    return [(n, t) for n, t in chosen]


def split_registry(registry: str) -> tuple[str, str]:
    """`host:port/prefix/` -> (`host:port`, `prefix/`); the prefix may be empty."""
    host, _, prefix = registry.partition("/")
    if not host or (prefix and not prefix.endswith("/")):
        raise SystemExit(
            f"REGISTRY must look like host:port/prefix/ (with the slash): {registry!r}"
        )
    return host, prefix
