import torch

from drrobot.apps.cli import main as drrobot_main
from drrobot.apps import train as train_app
from drrobot.train import run


def test_unknown_robot_is_a_clear_error(capsys, tmp_path):
    assert drrobot_main(["train", "--robot", "no_such_robot", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown robot 'no_such_robot'" in err and "panda" in err


def test_out_of_memory_names_the_settings_to_lower(monkeypatch, capsys, toy_arm_data, tmp_path):
    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(run.Trainer, "train", oom)
    code = train_app.main(["--robot", "toy_arm", "--data", str(toy_arm_data), "--out", str(tmp_path), "--wandb", "disabled"])
    assert code == 1
    err = capsys.readouterr().err
    assert "--densify.max-gaussians" in err and "--resume" in err


def test_cli_lists_commands(capsys):
    assert drrobot_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("data", "train", "eval"))
