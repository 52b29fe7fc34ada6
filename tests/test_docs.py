"""The README and docs/: their runnable examples run (offline, on the shipped models), their links resolve.

A fenced block is runnable when the line before it is ``<!-- runnable -->``. Bash blocks run with ``set -euo
pipefail`` and Python blocks as a script, each in an empty folder where ``pretrained/`` is the checkout's, with
``ganrev`` on PATH and an empty data home, so an example cannot depend on fetched data or earlier output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = "<!-- runnable -->"


def runnable_blocks(page: Path) -> list[tuple[str, str]]:
    """(language, code) of every fenced block marked runnable on ``page``."""
    found = re.findall(rf"^{re.escape(MARK)}\n```(\w+)\n(.*?)^```$", page.read_text(), flags=re.M | re.S)
    return [(language, code) for language, code in found]


EXAMPLES = [(page, language, code) for page in PAGES for language, code in runnable_blocks(page)]


def test_the_readme_and_the_library_page_have_runnable_examples() -> None:
    assert {page.name for page, _, _ in EXAMPLES} >= {"README.md", "library.md"}
    assert {language for _, language, _ in EXAMPLES} == {"bash", "python"}


@pytest.mark.parametrize(("page", "language", "code"), EXAMPLES,
                         ids=[f"{p.name}-{i}" for i, (p, _, _) in enumerate(EXAMPLES)])
def test_runnable_example(page: Path, language: str, code: str, tmp_path: Path) -> None:
    (tmp_path / "pretrained").symlink_to(ROOT / "pretrained")
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                        "GANREV_DATA": str(tmp_path / "no-data"), "OMP_NUM_THREADS": "1"}
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{page.name}:\n{code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def test_readme_is_short_and_every_local_link_resolves() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.name} links to a missing {target}"
    linked = set(re.findall(r"\(docs/(\w+\.md)\)", (ROOT / "README.md").read_text()))
    assert linked == {p.name for p in (ROOT / "docs").glob("*.md")}  # no page of docs/ is an orphan
