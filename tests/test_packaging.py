"""The wheel that ``python -m build`` makes installs and runs on its own, with only its declared dependencies.

What this proves, offline (nothing is downloaded, so it runs in CI as it is):

* ``python -m build --no-isolation`` (the issue's ``python -m build``, with the build backend already in the test's
  environment instead of a downloaded one) builds the sdist and, from the sdist, the wheel, in a copy of the source
  tree (so no ``build/`` or ``*.egg-info`` lands in the checkout): a file the sdist forgot is missing from the
  wheel too.
* The wheel holds exactly the files of ``src/nnkscope`` (every subpackage, ``py.typed``), no tests, and the
  ``nnkscope`` console script.
* In a fresh virtual environment (no ``--system-site-packages``, ``PYTHONPATH`` cleared) that contains *only* the
  distributions the wheel's metadata requires without extras, and their own requirements, linked from the test's
  environment: ``pip install --no-index`` of the wheel finds every requirement satisfied, ``nnkscope --version`` and
  ``python -m nnkscope --version`` print the source's version, and ``nnkscope`` is imported from that
  environment, not from the checkout or the editable install.

What it does not prove: that the dependencies resolve from the package index (that needs the network); the linked
copies are the ones the test environment has.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "nnkscope"

pytestmark = pytest.mark.slow


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out


def _clean_env() -> dict:
    # nothing may reach the checkout or the test environment but the venv itself
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}


def _core_requirements(requires: list[str]) -> set[str]:
    """The distributions ``requires`` name without extras, transitively, as installed in this environment."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = list(requires)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name not in seen:
            seen.add(name)
            todo.extend(metadata.distribution(name).requires or [])
    return seen


def _link_distributions(names: set[str], site: Path) -> None:
    """Symlink each distribution's top-level files (packages, modules, vendored ``.libs``, dist-info) into ``site``."""
    for name in sorted(names):
        dist = metadata.distribution(name)
        assert dist.files, f"{name} has no RECORD; reinstall it with pip"
        tops = {Path(f).parts[0] for f in dist.files if not str(f).startswith("..")} - {"__pycache__"}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    shutil.copytree(SRC.parent, tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist", tree])
    (found,) = (tmp / "dist").glob("nnkscope-*.whl")
    return found


def _source_version() -> str:
    return re.search(r'__version__ = "([^"]+)"', (SRC / "_version.py").read_text()).group(1)


def test_wheel_holds_the_package_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    info = f"nnkscope-{_source_version()}.dist-info"
    package = {n for n in names if not n.startswith(info)}
    expected = {
        p.relative_to(SRC.parent).as_posix()
        for p in SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert package == expected
    for sub in ("engine", "measures", "nn", "similarity", "studies", "studies/kinds"):
        assert f"nnkscope/{sub}/__init__.py" in package
    assert "nnkscope/py.typed" in package and "nnkscope/__main__.py" in package
    assert not any(n.startswith(("tests/", "bench/", "examples/")) for n in names)
    with zipfile.ZipFile(wheel) as z:
        assert z.read(f"{info}/top_level.txt").decode().split() == ["nnkscope"]
        assert "nnkscope = nnkscope.cli:main" in z.read(f"{info}/entry_points.txt").decode()


def test_wheel_installs_and_runs_in_a_clean_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     env=_clean_env()).stdout.strip())
    assert site.is_relative_to(venv)
    with zipfile.ZipFile(wheel) as z:  # the wheel's own requirements, not those of an installed nnkscope
        meta = z.read(f"nnkscope-{_source_version()}.dist-info/METADATA").decode()
    _link_distributions(_core_requirements(re.findall(r"^Requires-Dist: (.+)$", meta, flags=re.M)), site)
    # pip of this environment installs into the venv (which has none); no --no-deps: the wheel's requirements must
    # all be met by what was linked
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-cache-dir", "-q", wheel],
         env=_clean_env())

    version = _source_version()
    env, cwd = _clean_env(), tmp_path  # not the checkout: its src/ must not be importable
    assert _run([venv / "bin" / "nnkscope", "--version"], env=env, cwd=cwd).stdout.strip() == f"nnkscope {version}"
    assert _run([python, "-m", "nnkscope", "--version"], env=env, cwd=cwd).stdout.strip() == f"nnkscope {version}"
    where = _run([python, "-c", "import nnkscope, nnkscope.cli; print(nnkscope.__file__); print(nnkscope.__version__)"],
                 env=env, cwd=cwd).stdout.split()
    assert Path(where[0]).resolve().is_relative_to(site.resolve()) and where[1] == version
    assert not Path(where[0]).resolve().is_relative_to(REPO)
    # and the venv is clean: packages of the test environment that nnkscope does not require are not there
    for optional in ("pytest", "yaml", "torch"):
        probe = subprocess.run([python, "-c", f"import {optional}"], env=env, cwd=cwd, capture_output=True)
        assert probe.returncode != 0, f"{optional} leaked into the clean venv"
