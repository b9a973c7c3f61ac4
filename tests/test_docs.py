"""The documents cite only what exists: result files under benchmarks/, scripts, local links; and
benchmarks/ holds only result files something cites.

benchmarks/ARCHIVE.md names older result files without the `benchmarks/` prefix; those not in
benchmarks/ any more must be in git history at ARCHIVE_COMMIT (checked where the clone has it).
"""
from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "BENCHMARKS.md", "benchmarks/ARCHIVE.md")
ARCHIVE_COMMIT = "0876389"
RESULT = r"[\w.*{},-]+\.(?:json|csv|txt|png|\*)"  # a result file name, glob or brace list


def text(path: str) -> str:
    return (ROOT / path).read_text()


def expand(pattern: str) -> list[str]:
    """Brace lists as a shell expands them: a-{b,c}.json -> a-b.json, a-c.json."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [x for alt in m.group(1).split(",") for x in expand(pattern[:m.start()] + alt + pattern[m.end():])]


def matches(pattern: str, names) -> list[str]:
    return [n for p in expand(pattern) for n in names if fnmatch.fnmatchcase(n, p)]


def result_files() -> list[str]:
    return sorted(p.name for p in (ROOT / "benchmarks").iterdir() if p.name != "ARCHIVE.md")


def cited_paths(source: str) -> list[str]:
    """Every `benchmarks/NAME` a text mentions (NAME may be a glob)."""
    return [m.rstrip(".,") for m in re.findall(rf"benchmarks/({RESULT})", source)]


def code_texts():
    for folder in ("src", "scripts", "tests"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".sh") and path.name != Path(__file__).name:
                yield path.relative_to(ROOT), path.read_text()


@pytest.mark.parametrize("doc", DOCS)
def test_cited_result_files_exist(doc):
    names = result_files()
    cited = cited_paths(text(doc))
    assert cited or doc == "README.md", f"{doc} cites no result file"
    missing = [c for c in cited if not matches(c, names)]
    assert not missing, f"{doc} cites benchmarks/ files that do not exist: {missing}"


def test_code_cites_existing_result_files():
    names = result_files()
    missing = [(str(path), c) for path, source in code_texts() for c in cited_paths(source)
               if "*" not in c and not matches(c, names)]
    assert not missing, f"code cites benchmarks/ files that do not exist: {missing}"


def test_every_result_file_is_cited():
    """benchmarks/ keeps only what the documents or the code cite; the rest lives in git history."""
    sources = [text(d) for d in DOCS] + [source for _, source in code_texts()]
    cited = set()
    for source in sources:
        for name in re.findall(rf"(?<![\w/.-])(?:benchmarks/)?({RESULT})", source):
            if not name.startswith("*"):  # `benchmarks/*.json` names no file in particular
                cited.update(matches(name.rstrip(".,"), result_files()))
    uncited = [n for n in result_files() if n not in cited and not _companion_cited(n, cited)]
    assert not uncited, f"result files nothing cites (cite them, or remove them): {uncited}"


def _companion_cited(name: str, cited: set) -> bool:
    """X.csv, X-layers.csv and X.png travel with a cited X.json (the harness writes them together)."""
    stem = re.sub(r"(-layers)?\.(json|csv|png|txt)$", "", name)
    return any(c.startswith(stem + ".") for c in cited)


@pytest.mark.parametrize("doc", ("README.md", "BENCHMARKS.md"))
def test_cited_scripts_exist(doc):
    scripts = set(re.findall(r"scripts/[\w.-]+\.(?:py|sh)", text(doc)))
    missing = sorted(s for s in scripts if not (ROOT / s).exists())
    assert not missing, f"{doc} cites scripts that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_local_links_exist(doc):
    base = (ROOT / doc).parent
    links = [t for t in re.findall(r"\]\(([^)#\s]+)\)", text(doc)) if "://" not in t]
    missing = [t for t in links if not (base / t).exists()]
    assert not missing, f"{doc} links to missing files: {missing}"


def _git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def test_archive_names_are_in_the_tree_or_in_history():
    try:
        have = _git("cat-file", "-e", f"{ARCHIVE_COMMIT}^{{commit}}").returncode == 0
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if not have:
        pytest.skip(f"this clone does not have commit {ARCHIVE_COMMIT} (shallow or not a git checkout)")
    history = _git("ls-tree", "--name-only", f"{ARCHIVE_COMMIT}:benchmarks").stdout.split()
    assert history, f"git ls-tree {ARCHIVE_COMMIT}:benchmarks listed nothing"
    names = set(result_files()) | set(history)
    archive = text("benchmarks/ARCHIVE.md")
    cited = [n.rstrip(".,") for n in re.findall(rf"`(?:benchmarks/)?({RESULT})`", archive)]
    cited = [c for c in cited if re.search(r"[a-z0-9]-", c) and not c.startswith(("*", "-"))]  # "-x.json": a suffix
    assert len(cited) > 100, "the archive's file names were not found"
    missing = sorted({c for c in cited if not matches(c, names)})
    assert not missing, f"ARCHIVE.md names files in neither benchmarks/ nor {ARCHIVE_COMMIT}: {missing}"
