#!/usr/bin/env python3
"""Generate, check and assemble the PTX and cubins that hikube-gpu ships.

    python3 scripts/ptx.py gen     # compile kernels/**/*.cu into kernels/ptx/ (PTX, and cubins
                                   # assembled from it, each zstd-compressed), write the manifest
    python3 scripts/ptx.py check   # regenerate into a temporary folder, fail on any difference
    python3 scripts/ptx.py ptxas   # assemble every PTX for its SMs, print registers and spills

The compiler is NVRTC 12.4 from PyPI, installed on first use into .toolchain/ (or $HIKUBE_TOOLCHAIN).
Each .cu file names the architectures it is compiled for on a line of its own:

    // hikube-archs: compute_70 compute_75 compute_80 compute_90a

The manifest (kernels/ptx/manifest) holds the sha256 of every source and header a PTX came from,
of every (compressed) PTX and cubin, and the compiler version; build.rs refuses to build when a
source no longer matches.

Every PTX and cubin is stored zstd-compressed (`NAME.ptx.zst`, `NAME.cubin.zst`, level
ZSTD_LEVEL, by the pinned `zstandard` from PyPI): about 18 times smaller, so the crate package and
every binary embedding them stay small. The crate decompresses one on each module load, with a
pure-Rust decoder (ruzstd), so building it still needs no toolkit. `check` compares the
decompressed contents, so a different zstd build cannot make it fail on identical kernels.

Each PTX is also assembled by the pinned ptxas into a cubin per SM of CUBIN_SMS: the driver loads
a cubin for exactly its SM without JIT-compiling (seconds for the GEMM modules), and falls back to
the PTX on any other GPU. ptxas output does not depend on the folder it runs in and is
byte-for-byte reproducible, so `check` compares the cubins too.
"""
import concurrent.futures
import ctypes
import difflib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
PTX_DIR = KERNELS / "ptx"
MANIFEST = PTX_DIR / "manifest"
# The tile configurations of the tensor-core kernels (see its header): each module listed there is
# compiled with them as the generated header TILES_HEADER, and the manifest lists them for build.rs.
TILES = KERNELS / "tiles.toml"
TILES_HEADER = "hikube_tiles.inc"

# The pinned toolchain (see ../shared/cuda-toolchain.md): NVRTC 12.4 writes PTX ISA 8.4, which
# drivers R550 and newer load. A newer NVRTC writes a newer ISA that older drivers reject.
PACKAGES = [
    "nvidia-cuda-nvrtc-cu12==12.4.127",
    "nvidia-cuda-runtime-cu12==12.4.127",
    "nvidia-cuda-nvcc-cu12==12.9.86",
]
# The compressor of the stored PTX and cubins (it bundles libzstd: the output is reproducible).
ZSTD_PACKAGE = "zstandard==0.25.0"
ZSTD_LEVEL = 19
# The PTX targets: the crate's only list of them. build.rs reads them from the manifest (each is a
# cargo feature of the same name, on by default) and `PtxArch` has one variant per target.
ARCHS = ("compute_70", "compute_75", "compute_80", "compute_89", "compute_90a")
# The SMs `ptxas` reports registers and spills for: every seed GPU's arch and the Hopper ones.
# (The cubins shipped come from CUBIN_SMS below.)
SMS = {
    "compute_70": ["sm_70"],
    "compute_75": ["sm_75"],
    "compute_80": ["sm_80", "sm_86", "sm_89"],
    "compute_89": ["sm_89"],
    "compute_90a": ["sm_90a"],
}
# The SMs each PTX target is shipped as a cubin for (`ptxas -arch=<sm>`, default optimization):
# the seed GPUs' SMs. A cubin also runs on the newer minors of its major version: the crate loads
# sm_86's on the RTX 40 cards' 8.9 (the compute_80 kernels use nothing 8.9 adds, and dropping the
# sm_89 cubins keeps the packaged crate under 4 MiB; BENCHMARKS.md compares their SASS).
# compute_80 also gets sm_90 because the H100/H200 run compute_80 kernels (1x1 and strided
# convolutions, their gradients); sm_90a cubins load on 9.0 only.
CUBIN_SMS = {
    "compute_70": ["sm_70"],
    "compute_75": ["sm_75"],
    "compute_80": ["sm_80", "sm_86", "sm_90"],
    "compute_89": ["sm_89"],
    "compute_90a": ["sm_90a"],
}
OPTIONS = ["--std=c++17", "-default-device"]


