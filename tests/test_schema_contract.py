"""The schema's contract: every TrainConfig field reaches the trainer and LLaMA-Factory, or says why not.

A field declared in trainer/config.py alone fails here until it is routed: to SFTConfig (``sft=`` /
``sft_via=``, checked by changing the value and watching the SFTConfig arguments change), to modules
that read it (``used_by=``, checked by finding ``.field`` read in their source), or excused with
``not_for_trainer=``; and to LLaMA-Factory (``lf=`` checked by an export and import round trip, a
conversion in lf_table.SPECIAL checked by the export changing, or excused with ``lf_skip=``).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.fieldspecs import field_specs
from trainer.engine import sft_args
from trainer.interop.lf_table import SPECIAL, lf_keys
from trainer.interop.llamafactory import export_llamafactory, import_llamafactory_text

SPECS = {spec.name: spec for spec in field_specs()}


# Text fields whose valid values are a set the type does not say.
VALID_OTHER = {"template": "chatml", "gpu_ids": "0", "report_to": ["tensorboard", "trackio"]}
# Fields that mean something only beside another setting (the config rules refuse them alone).
NEEDS = {"offload_optimizer": {"distributed_type": "deepspeed_zero2"},
         "offload_params": {"distributed_type": "deepspeed_zero3"},
         "num_machines": {"main_process_ip": "10.0.0.1"},
         "machine_rank": {"num_machines": 2, "main_process_ip": "10.0.0.1"}}


def other_value(name: str, current):
    """A valid value of the field that differs from ``current``."""
    spec = SPECS[name]
    if name in VALID_OTHER:
        return VALID_OTHER[name]
    if spec.kind == "bool":
        return True if current is None else not current
    if spec.kind == "choice":
        return next(c for c in spec.choices if c != current)
    if spec.kind == "int":
        return 3 if current in (None, -1) else current + 1
    if spec.kind == "float":
        return current / 2 if current else 0.5
    if spec.kind == "list":
        return ["q_proj"]
    if spec.kind == "dict":
        return {"question": "instruction"}
    return "x" if current is None else f"{current}-x"


def test_every_field_reaches_the_trainer_or_says_why_not():
    missing = [name for name, s in SPECS.items() if not (s.sft or s.sft_via or s.used_by or s.not_for_trainer)]
    assert not missing, (f"TrainConfig fields {missing} reach nothing: declare in trainer/config.py where each goes "
                         "(sft=, sft_via=, used_by=) or why the trainer ignores it (not_for_trainer=)")
    for name, spec in SPECS.items():
        assert spec.not_for_trainer is None or not (spec.sft or spec.sft_via or spec.used_by), \
            f"{name}: declared both as used and as not for the trainer"


def test_sft_routes_name_real_sftconfig_arguments_and_converters():
    from trl import SFTConfig

    parameters = set(inspect.signature(SFTConfig).parameters)
    for name, spec in SPECS.items():
        if spec.sft:
            assert spec.sft in parameters, f"{name}: sft='{spec.sft}' is not an SFTConfig argument"
        if spec.sft_via:
            assert spec.sft_via in sft_args.CONVERTERS, f"{name}: no converter '{spec.sft_via}' in sft_args"
    used = {spec.sft_via for spec in SPECS.values()}
    assert set(sft_args.CONVERTERS) <= used, f"converters no field routes to: {set(sft_args.CONVERTERS) - used}"


def _resolved_base() -> dict:
    """A resolved config (as the plan leaves it) in which every route is active: evaluating every few steps."""
    cfg = TrainConfig(eval_strategy="steps", val_size=0.1, warmup_ratio=0.0)
    return {**sft_args.config_values(cfg), "precision": "bf16", "attn_implementation": "sdpa", "packing": False,
            "group_by_length": True, "use_liger_kernel": False}


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.sft or s.sft_via])
def test_a_field_routed_to_sftconfig_changes_the_sftconfig_arguments(name):
    base = _resolved_base()
    changed = {**base, name: other_value(name, base[name])}
    for device in ("cuda", "cpu"):
        before = sft_args.sft_kwargs(base, device, sft_args.sft_routes())
        after = sft_args.sft_kwargs(changed, device, sft_args.sft_routes())
        if before != after:
            return
    pytest.fail(f"{name}: changing it from {base[name]!r} to {changed[name]!r} leaves every SFTConfig argument as "
                "it was: its sft=/sft_via= route does not read it")


def _attributes_read(target: str) -> set[str]:
    """Attribute names read anywhere in a module, or in every module of a package."""
    module = importlib.import_module(target)
    files = [Path(module.__file__)]
    if hasattr(module, "__path__"):
        files = [Path(info.module_finder.path) / f"{info.name}.py" for info in pkgutil.iter_modules(module.__path__)
                 if not info.ispkg] + files
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.used_by])
def test_a_declared_consumer_reads_the_field(name):
    for target in SPECS[name].used_by:
        assert target.startswith("trainer."), f"{name}: consumer {target} is not part of the trainer"
        assert name in _attributes_read(target), f"{name}: declared used_by {target}, which never reads .{name}"


def test_every_field_has_a_llamafactory_mapping_or_a_reason():
    missing = [name for name, s in SPECS.items() if not (s.lf or name in SPECIAL or s.lf_skip)]
    assert not missing, (f"TrainConfig fields {missing} have no LLaMA-Factory mapping: declare lf='key' in "
                         "trainer/config.py, convert them in trainer/interop/lf_table.py (SPECIAL), or say why "
                         "not (lf_skip=)")
    for name, spec in SPECS.items():
        assert not (spec.lf_skip and (spec.lf or name in SPECIAL)), f"{name}: both mapped and skipped"
    assert set(SPECIAL) <= set(SPECS), f"SPECIAL names fields that do not exist: {set(SPECIAL) - set(SPECS)}"


BASE = dict(model_name_or_path="org/model", dataset="org/data", dataset_format="alpaca", eval_strategy="steps",
            val_size=0.1, warmup_ratio=0.0)


def _export(tmp_path: Path, cfg: TrainConfig):
    return export_llamafactory(cfg, dataset_dir=tmp_path)


@pytest.mark.parametrize("name", sorted(lf_keys()))
def test_a_renamed_field_goes_to_llamafactory_and_comes_back(name, tmp_path):
    value = other_value(name, getattr(TrainConfig.from_dict(BASE), name))
    cfg = TrainConfig.from_dict({**BASE, name: value})
    exported = _export(tmp_path, cfg)
    key = lf_keys()[name]
    assert exported.data.get(key) == getattr(cfg, name), f"{name}: not exported as {key}: {getattr(cfg, name)!r}"
    (tmp_path / "dataset_info.json").write_text(json.dumps(exported.dataset_info))
    back = import_llamafactory_text(exported.yaml_text, "exported.yaml", base_dir=tmp_path).config
    assert getattr(back, name) == getattr(cfg, name), f"{name}: {getattr(cfg, name)!r} came back as " \
                                                      f"{getattr(back, name)!r}"


@pytest.mark.parametrize("name", sorted(n for n in SPECIAL if len(SPECS[n].choices) != 1))  # stage: only sft
def test_a_specially_converted_field_changes_the_export(name, tmp_path):
    spec = SPECS[name]
    base = TrainConfig.from_dict(BASE)
    current = getattr(base, name)
    before = _export(tmp_path, base)
    # Two settings may mean the same to LLaMA-Factory (precision auto is written as bf16): any other will do.
    candidates = [c for c in spec.choices if c != current] or [other_value(name, current)]
    for value in candidates:
        after = _export(tmp_path, TrainConfig.from_dict({**BASE, name: value}))
        if (before.data, before.dataset_info, before.unmapped) != (after.data, after.dataset_info, after.unmapped):
            return
    pytest.fail(f"{name}: listed in lf_table.SPECIAL but no value of it changes the LLaMA-Factory export")


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.lf_skip])
def test_a_field_without_llamafactory_equivalent_is_reported_when_set(name, tmp_path):
    cfg = TrainConfig.from_dict({**BASE, **NEEDS.get(name, {}), name: other_value(name, SPECS[name].default)})
    assert SPECS[name].lf_skip in _export(tmp_path, cfg).unmapped.get(name, ""), \
        f"{name}: set, but the export does not say it was lost"
