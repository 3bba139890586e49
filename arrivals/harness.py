"""A running stack in a temporary home, on free ports: what the end-to-end tests and the
benchmark both start, drive and stop."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.settings import DEFAULT_CONFIG


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_params(path: Path, *overrides: dict) -> Path:
    """Write the shipped params.yaml with each of `overrides` merged in, key by nested key.

    The dataset source is made absolute, so the new file works from any folder. Used by the
    benchmark and the tests to run isolated stacks; handy for scripted setups too.
    """
    params = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    source = params["dataset"].get("source")
    if source and not Path(source).is_absolute():
        params["dataset"]["source"] = str((DEFAULT_CONFIG.parent / source).resolve())
    for override in overrides:
        params = _merge(params, override)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path
