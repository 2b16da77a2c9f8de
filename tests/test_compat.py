import subprocess
import sys

import pytest


def test_import_torchvision_works_on_cpu_torch():
    code = (
        "import importlib.util, sys\n"
        "if importlib.util.find_spec('torchvision') is None: sys.exit(3)\n"
        "from drrobot.compat import import_torchvision\n"
        "tv = import_torchvision()\n"
        "import torch\n"
        "x = tv.transforms.Normalize([0.5] * 3, [0.5] * 3)(torch.ones(3, 4, 4))\n"
        "assert torch.allclose(x, torch.ones_like(x))\n"
        "assert import_torchvision() is tv\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode == 3:
        pytest.skip("torchvision is not installed")
    assert result.returncode == 0, result.stderr
