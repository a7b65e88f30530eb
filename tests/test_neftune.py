"""NEFTune, declared once in the schema (and translated), reaches every place a field must reach: the form,
`check`, the trainer's SFTConfig in a real run, the exported plain script and the LLaMA-Factory export and
import; and no other code file names it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer.__main__ import main
from trainer.config import ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FIELD = "neftune_noise_alpha"


def errors_of(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    return info.value.by_field()


def test_off_by_default_a_positive_float_when_set_and_bad_values_name_the_field():
    assert TrainConfig().neftune_noise_alpha is None
    assert TrainConfig.from_dict({FIELD: 5}).neftune_noise_alpha == 5.0
    assert TrainConfig.from_dict({FIELD: "7.5"}).neftune_noise_alpha == 7.5
    assert TrainConfig.from_dict({FIELD: ""}).neftune_noise_alpha is None  # an emptied form box: off
    for bad, fragment in [(0, "greater than 0"), (-5, "greater than 0"), (float("inf"), "finite"),
                          ("nan", "finite"), (True, "not true/false"), ("loud", "valid number"), (1000, "100")]:
        errors = errors_of({FIELD: bad})
        assert list(errors) == [FIELD] and fragment in errors[FIELD], (bad, errors)


def test_the_form_and_its_translation_come_from_the_schema():
    from webui.form import config_to_values, controls, values_to_config
    from webui.i18n import translations

    control = next(c for c in controls() if c.name == FIELD)
    assert control.label == "NEFTune noise alpha" and control.widget == "textbox" and "> 0" in control.info
    values = config_to_values(TrainConfig.from_dict({FIELD: 5}))
    assert values_to_config({**values, FIELD: "5"}).neftune_noise_alpha == 5.0
    assert values_to_config({**values, FIELD: ""}).neftune_noise_alpha is None
    assert translations()["zh-CN"][f"field.{FIELD}"] == "NEFTune 噪声强度"


def test_check_accepts_it_and_refuses_zero_naming_the_field(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("max_samples: 20\ncutoff_len: 64\nneftune_noise_alpha: 5\n")
    assert main(["check", str(good)]) == 0, capsys.readouterr()
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text("neftune_noise_alpha: 0\n")
    assert main(["check", str(bad)]) == 2
    assert "neftune_noise_alpha: Input should be greater than 0" in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_run_trains_with_it_in_its_sftconfig(tmp_path):
    import torch

    from trainer.engine.train import run_training
    from trainer.run.events import FINISHED, read_events

    cfg = TrainConfig.from_dict(dict(max_samples=16, cutoff_len=48, per_device_train_batch_size=4,
                                     gradient_accumulation_steps=1, max_steps=2, save_steps=2, logging_steps=1,
                                     gradient_checkpointing=False, neftune_noise_alpha=5))
    assert run_training(cfg, tmp_path / "run") == 0
    assert read_events(tmp_path / "run")[-1]["status"] == FINISHED
    args = torch.load(tmp_path / "run" / "checkpoints" / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert type(args).__name__ == "SFTConfig" and args.neftune_noise_alpha == 5.0


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_export_script_and_llamafactory_carry_it_both_ways(tmp_path):
    config = tmp_path / "neftune.yaml"
    config.write_text("neftune_noise_alpha: 5\n")
    proc = _cli("export-script", str(config), str(tmp_path / "plain.py"))
    assert proc.returncode == 0, proc.stderr
    assert "    neftune_noise_alpha=5.0,\n" in (tmp_path / "plain.py").read_text()

    exported = tmp_path / "lf" / "train.yaml"
    proc = _cli("convert", "--to", "llamafactory", str(config), str(exported))
    assert proc.returncode == 0, proc.stderr
    assert "neftune_noise_alpha: 5.0\n" in exported.read_text()
    assert yaml.safe_load(exported.read_text())[FIELD] == 5.0
    proc = _cli("convert", "--from", "llamafactory", str(exported), str(tmp_path / "back.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "neftune" not in proc.stderr  # imported, not listed as lost
    assert TrainConfig.from_yaml(tmp_path / "back.yaml").neftune_noise_alpha == 5.0


def test_only_the_schema_and_its_translation_name_it_in_code():
    allowed = {ROOT / "trainer" / "config.py", ROOT / "webui" / "i18n.py", ROOT / "webui" / "i18n_fields.py"}
    code = [p for suffix in ("*.py", "*.js", "*.css", "*.html") for p in ROOT.rglob(suffix)
            if not p.relative_to(ROOT).parts[0].startswith((".", "tests", "runs"))]
    assert code, "no code files found"
    naming = sorted(str(p.relative_to(ROOT)) for p in code if "neftune" in p.read_text(errors="ignore").lower()
                    and p not in allowed)
    assert naming == [], f"NEFTune is named outside the schema: {naming}"
