"""The package builds and installs offline with only the standard library."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path

from ._util import PY_DIR


def _backend():
    spec = importlib.util.spec_from_file_location("_nativellm_build_t", PY_DIR / "_nativellm_build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class TestBackend(unittest.TestCase):
    def test_no_build_requirements(self):
        b = _backend()
        self.assertEqual(b.get_requires_for_build_wheel(), [])
        self.assertEqual(b.get_requires_for_build_sdist(), [])

    def test_wheel_contents_and_record(self):
        b = _backend()
        old = os.environ.get("NATIVELLM_BUNDLE")
        os.environ["NATIVELLM_BUNDLE"] = "0"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                name = b.build_wheel(tmp)
                self.assertEqual(name, "nativellm-0.1.0-py3-none-any.whl")
                with zipfile.ZipFile(Path(tmp) / name) as zf:
                    names = set(zf.namelist())
                    for f in ("__init__.py", "_ffi.py", "_lib.py", "py.typed"):
                        self.assertIn(f"nativellm/{f}", names)
                    record = zf.read("nativellm-0.1.0.dist-info/RECORD").decode()
                    for line in record.splitlines():
                        path, digest, size = line.rsplit(",", 2)
                        if not digest:
                            continue
                        data = zf.read(path)
                        want = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
                        self.assertEqual(digest, "sha256=" + want.rstrip(b"=").decode(), path)
                        self.assertEqual(int(size), len(data), path)
                    meta = zf.read("nativellm-0.1.0.dist-info/METADATA").decode()
                    self.assertIn("Name: nativellm", meta)
        finally:
            if old is None:
                os.environ.pop("NATIVELLM_BUNDLE", None)
            else:
                os.environ["NATIVELLM_BUNDLE"] = old

    def test_sdist_builds(self):
        b = _backend()
        with tempfile.TemporaryDirectory() as tmp:
            name = b.build_sdist(tmp)
            self.assertTrue((Path(tmp) / name).is_file())


class TestPipInstall(unittest.TestCase):
    def test_pip_install_offline_no_build_isolation(self):
        if importlib.util.find_spec("pip") is None:
            self.skipTest("pip is not installed for this Python")
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                       NATIVELLM_BUNDLE="0")
            r = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                 "--target", tmp, str(PY_DIR)],
                capture_output=True, text=True, env=env, timeout=120,
            )
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertTrue((Path(tmp) / "nativellm" / "_ffi.py").is_file())


if __name__ == "__main__":
    unittest.main()
