"""The docs cannot rot: every fenced ``bash`` block in docs/ and README.md is run here, and
docs/cli.md must match the real ``--help``.

Tags after the fence language: ``bash test`` (run by default), ``bash slow`` (run with the
``slow`` marker, after the file's ``test`` blocks). Blocks of one page run in order in one
sandbox folder that holds a small PNG dataset (``my_pngs/``), a small CT with its label
(``my_scan.nii.gz``, ``my_scan_label.nii.gz``) and a link to the repository's ``bundles/``.
README's first two blocks are CI's own commands and are not run here.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.workflow.conftest import write_png_pairs

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)


def _blocks(path: Path) -> List[Tuple[str, List[str], str]]:
    """``(language, tags, body)`` of every fenced block in a Markdown file."""
    out = []
    for info, body in FENCE.findall(path.read_text(encoding="utf-8")):
        words = info.split()
        out.append((words[0] if words else "", words[1:], body))
    return out


# architecture.md (lead) and benchmarks.md (its commands are benchmark scripts, run by their owner) are not run here
NOT_RUN_HERE = {"architecture.md", "benchmarks.md"}


def _pages() -> List[Path]:
    return sorted(p for p in DOCS.glob("*.md") if p.name not in NOT_RUN_HERE) + [REPO / "README.md"]


def test_every_shell_block_is_tagged_to_run() -> None:
    untagged = []
    for page in _pages():
        shell = [b for b in _blocks(page) if b[0] in ("bash", "sh", "shell", "console")]
        if page.name == "README.md":
            shell = shell[2:]
        untagged += [f"{page.name}: {b[2].strip()[:60]}" for b in shell if not {"test", "slow"} & set(b[1])]
    assert not untagged, f"shell blocks not run by tests (tag them 'bash test' or 'bash slow'): {untagged}"


def test_cli_md_matches_help() -> None:
    from volseg.commands._docgen import render_cli_markdown

    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    fresh = render_cli_markdown()
    if current.splitlines()[0] == fresh.splitlines()[0]:  # same Python: argparse output is identical
        assert current == fresh, "docs/cli.md is stale: run python -m volseg.commands._docgen"
    else:  # another Python formats help differently: the same options must still be documented
        opts = lambda t: sorted(set(re.findall(r"(?<![\w-])--[a-z][\w-]*", t)))  # noqa: E731
        assert opts(current) == opts(fresh), "docs/cli.md is stale: run python -m volseg.commands._docgen"


def _sandbox(tmp: Path) -> Path:
    import nibabel as nib
    import numpy as np

    from tests.workflow.conftest import AFFINE, ct_with_lung_and_tumour

    write_png_pairs(tmp / "my_pngs", n=20)
    ct, lab = ct_with_lung_and_tumour()
    nib.save(nib.Nifti1Image(ct.astype(np.int16), AFFINE), tmp / "my_scan.nii.gz")
    nib.save(nib.Nifti1Image(lab, AFFINE), tmp / "my_scan_label.nii.gz")
    (tmp / "bundles").symlink_to(REPO / "bundles")
    return tmp


def _run_page(page: Path, tags: Tuple[str, ...], tmp: Path) -> None:
    blocks = [b for b in _blocks(page) if b[0] == "bash" and set(tags) & set(b[1])]
    assert blocks, f"{page.name} has no {'/'.join(tags)} blocks"
    cwd = _sandbox(tmp)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for _, _, body in blocks:
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=cwd, env=env,
                             capture_output=True, encoding="utf-8", errors="replace", timeout=600)
        assert res.returncode == 0, f"{page.name} block failed:\n{body}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
        _check_block(body, cwd, res.stdout)


def _same_grid(path: Path, ref: Path) -> None:
    """``path`` is a uint8/uint16 mask with the shape and affine of ``ref`` (nibabel)."""
    import nibabel as nib
    import numpy as np

    m, r = nib.load(str(path)), nib.load(str(ref))
    assert m.get_data_dtype() in (np.uint8, np.uint16), path
    assert m.shape == r.shape, (path, m.shape, r.shape)
    np.testing.assert_allclose(m.affine, r.affine, atol=1e-4, err_msg=str(path))


def _check_block(body: str, cwd: Path, stdout: str) -> None:
    """What the data make known about a block's commands, beyond exit code 0: masks from
    ``volseg predict`` and MONAI's runner on the input's grid, one PNG per slice from
    ``--to png-slices``, the shape ``volseg info`` prints."""
    import nibabel as nib

    for src, out in re.findall(r"volseg predict -i (\S+) -o (\S+\.nii\.gz)", body):
        _same_grid(cwd / out, cwd / src)
    for src, folder in re.findall(r"volseg convert (\S+\.nii\.gz) .*--to png-slices (\S+)", body):
        from PIL import Image

        shape = nib.load(str(cwd / src)).shape
        pngs = sorted((cwd / folder / "images").glob("*.png"))
        assert len(pngs) == shape[2], (folder, len(pngs), shape)
        for png in pngs:
            with Image.open(png) as im:
                assert im.size == shape[:2], (png, im.size, shape)
    for src_dir, out_dir in re.findall(r"monai\.bundle run .*inference\.json --input_dir (\S+) --output_dir (\S+)", body):
        for src in sorted((cwd / src_dir).glob("*.nii.gz")):
            preds = sorted((cwd / out_dir / "predictions").glob(src.name[:-7] + "*.nii.gz"))
            assert preds, f"no prediction for {src.name} in {out_dir}/predictions"
            for pred in preds:
                _same_grid(pred, src)
    for src in re.findall(r"^(?!\s*!).*?volseg info (\S+\.nii\.gz)", body, re.M):  # not `! ...` refusals
        dims = " x ".join(str(n) for n in nib.load(str(cwd / src)).shape)
        assert re.search(rf"shape:\s+{dims}\b", stdout), (src, dims, stdout[-1000:])


def _with(tag: str) -> List[str]:
    return [p.name for p in _pages() if any(b[0] == "bash" and tag in b[1] for b in _blocks(p))]


@pytest.mark.parametrize("page", _with("test"))
def test_docs_commands_run(page: str, tmp_path: Path) -> None:
    _run_page(REPO / page if page == "README.md" else DOCS / page, ("test",), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("page", _with("slow"))
def test_docs_slow_commands_run(page: str, tmp_path: Path) -> None:
    _run_page(REPO / page if page == "README.md" else DOCS / page, ("test", "slow"), tmp_path)
