"""Load a Keras model from an untrusted file, refusing Python bytecode unless allowed.

A Keras `Lambda` layer stores its function as marshalled Python bytecode, which runs when the
model is deserialized. Model files are untrusted input, so the model's JSON config is read and
searched *before* anything is deserialized: from the HDF5 attribute `model_config` of a `.h5`,
`config.json` of a `.keras` archive, or `keras_metadata.pb` of a SavedModel folder.
"""
from __future__ import annotations

import json
import pathlib
import zipfile

from ubnas_tf.errors import UserError

__all__ = ["load_model", "read_model_config", "lambda_layers", "import_modules"]

_FORMATS = "a Keras .h5 file, a .keras archive or a SavedModel folder"
_ALLOW_HINT = "pass --allow_lambda (allow_lambda=True) only if you trust this file"


def lambda_layers(config) -> list[str]:
    """Names of the layers in a model config (searched through nested configs) that carry
    Python code: `Lambda` layers, or any object serialized with a lambda function."""
    found = []

    def visit(node):
        if isinstance(node, dict):
            class_name = str(node.get("class_name", ""))
            if class_name == "Lambda" or class_name.endswith(">Lambda"):
                inner = node.get("config") or {}
                found.append(str(inner.get("name", node.get("name", "?"))))
                return
            if node.get("function_type") == "lambda" or node.get("output_shape_type") == "lambda":
                found.append(str(node.get("name", "?")))
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    visit(config)
    return found


def _parse_json(text, path, where):
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        raise UserError(f"{path}: {where} is not valid JSON; the file is damaged or not a "
                        f"Keras model (expected {_FORMATS})") from None


def _h5_config(path: pathlib.Path):
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            text = handle.attrs.get("model_config")
    except OSError as error:
        raise UserError(f"{path} cannot be read as HDF5 ({error}); expected {_FORMATS}") from None
    if text is None:
        raise UserError(f"{path} holds no model config (a weights-only file?); save the whole "
                        "model with model.save(path)")
    return _parse_json(text, path, "the HDF5 attribute model_config")


def _zip_config(path: pathlib.Path):
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise UserError(f"{path} is a zip archive without config.json, not a .keras model")
            text = archive.read("config.json")
    except zipfile.BadZipFile as error:
        raise UserError(f"{path} is a damaged zip archive ({error})") from None
    return _parse_json(text, path, "config.json")


