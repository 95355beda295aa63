"""Reading a user's JSON file and writing an output whole: the two file operations every command shares.

:func:`read_json` turns every way a file can be unreadable (missing, a folder, not UTF-8, not JSON) into one
:class:`~rmt.core.errors.ConfigError` line that names the file and the fix. :func:`write_text_atomic` writes beside
the target and renames, so a full disk or a signal leaves the previous file (or none), never half of a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from rmt.core.errors import ConfigError


def read_json(path: Path | str, what: str, fix: str = "fix the file") -> Any:
    """The parsed content of the JSON file ``path`` (``what`` names it in the error, ``fix`` says what to do)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {file} ({exc.strerror or exc}): pass an existing JSON file") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {file} is not UTF-8 text (byte {exc.start}): {fix}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {file} is not valid JSON (line {exc.lineno}: {exc.msg}): {fix}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{what} {file} nests too deep to read: {fix}") from exc


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file beside it, fsynced, then renamed).

    An OSError (disk full, read-only) propagates after the temporary file is removed; ``path`` is untouched.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
