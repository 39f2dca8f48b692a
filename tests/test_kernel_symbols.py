"""The dense kernels are compiled once per instruction set (cpp/src/dense_kernels.cpp, see
docs/architecture.md). A symbol that such a copy defines and that the linker may merge with
another object's (weak, unique, common or global) must carry the copy's private namespace in
its name (nsm_eigen_<isa>, nsm::kernels::<isa>); otherwise the linker could keep, say, the
AVX-512 build of a std:: template for the portable code, which then crashes on an older CPU.
These tests read the objects of the build tree (pip builds into build/<wheel tag>/)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
OBJECTS = sorted(ROOT.glob("build/*/CMakeFiles/nsm_kernel_*.dir/cpp/src/dense_kernels.cpp.o"))
# The pointer to the C++ exception personality routine: the same data in every object.
SAME_EVERYWHERE = {"DW.ref.__gxx_personality_v0"}


def isa_of(path: pathlib.Path) -> str:
    match = re.search(r"nsm_kernel_(\w+)\.dir", str(path))
    assert match, path
    return match.group(1)


def shared_symbols(obj: pathlib.Path, isa: str) -> list[str]:
    """The symbols of obj that another object could also define (so that the linker keeps one
    of them), except those whose mangled name holds the copy's private namespace."""
    out = subprocess.run(["nm", "--defined-only", str(obj)], capture_output=True, text=True, check=True)
    private = (f"{len('nsm_eigen_' + isa)}nsm_eigen_{isa}", f"3nsm7kernels{len(isa)}{isa}")
    bad = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        kind, name = parts[1], parts[2]
        if kind.islower() and kind not in "uvw":
            continue  # local to this object: never merged
        if name in SAME_EVERYWHERE or any(p in name for p in private):
            continue
        bad.append(f"{kind} {name}")
    return bad


def demangled(names: list[str]) -> str:
    if shutil.which("c++filt") is None:
        return "\n".join(names)
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    return out.stdout


needs_build_tree = pytest.mark.skipif(
    not OBJECTS or shutil.which("nm") is None or sys.platform != "linux",
    reason="needs the kernel objects of a build tree under build/ and nm (Linux)",
)


@needs_build_tree
def test_the_built_kernel_copies_keep_their_symbols_private():
    isas = {isa_of(obj) for obj in OBJECTS}
    assert "generic" in isas
    for obj in OBJECTS:
        bad = shared_symbols(obj, isa_of(obj))
        assert not bad, f"{obj} defines symbols the linker may share:\n{demangled(bad)}"


def kernel_compile_command(isa: str) -> tuple[list[str], str] | None:
    """The build's own command line for one kernel copy (compile_commands.json), or None."""
    for database in sorted(ROOT.glob("build/*/compile_commands.json")):
        for entry in json.loads(database.read_text()):
            if f"nsm_kernel_{isa}.dir" in entry.get("output", entry["command"]):
                return shlex.split(entry["command"]), entry["directory"]
    return None


def eigen_include() -> str | None:
    """Eigen's headers in this environment (cmeel-eigen, a test requirement)."""
    for entry in sys.path:
        path = pathlib.Path(entry) / "cmeel.prefix" / "include" / "eigen3"
        if (path / "Eigen" / "Core").is_file():
            return str(path)
    return None


@needs_build_tree
@pytest.mark.parametrize("isa", ["avx512"])
def test_kernel_copy_keeps_its_symbols_private_without_optimization(isa, tmp_path):
    # At -O0 nothing is inlined, so every template the file instantiates (its own, Eigen's,
    # and any std:: one that Eigen pulls in) shows up as a symbol: the worst case.
    found = kernel_compile_command(isa)
    if found is None:
        pytest.skip(f"this build has no {isa} kernel copy")
    command, directory = found
    args: list[str] = []
    skip_next = False
    for i, arg in enumerate(command):
        if skip_next:
            skip_next = False
            continue
        if arg in ("-MT", "-MF", "-o"):
            skip_next = True
            continue
        if arg == "-MD" or re.fullmatch(r"-O[0-9sgz]?", arg):
            continue
        if i > 0 and command[i - 1] == "-isystem" and not os.path.isdir(arg):
            arg = eigen_include() or arg  # a build-isolation environment is gone after the build
        args.append(arg)
    out = tmp_path / "kernel.o"
    result = subprocess.run([*args, "-O0", "-o", str(out)], cwd=directory, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    bad = shared_symbols(out, isa)
    assert not bad, f"the {isa} kernel copy at -O0 defines symbols the linker may share:\n{demangled(bad)}"
