"""The README cannot rot: its Python examples run, its command lines parse, its figures are BENCHMARKS.md's.

Every ```python block in README.md is preceded by `<!-- readme-test: cpu -->` (run here, on Triton's
CPU interpreter, as a user would paste them: one fresh process, no GPU visible, TRITON_INTERPRET set
only by the example itself) or `<!-- readme-test: gpu -->` (compiled only: it needs a GPU).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from zeroskip.runtime import interpreter_problem

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BENCHMARKS = (ROOT / "BENCHMARKS.md").read_text()
MARKER = re.compile(r"<!-- readme-test: (\w+) -->\s*\Z")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
TEST_COMMAND = "bash scripts/test.sh"


def code_blocks(text: str):
    """(language, code, marker or None) for every fenced block of a markdown text."""
    for m in FENCE.finditer(text):
        marker = MARKER.search(text[:m.start()].rstrip() + " ")
        yield m.group(1), m.group(2), marker.group(1) if marker else None


def python_blocks(kind: str) -> list[str]:
    return [code for lang, code, marker in code_blocks(README) if lang == "python" and marker == kind]


def test_every_python_block_is_marked():
    blocks = [(code, marker) for lang, code, marker in code_blocks(README) if lang == "python"]
    assert blocks, "README.md has no python example"
    unmarked = [code.splitlines()[0] for code, marker in blocks if marker not in ("cpu", "gpu")]
    assert not unmarked, f"python blocks without <!-- readme-test: cpu|gpu -->: {unmarked}"
    assert python_blocks("cpu"), "README.md has no CPU-runnable example"


def test_cpu_examples_run(tmp_path):
    """The CPU examples, in order, in a fresh interpreter with no GPU visible and TRITON_INTERPRET unset."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    script = tmp_path / "readme_examples.py"
    script.write_text("\n".join(python_blocks("cpu")))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    if interpreter_problem():  # this numpy breaks Triton's interpreter: the user reads why, in one line
        assert proc.returncode != 0 and "RuntimeError: " + interpreter_problem() in proc.stderr, proc.stderr
        pytest.skip(interpreter_problem())
    assert proc.returncode == 0, f"README examples failed:\n{proc.stdout}\n{proc.stderr}"
    errors = [float(e) for e in re.findall(r"error ([0-9.e+-]+)", proc.stdout)]
    assert errors and all(e <= 1e-5 for e in errors), f"README example's error against PyTorch: {proc.stdout}"
    assert "ConvActPool" in proc.stdout and "'folded_bn': ['1']" in proc.stdout, proc.stdout


def test_gpu_examples_compile():
    for code in python_blocks("gpu"):
        compile(code, "README.md", "exec")


def command_lines(text: str, markdown_inline: bool) -> list[str]:
    """`zeroskip ...` / `python -m zeroskip ...` command lines in code blocks (and inline code spans)."""
    lines = []
    for lang, code, _ in code_blocks(text):
        if lang in ("", "bash", "sh", "console"):
            lines += [line for line in code.splitlines() if re.search(r"(^|-m )zeroskip( |$)", line)]
    if markdown_inline:
        lines += re.findall(r"`((?:python3? -m )?zeroskip(?: [^`]*)?)`", text)
    return lines


def argv_of(line: str) -> list[str]:
    """The arguments after `zeroskip` (or `python -m zeroskip`), comments dropped."""
    words = shlex.split(line, comments=True)
    start = next(i for i, w in enumerate(words) if w == "zeroskip")
    return words[start + 1:]


@pytest.mark.parametrize("doc, inline", [("README.md", True), ("BENCHMARKS.md", False)])
def test_command_lines_parse(doc, inline):
    from zeroskip.cli import build_parser
    lines = command_lines((ROOT / doc).read_text(), inline)
    assert lines, f"{doc} shows no zeroskip command"
    for line in lines:
        try:
            build_parser().parse_args(argv_of(line))
        except SystemExit as exc:  # exit 0: --version / --help printed and stopped
            if exc.code != 0:
                pytest.fail(f"{doc}: `{line}` does not parse (exit {exc.code})")


def test_argv_of_drops_prefix_and_comment():
    assert argv_of("PYTHONPATH=src python3 -m zeroskip bench --batch 1   # note") == ["bench", "--batch", "1"]
    with pytest.raises(SystemExit):  # the check above can fail: a bad line does not parse
        from zeroskip.cli import build_parser
        build_parser().parse_args(argv_of("zeroskip bench --dtype fp8"))


def test_readme_names_the_ci_test_command():
    assert TEST_COMMAND in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert TEST_COMMAND in ci, ".ci/run no longer runs the README's test command"


def test_readme_figures_come_from_benchmarks():
    figures = set(re.findall(r"\b\d+\.\d+x\b", README))
    assert figures, "README.md quotes no speedup"
    missing = sorted(f for f in figures if not re.search(rf"(?<![\d.]){re.escape(f)}", BENCHMARKS))
    assert not missing, f"README figures not in BENCHMARKS.md: {missing}"


def test_readme_has_no_development_history():
    words = re.findall(r"\(was\b|\bwas \d|\bnot re-measured|\bnow\b|\bissues?\b|\bhelpers?\b|\bsessions?\b|"
                       r"\bagents?\b|\bcoordinator", README, re.I)
    assert not words, f"README.md speaks of its history or development: {words}"
