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
extern "C" { int rank_errors = 0; }     // indexings with the wrong number of indices (CuPy: a compile error)
template <typename E> struct CArray {   // CuPy's CArray as the bodies use it: byte strides, two ways to index;
    E* data_; int ndim_; ptrdiff_t shape_[8]; ptrdiff_t strides_[8];   // read-only, as CuPy passes raw inputs
    template <int N> const E& operator[](const ptrdiff_t (&idx)[N]) const {      // {n, c, h, w}
        if (N != ndim_) ++rank_errors;
        ptrdiff_t diff = 0;
        for (int d = 0; d < N; ++d) diff += strides_[d] * idx[d];
        return *reinterpret_cast<const E*>(reinterpret_cast<const char*>(data_) + diff);
    }
    const E& operator[](ptrdiff_t i) const {                              // a flat index, C order
        ptrdiff_t diff = 0;
        for (int d = ndim_ - 1; d >= 0; --d) { diff += strides_[d] * (i % shape_[d]); i /= shape_[d]; }
        return *reinterpret_cast<const E*>(reinterpret_cast<const char*>(data_) + diff);
    }
};
typedef float T;
"""


C_TYPES = {"T": "float", "int32": "int", "uint8": "unsigned char"}
NUMPY_TYPES = {"T": np.float32, "int32": np.int32, "uint8": np.uint8}


def _params(spec):
    """'raw T x, int32 N, T g' -> [(raw?, type, name)]: [(True, 'T', 'x'), (False, 'int32', 'N'), (False, 'T', 'g')]"""
    out = []
    for part in spec.split(","):
        words = part.split()
        out.append((True, words[1], words[2]) if words[0] == "raw" else (False, words[0], words[1]))
    return out


def _all_params(in_params, out_params):
    """(kind, type, name) with kind 'raw', 'in' (an elementwise input: an array or a scalar) or 'out'."""
    ins = [("raw" if raw else "in", t, var) for raw, t, var in _params(in_params)]
    return ins + [("out", t, var) for _, t, var in _params(out_params)]


def _function(name, in_params, out_params, body):
    """The C++ function k_<name>: raw arrays as (data, shape, strides, ndim), int32 as int, elementwise
    values as (pointer, step) with step 0 for a scalar, then n, the number of elements."""
    args, setup, refs = [], [], []
    for kind, t, var in _all_params(in_params, out_params):
        c = C_TYPES[t]
        if kind == "raw":
            args.append(f"{c}* {var}_data, const ptrdiff_t* {var}_shape, const ptrdiff_t* {var}_strides, int {var}_ndim")
            setup.append(f"CArray<{c}> {var}_; {var}_.data_ = {var}_data; {var}_.ndim_ = {var}_ndim; "
                         f"for (int d = 0; d < {var}_ndim; ++d) {{ {var}_.shape_[d] = {var}_shape[d]; "
                         f"{var}_.strides_[d] = {var}_strides[d]; }} const CArray<{c}>& {var} = {var}_;")
        elif kind == "in" and t == "int32":
            args.append(f"int {var}")
        else:                                   # an elementwise input (array or scalar; const) or an output
            args.append(f"{c}* {var}_ptr, ptrdiff_t {var}_step")
            refs.append(f"{'const ' if kind == 'in' else ''}{c}& {var} = {var}_ptr[i * {var}_step];")
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
        out_shape = values[-1].shape                            # the outputs' shape (CuPy broadcasts to it)
        n = values[-1].size
        for (kind, t, _), value in zip(params, values):
            if kind == "raw":
                a = np.asarray(value)
                assert a.dtype == NUMPY_TYPES[t], (name, a.dtype)
                shape = np.array(a.shape, dtype=np.int64)
                strides = np.array(a.strides, dtype=np.int64)
                keep += [a, shape, strides]
                args += [ctypes.c_void_p(a.ctypes.data), shape.ctypes.data_as(ctypes.c_void_p),
                         strides.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(a.ndim)]
            elif kind == "in" and t == "int32":
                args.append(ctypes.c_int(int(value)))
            else:
                a = np.asarray(value)
                if kind == "out":
                    assert a.dtype == NUMPY_TYPES[t] and a.flags.c_contiguous and a.shape == out_shape, (name, a.shape)
                    step = 1
                elif a.ndim == 0:
                    a, step = np.array([a], dtype=NUMPY_TYPES[t]), 0
                else:                                           # broadcast as CuPy does, as a contiguous copy
                    assert a.dtype == NUMPY_TYPES[t], (name, a.dtype)
                    a, step = np.ascontiguousarray(np.broadcast_to(a, out_shape)), 1
                keep.append(a)
                args += [ctypes.c_void_p(a.ctypes.data), ctypes.c_ssize_t(step)]
        errors = ctypes.c_int.in_dll(library(), "rank_errors")
        errors.value = 0
        function(*args, ctypes.c_ssize_t(n))
        assert errors.value == 0, f"{name}: a raw array indexed with the wrong number of indices"
    return call
