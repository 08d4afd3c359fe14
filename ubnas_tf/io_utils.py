"""Atomic file writes: a killed run never leaves a half-written output behind."""
import json
import os
import pathlib
import tempfile


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, _default_file_mode())  # mkstemp makes 0600; outputs are shared files
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def append_jsonl(path, record: dict) -> None:
    """Append one JSON line and fsync (a log line is either whole or absent after a kill)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def check_writable(path, *, folder: bool, what: str = "output") -> None:
    """Raise UserError unless `path` can be written: a folder (`folder=True`) that exists or
    can be made, or a file whose folder exists or can be made. Checked before a run does any
    work, so that a bad path costs seconds, not a whole search or conversion.

    Probed by creating (and at once removing) a temporary file in the deepest folder that
    exists: permission bits say nothing for root, and a read-only mount refuses even root.
    """
    from ubnas_tf.errors import UserError

    path = pathlib.Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise UserError(f"{what} {path} is a file, not a folder: pass a folder (new or "
                            "existing)")
        if not folder and path.is_dir():
            raise UserError(f"{what} {path} is a folder: pass the path of a file")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {path} cannot be created: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".write_check.", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise UserError(f"{what} {path} cannot be written ({error.strerror} in {existing}): "
                        "pass a path in a folder you can write to") from None
