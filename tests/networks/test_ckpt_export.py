"""``python -m monai.bundle ckpt_export`` works for every volseg bundle: the scripted network
equals the eager one, on a window-sized input and on an odd size that needs padding."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["ct_unet3d", "ct_deeplab3d", "mri_unet3d", "lung_png2d"]
SIZES = {2: [(64, 64), (37, 45)], 3: [(32, 32, 32), (21, 26, 35)]}


@pytest.mark.bundle
@pytest.mark.parametrize("name", BUNDLES)
def test_ckpt_export_scripts_the_bundle_network(name: str, tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    bundle = tmp_path / name
    shutil.copytree(REPO / "bundles" / name / "configs", bundle / "configs")
    config = bundle / "configs" / "inference.json"
    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    (bundle / "models").mkdir()
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    out = tmp_path / "net.ts"
    cmd = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(out),
           "--ckpt_file", str(bundle / "models" / "model.pt"), "--meta_file", str(bundle / "configs" / "metadata.json"),
           "--config_file", str(config), "--bundle_root", str(bundle)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, encoding="utf-8", errors="replace",
                          timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    scripted = torch.jit.load(str(out))
    in_channels = int(parser.get_parsed_content("network_def#in_channels"))
    dims = int(parser.get_parsed_content("network_def#spatial_dims"))
    for size in SIZES[dims]:
        x = torch.randn(1, in_channels, *size)
        with torch.no_grad():
            expected = net(x)
            got = scripted(x)
        assert got.shape == expected.shape == (1, expected.shape[1]) + size
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
