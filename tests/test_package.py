"""The installable package: the chat page's files ship inside it, torch is a range (the pin lives in
constraints.txt for our install scripts), the licence is an SPDX expression, and building says no warnings."""

import shutil
import subprocess
import sys
import tomllib
import zipfile

from qa.page.layout import static_text

from .helpers import PROJECT


def test_the_page_reads_its_styles_and_script_from_the_package():
    assert ".qa-passage {" in static_text("page.css")
    assert static_text("scroll.js").startswith("() => {")


def test_a_built_wheel_holds_the_page_s_files_and_building_it_warns_of_nothing(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(PROJECT / "qa", source / "qa", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert "warning" not in (built.stdout + built.stderr).lower()
    (wheel,) = (tmp_path / "wheel").glob("policy_qa-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    assert {"qa/page/static/page.css", "qa/page/static/scroll.js", "qa/page/server.py"} <= names
    tracked = subprocess.run(["git", "ls-files", "qa"], cwd=PROJECT, capture_output=True, text=True).stdout.split()
    assert [name for name in tracked if name not in names] == []  # every data file is declared in pyproject.toml
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "Requires-Dist: torch>=2.4" in metadata.splitlines()


def test_torch_is_pinned_only_for_our_install_scripts():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert [d for d in project["dependencies"] if d.startswith("torch")] == ["torch>=2.4"]
    assert "torch==2.13.0" in (PROJECT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    for script in ("start", "test"):
        assert "-c constraints.txt" in (PROJECT / "scripts" / script).read_text(encoding="utf-8")
