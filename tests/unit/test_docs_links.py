"""The README and docs/ are what a newcomer follows: every relative link leads to a file that exists
(and to a heading that exists, for `file.md#anchor`), and the README's documentation index lists
every document in docs/."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", path.read_text())
    anchors = set()
    for line in text.splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def test_relative_links_resolve() -> None:
    broken = []
    for doc in _markdown_files():
        for target in LINK.findall(FENCE.sub("", doc.read_text())):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            file_part, _, anchor = target.partition("#")
            path = (doc.parent / file_part).resolve()
            where = f"{doc.relative_to(REPO)}: {target}"
            if not path.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{where} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_indexes_every_document() -> None:
    readme = (REPO / "README.md").read_text()
    index = readme[readme.index("## Documentation") :]
    index = index[: index.index("\n## ", 1)]
    linked = {(REPO / t).resolve() for t in LINK.findall(index)}
    documents = {p.resolve() for p in DOCS.rglob("*") if p.is_file()}
    missing = sorted(str(p.relative_to(REPO)) for p in documents - linked)
    assert not missing, f"README's documentation index does not list {missing}"


def test_readme_names_every_make_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = re.findall(r"^([a-zA-Z_-]+):.*## ", makefile, re.M)
    readme = (REPO / "README.md").read_text()
    missing = [t for t in targets if t != "help" and f"make {t}" not in readme]
    assert not missing, f"README does not mention make {missing}"
