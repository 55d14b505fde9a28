"""In-tree PEP 517 build backend for the nativellm Python package (standard library only).

Why not setuptools: an offline `pip install ./python` must not download anything, and pip's
default build isolation would fetch setuptools; with --no-build-isolation, setuptools < 70.1
still needs the separate `wheel` package for bdist_wheel, which is not on every machine (it is
not on this project's). A wheel of pure Python files is a zip with three metadata files, so this
backend writes it directly and declares no build requirements.

Hooks: build_wheel, build_sdist, build_editable (PEP 660: a .pth pointing at this folder, so the
package keeps finding ../build/ of the checkout), and the get_requires_* hooks (nothing).

The native library: if a built library exists at build time (``$NATIVELLM_LIB``, else
``../build/libnativellm.so.<abi>``) a copy goes into the wheel next to the package, and the wheel
is tagged for this platform. ``NATIVELLM_BUNDLE=0`` leaves it out (pure wheel; the library is
then found through ``$NATIVELLM_LIB`` or the system loader, see nativellm/_lib.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
PKG = "nativellm"


def _project() -> Dict[str, object]:
    text = (HERE / "pyproject.toml").read_text()
    try:
        import tomllib  # Python 3.11+

        return tomllib.loads(text)["project"]
    except ImportError:  # older Pythons: the few keys used here, by regex
        proj: Dict[str, object] = {}
        for key in ("name", "version", "description", "requires-python"):
            m = re.search(rf'^{key}\s*=\s*"([^"]*)"', text, re.M)
            if m:
                proj[key] = m.group(1)
        return proj


def _metadata() -> str:
    p = _project()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {p['name']}",
        f"Version: {p['version']}",
        f"Summary: {p.get('description', '')}",
    ]
    if "requires-python" in p:
        lines.append(f"Requires-Python: {p['requires-python']}")
    lines.append("Provides-Extra: numpy")
    lines.append('Requires-Dist: numpy; extra == "numpy"')
    readme = HERE / "README.md"
    body = readme.read_text() if readme.is_file() else ""
    if body:
        lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + body


def _abi() -> int:
    m = re.search(r"^ABI_VERSION\s*=\s*(\d+)", (HERE / PKG / "_ffi.py").read_text(), re.M)
    assert m, "ABI_VERSION missing from nativellm/_ffi.py"
    return int(m.group(1))


def _native_library() -> Optional[Path]:
    if os.environ.get("NATIVELLM_BUNDLE", "1") == "0":
        return None
    env = os.environ.get("NATIVELLM_LIB")
    if env and Path(env).is_file():
        return Path(env).resolve()
    lib = HERE.parent / "build" / f"libnativellm.so.{_abi()}"
    return lib.resolve() if lib.is_file() else None


def _package_files() -> List[Tuple[str, bytes]]:
    files = []
    for f in sorted((HERE / PKG).iterdir()):
        if f.suffix == ".py" or f.name == "py.typed":
            files.append((f"{PKG}/{f.name}", f.read_bytes()))
    return files


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _write_wheel(directory: str, files: List[Tuple[str, bytes]], tag: str) -> str:
    p = _project()
    name, version = str(p["name"]), str(p["version"])
    dist_info = f"{name}-{version}.dist-info"
    wheel_meta = (
        "Wheel-Version: 1.0\n"
        "Generator: nativellm _nativellm_build\n"
        f"Root-Is-Purelib: {'true' if tag.endswith('-any') else 'false'}\n"
        f"Tag: {tag}\n"
    )
    files = files + [
        (f"{dist_info}/METADATA", _metadata().encode()),
        (f"{dist_info}/WHEEL", wheel_meta.encode()),
        (f"{dist_info}/top_level.txt", f"{PKG}\n".encode()),
    ]
    record = "\n".join(_record_line(n, d) for n, d in files) + f"\n{dist_info}/RECORD,,\n"
    files.append((f"{dist_info}/RECORD", record.encode()))
    wheel_name = f"{name}-{version}-{tag}.whl"
    out = Path(directory) / wheel_name
    stamp = time.gmtime(max(time.time(), 315532800))[:6]  # zip cannot store dates before 1980
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in files:
            info = zipfile.ZipInfo(n, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            # Keep the shared library executable after unpacking.
            info.external_attr = (0o755 if ".so" in n else 0o644) << 16
            zf.writestr(info, d)
    return wheel_name


def _platform_tag() -> str:
    return "py3-none-" + sysconfig.get_platform().replace("-", "_").replace(".", "_")


# ---------------------------------------------------------------- PEP 517 / 660 hooks


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = _package_files()
    lib = _native_library()
    tag = "py3-none-any"
    if lib is not None:
        files.append((f"{PKG}/libnativellm.so.{_abi()}", lib.read_bytes()))
        tag = _platform_tag()
    return _write_wheel(wheel_directory, files, tag)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    pth = f"{HERE}\n".encode()
    return _write_wheel(wheel_directory, [(f"_{PKG}_editable.pth", pth)], "py3-none-any")


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    base = f"{p['name']}-{p['version']}"
    out = Path(sdist_directory) / f"{base}.tar.gz"
    members: List[Tuple[str, bytes]] = [("PKG-INFO", _metadata().encode())]
    for rel in ("pyproject.toml", "_nativellm_build.py", "README.md"):
        if (HERE / rel).is_file():
            members.append((rel, (HERE / rel).read_bytes()))
    for folder in (PKG, "tests"):
        for f in sorted((HERE / folder).glob("*")):
            if f.is_file() and (f.suffix == ".py" or f.name == "py.typed"):
                members.append((f"{folder}/{f.name}", f.read_bytes()))
    with tarfile.open(out, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for n, d in members:
            info = tarfile.TarInfo(f"{base}/{n}")
            info.size = len(d)
            info.mtime = int(time.time())
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(d))
    return out.name
