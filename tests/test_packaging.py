"""The built distributions: twine-clean, complete, and working once installed.

``python -m build`` makes the sdist and, from the unpacked sdist, the wheel (so a
file missing from the sdist is missing from the wheel too). The wheel is then
installed, not editable, into a fresh venv and run from a directory outside the
repository.

Why the fresh venv borrows the test environment's third-party packages: the test
must run offline and in seconds, so the wheel is installed with ``--no-deps
--no-index`` and a ``.pth`` file appends this environment's site-packages *after*
the venv's own. That cannot hide a file missing from the wheel: the venv's
site-packages comes first on ``sys.path``; directories named in a ``.pth`` file
are added as plain paths, so an editable install's finder there is never run;
``PYTHONPATH`` is removed and the working directory is outside the repository;
and the test asserts that ``expreg`` is imported from the venv and that every
module of ``src/expreg`` is in the wheel. The declared dependencies are checked
against ``pyproject.toml`` here, and installed from the registry at their lower
bounds by ``make test-min``.

The numba kernels' on-disk cache is exercised from the installed wheel twice:
with a writable package directory (the cache lives beside the modules) and with a
read-only one (numba then caches in the user's cache directory,
``$XDG_CACHE_HOME/numba``). The read-only case uses a read-only bind mount in a
private mount namespace when run as root (root ignores file modes) and ``chmod``
otherwise; the child process checks that writing there really fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: expreg.__version__, read from the source (src/expreg/core/_version.py, the one place it is written)
VERSION = re.search(r'^__version__ = "([^"]+)"$', (REPO / "src/expreg/core/_version.py").read_text(), re.M).group(1)


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Installed:
    python: Path
    script: Path
    site: Path
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str | Path, extra_env: dict[str, str] | None = None, timeout: float = 240) -> str:
        env = {**self.env, **(extra_env or {})}
        proc = subprocess.run(
            [str(a) for a in args], cwd=self.workdir, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc.stdout


def _clean_env(home: Path) -> dict[str, str]:
    """The environment without PYTHONPATH and numba/expreg settings; HOME and caches in home."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
        and not k.startswith(("NUMBA_", "EXPREG_"))
    }
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"), PYTHONNOUSERSITE="1")
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with this environment's setuptools (declared in the `pack`
    # extra) instead of fetching it, so the test runs offline
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, f"python -m build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return Built(wheels[0], sdists[0])


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel-venv")
    venv = root / "venv"
    home, work = root / "home", root / "elsewhere"
    (home / "cache").mkdir(parents=True)
    work.mkdir()
    env = _clean_env(home)  # without PYTHONPATH, pip would take the repo's src/ for an installed expreg
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            str(built.wheel),
        ],
        check=True,
        timeout=300,
        cwd=work,
        env=env,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            cwd=work,
            env=env,
        ).stdout.strip()
    )
    assert (site / "expreg" / "__init__.py").is_file(), "the wheel did not install into the fresh venv"
    # this environment's third-party packages, after the venv's own site-packages
    (site / "_test_env_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield Installed(python, venv / "bin" / "expreg", site, work, env)


def test_twine_check_passes_on_wheel_and_sdist(built: Built) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built.wheel), str(built.sdist)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_wheel_holds_every_module_and_the_declared_metadata(built: Built) -> None:
    src = REPO / "src"
    modules = {p.relative_to(src).as_posix() for p in (src / "expreg").rglob("*.py")}
    with zipfile.ZipFile(built.wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert modules - names == set(), "modules missing from the wheel"
    assert {n for n in names if n.endswith(".py")} == modules, "files in the wheel that src/expreg does not have"
    project = PYPROJECT["project"]
    assert f"Version: {VERSION}" in metadata.splitlines()
    lines = metadata.splitlines()
    for classifier in project["classifiers"]:
        assert f"Classifier: {classifier}" in lines
    assert "Classifier: Typing :: Typed" in lines and "expreg/py.typed" in names
    assert f"Keywords: {','.join(project['keywords'])}" in lines
    assert "Project-URL: Paper, https://arxiv.org/abs/2303.16504" in lines
    assert "License-Expression: MIT" in lines and f"{dist_info}/licenses/LICENSE" in names
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = sorted(r.replace(" ", "") for r in requires if "extra ==" not in r)
    assert core == sorted(d.replace(" ", "") for d in project["dependencies"])
    assert "expreg = expreg.cli:main" in entry_points


def test_sdist_holds_sources_tests_and_citation(built: Built) -> None:
    with tarfile.open(built.sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    src = REPO / "src"
    modules = {p.relative_to(REPO).as_posix() for p in (src / "expreg").rglob("*.py")}
    assert modules - names == set(), "modules missing from the sdist"
    tests = {p.relative_to(REPO).as_posix() for p in (REPO / "tests").glob("*.py")}
    assert tests - names == set(), "tests missing from the sdist"
    for required in ("pyproject.toml", "README.md", "CITATION.cff", "CHANGELOG.md", "LICENSE", "src/expreg/py.typed"):
        assert required in names


def test_installed_wheel_imports_from_the_venv_not_the_repo(installed: Installed) -> None:
    probe = (
        "import expreg, importlib.metadata as m, json, sys; print(json.dumps({'file': expreg.__file__, "
        "'version': m.version('expreg'), 'path': sys.path}))"
    )
    out = installed.run(installed.python, "-c", probe)
    info = json.loads(out)
    assert Path(info["file"]).resolve().is_relative_to(installed.site.resolve())
    assert not Path(info["file"]).resolve().is_relative_to(REPO)
    assert info["version"] == VERSION
    assert not any(Path(p).resolve() == (REPO / "src").resolve() for p in info["path"] if p)


def test_installed_console_script_help_and_train(installed: Installed) -> None:
    help_text = installed.run(installed.script, "--help")
    for command in ("train", "theory", "run"):
        assert command in help_text
    out = installed.run(installed.script, "train", "--n", "16", "--d", "4", "--m", "256", "--json")
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["n"], summary["d"], summary["m"]) == (16, 4, 256)
    assert summary["converged"] is True
    assert summary["final_residual"] <= summary["epsilon"] < summary["initial_residual"]


# Calls the kernels through expreg.core.fastpath (float64 and float32) and reports the
# numba cache's hits and misses over every cached dispatcher of the kernel module.
_CACHE_PROBE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from numba.core.dispatcher import Dispatcher
    import expreg
    from expreg.core import fastpath, _fastkernels

    pkg = os.path.dirname(expreg.__file__)
    try:
        with open(os.path.join(pkg, "_probe_write"), "w"):
            pass
        os.remove(os.path.join(pkg, "_probe_write"))
        writable = True
    except OSError:
        writable = False
    assert fastpath.enabled(), "numba kernels not in use"
    for dtype in (np.float64, np.float32):
        Z = np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4)
        acc = np.zeros(3, dtype=dtype)
        fastpath.exp_matvec_(Z.copy(), np.ones(4, dtype=dtype), acc)
        np.testing.assert_allclose(acc, np.exp(Z.astype(np.float64)).sum(axis=1), rtol=1e-5)
        fastpath.exp_(Z)
    cached = [d for d in vars(_fastkernels).values() if isinstance(d, Dispatcher) and d.stats.cache_path]
    print(json.dumps({
        "writable": writable,
        "paths": sorted({d.stats.cache_path for d in cached}),
        "hits": sum(sum(d.stats.cache_hits.values()) for d in cached),
        "misses": sum(sum(d.stats.cache_misses.values()) for d in cached),
    }))
