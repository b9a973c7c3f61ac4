"""Package metadata: licence, fields a package index shows, one version, extras that cover every documented
command, and requirements.txt in agreement with pyproject.toml. A wheel is built (about a second) where
the installed setuptools can do it without network."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]


def source_version() -> str:
    """zeroskip.__version__ as written in src/zeroskip/__init__.py (read without importing)."""
    tree = ast.parse((ROOT / "src" / "zeroskip" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("src/zeroskip/__init__.py sets no __version__")


def requirements(lines) -> list[Requirement]:
    return [Requirement(line) for line in (raw.split("#")[0].strip() for raw in lines) if line]


def test_license_file_and_expression():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the zeroskip authors" in text
    assert "WITHOUT WARRANTY OF ANY KIND" in text
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]


def test_index_fields():
    assert PROJECT["name"] == "zeroskip" and PROJECT["description"]
    assert PROJECT["readme"] == "README.md"
    assert PROJECT["authors"] == [{"name": "zeroskip authors"}]
    assert set(PROJECT["urls"]) == {"Homepage", "Source", "Issues"}
    assert all(url.startswith("https://github.com/OWNER/zeroskip") for url in PROJECT["urls"].values())
    assert {"pytorch", "triton", "cuda", "convolution"} <= set(PROJECT["keywords"])
    assert PROJECT["scripts"] == {"zeroskip": "zeroskip.cli:main"}


def test_classifiers():
    classifiers = PROJECT["classifiers"]
    assert len(classifiers) == len(set(classifiers))
    assert "Environment :: GPU :: NVIDIA CUDA" in classifiers
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in classifiers)
    # PEP 639: the SPDX `license` replaces licence classifiers, and setuptools refuses both.
    assert not [c for c in classifiers if c.startswith("License ::")]
    lowest = Version(PROJECT["requires-python"].removeprefix(">="))
    versions = [Version(c.rsplit(" :: ", 1)[1]) for c in classifiers
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions and min(versions) == lowest, f"Python classifiers {versions} vs requires-python {lowest}"
    known = pytest.importorskip("trove_classifiers").classifiers
    assert not [c for c in classifiers if c not in known]


def test_one_version():
    """The version lives in zeroskip/__init__.py only; pyproject reads it from there."""
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "zeroskip.__version__"}
    import zeroskip
    assert zeroskip.__version__ == source_version()
    Version(zeroskip.__version__)  # a valid PEP 440 version


def test_requirements_txt_agrees_with_pyproject():
    """Every package requirements.txt pins is one pyproject declares, at a version pyproject allows, and
    a range (not a pin) there is the same range in pyproject."""
    declared: dict[str, list[SpecifierSet]] = {}
    for req in requirements(PROJECT["dependencies"] + [d for deps in EXTRAS.values() for d in deps]):
        declared.setdefault(req.name.lower(), []).append(req.specifier)
    pinned = requirements((ROOT / "requirements.txt").read_text().splitlines())
    assert {r.name.lower() for r in pinned} >= {"torch", "torchvision", "numpy"}
    for req in pinned:
        specs = declared.get(req.name.lower())
        assert specs, f"requirements.txt pins {req.name}, which pyproject.toml does not declare"
        pins = [s.version for s in req.specifier if s.operator == "=="]
        if pins:
            assert all(spec.contains(pins[0]) for spec in specs), f"{req} outside pyproject's {specs}"
        else:
            assert req.specifier in specs, f"requirements.txt {req} but pyproject.toml {specs}"


def test_numpy_bound_in_dependencies():
    numpy = [r for r in requirements(PROJECT["dependencies"]) if r.name == "numpy"]
    assert numpy and not numpy[0].specifier.contains("2.4.0") and numpy[0].specifier.contains("2.3.5")


def test_extras():
    assert {"test", "bench", "models", "all"} <= set(EXTRAS)
    names = {ext: {Requirement(d).name.lower() for d in deps} for ext, deps in EXTRAS.items()}
    assert {"torchvision", "pillow"} <= names["models"]  # bench --model and profile
    assert "matplotlib" in names["bench"]                # --png
    assert {"pytest", "hypothesis", "pytest-xdist"} <= names["test"]
    (everything,) = [Requirement(d) for d in EXTRAS["all"]]
    assert everything.name == "zeroskip"
    assert everything.extras == set(EXTRAS) - {"all"}, "the `all` extra must name every other extra"


def test_extras_named_in_readme_exist():
    readme = (ROOT / "README.md").read_text()
    named = set()
    for group in re.findall(r"(?:zeroskip|\.)\[([\w,\s-]+)\]", readme):
        named |= {n.strip() for n in group.split(",")}
    listed = re.search(r"^Extras: (.*?`\w+`\.)", readme, re.M | re.S)
    assert listed, "README.md has no `Extras:` sentence"
    named |= set(re.findall(r"`(\w+)`(?=,| \(|\.)", listed.group(1)))  # `name`, `name` (...) or `name`.
    assert named >= {"test", "bench", "models", "all"}, named
    assert not named - set(EXTRAS), f"README names extras pyproject lacks: {named - set(EXTRAS)}"


def test_wheel_metadata(tmp_path):
    """Build the wheel from a copy of the sources, offline, and read the metadata an index would show."""
    setuptools = pytest.importorskip("setuptools")
    if Version(setuptools.__version__) < Version("77"):
        pytest.skip(f"setuptools {setuptools.__version__} cannot build PEP 639 metadata offline")
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run(["cp", "-r", str(ROOT / "src"), str(src / "src")], check=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("zeroskip-*.whl")
    with zipfile.ZipFile(wheel) as z:
        info = f"zeroskip-{source_version()}.dist-info"
        meta = Parser().parsestr(z.read(f"{info}/METADATA").decode())
        assert "MIT License" in z.read(f"{info}/licenses/LICENSE").decode()
        assert "zeroskip/bench/suites/vgg19.json" in z.namelist()
    assert meta["Version"] == source_version()
    assert meta["License-Expression"] == "MIT"
    assert meta["Author"] == "zeroskip authors"
    assert "numpy<2.4" in meta.get_all("Requires-Dist")
    assert set(meta.get_all("Provides-Extra")) == set(EXTRAS)
    assert "Environment :: GPU :: NVIDIA CUDA" in meta.get_all("Classifier")
