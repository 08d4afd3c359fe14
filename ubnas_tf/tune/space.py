"""The tune config and the hyperparameter space it describes.

configs/tune.yaml (the defaults and schema), then --config files, then `key=value` overrides,
resolve into the fixed part of every trial (full search and train configs, as
configs/search.yaml and configs/train.yaml define them) and the tree of tuned keys, each a
choice `{values: [...]}` or a range `{min: A, max: B}`. `TuningSpace` turns that tree into
keras-tuner's HyperParameters and a trial's values back into a search and a train config.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json

from ubnas_tf import config as config_lib
from ubnas_tf.errors import UserError

__all__ = ["load_config", "TuningSpace", "SECTIONS", "format_value"]

SECTIONS = ("search", "train")
SPEC_KEYS = ("values", "min", "max", "step", "sampling")
SAMPLINGS = ("linear", "log")
ALGORITHMS = ("random", "bayesian", "grid")


def _nested(path, value) -> dict:
    for part in reversed(path):
        value = {part: value}
    return value


def _is_spec(node) -> bool:
    return isinstance(node, dict) and any(key in node for key in SPEC_KEYS)


def _merge_tuned(base: dict, update, prefix: str) -> dict:
    """`update` laid over the tree of tuned keys. Naming `values` in a layer drops the range
    keys below it and naming `min`/`max` drops `values`: one layer can switch a key's kind."""
    if not isinstance(update, dict):
        raise UserError(f"config key {prefix.rstrip('.')!r} must be a mapping")
    result = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        old = result.get(key)
        if value is None:
            result[key] = None
        elif not isinstance(value, dict):
            raise UserError(f"config key {dotted!r} must be {{values: [...]}}, {{min: A, max: B}}"
                            " or null")
        elif _is_spec(value):
            kept = dict(old) if _is_spec(old) else {}
            if "values" in value:
                kept = {}
            elif "min" in value or "max" in value:
                kept.pop("values", None)
            result[key] = {**kept, **value}
        else:
            result[key] = _merge_tuned(old if isinstance(old, dict) and not _is_spec(old) else {},
                                       value, dotted + ".")
    return result


def load_config(files=(), overrides=()) -> dict:
    """The resolved tune config: configs/tune.yaml, then each file, then each `key=value`.

    `search`, `train` and `hyperparameters` are resolved against the search and train
    schemas (configs/search.yaml, configs/train.yaml): the result holds the full search and
    train configs of the fixed part, and the tree of tuned keys.
    """
    defaults = config_lib.defaults("tune")
    layers = [defaults]
    layers += [_paths_beside(config_lib._read_yaml(path), path) for path in files or ()]
    layers += [config_lib.parse_override(text) for text in overrides or ()]
    for layer in layers[1:]:
        _check_budget_keys(layer, defaults)
    plain = {key: value for key, value in defaults.items() if key not in
             (*SECTIONS, "hyperparameters")}
    fixed = {section: [] for section in SECTIONS}
    tuned: dict = {}
    for index, layer in enumerate(layers):
        layer = dict(layer)
        for section in SECTIONS:
            part = layer.pop(section, None)
            if part is not None and not isinstance(part, dict):
                raise UserError(f"config key {section!r} is a mapping of {section} config keys: "
                                f"set {section}.KEY=VALUE")
            if part:
                fixed[section].append(part)
        if "hyperparameters" in layer:
            tuned = _merge_tuned(tuned, layer.pop("hyperparameters") or {}, "hyperparameters.")
        if index:
            plain = config_lib.merge(plain, layer)
    for key in ("search_config", "train_config"):
        if not all(isinstance(path, str) for path in plain[key]):
            raise UserError(f"config key {key!r} must be a list of YAML file paths")
    resolved = dict(plain)
    for section in SECTIONS:
        section_config = config_lib.load(section, plain[f"{section}_config"])
        for part in fixed[section]:
            section_config = config_lib.merge(section_config, part, prefix=f"{section}.")
        resolved[section] = section_config
    resolved["hyperparameters"] = tuned
    _check_plain(resolved)
    TuningSpace(resolved)  # unknown or ill-formed tuned keys fail here
    return resolved


def _paths_beside(layer: dict, path) -> dict:
    """A config file's relative `search_config`/`train_config` entries, looked up beside that
    file first (configs/tune_demo.yaml names its neighbours), then from the working folder."""
    import pathlib

    folder = pathlib.Path(path).parent
    layer = dict(layer)
    for key in ("search_config", "train_config"):
        entries = layer.get(key)
        if isinstance(entries, list):
            layer[key] = [str(folder / entry) if isinstance(entry, str)
                          and not pathlib.Path(entry).is_absolute()
                          and (folder / entry).is_file() else entry for entry in entries]
    return layer