""")


def _read_only(installed: Installed, cmd: list[str]) -> list[str]:
    """cmd, run with the installed package directory read-only (as root: a private read-only bind mount)."""
    if os.geteuid() != 0:
        return cmd  # the caller removes the write bits
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.fail("as root, this test needs `unshare` and `mount` (util-linux) for a read-only package dir")
    pkg = installed.site / "expreg"
    script = f'mount --bind "{pkg}" "{pkg}" && mount -o remount,bind,ro "{pkg}" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *cmd]


def _probe(installed: Installed, read_only: bool) -> dict:
    """Run the cache probe in a fresh process; its last line of output, parsed."""
    cmd = [str(installed.python), "-c", _CACHE_PROBE]
    return json.loads(installed.run(*(_read_only(installed, cmd) if read_only else cmd)).strip().splitlines()[-1])


def _clear_numba_cache(installed: Installed) -> None:
    for root in (installed.site / "expreg", Path(installed.env["XDG_CACHE_HOME"])):
        for p in root.rglob("*"):
            if p.suffix in (".nbi", ".nbc"):
                p.unlink()


def test_numba_cache_from_installed_wheel(installed: Installed) -> None:
    _clear_numba_cache(installed)
    first, second = _probe(installed, False), _probe(installed, False)
    pkg_cache = (installed.site / "expreg" / "core" / "__pycache__").resolve()  # beside core/_fastkernels.py
    assert first["writable"] and [Path(p).resolve() for p in first["paths"]] == [pkg_cache]
    assert first["misses"] > 0 and first["hits"] == 0, first
    assert second["misses"] == 0 and second["hits"] > 0, second


def test_numba_cache_with_read_only_site_packages(installed: Installed) -> None:
    _clear_numba_cache(installed)
    pkg = installed.site / "expreg"
    modes = {p: p.stat().st_mode for p in [pkg, *pkg.rglob("*")] if p.is_dir()}
    if os.geteuid() != 0:
        for p in modes:
            p.chmod(modes[p] & ~0o222)
    try:
        first, second = _probe(installed, True), _probe(installed, True)
        train = [str(installed.script), "train", "--n", "16", "--d", "4", "--m", "256", "--json"]
        out = installed.run(*_read_only(installed, train))
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    user_cache = Path(installed.env["XDG_CACHE_HOME"]).resolve() / "numba"
    assert not first["writable"], "the package directory was meant to be read-only"
    assert first["paths"] and all(Path(p).resolve().is_relative_to(user_cache) for p in first["paths"]), first
    assert first["misses"] > 0 and first["hits"] == 0, first
    assert second["misses"] == 0 and second["hits"] > 0, second
    assert json.loads(out.strip().splitlines()[-1])["converged"] is True
    assert not list(pkg.rglob("*.nbi")), "numba wrote into the read-only package directory"


def test_the_version_is_written_once() -> None:
    """pyproject.toml reads it from expreg.__version__; CITATION.cff, which cannot, states the same."""
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "expreg.core._version.__version__"}
    import expreg

    assert expreg.__version__ == VERSION
    citation = (REPO / "CITATION.cff").read_text()
    assert re.search(r"^version: (\S+)$", citation, re.M).group(1) == VERSION
    assert "MIT License" in (REPO / "LICENSE").read_text() and PYPROJECT["project"]["license"] == "MIT"