def toolchain() -> Path:
    """The folder holding nvidia/{cuda_nvrtc,cuda_runtime,cuda_nvcc}, installed if missing."""
    dest = Path(os.environ.get("HIKUBE_TOOLCHAIN", ROOT / ".toolchain"))
    stamp = dest / "installed"
    want = "\n".join([*PACKAGES, ZSTD_PACKAGE])
    if not (stamp.exists() and stamp.read_text(encoding="utf-8") == want):
        print(f"installing the pinned CUDA compiler into {dest}", file=sys.stderr)
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--target", str(dest), *PACKAGES, ZSTD_PACKAGE],
            check=True,
        )
        stamp.write_text(want, encoding="utf-8")
    return dest


class Nvrtc:
    def __init__(self, tc: Path):
        lib = tc / "nvidia" / "cuda_nvrtc" / "lib" / "libnvrtc.so.12"
        self.lib = ctypes.CDLL(str(lib))
        self.includes = [
            tc / "nvidia" / "cuda_runtime" / "include",
            tc / "nvidia" / "cuda_nvcc" / "include",
        ]
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = f"{major.value}.{minor.value}"

    def _check(self, status, what, prog=None):
        if status != 0:
            self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            msg = self.lib.nvrtcGetErrorString(status).decode()
            log = self._log(prog) if prog is not None else ""
            raise SystemExit(f"{what} failed: {msg}\n{log}")

    def _log(self, prog):
        size = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        self.lib.nvrtcGetProgramLog(prog, buf)
        return buf.value.decode(errors="replace")

    def compile(self, source: Path, arch: str, headers: dict) -> str:
        """PTX for `arch`; `headers` maps include names to generated text NVRTC reads in place of
        files."""
        prog = ctypes.c_void_p()
        name = source.relative_to(KERNELS).as_posix().encode()
        texts = (ctypes.c_char_p * len(headers))(*[t.encode() for t in headers.values()])
        names = (ctypes.c_char_p * len(headers))(*[n.encode() for n in headers])
        self._check(
            self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.read_bytes(), name,
                                        len(headers), texts, names),
            "nvrtcCreateProgram",
        )
        opts = [f"--gpu-architecture={arch}", *OPTIONS, f"-I{KERNELS}"]
        opts += [f"-I{inc}" for inc in self.includes]
        argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        status = self.lib.nvrtcCompileProgram(prog, len(opts), argv)
        log = self._log(prog).strip()
        self._check(status, f"compiling {source.relative_to(ROOT)} for {arch}", prog)
        if log:
            print(f"{source.relative_to(ROOT)} [{arch}]: {log}", file=sys.stderr)
        size = ctypes.c_size_t()
        self._check(self.lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize", prog)
        buf = ctypes.create_string_buffer(size.value)
        self._check(self.lib.nvrtcGetPTX(prog, buf), "nvrtcGetPTX", prog)
        self.lib.nvrtcDestroyProgram(ctypes.byref(prog))
        return buf.value.decode()


class Ptxas:
    """The pinned ptxas. Runs in worker threads: it is a separate process, so they overlap."""

    def __init__(self, tc: Path):
        self.path = tc / "nvidia" / "cuda_nvcc" / "bin" / "ptxas"
        r = subprocess.run([str(self.path), "--version"], capture_output=True, text=True, check=True)
        m = re.search(r"\bV(\d+\.\d+\.\d+)", r.stdout)
        self.version = m.group(1) if m else r.stdout.strip().splitlines()[-1]

    def assemble(self, ptx: Path, sm: str, dest: Path):
        """`ptxas -arch=<sm> ptx -o dest`; returns (exit status, stderr)."""
        r = subprocess.run([str(self.path), f"-arch={sm}", str(ptx), "-o", str(dest)],
                           capture_output=True, text=True)
        return r.returncode, r.stderr.strip()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sources():
    return sorted(p for p in KERNELS.rglob("*.cu") if PTX_DIR not in p.parents)


def headers():
    return sorted(p for p in KERNELS.rglob("*.cuh") if PTX_DIR not in p.parents)


def declared_archs(source: Path):
    m = re.search(r"^//\s*hikube-archs:(.*)$", source.read_text(encoding="utf-8"), re.M)
    if not m:
        raise SystemExit(f"{source.relative_to(ROOT)}: no '// hikube-archs: ...' line")
    archs = m.group(1).split()
    bad = [a for a in archs if a not in ARCHS]
    if bad:
        raise SystemExit(f"{source.relative_to(ROOT)}: unknown archs {bad}; known: {ARCHS}")
    return archs


def module_name(source: Path) -> str:
    # kernels/gemm/gemm_sm80.cu -> gemm_sm80; names must be unique across folders.
    return source.stem


def tile_table(modules) -> dict:
    """kernels/tiles.toml, checked: {module: [entry, ...]}, each entry a dict with every key
    (tile, warp or None, min_blocks, fits, efficiency, general, c4). `modules` are the sources'
    module names; a table for another module is an error."""
    table = tomllib.loads(TILES.read_text(encoding="utf-8"))
    out = {}
    for module, spec in table.items():
        where = f"kernels/tiles.toml [{module}]"
        if module not in modules:
            raise SystemExit(f"{where}: no kernel source kernels/**/{module}.cu")
        unknown = set(spec) - {"general", "c4", "tiles"}
        tiles = spec.get("tiles", [])
        if unknown or not tiles:
            raise SystemExit(f"{where}: needs [[{module}.tiles]] entries; unknown keys {unknown or '{}'}")
        has_c4 = spec.get("c4", False) is True
        entries = []
        for i, t in enumerate(tiles):
            unknown = set(t) - {"tile", "warp", "min_blocks", "fits", "efficiency", "c4"}
            if unknown or (not has_c4 and "c4" in t):
                raise SystemExit(f"{where} tile {i}: unknown keys {unknown or {'c4'}}")
            e = {
                "tile": t.get("tile"), "warp": t.get("warp"), "min_blocks": t.get("min_blocks"),
                "fits": t.get("fits"), "efficiency": t.get("efficiency", 1.0),
                "general": bool(spec.get("general")) and i == len(tiles) - 1,
                "c4": has_c4 and t.get("c4", True),
            }
            ints = lambda v, n: (isinstance(v, list) and len(v) == n
                                 and all(isinstance(x, int) and x > 0 for x in v))
            if not (ints(e["tile"], 4) and (e["warp"] is None or ints(e["warp"], 2))
                    and ints([e["min_blocks"], e["fits"]], 2)
                    and isinstance(e["efficiency"], (int, float)) and 0 < e["efficiency"] <= 1
                    and isinstance(e["c4"], bool)):
                raise SystemExit(f"{where} tile {i}: want tile = [BM, BN, BK, stages], optional "
                                 "warp = [WM, WN], min_blocks and fits > 0, 0 < efficiency <= 1")
            if entries and (e["warp"] is None) != (entries[0]["warp"] is None):
                raise SystemExit(f"{where}: every tile has a warp tile, or none does")
            entries.append(e)
        out[module] = entries
    return out


def tile_args(e) -> str:
    bm, bn, bk, stages = e["tile"]
    warp = [] if e["warp"] is None else e["warp"]
    return ", ".join(str(v) for v in [bm, bn, bk, stages, *warp, e["min_blocks"]])


def tiles_header(module: str, entries) -> str:
    """The generated TILES_HEADER of one module: a macro call per kernel to instantiate."""
    lines = [f"// Generated by scripts/ptx.py from kernels/tiles.toml [{module}]."]
    for e in entries:
        lines.append(f"HK_TILE({tile_args(e)})")
    lines += [f"HK_TILE_GENERAL({tile_args(e)})" for e in entries if e["general"]]
    lines += [f"HK_TILE_C4({tile_args(e)})" for e in entries if e["c4"]]
    return "\n".join(lines) + "\n"


def tile_line(module: str, e) -> str:
    """The manifest's line for one tile (build.rs reads it)."""
    warp = "none" if e["warp"] is None else "x".join(map(str, e["warp"]))
    return (f"tile {module} {'x'.join(map(str, e['tile']))} warp={warp} "
            f"min_blocks={e['min_blocks']} fits={e['fits']} efficiency={e['efficiency']} "
            f"general={str(e['general']).lower()} c4={str(e['c4']).lower()}")


def zstandard():
    """The pinned `zstandard` module, installed into the toolchain folder beside the compiler."""
    tc = str(toolchain())
    if tc not in sys.path:
        sys.path.insert(0, tc)
    import zstandard as zstd  # pylint: disable=import-outside-toplevel
    return zstd


def compress(raw: Path, dest: Path):
    """Writes `raw` zstd-compressed to `dest` (single-threaded, with its size in the frame header:
    the output depends only on the input, the level and the pinned zstandard)."""
    dest.write_bytes(zstandard().ZstdCompressor(level=ZSTD_LEVEL).compress(raw.read_bytes()))


def decompress(path: Path) -> bytes:
    return zstandard().ZstdDecompressor().decompress(path.read_bytes())


def generate(out: Path):
    """Compile every source, assemble the cubins, and write them compressed, with the manifest,
    into `out`. Returns the names of the files written."""
    tc = toolchain()
    nvrtc, ptxas = Nvrtc(tc), Ptxas(tc)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Generated by scripts/ptx.py gen. Do not edit: build.rs checks every hash below.",
        f"compiler nvrtc {nvrtc.version} ({' '.join(PACKAGES)})",
        f"assembler ptxas {ptxas.version}",
        f"options {' '.join(OPTIONS)}",
        f"compression zstd level {ZSTD_LEVEL} ({ZSTD_PACKAGE})",
    ]
    for h in headers():
        lines.append(f"header {h.relative_to(KERNELS).as_posix()} {sha256(h)}")
    table = tile_table({module_name(src) for src in sources()})
    lines.append(f"table {TILES.relative_to(KERNELS).as_posix()} {sha256(TILES)}")
    for module, entries in table.items():
        lines += [tile_line(module, e) for e in entries]
    names = set()
    written = []
    # ptxas and the compressor take as long as NVRTC (seconds per GEMM module and SM): they run on
    # every core while NVRTC compiles the next source here. Each artifact's manifest line is
    # filled in once it is done. The uncompressed files live in a temporary folder.
    pending = []
    with tempfile.TemporaryDirectory() as raw_dir, \
            concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        raw = Path(raw_dir)

        def assemble_and_compress(ptx: Path, sm: str, cubin: Path):
            status, log = ptxas.assemble(ptx, sm, cubin)
            if status == 0:
                compress(cubin, out / f"{cubin.name}.zst")
            return status, log

        for src in sources():
            name = module_name(src)
            if name in names:
                raise SystemExit(f"two kernel sources are named {name}: module names must be unique")
            names.add(name)
            lines.append(f"source {src.relative_to(KERNELS).as_posix()} {sha256(src)}")
            for arch in declared_archs(src):
                ptx = raw / f"{name}.{arch}.ptx"
                generated = {TILES_HEADER: tiles_header(name, table[name])} if name in table else {}
                ptx.write_text(nvrtc.compile(src, arch, generated), encoding="utf-8")
                job = pool.submit(compress, ptx, out / f"{ptx.name}.zst")
                pending.append((len(lines), job, f"ptx {ptx.name}.zst", f"{name} {arch}"))
                lines.append("")
                for sm in CUBIN_SMS[arch]:
                    cubin = raw / f"{name}.{arch}.{sm}.cubin"
                    job = pool.submit(assemble_and_compress, ptx, sm, cubin)
                    pending.append((len(lines), job, f"cubin {cubin.name}.zst", f"{name} {arch} {sm}"))
                    lines.append("")
        for index, job, kind_file, what in pending:
            result = job.result()
            if result is not None:
                status, log = result
                if status != 0:
                    raise SystemExit(f"ptxas failed on {what}:\n{log}")
                if log:
                    print(f"{what}: {log}", file=sys.stderr)
            file = kind_file.split()[1]
            written.append(file)
            lines[index] = f"{kind_file} {sha256(out / file)} {what}"
    (out / "manifest").write_text("\n".join(lines) + "\n", encoding="utf-8")
    written.append("manifest")
    return written