def _check_budget_keys(layer: dict, defaults: dict) -> None:
    """A search or train key set at the top (`--set epochs=1`) says where it belongs."""
    for key in layer:
        if key in defaults or key in SECTIONS or key == "hyperparameters":
            continue
        owners = [section for section in SECTIONS if key in config_lib.defaults(section)]
        if owners:
            where = " and/or ".join(f"{section}.{key}=VALUE" for section in owners)
            raise UserError(f"config key {key!r} belongs to a trial's "
                            f"{' and '.join(owners)} config, not to the tuner: set {where} "
                            "(or name YAML files in search_config / train_config); the tuner's "
                            f"own keys are {', '.join(k for k in defaults if k not in SECTIONS)}")


def _check_plain(config: dict) -> None:
    def require(ok, message):
        if not ok:
            raise UserError(message)

    require(config["max_trials"] >= 1, "config key 'max_trials' must be >= 1")
    require(config["algorithm"] in ALGORITHMS,
            f"config key 'algorithm' must be one of {', '.join(ALGORITHMS)}, got "
            f"{config['algorithm']!r}")
    require(0 < config["validation"] < 1, "config key 'validation' must be in (0, 1)")
    require(config["max_examples"] is None or config["max_examples"] >= 2,
            "config key 'max_examples' must be null or >= 2")


@dataclasses.dataclass
class _Tuned:
    """One tuned key: `name` (its dotted key, also its keras-tuner name), where it goes in
    which config, and its choice (`values`) or range."""

    name: str
    section: str
    path: tuple
    values: list | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    sampling: str = "linear"
    integer: bool = False
    encoded: bool = False  # choices keras-tuner cannot hold (mappings, mixed types) go as JSON

    def candidates(self) -> list:
        return list(self.values) if self.values is not None else [self.minimum, self.maximum]

    def declare(self, hp) -> None:
        if self.values is not None:
            values = [json.dumps(v, sort_keys=True) for v in self.values] if self.encoded \
                else self.values
            hp.Choice(self.name, values, ordered=False if self.encoded or isinstance(
                values[0], (str, bool)) else None)
        elif self.integer:
            hp.Int(self.name, int(self.minimum), int(self.maximum), step=self.step,
                   sampling=self.sampling)
        else:
            hp.Float(self.name, float(self.minimum), float(self.maximum), step=self.step,
                     sampling=self.sampling)

    def encode(self, value):
        return json.dumps(value, sort_keys=True) if self.encoded else value

    def decode(self, value):
        return json.loads(value) if self.encoded else value


def _choice_values(values: list) -> tuple[list, bool]:
    """The values as keras-tuner's Choice takes them (one type of int, float, str or bool),
    or as they are with encoded=True."""
    kinds = {type(v) for v in values}
    if kinds <= {bool} or kinds <= {str} or kinds <= {int}:
        return values, False
    if kinds <= {int, float}:
        return [float(v) for v in values], False
    return values, True


