"""Every relative link in the README and docs/ points at a file of the repository (anchors not checked)."""

import re

from scripts import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(markdown_file):
    for target in LINK.findall(markdown_file.read_text()):
        if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
            yield target.split("#")[0]


def test_every_relative_link_of_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmark").glob("**/*.md"))]
    broken = [
        f"{page.relative_to(ROOT)} -> {target}"
        for page in pages
        for target in relative_links(page)
        if not (page.parent / target).exists()
    ]
    assert not broken, "broken links: " + "; ".join(broken)