def stored(path: Path) -> bool:
    """Whether `path` is a generated artifact of kernels/ptx/ (compressed, or a stale plain one)."""
    return path.is_file() and path.name.endswith((".ptx", ".cubin", ".ptx.zst", ".cubin.zst"))


def cmd_gen():
    for old in filter(stored, PTX_DIR.iterdir()):
        old.unlink()
    for f in generate(PTX_DIR):
        print(f"wrote kernels/ptx/{f}")


def manifest_without_hashes(path: Path):
    """The manifest's lines, with the hashes of the compressed files left out: a different build
    of zstd may compress differently, and `check` compares the decompressed contents instead."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and fields[0] in ("ptx", "cubin"):
            fields[2] = "-"
        out.append(" ".join(fields))
    return out


def differs(name: str, committed: Path, fresh: Path) -> bool:
    """Compares one file of kernels/ptx/ with its regenerated twin; prints what differs."""
    if name == "manifest":
        a, b = manifest_without_hashes(committed), manifest_without_hashes(fresh)
    elif name.endswith(".zst"):
        a, b = decompress(committed), decompress(fresh)
    else:
        a, b = committed.read_bytes(), fresh.read_bytes()
    if a == b:
        return False
    print(f"kernels/ptx/{name} differs from what the pinned compiler writes now"
          f"{'' if name.endswith('.cubin.zst') else ':'}")
    if name.endswith(".ptx.zst"):
        a, b = a.decode("utf-8").splitlines(), b.decode("utf-8").splitlines()
    if isinstance(a, list):
        diff = difflib.unified_diff(a, b, "committed", "regenerated", lineterm="", n=1)
        print("\n".join(list(diff)[:40]))
    return True


def cmd_check():
    with tempfile.TemporaryDirectory() as tmp:
        fresh = set(generate(Path(tmp)))
        committed = {p.name for p in PTX_DIR.iterdir() if p.is_file()}
        bad = False
        for name in sorted(fresh | committed):
            if name not in committed or name not in fresh:
                print(f"kernels/ptx/{name}: {'missing' if name not in committed else 'stale (no source)'}")
                bad = True
            elif differs(name, PTX_DIR / name, Path(tmp) / name):
                bad = True
        if bad:
            raise SystemExit("the committed PTX is out of date: run `python3 scripts/ptx.py gen`")
    print(f"PTX and cubins up to date: {len(fresh)} files match the pinned compiler's output")


def cmd_ptxas():
    ptxas = toolchain() / "nvidia" / "cuda_nvcc" / "bin" / "ptxas"
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for stored_ptx in sorted(PTX_DIR.glob("*.ptx.zst")):
            ptx = Path(tmp) / stored_ptx.name.removesuffix(".zst")
            ptx.write_bytes(decompress(stored_ptx))
            arch = ptx.name.split(".")[-2]
            for sm in SMS[arch]:
                r = subprocess.run([str(ptxas), f"-arch={sm}", "-v", str(ptx), "-o", os.devnull],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"FAIL {ptx.name} for {sm}:\n{r.stderr}")
                    failed = True
                    continue
                for kernel, regs, spills in parse_ptxas(r.stderr):
                    print(f"{ptx.name:42} {sm:7} {kernel:48} {regs:>4} regs  {spills}")
            ptx.unlink()
    if failed:
        raise SystemExit("ptxas refused some PTX")


def parse_ptxas(text):
    """Yield (kernel, registers, spill summary) from `ptxas -v` output."""
    kernel, spills = None, ""
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            kernel = m.group(1)
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            spills = f"stack {m.group(1)}B, spill st {m.group(2)}B ld {m.group(3)}B"
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and kernel:
            yield kernel, int(m.group(1)), spills
            kernel, spills = None, ""


if __name__ == "__main__":
    cmds = {"gen": cmd_gen, "check": cmd_check, "ptxas": cmd_ptxas}
    if len(sys.argv) != 2 or sys.argv[1] not in cmds:
        raise SystemExit(__doc__)
    cmds[sys.argv[1]]()