class TuningSpace:
    """The tuned keys of a resolved tune config, and the configs of a trial's values."""

    def __init__(self, config: dict):
        self.base = {section: config[section] for section in SECTIONS}
        self.tuned: list[_Tuned] = []
        tree = config["hyperparameters"]
        for section in tree:
            if section not in SECTIONS:
                raise _unknown(f"hyperparameters.{section}", SECTIONS)
            self._walk(section, tree[section] or {}, config_lib.defaults(section), ())
        if not self.tuned:
            raise UserError("nothing to tune: give hyperparameters at least one key with "
                            "{values: [...]} or {min: A, max: B}")

    def _walk(self, section, node, schema, path):
        for key, spec in node.items():
            dotted = ".".join(("hyperparameters", section, *path, key))
            if not isinstance(schema, dict) or key not in schema:
                raise _unknown(dotted, schema if isinstance(schema, dict) else ())
            default = schema[key]
            if spec is None:
                continue
            if not _is_spec(spec):
                if not (isinstance(default, dict) and default):
                    raise UserError(f"config key {dotted!r} is one setting: give it {{values: "
                                    "[...]}} or {min: A, max: B}")
                self._walk(section, spec, default, (*path, key))
                continue
            if isinstance(default, dict) and default:
                raise UserError(f"config key {dotted!r} is a mapping: tune its sub-keys")
            self.tuned.append(self._parse(dotted, section, (*path, key), spec, default))

    def _parse(self, dotted, section, path, spec, default) -> _Tuned:
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise UserError(f"unknown key(s) {', '.join(unknown)} under {dotted!r}: use values, "
                            "or min, max, step, sampling")
        tuned = _Tuned(name=".".join((section, *path)), section=section, path=path)
        if spec.get("values") is not None:
            values = spec["values"]
            extra = [key for key in ("min", "max", "step") if spec.get(key) is not None]
            if extra:
                raise UserError(f"config key {dotted!r} has values and {', '.join(extra)}: "
                                "give either values or a min/max range")
            if not isinstance(values, list) or not values:
                raise UserError(f"config key '{dotted}.values' must be a non-empty list")
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                raise UserError(f"config key '{dotted}.values' lists a value twice")
            for value in values:
                self._typed(section, path, value, dotted)
            tuned.values, tuned.encoded = _choice_values(values)
            return tuned
        low, high = spec.get("min"), spec.get("max")
        numbers = [v for v in (low, high, spec.get("step"))
                   if v is not None and not isinstance(v, bool) and isinstance(v, (int, float))]
        if low is None or high is None or len(numbers) != 2 + (spec.get("step") is not None):
            raise UserError(f"config key {dotted!r} needs numbers min and max (and optionally "
                            "step), or a list of values")
        if not low < high:
            raise UserError(f"config key {dotted!r} needs min < max, got {low} and {high}")
        sampling = spec.get("sampling") or "linear"
        if sampling not in SAMPLINGS:
            raise UserError(f"config key '{dotted}.sampling' must be one of "
                            f"{', '.join(SAMPLINGS)}, got {sampling!r}")
        if sampling == "log" and low <= 0:
            raise UserError(f"config key {dotted!r} has log sampling: min must be > 0")
        step = spec.get("step")
        if step is not None and step <= 0:
            raise UserError(f"config key '{dotted}.step' must be > 0")
        integer = isinstance(default, int) and not isinstance(default, bool)
        if integer and not all(isinstance(v, int) for v in (low, high, step) if v is not None):
            raise UserError(f"config key {dotted!r} is an integer: give integer min, max, step")
        for value in (low, high):
            self._typed(section, path, value, dotted)
        tuned.minimum, tuned.maximum, tuned.step = low, high, step
        tuned.sampling, tuned.integer = sampling, integer
        return tuned

    def _typed(self, section, path, value, dotted):
        try:
            config_lib.merge(self.base[section], _nested(path, value), prefix=f"{section}.")
        except UserError as error:
            raise UserError(f"{dotted}: {error}") from None

    def hyperparameters(self):
        import keras_tuner

        hp = keras_tuner.HyperParameters()
        for tuned in self.tuned:
            tuned.declare(hp)
        return hp

    def configs(self, values: dict) -> dict:
        """The search and train configs of one trial: the fixed part with `values` set."""
        configs = copy.deepcopy(self.base)
        for tuned in self.tuned:
            if tuned.name in values:
                update = _nested(tuned.path, tuned.decode(values[tuned.name]))
                configs[tuned.section] = config_lib.merge(configs[tuned.section], update)
        return configs

    def check(self, info) -> None:
        """Every candidate value (each choice; a range's ends), one at a time over the first
        candidates of the others, must make a valid search and retraining."""
        from ubnas_tf.search.config import check_config, supernet_config
        from ubnas_tf.search_space import ModuleStructure

        first = {t.name: t.encode(t.candidates()[0]) for t in self.tuned}
        for tuned in self.tuned:
            for value in tuned.candidates():
                configs = self.configs({**first, tuned.name: tuned.encode(value)})
                search, train = configs["search"], configs["train"]
                where = f"with {tuned.name}={value!r}"
                try:
                    check_config(search)  # also: the architecture is searched at all
                    supernet_config(search, info).structure  # K vs channels, module
                    if train["module"] is not None:
                        ModuleStructure.from_config(train["module"])
                    if train["optimizer"]["lr"] <= 0:
                        raise UserError("train.optimizer.lr must be > 0")
                except UserError as error:
                    raise UserError(f"{where}: {error}") from None

    def decode(self, name: str, value):
        """`value` of the tuned key `name` as the config holds it (JSON choices decoded)."""
        for tuned in self.tuned:
            if tuned.name == name and value is not None:
                return tuned.decode(value)
        return value

    def short(self, values: dict) -> str:
        return ", ".join(f"{t.name}={format_value(t.decode(values[t.name]))}" for t in self.tuned
                         if t.name in values)


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _unknown(key: str, known) -> UserError:
    known = list(known)
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UserError(f"unknown config key {key!r}{hint}: known keys here are "
                     f"{', '.join(known)}")

