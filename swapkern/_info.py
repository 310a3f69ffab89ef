"""The environment report a bug needs: `python -m swapkern` prints it, `swapkern.info()` returns it as a dict.

It says which swapkern runs (version, distribution version with its local part, git commit of a checkout), on which
torch, CUDA and Python, which compiled binary it found (path, ABI and the oldest torch it targets, the torch whose
headers built it, the CUDA runtime it links and the CUDA archs it holds), whether that binary loaded and why not,
the backends usable here and the one "auto" picks per device, Triton's version and interpreter flag, and the threads.

CUDA archs: listed with `cuobjdump --list-elf --list-ptx` when cuobjdump is on PATH or in $CUDA_HOME/bin, else read
from the headers of the fatbinaries in the library's `.nv_fatbin` ELF section (each entry's kind, PTX or ELF
cubin, and its SM number), which needs no CUDA toolkit.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import struct
import subprocess
import sys

import torch

from . import _backend, _diagnose
from ._version import __version__

FATBIN_MAGIC = 0xBA55ED50  # the header of each fatbinary (cuda's fatbinary.h)
_KINDS = {1: "ptx", 2: "elf"}


def _elf_section(data: bytes, name: str) -> bytes | None:
    """The bytes of a named section of a 64-bit little-endian ELF file, or None."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shoff == 0 or shentsize < 64 or shoff + shnum * shentsize > len(data) or shstrndx >= shnum:
        return None

    def header(i):  # (name offset, file offset, size)
        base = shoff + i * shentsize
        return struct.unpack_from("<I", data, base)[0], *struct.unpack_from("<QQ", data, base + 24)

    _, str_off, str_size = header(shstrndx)
    names = data[str_off : str_off + str_size]
    for i in range(shnum):
        n, off, size = header(i)
        end = names.find(b"\0", n)
        if names[n:end].decode("ascii", "replace") == name:
            return data[off : off + size]
    return None


def fatbin_archs(section: bytes) -> list[str]:
    """The code a `.nv_fatbin` section holds, from its entry headers: "sm_80" for a cubin (ELF) for SM 8.0,
    "compute_90" for PTX of virtual arch 9.0 (which the driver compiles for newer GPUs). Sorted, each once."""
    found = set()
    pos = 0
    while pos + 16 <= len(section):
        magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", section, pos)
        if magic != FATBIN_MAGIC:  # padding between fatbinaries: they are 8-byte aligned
            pos += 8
            continue
        entry, end = pos + header_size, min(pos + header_size + fat_size, len(section))
        while entry + 32 <= end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", section, entry)
            arch = struct.unpack_from("<I", section, entry + 28)[0]
            if kind in _KINDS and arch:
                found.add(("sm_" if kind == 2 else "compute_") + str(arch))
            if entry_header == 0:
                break
            entry += entry_header + payload
        pos = max(end, pos + 8)
    return sorted(found, key=lambda a: (int(a.split("_")[1]), a))


def _cuobjdump() -> str | None:
    found = shutil.which("cuobjdump")
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidate = os.path.join(home, "bin", "cuobjdump")
    return found or (candidate if os.access(candidate, os.X_OK) else None)


def cuda_archs(path: str) -> tuple[list[str], str]:
    """The CUDA archs compiled into the library at `path` and how they were read. An empty list: no device code."""
    tool = _cuobjdump()
    if tool is not None:
        res = subprocess.run([tool, "--list-elf", "--list-ptx", path], capture_output=True, text=True, timeout=60)
        if res.returncode == 0 or "does not contain device code" in res.stderr:
            archs = set()
            for line in res.stdout.splitlines():
                m = re.search(r"\.sm_(\d+)[a-z]?\.(cubin|ptx)", line)
                if m:
                    archs.add(("sm_" if m.group(2) == "cubin" else "compute_") + m.group(1))
            return sorted(archs, key=lambda a: (int(a.split("_")[1]), a)), "cuobjdump --list-elf --list-ptx"
    with open(path, "rb") as f:
        section = _elf_section(f.read(), ".nv_fatbin")
    return (fatbin_archs(section) if section else []), "the .nv_fatbin section's fatbinary headers"


