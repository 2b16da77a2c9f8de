"""A tiny toy-arm dataset (32 px) shared by the trainer tests."""

import pytest
from train_helpers import tiny_data_config

from drrobot.data.generate import generate


@pytest.fixture(scope="session")
def toy_arm_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_arm_data")
    generate(tiny_data_config("toy_arm", out), progress=False)
    return out
