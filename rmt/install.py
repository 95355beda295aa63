"""Find the tritonserver that ships inside the ``nvidia-pytriton`` wheel and stage a backend directory for it.

The wheel (``pip install 'triton-rmt[server]'``) carries a complete tritonserver 2.51: the binary in
``pytriton/tritonserver/bin``, the python backend in ``pytriton/tritonserver/backends/python`` and one python-backend
stub per CPython version in ``pytriton/tritonserver/python_backend_stubs/<X.Y>``; its shared libraries lie in
``nvidia_pytriton.libs`` beside the package. The server looks for the stub *beside* ``libtriton_python.so``, so each
server gets a small staged backend directory of symbolic links with the stub of the running Python.

``RMT_TRITON_HOME`` may point at any folder holding ``pytriton/tritonserver`` and ``nvidia_pytriton.libs`` in that
relative layout (e.g. the trimmed tarball used on GPU machines); otherwise the installed wheel is used.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from rmt.core.errors import ServerError, ServerExtraMissing

#: Environment variable naming a folder with ``pytriton/tritonserver`` and ``nvidia_pytriton.libs``.
TRITON_HOME_ENV = "RMT_TRITON_HOME"
INSTALL_HINT = "install it with: pip install 'triton-rmt[server]' (or `make run`, which does it for you)"
STUB_NAME = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonInstall:
    """Paths of one tritonserver installation (binary, python backend, stubs, shared libraries)."""

    root: Path
    """Folder holding ``pytriton/`` and ``nvidia_pytriton.libs/`` (a site-packages or an unpacked tarball)."""

    @property
    def server_dir(self) -> Path:
        """``pytriton/tritonserver``: bin/, backends/, caches/, python_backend_stubs/."""
        return self.root / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        """The tritonserver executable."""
        return self.server_dir / "bin" / "tritonserver"

    @property
    def libs_dir(self) -> Path:
        """Shared libraries the binaries need (goes on ``LD_LIBRARY_PATH``)."""
        return self.root / "nvidia_pytriton.libs"

    @property
    def python_backend_dir(self) -> Path:
        """The python backend: ``libtriton_python.so`` and ``triton_python_backend_utils.py``."""
        return self.server_dir / "backends" / "python"

    def stub_for(self, version: tuple[int, int]) -> Path:
        """Path of the python-backend stub built for CPython ``version``; raises if the wheel has none."""
        stub = self.server_dir / "python_backend_stubs" / f"{version[0]}.{version[1]}" / STUB_NAME
        if not stub.is_file():
            have = sorted(p.name for p in (self.server_dir / "python_backend_stubs").glob("*") if p.is_dir())
            raise ServerError(
                f"no python-backend stub for Python {version[0]}.{version[1]} in {stub.parent.parent} "
                f"(have {', '.join(have) or 'none'}): run rmt with one of those Python versions"
            )
        return stub

    def stage_backends(self, backend_dir: Path, version: tuple[int, int]) -> None:
        """Populate ``backend_dir/python`` with links to the python backend and the stub for ``version``."""
        stub = self.stub_for(version)
        target = backend_dir / "python"
        target.mkdir(parents=True, exist_ok=True)
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            (target / name).symlink_to(self.python_backend_dir / name)
        (target / STUB_NAME).symlink_to(stub)


def _root_from_env() -> Path | None:
    value = os.environ.get(TRITON_HOME_ENV)
    if not value:
        return None
    root = Path(value).expanduser().resolve()
    if not (root / "pytriton" / "tritonserver" / "bin" / "tritonserver").is_file():
        raise ServerError(
            f"{TRITON_HOME_ENV}={value} holds no pytriton/tritonserver/bin/tritonserver: "
            f"point it at the folder with pytriton/ and nvidia_pytriton.libs/, or unset it"
        )
    return root


def find_triton_install() -> TritonInstall:
    """Locate tritonserver: ``$RMT_TRITON_HOME`` first, else the installed ``nvidia-pytriton`` wheel."""
    root = _root_from_env()
    if root is None:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise ServerExtraMissing(f"tritonserver not found: the 'server' extra is missing; {INSTALL_HINT}")
        root = Path(next(iter(spec.submodule_search_locations))).resolve().parent
    install = TritonInstall(root)
    if not install.binary.is_file():
        raise ServerExtraMissing(f"{install.binary} is missing (broken nvidia-pytriton install?); {INSTALL_HINT}")
    return install


@dataclass(frozen=True)
class PythonRuntime:
    """The Python the stubs will run: the ``python3`` first on the server's PATH and the libpython it links."""

    executable: Path
    version: tuple[int, int]
    libdir: Path | None
    """Folder with ``libpython3.X.so.1.0`` for this interpreter, when it has one (pyenv, python.org builds)."""

    @property
    def bin_dir(self) -> Path:
        """Goes first on the server's PATH so the stub imports this interpreter's packages."""
        return self.executable.parent


_QUERY = "import sys, sysconfig; print(sys.version_info[0], sys.version_info[1], sysconfig.get_config_var('LIBDIR'))"


def python_runtime(executable: str | None = None) -> PythonRuntime:
    """Describe ``executable`` (default: this interpreter) for staging its stub."""
    exe = Path(executable or sys.executable)
    if executable is None or exe == Path(sys.executable):
        major, minor, libdir = sys.version_info[0], sys.version_info[1], sysconfig.get_config_var("LIBDIR")
    else:
        try:
            out = subprocess.run([str(exe), "-c", _QUERY], capture_output=True, text=True, check=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServerError(f"cannot run Python {exe} for the stubs ({exc}): pass a working interpreter") from exc
        major_s, minor_s, libdir = out.stdout.split()
        major, minor = int(major_s), int(minor_s)
    lib = Path(libdir) if libdir else None
    if lib is not None and not (lib / f"libpython{major}.{minor}.so.1.0").exists():
        lib = None
    return PythonRuntime(exe, (major, minor), lib)
