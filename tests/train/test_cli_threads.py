"""The CLI's OpenMP waiting policy: set before torch loads (so the runtime reads it), a user's setting kept."""

import os
import subprocess
import sys

import pytest

PROBE = "import os, drrobot.apps.cli, torch; print(os.environ['GOMP_SPINCOUNT'], os.environ['KMP_BLOCKTIME'])"


@pytest.mark.parametrize("preset, expected", [({}, "1000 1"), ({"GOMP_SPINCOUNT": "50", "KMP_BLOCKTIME": "7"}, "50 7")])
def test_cli_sets_a_short_spin_unless_the_user_did(preset, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**env, **preset}, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.split() == expected.split()


def test_the_policy_is_in_place_before_torch_loads():
    probe = "import sys, drrobot.apps; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
