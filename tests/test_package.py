"""Package-level checks: set-up commands, CLI start-up cost, error handling contract."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_blocks() -> list:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)


def test_readme_opens_with_the_two_setup_commands() -> None:
    blocks = _readme_blocks()
    assert len(blocks) >= 2
    install_demo, install_test = blocks[0].strip(), blocks[1].strip()
    for cmd in (install_demo, install_test):
        assert cmd.startswith("pip install torch==2.13.0 && "), cmd
    assert install_demo.endswith("volseg demo")
    assert "pytest" in install_test


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "blocks[1]" in ci and "README.md" in ci


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from volseg.cli import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = [m for m in ('torch', 'monai', 'SimpleITK', 'itk', 'nibabel') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace", check=True)
    assert out.stdout.strip() == "", f"volseg --help imported heavy modules: {out.stdout}"


def test_every_subcommand_has_help() -> None:
    from volseg.cli import COMMANDS

    for name in COMMANDS:
        out = subprocess.run(
            [sys.executable, "-m", "volseg", name, "--help"], capture_output=True, encoding="utf-8", errors="replace", timeout=60
        )
        assert out.returncode == 0, (name, out.stderr)
        assert "usage: volseg" in out.stdout


def test_user_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.nii.gz"
    out = subprocess.run(
        [sys.executable, "-m", "volseg", "info", str(missing)], capture_output=True, encoding="utf-8", errors="replace", timeout=120
    )
    assert out.returncode != 0
    err = out.stderr.strip().splitlines()
    assert len(err) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert str(missing) in err[0] or missing.name in err[0]


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    from volseg._atomic import atomic_path

    target = tmp_path / "mask.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz")
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"ok")
    assert target.read_bytes() == b"ok"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]


def test_check_not_input_refuses_overwrite(tmp_path: Path) -> None:
    from volseg._atomic import check_not_input
    from volseg.errors import VolsegError

    src = tmp_path / "ct.nii.gz"
    src.write_bytes(b"x")
    with pytest.raises(VolsegError, match="overwrite"):
        check_not_input(src, [src])
    check_not_input(tmp_path / "mask.nii.gz", [src])


def test_ci_checks_the_wheel_after_the_readme_tests() -> None:
    """.ci/run builds the wheel, installs it (torch first) into a fresh venv and runs the demo outside the
    checkout, after the README's test command; its failure is CI's exit status."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    steps = ['bash -c "$cmd"', "pip wheel .", "-m venv", "pip install -q torch==2.13.0", "volseg-*.whl",
             'cd "$work"', "demo --quick --out", 'exit "$wheel_rc"']
    where = [ci.find(s) for s in steps]
    assert -1 not in where and where == sorted(where), dict(zip(steps, where))


def test_wheel_lists_every_package() -> None:
    """pyproject lists volseg's packages by hand (to map bundles/ into the wheel): none may be missing."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "volseg").rglob("__init__.py")}
    assert listed == found | {"volseg._bundles"}


def test_logging_level_follows_v_and_debug(tmp_path: Path) -> None:
    """Library logging: warnings only by default, INFO with -v (before or after the command), DEBUG with --debug."""
    import contextlib
    import logging

    from volseg.cli import main

    root = logging.getLogger()
    before = root.level
    missing = str(tmp_path / "missing.nii.gz")
    try:
        for argv, level in ((["info", missing], logging.WARNING), (["-v", "info", missing], logging.INFO),
                            (["info", missing, "--verbose"], logging.INFO), (["--debug", "info", missing], logging.DEBUG)):
            with pytest.raises(Exception) if "--debug" in argv else contextlib.nullcontext():
                main(argv)
            assert root.level == level, argv
    finally:
        root.setLevel(before)

