"""`--to gguf`: llama.cpp's own converter, then llama.cpp's own quantizer.

Why llama.cpp's tools and not a re-implementation: GGUF readers check tensor
names, layouts (llama.cpp permutes q/k for its rope) and metadata keys that only
the upstream converter is sure to get right for every release. The converter
script ships inside the llama-cpp-python source distribution (vendor/llama.cpp),
so the version that writes the file matches the version that reads it. It is
extracted once into ~/.cache/codehone/llama.cpp/<version>/, or taken from
--llama-cpp (a llama.cpp checkout or a llama-cpp-python sdist tarball).

f16 and q8_0 are converter output types; q4_k_m needs llama-quantize, which
llama-cpp-python exposes as `llama_model_quantize`. K-quants work on 256-wide
blocks: a tensor whose rows are not a multiple of 256 gets llama.cpp's own
per-tensor fallback type, and the log lines saying so are kept in the result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .source import ExportError, save_companions

QUANTS = ("f16", "q8_0", "q4_k_m")
_WANT = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


def cache_root() -> Path:
    return Path(os.environ.get("CODEHONE_CACHE") or Path.home() / ".cache" / "codehone") / "llama.cpp"


GGUF_MISSING = "needs llama-cpp-python, the [gguf] extra: pip install 'codehone[gguf]'"


def _installed_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception:
        raise ExportError(f"--to gguf {GGUF_MISSING}") from None


def require() -> None:
    """Fail in one line, before a model is loaded, when the [gguf] extra is not installed."""
    import importlib.util

    for mod in ("llama_cpp", "sentencepiece"):
        if importlib.util.find_spec(mod) is None:
            raise ExportError(f"--to gguf {GGUF_MISSING} (no {mod} module)")


def _extract(sdist: Path, dest: Path) -> Path:
    """The converter files of a llama-cpp-python sdist, unpacked to dest (atomically)."""
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".extract-"))
    try:
        with tarfile.open(sdist) as tf:
            members = []
            for m in tf.getmembers():
                parts = m.name.split("/", 3)  # pkg-ver/vendor/llama.cpp/<rest>
                if len(parts) == 4 and parts[1:3] == ["vendor", "llama.cpp"] and (m.isfile() or m.isdir()) \
                        and any(parts[3] == w or parts[3].startswith(w) for w in _WANT):
                    m.name = parts[3]
                    members.append(m)
            if not any(m.name == "convert_hf_to_gguf.py" for m in members):
                raise ExportError(f"{sdist}: holds no vendor/llama.cpp/convert_hf_to_gguf.py")
            tf.extractall(tmp, members=members, filter="data")
        tmp.rename(dest)
    except (OSError, tarfile.TarError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"{sdist}: cannot unpack ({e})") from None
    return dest


def converter_dir(llama_cpp: str | Path | None = None, log=print) -> Path:
    """A folder holding convert_hf_to_gguf.py, conversion/ and gguf-py/."""
    if llama_cpp:
        p = Path(llama_cpp)
        if p.is_dir():
            if not (p / "convert_hf_to_gguf.py").is_file():
                raise ExportError(f"--llama-cpp {p}: no convert_hf_to_gguf.py in it")
            return p
        if p.is_file() and p.name.endswith((".tar.gz", ".tgz")):
            dest = cache_root() / p.name.removesuffix(".tar.gz").removesuffix(".tgz")
            dest.parent.mkdir(parents=True, exist_ok=True)
            return dest if (dest / "convert_hf_to_gguf.py").is_file() else _extract(p, dest)
        raise ExportError(f"--llama-cpp {p}: neither a llama.cpp folder nor a llama-cpp-python sdist (.tar.gz)")
    ver = _installed_version()
    dest = cache_root() / f"llama_cpp_python-{ver}"
    if (dest / "convert_hf_to_gguf.py").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log(f"fetching llama.cpp's converter: pip download llama-cpp-python=={ver} (source distribution)")
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            f"llama-cpp-python=={ver}", "-d", d], capture_output=True, text=True)
        sd = sorted(Path(d).glob("*.tar.gz"))
        if r.returncode or not sd:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no sdist downloaded"]
            raise ExportError(f"cannot download the llama-cpp-python sdist ({tail[0]}); pass --llama-cpp DIR|SDIST")
        return _extract(sd[0], dest)


def _convert(llama_dir: Path, hf_dir: Path, outfile: Path, outtype: str) -> str:
    shim = Path(__file__).with_name("convert_shim.py")
    r = subprocess.run([sys.executable, str(shim), str(llama_dir), str(hf_dir), "--outfile", str(outfile),
                        "--outtype", outtype], capture_output=True, text=True)
    if r.returncode or not outfile.is_file():
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
        raise ExportError(f"convert_hf_to_gguf.py failed: {lines[-1] if lines else 'no output'}")
    return r.stderr


_QUANTIZE = """
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
p.nthread = 0
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
"""


def _quantize_q4_k_m(src: Path, dst: Path) -> list[str]:
    """llama.cpp's quantizer in a subprocess (its log goes to the C stderr); the fallback lines it printed."""
    r = subprocess.run([sys.executable, "-c", _QUANTIZE, str(src), str(dst)], capture_output=True, text=True)
    if r.returncode or not dst.is_file():
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        raise ExportError(f"llama_model_quantize q4_k_m failed: {lines[-1] if lines else r.returncode}")
    return [ln.strip().split(": ", 1)[-1] for ln in r.stderr.splitlines() if "fallback" in ln.lower()]


def write(model, tok, gen, out: Path, quant: str = "q8_0", llama_cpp: str | Path | None = None, log=print) -> dict:
    if quant not in QUANTS:
        raise ExportError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    if getattr(model.config, "model_type", "") not in {"llama", "mistral", "qwen2", "qwen3"}:
        raise ExportError(f"--to gguf is wired for Llama-style decoders, not {model.config.model_type!r}")
    llama_dir = converter_dir(llama_cpp, log)
    outfile = out / f"model-{quant}.gguf"
    with tempfile.TemporaryDirectory(dir=out, prefix=".hf-") as d:
        hf = Path(d)
        model.save_pretrained(hf, safe_serialization=True)  # the converter reads an HF folder
        save_companions(hf, model, tok, gen)
        if quant == "q4_k_m":
            f16 = hf / "model-f16.gguf"
            _convert(llama_dir, hf, f16, "f16")
            fallbacks = _quantize_q4_k_m(f16, outfile)
        else:
            _convert(llama_dir, hf, outfile, quant)
            fallbacks = []
    save_companions(out, model, tok, gen)
    return {"files": [outfile.name, "tokenizer.json", "generation_config.json"], "quant": quant,
            "bytes": outfile.stat().st_size, "converter": str(llama_dir),
            "q4_k_fallbacks": fallbacks}
