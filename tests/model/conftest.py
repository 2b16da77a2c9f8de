"""Fixtures for the model tests."""

import pytest
from model_fixtures import make_model

from drrobot.model import RobotModel


@pytest.fixture(scope="module")
def toy_model() -> RobotModel:
    return make_model()
