"""Configs as data: YAML defaults, YAML files that override them, and `key=value` overrides.

The defaults file of a tool (configs/search.yaml, configs/train.yaml) is also its schema: every
key a user may set appears there, an unknown key is an error (never a silent default), and an
override must have the type of the default (ints are accepted for floats; a default of null
accepts any value).
"""
import copy
import difflib
import json
import pathlib

import yaml

from ubnas_tf.errors import UserError

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"


def _read_yaml(path) -> dict:
    path = pathlib.Path(path)
    if path.is_dir():
        raise UserError(f"config file {path} is a folder: pass a YAML file to --config (e.g. "
                        f"one of {path}/*.yaml)")
    if not path.is_file():
        raise UserError(f"config file {path} does not exist: pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise UserError(f"config file {path} is not valid YAML{line}: fix its syntax") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    return data


def defaults(tool: str) -> dict:
    """The defaults (and schema) of a tool: configs/<tool>.yaml."""
    return _read_yaml(CONFIG_DIR / f"{tool}.yaml")


def _check_type(key: str, default, value):
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(
        value, bool
    ):
        return float(value)
    elif isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif isinstance(default, type(value)) or isinstance(value, type(default)):
        return value
    kind = type(default).__name__
    article = "an" if kind[0] in "aeiou" else "a"
    raise UserError(f"config key {key!r} needs {article} {kind} like {default!r}, got {value!r}")


def _unknown_key(key: str, known) -> UserError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(known), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UserError(f"unknown config key {key!r}{hint}: known keys here are {', '.join(known)}")


# Mappings whose keys are free (e.g. `augment: {cutout: 16}`) are marked in the defaults by
# an empty mapping: their content is checked by the code that uses them.
def merge(base: dict, update: dict, prefix: str = "", schema: dict | None = None) -> dict:
    """`update` laid over `base`; keys must exist in `base` unless the mapping is free.

    `schema` (default: `base`) decides which mappings are free: pass the tool's defaults when
    `base` is an already merged config, so that a free mapping filled by an earlier layer
    (`data.augment.cutout=16`) still takes new keys from a later one (`data.augment.flip=true`).
    """
    schema = base if schema is None else schema
    free = isinstance(schema, dict) and not schema
    result = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in result:
            if not free:
                raise _unknown_key(dotted, result)
            result[key] = copy.deepcopy(value)
            continue
        current = result[key]
        if free:
            result[key] = copy.deepcopy(value)
        elif isinstance(current, dict) and isinstance(value, dict):
            child = schema.get(key) if isinstance(schema.get(key), dict) else current
            result[key] = merge(current, value, dotted + ".", child)
        elif isinstance(current, dict) and value is not None:
            raise UserError(f"config key {dotted!r} is a mapping: set its sub-keys, e.g. "
                            f"{dotted}.KEY=VALUE")
        else:
            result[key] = _check_type(dotted, current, value)
    return result


def parse_override(text: str) -> dict:
    """`a.b.c=value` -> {'a': {'b': {'c': value}}}; the value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"--set {text!r} must look like key=value (dotted keys allowed)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"--set {text!r} has an empty key: use key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    nested = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return nested


def load(tool: str, files=(), overrides=()) -> dict:
    """Resolve a tool's config: defaults, then each file in order, then each override."""
    schema = defaults(tool)
    config = schema
    for path in files or ():
        config = merge(config, _read_yaml(path), schema=schema)
    for text in overrides or ():
        config = merge(config, parse_override(text), schema=schema)
    return config


def to_markdown(config: dict) -> str:
    """The resolved config as a markdown table (for TensorBoard and the README of a run)."""
    rows = ["| key | value |", "|---|---|"]

    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                rows.append(f"| {prefix}{key} | {json.dumps(value)} |")

    walk(config)
    return "\n".join(rows)


def save(config: dict, path) -> None:
    """Write the resolved config atomically as YAML."""
    from ubnas_tf.io_utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def with_defaults(tool: str, saved: dict) -> dict:
    """A config saved by an earlier run with the keys added to the tool's schema since then at
    their defaults (the behaviour that run had), so that `same_run` sees the same run."""
    def fill(value, default):
        if not isinstance(value, dict) or not isinstance(default, dict):
            return value
        return {**default, **{key: fill(item, default.get(key)) for key, item in value.items()}}

    return fill(saved, defaults(tool))


def describe_differences(differences, limit: int = 6) -> str:
    """'seed differs' / 'seed, epochs differ' (at most `limit` keys named, then '...')."""
    shown = ", ".join(differences[:limit]) + (" ..." if len(differences) > limit else "")
    return f"{shown} {'differs' if len(differences) == 1 else 'differ'}"


def same_run(config_a: dict, config_b: dict, ignore=("epochs",)) -> list:
    """Keys (dotted) whose values differ between two configs, ignoring `ignore`."""
    differences = []

    def walk(a, b, prefix=""):
        for key in sorted(set(a) | set(b)):
            dotted = f"{prefix}{key}"
            if dotted in ignore:
                continue
            va, vb = a.get(key), b.get(key)
            if isinstance(va, dict) and isinstance(vb, dict):
                walk(va, vb, dotted + ".")
            elif va != vb:
                differences.append(dotted)

    walk(config_a, config_b)
    return differences


