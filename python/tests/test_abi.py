"""The ctypes declarations must match include/nativellm.h exactly.

The header is parsed with regexes (it is written in a regular style on purpose: one NLLM_API
declaration per function, typedef'd structs, #define constants); each function's return and
argument types are mapped to the ctypes type they must have, and struct sizes and field offsets
are compared with what the system C compiler says.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path
from typing import Dict, List, Tuple

from ._util import HEADER, REPO, load_ffi

ffi = load_ffi()


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


SOURCE = _strip_comments(HEADER.read_text())


def parse_type(decl: str, is_param: bool) -> Tuple[str, int]:
    """('char', 1) for 'const char *name'; arrays count as a pointer level."""
    decl = decl.replace("const", " ").strip()
    depth = decl.count("*")
    if "[" in decl:
        depth += 1
        decl = decl[: decl.index("[")]
    words = decl.replace("*", " ").split()
    if is_param and len(words) >= 2:
        words = words[:-1]  # drop the parameter name
    if len(words) != 1:
        raise AssertionError(f"cannot parse C declaration {decl!r}")
    return words[0], depth


def header_functions() -> Dict[str, Tuple[Tuple[str, int], List[Tuple[str, int]]]]:
    out = {}
    for m in re.finditer(r"NLLM_API\s+([^;(]*?)\s*\b(nllm_\w+)\s*\(([^)]*)\)\s*;", SOURCE):
        ret, name, args = m.group(1), m.group(2), m.group(3).strip()
        params = [] if args in ("", "void") else [a.strip() for a in args.split(",")]
        out[name] = (parse_type(ret, False), [parse_type(a, True) for a in params])
    return out


def header_structs() -> Dict[str, List[Tuple[str, Tuple[str, int]]]]:
    out = {}
    for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", SOURCE, re.S):
        fields = []
        for decl in m.group(2).split(";"):
            decl = decl.strip()
            if decl:
                name = re.findall(r"(\w+)\s*(?:\[\d+\])?\s*$", decl)[0]
                fields.append((name, parse_type(decl, True)))
        out[m.group(3)] = fields
    return out


def header_defines() -> Dict[str, object]:
    out: Dict[str, object] = {}
    for m in re.finditer(r"^#define\s+(NLLM_\w+)[ \t]+(.+)$", SOURCE, re.M):
        name, value = m.group(1), m.group(2).strip()
        if name == "NLLM_API" or value.startswith("__attribute__"):
            continue
        if value.startswith('"'):
            out[name] = value.strip('"')
        else:
            out[name] = int(re.sub(r"(?i)[ul]+$", "", value.strip("()")), 0)
    return out


_SCALARS = {
    "int32_t": ctypes.c_int32,
    "uint32_t": ctypes.c_uint32,
    "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
    "nllm_status": ctypes.c_int32,
    "nllm_token": ctypes.c_int32,
    "size_t": ctypes.c_size_t,
}
_HANDLES = {"nllm_model": ffi.nllm_model, "nllm_context": ffi.nllm_context,
            "nllm_sampler": ffi.nllm_sampler, "nllm_gguf_writer": ffi.nllm_gguf_writer,
            "nllm_lora_adapter": ffi.nllm_lora_adapter}


def expected_ctypes(ctype: Tuple[str, int]) -> List[object]:
    """The ctypes types acceptable for a C type (more than one only for char pointers)."""
    base, depth = ctype
    if depth == 0:
        if base == "void":
            return [None]
        if base in ffi.CALLBACK_TYPES:
            return [ffi.CALLBACK_TYPES[base]]
        return [_SCALARS[base]]
    if base == "char":
        inner = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char)]
    elif base == "void":
        inner = [ctypes.c_void_p]
    elif base in _HANDLES:
        inner = [ctypes.POINTER(_HANDLES[base])]
    elif base in ffi.STRUCTS:
        inner = [ctypes.POINTER(ffi.STRUCTS[base])]
    else:
        inner = [ctypes.POINTER(_SCALARS[base])]
    for _ in range(depth - 1):
        inner = [ctypes.POINTER(t) for t in inner]
    return inner


class TestHeaderParse(unittest.TestCase):
    def test_parser_sees_the_header(self):
        fns = header_functions()
        # Guards the regexes themselves: a parse that finds nothing would pass everything.
        self.assertGreater(len(fns), 50)
        self.assertIn("nllm_generate", fns)
        self.assertEqual(fns["nllm_version"], (("char", 1), []))
        self.assertEqual(fns["nllm_model_tensor_info"][1][5], ("int64_t", 1))
        self.assertEqual(len(header_structs()), len(ffi.STRUCTS))


class TestFunctions(unittest.TestCase):
    def test_same_function_list(self):
        c_names = list(header_functions())
        py_names = list(ffi.FUNCTIONS)
        self.assertEqual(sorted(set(c_names) - set(py_names)), [], "declared in C, not in Python")
        self.assertEqual(sorted(set(py_names) - set(c_names)), [], "declared in Python, not in C")
        self.assertEqual(py_names, c_names, "keep _ffi.FUNCTIONS in header order")

    def test_argument_counts_and_types(self):
        for name, (ret, params) in header_functions().items():
            with self.subTest(function=name):
                restype, argtypes = ffi.FUNCTIONS[name]
                self.assertEqual(len(argtypes), len(params), "argument count")
                self.assertIn(restype, expected_ctypes(ret), f"return type {ret}")
                for i, (param, argtype) in enumerate(zip(params, argtypes)):
                    self.assertIn(argtype, expected_ctypes(param), f"argument {i} ({param})")


class TestDefines(unittest.TestCase):
    def test_every_define_has_the_same_value(self):
        defines = header_defines()
        self.assertGreater(len(defines), 40)
        for name, value in defines.items():
            with self.subTest(define=name):
                self.assertTrue(hasattr(ffi, name), f"{name} missing from _ffi")
                self.assertEqual(getattr(ffi, name), value)
        self.assertEqual(ffi.ABI_VERSION, defines["NLLM_ABI_VERSION"])


class TestStructs(unittest.TestCase):
    def test_field_names_order_and_types(self):
        for cname, fields in header_structs().items():
            with self.subTest(struct=cname):
                self.assertIn(cname, ffi.STRUCTS)
                py_fields = ffi.STRUCTS[cname]._fields_
                self.assertEqual([f[0] for f in py_fields], [f[0] for f in fields])
                for (fname, ctype), (_, pytype) in zip(fields, py_fields):
                    self.assertIn(pytype, expected_ctypes(ctype), f"field {fname}")

    def _compiler(self):
        cc = os.environ.get("CC", "cc")
        if shutil.which(cc) is None:
            self.skipTest(f"no C compiler ({cc}) to measure the C layouts")
        return cc

    def test_sizes_and_offsets_match_the_c_compiler(self):
        structs = header_structs()
        lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "nativellm.h"',
                 "int main(void) {"]
        for cname, fields in structs.items():
            lines.append(f'  printf("{cname} sizeof %zu\\n", sizeof({cname}));')
            for fname, _ in fields:
                lines.append(f'  printf("{cname} {fname} %zu\\n", offsetof({cname}, {fname}));')
        lines += ["  return 0;", "}"]
        cc = self._compiler()
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "layout.c"
            exe = Path(tmp) / "layout"
            src.write_text("\n".join(lines) + "\n")
            subprocess.run([cc, "-std=c11", "-I", str(REPO / "include"), str(src), "-o", str(exe)],
                           check=True, capture_output=True)
            out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
        c_layout = {}
        for line in out.splitlines():
            struct, what, value = line.split()
            c_layout[(struct, what)] = int(value)
        for cname, fields in structs.items():
            cls = ffi.STRUCTS[cname]
            with self.subTest(struct=cname):
                self.assertEqual(ctypes.sizeof(cls), c_layout[(cname, "sizeof")], "sizeof")
                for fname, _ in fields:
                    self.assertEqual(getattr(cls, fname).offset, c_layout[(cname, fname)],
                                     f"offsetof {fname}")

    def test_committed_layout_file_if_any(self):
        # The committed abi/struct_layout.txt ("struct size" and "struct.field offset" lines,
        # checked against the C side by tests/test_abi.c) must agree with the Python side too.
        layout = REPO / "abi" / "struct_layout.txt"
        if not layout.is_file():
            self.skipTest("no abi/struct_layout.txt committed")
        seen = set()
        for line in layout.read_text().splitlines():
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                continue
            struct, _, field = parts[0].partition(".")
            value = int(parts[1])
            with self.subTest(line=line):
                self.assertIn(struct, ffi.STRUCTS, "struct unknown to _ffi")
                cls = ffi.STRUCTS[struct]
                if field:
                    self.assertEqual(getattr(cls, field).offset, value)
                else:
                    self.assertEqual(ctypes.sizeof(cls), value)
            seen.add(struct)
        # Every params struct with a struct_size must be pinned by the file.
        versioned = {n for n, c in ffi.STRUCTS.items() if c._fields_[0][0] == "struct_size"}
        self.assertEqual(sorted(versioned - seen), [], "structs missing from the layout file")


class TestSymbolList(unittest.TestCase):
    def test_committed_symbol_list_matches_the_header(self):
        symbols = REPO / "abi" / "symbols.txt"
        if not symbols.is_file():
            self.skipTest("no abi/symbols.txt committed")
        names = set(re.findall(r"\bnllm_\w+", symbols.read_text()))
        self.assertEqual(sorted(set(ffi.FUNCTIONS) - names), [], "declared but not exported")
        self.assertEqual(sorted(names - set(ffi.FUNCTIONS)), [], "exported but not declared")

    def test_built_library_exports_every_declared_function(self):
        try:
            from nativellm import _lib  # the library the package would load
        except ImportError as e:
            self.skipTest(f"no loadable library: {e}")
        self.assertEqual(_lib.missing, [], "functions the header declares but the library lacks")


class TestSizedInits(unittest.TestCase):
    def test_package_calls_only_the_sized_params_inits(self):
        """The plain nllm_*_init symbols write ABI 1.0 layouts only (docs/api.md, Conventions):
        a binding that calls one gets the first fields' defaults and zeros after them, as
        Python's embeddings did once. Every params struct must be filled by its _init_sized."""
        sized = {n[: -len("_sized")] for n in ffi.FUNCTIONS if n.endswith("_init_sized")}
        self.assertIn("nllm_context_params_init", sized)
        calls: List[str] = []
        for py in sorted((REPO / "python" / "nativellm").glob("*.py")):
            for m in re.finditer(r"_C\.(nllm_\w+_init)\b", py.read_text()):
                if m.group(1) in sized:
                    calls.append(f"{py.name}: {m.group(1)}")
        self.assertEqual(calls, [], "unsized params inits called (use the _init_sized form)")
        used = set()
        for py in (REPO / "python" / "nativellm").glob("*.py"):
            used |= set(re.findall(r"_C\.(nllm_\w+_init_sized)\b", py.read_text()))
        missing = sorted(n + "_sized" for n in sized if n + "_sized" not in used)
        self.assertEqual(missing, [], "params inits the package never calls")


if __name__ == "__main__":
    unittest.main()
