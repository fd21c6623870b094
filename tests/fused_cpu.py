"""Run nn/fused.py's CUDA kernel bodies on the CPU, so the suite checks them without a GPU.

Each body is plain C++ over scalars, `i` (the element's index) and CuPy's `CArray` indexing. Here every
kernel becomes an `extern "C"` C++ function looping over i, with a minimal CArray (byte strides, indexed by
{n, c, h, w} or by a flat index), compiled once with the system's C++ compiler and called through ctypes.
`kernel(name)` returns a callable with the calling convention of `cupy.ElementwiseKernel` as nn/fused.py
uses it (inputs, then the output arrays, updated in place), working on NumPy arrays.
"""
import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from nn import fused

COMPILER = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")

PRELUDE = r"""
#include <cmath>
#include <cstddef>
using std::sqrt;
struct CArray {                       // CuPy's CArray as the bodies use it: byte strides, two ways to index
    float* data_; int ndim_; ptrdiff_t shape_[8]; ptrdiff_t strides_[8];
    template <int N> float& operator[](const ptrdiff_t (&idx)[N]) {      // {n, c, h, w}
        ptrdiff_t diff = 0;
        for (int d = 0; d < N; ++d) diff += strides_[d] * idx[d];
        return *reinterpret_cast<float*>(reinterpret_cast<char*>(data_) + diff);
    }
    float& operator[](ptrdiff_t i) {                                      // a flat index, C order
        ptrdiff_t diff = 0;
        for (int d = ndim_ - 1; d >= 0; --d) { diff += strides_[d] * (i % shape_[d]); i /= shape_[d]; }
        return *reinterpret_cast<float*>(reinterpret_cast<char*>(data_) + diff);
    }
};
typedef float T;
"""


def _params(spec):
    """'raw T x, int32 N, T g' -> [('raw', 'x'), ('int32', 'N'), ('T', 'g')]"""
    out = []
    for part in spec.split(","):
        words = part.split()
        out.append(("raw", words[2]) if words[0] == "raw" else (words[0], words[1]))
    return out


def _all_params(in_params, out_params):
    return _params(in_params) + [("out", var) for _, var in _params(out_params)]


def _function(name, in_params, out_params, body):
    """The C++ function k_<name>: raw arrays as (data, shape, strides, ndim), int32 as int, elementwise
    values as (pointer, step) with step 0 for a scalar, then n, the number of elements."""
    args, setup, refs = [], [], []
    for kind, var in _all_params(in_params, out_params):
        if kind == "raw":
            args.append(f"float* {var}_data, const ptrdiff_t* {var}_shape, const ptrdiff_t* {var}_strides, int {var}_ndim")
            setup.append(f"CArray {var}; {var}.data_ = {var}_data; {var}.ndim_ = {var}_ndim; "
                         f"for (int d = 0; d < {var}_ndim; ++d) {{ {var}.shape_[d] = {var}_shape[d]; "
                         f"{var}.strides_[d] = {var}_strides[d]; }}")
        elif kind == "int32":
            args.append(f"int {var}")
        else:
            args.append(f"float* {var}_ptr, ptrdiff_t {var}_step")
            refs.append(f"float& {var} = {var}_ptr[i * {var}_step];")
    return (f'extern "C" void k_{name}({", ".join(args + ["ptrdiff_t n"])}) {{\n  ' + "\n  ".join(setup)
            + f"\n  for (ptrdiff_t i = 0; i < n; ++i) {{\n    {' '.join(refs)}\n{body}\n  }}\n}}\n")


_library = None


def library():
    """The compiled kernels (a ctypes CDLL); built on first use."""
    global _library
    if _library is None:
        source = PRELUDE + "\n".join(_function(name, *spec) for name, spec in fused._SOURCES.items())
        folder = Path(tempfile.mkdtemp(prefix="nn_fused_cpu_"))
        (folder / "kernels.cpp").write_text(source)
        subprocess.run([COMPILER, "-O1", "-std=c++17", "-shared", "-fPIC", "-o", str(folder / "kernels.so"),
                        str(folder / "kernels.cpp")], check=True, capture_output=True, text=True)
        _library = ctypes.CDLL(str(folder / "kernels.so"))
    return _library


def kernel(name):
    """A stand-in for `fused._kernel(name)` that runs the same body on the CPU, on NumPy arrays."""
    in_params, out_params, _ = fused._SOURCES[name]
    params = _all_params(in_params, out_params)
    function = getattr(library(), f"k_{name}")

    def call(*values):
        assert len(values) == len(params), (name, len(values))
        keep, args = [], []
        n = values[-1].size                                     # the (last) output's size
        for (kind, _), value in zip(params, values):
            if kind == "raw":
                a = np.asarray(value)
                assert a.dtype == np.float32
                shape = np.array(a.shape, dtype=np.int64)
                strides = np.array(a.strides, dtype=np.int64)
                keep += [a, shape, strides]
                args += [ctypes.c_void_p(a.ctypes.data), shape.ctypes.data_as(ctypes.c_void_p),
                         strides.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(a.ndim)]
            elif kind == "int32":
                args.append(ctypes.c_int(int(value)))
            else:
                a = np.asarray(value, dtype=np.float32)
                if kind == "out" or a.ndim:
                    assert a.dtype == np.float32 and a.flags.c_contiguous and a.size == n, (name, a.shape)
                    step = 1
                else:
                    a, step = np.array([a], dtype=np.float32), 0
                keep.append(a)
                args += [ctypes.c_void_p(a.ctypes.data), ctypes.c_ssize_t(step)]
        function(*args, ctypes.c_ssize_t(n))
    return call