def _saved_model_config(path: pathlib.Path):
    """Every layer's metadata JSON of a SavedModel written by Keras (None when not Keras)."""
    if not ((path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists()):
        raise UserError(f"{path} is a folder without saved_model.pb; expected {_FORMATS}")
    metadata_file = path / "keras_metadata.pb"
    if not metadata_file.exists():
        return None
    from tf_keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    try:
        metadata.ParseFromString(metadata_file.read_bytes())
    except Exception as error:  # noqa: BLE001  (protobuf raises its own DecodeError)
        raise UserError(f"{metadata_file} is damaged ({error})") from None
    return [_parse_json(node.metadata, path, "keras_metadata.pb") for node in metadata.nodes]


def read_model_config(path) -> tuple[str, object]:
    """`(kind, config)` of a model file without deserializing it; kind is h5|keras|saved_model."""
    path = pathlib.Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give the path of {_FORMATS}")
    if path.is_dir():
        return "saved_model", _saved_model_config(path)
    import h5py

    if h5py.is_hdf5(path):
        return "h5", _h5_config(path)
    if zipfile.is_zipfile(path):
        if path.suffix != ".keras":
            raise UserError(f"{path} is a zip archive: a Keras archive must end in .keras")
        return "keras", _zip_config(path)
    raise UserError(f"{path} is not a model file (neither HDF5 nor a .keras archive); "
                    f"expected {_FORMATS}")


def _register_plain_functions(package: str) -> None:
    """Make the module-level functions of `package` (and its loaded submodules) known to Keras
    by name, unless that name is taken. Layers are registered by their packages; plain
    functions used as initializers or activations often are not: larq-zoo's QuickNet saves its
    `blurpool_initializer` as {"class_name": "function", "config": "blurpool_initializer"},
    which Keras cannot load back without it."""
    import inspect
    import sys

    import tensorflow as tf

    known = tf.keras.utils.get_custom_objects()
    for name, module in list(sys.modules.items()):
        if module is None or not (name == package or name.startswith(package + ".")):
            continue
        for attribute, value in list(vars(module).items()):
            if (inspect.isfunction(value) and not attribute.startswith("_")
                    and value.__module__ == name and attribute not in known):
                known[attribute] = value


def import_modules(specs) -> None:
    """Import each module of `specs` for the custom objects it registers with Keras (larq-zoo's
    layers, a user's own), and make its plain functions loadable by name: a module name,
    found from the working folder as `python -m` would, or the path of a `.py` file. Raises
    UserError naming the module when one cannot be imported."""
    import importlib
    import importlib.util
    import os
    import sys

    for spec in specs or ():
        spec = str(spec).strip()
        try:
            if spec.endswith(".py") or os.sep in spec:
                path = pathlib.Path(spec)
                if not path.is_file():
                    raise UserError(f"--import {spec}: no such file; give a module name or the "
                                    "path of a .py file")
                module_spec = importlib.util.spec_from_file_location(path.stem, path)
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[path.stem] = module
                module_spec.loader.exec_module(module)
                package = path.stem
            else:
                if os.getcwd() not in sys.path and "" not in sys.path:
                    sys.path.append(os.getcwd())
                importlib.import_module(spec)
                package = spec
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001  (a user's module may raise anything)
            if spec.endswith(".py") or os.sep in spec:
                sys.modules.pop(pathlib.Path(spec).stem, None)
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            raise UserError(f"--import {spec} failed ({type(error).__name__}: {reason}): "
                            "install the package or fix the module name or path") from None
        _register_plain_functions(package)


def load_model(path, *, allow_lambda: bool = False):
    """Loads a tf-keras model from `path` (compile=False) after checking its config.

    Raises:
      UserError: a missing or non-model file, a model that fails to deserialize, or a model
        holding `Lambda` layers while `allow_lambda` is False.
    """
    import tensorflow as tf

    import ubnas_tf  # noqa: F401  (registers our layers and quantizers)

    path = pathlib.Path(path)
    kind, config = read_model_config(path)
    offenders = lambda_layers(config) if config is not None else []
    if offenders and not allow_lambda:
        names = ", ".join(sorted(set(offenders)))
        raise UserError(f"{path} contains Lambda layer(s) {names}, which hold Python bytecode "
                        f"that runs when the model is loaded; refused: {_ALLOW_HINT}")
    options = {"safe_mode": not allow_lambda} if kind == "keras" else {}
    try:
        model = tf.keras.models.load_model(str(path), compile=False, **options)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001  (deserialization raises anything)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        # Layers, quantizers or constraints of another package (larq-zoo's) fail in many ways.
        hint = ("; if it was built with another package's layers, import that first: "
                "--import MODULE (e.g. --import larq_zoo)")
        if kind == "h5" and "'class_name': 'function'" in str(error):
            # tf-keras 2.16 writes a plain-function initializer into .h5 in a form its own .h5
            # reader rejects (measured on larq-zoo's QuickNetSmall); .keras and SavedModel work.
            hint = ("; tf-keras cannot read a plain-function initializer back from .h5 (e.g. "
                    "larq-zoo's QuickNet): save the model as .keras or as a SavedModel folder "
                    "and convert that, with --import for its package")
        raise UserError(f"{path} could not be loaded as a Keras model "
                        f"({type(error).__name__}: {first_line[:300]}){hint}") from None
    if not isinstance(model, tf.keras.Model):
        raise UserError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model