def git_commit() -> str | None:
    """The short commit of the checkout swapkern runs from, "-dirty" when tracked files differ; None for an
    installed package (no checkout around it) or without git."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, ".git")) or not os.path.exists(os.path.join(root, "setup.py")):
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _distribution_version() -> str | None:
    """The installed distribution's version (with a wheel's local part, +cpu or +cu130) when that distribution is
    the swapkern imported here (its files, or an editable install of this checkout); else None."""
    import json

    try:
        dist = importlib.metadata.distribution("swapkern")
    except importlib.metadata.PackageNotFoundError:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        if direct.get("dir_info", {}).get("editable") and direct.get("url", "").startswith("file://"):
            return dist.version if os.path.abspath(direct["url"][7:]) == os.path.dirname(here) else None
        init = os.path.abspath(dist.locate_file("swapkern/__init__.py"))
        return dist.version if init == os.path.join(here, "__init__.py") else None
    except (OSError, ValueError, TypeError):
        return None


def _binary() -> dict:
    path = _backend.package_binary("_C")
    c = _backend.native_library()
    out = {
        "path": path,
        "loaded": c is not None,
        "problem": _backend.native_problem(),
        "abi": None,
        "stable_abi_target": None,
        "built_with_torch": None,
        "cuda_runtime": None,
        "cuda_archs": None,
        "cuda_archs_read_by": None,
        "kernels": [dev for dev in ("cpu", "cuda") if _backend.native_available(dev)],
    }
    if path is None:
        return out
    if c is not None:  # the build's own description (csrc/python_module.cpp)
        out["abi"] = c.abi
        out["stable_abi_target"] = c.target_version if c.abi == "stable" else None
        out["built_with_torch"] = c.torch_version
        out["cuda_runtime"] = c.cuda_version or None
    else:  # not loaded: what the file tells
        stable = ".abi3." in os.path.basename(path)
        out["abi"] = "stable" if stable else "legacy"
        out["stable_abi_target"] = ".".join(map(str, _diagnose.MIN_TORCH)) if stable else None
        major = _diagnose.cuda_major(path)
        out["cuda_runtime"] = f"{major} (libcudart.so.{major})" if major else None
    try:
        out["cuda_archs"], out["cuda_archs_read_by"] = cuda_archs(path)
    except (OSError, subprocess.SubprocessError, struct.error) as e:
        out["cuda_archs_read_by"] = f"unreadable ({e})"
    return out


def _auto(device_type: str) -> str:
    """The backend "auto" runs a call on a tensor of this device type with."""
    if device_type == "cuda" and not torch.cuda.is_available():
        return "none (no CUDA device)"
    with _backend.use_backend("auto"):
        return _backend.resolve(torch.empty(0, device=device_type))


def info() -> dict:
    """swapkern's environment report as a dict (what `python -m swapkern` prints)."""
    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # not installed, or broken: the report must still come out
        triton_version = None
    cuda = torch.cuda.is_available()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "swapkern": {
            "version": __version__,
            "distribution": _distribution_version(),
            "commit": git_commit(),
            "path": os.path.dirname(os.path.abspath(__file__)),
        },
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "platform": platform.platform(),
        },
        "torch": {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "cuda_available": cuda,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "path": os.path.dirname(torch.__file__),
        },
        "binary": _binary(),
        "backends": {
            "available": _backend.backends(),
            "selected": _backend.current_backend(),
            "auto": {dev: _auto(dev) for dev in ("cpu", "cuda")},
        },
        "triton": {
            "version": triton_version,
            "interpreter": os.environ.get("TRITON_INTERPRET", "0") == "1",
            "runs_on": [dev for dev in ("cpu", "cuda") if _backend.triton_available(dev)],
        },
        "threads": {
            "torch": torch.get_num_threads(),
            "torch_interop": torch.get_num_interop_threads(),
            "cpu_count": os.cpu_count(),
            "usable_cpus": affinity,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
    }


def _text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return str(value)


def report(data: dict | None = None) -> str:
    """The report as text: one section per key of info(), one "key: value" line per entry."""
    data = info() if data is None else data
    lines = []
    for section, entries in data.items():
        lines.append(f"{section}:")
        width = max(map(len, entries)) if entries else 0
        lines += [f"  {key.ljust(width)}  {_text(value)}" for key, value in entries.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m swapkern", description="swapkern's environment report")
    parser.add_argument("--json", action="store_true", help="print swapkern.info() as JSON")
    args = parser.parse_args(argv)
    print(json.dumps(info(), indent=2) if args.json else report())
    return 0
