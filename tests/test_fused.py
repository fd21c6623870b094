"""nn/fused.py without a GPU: every CUDA kernel body, compiled as C++ for the CPU (tests/fused_cpu.py), gives
what the plain NumPy code gives; each kernel's own first-use check passes; and `fused.ready` switches a
kernel off, with one warning, when it fails to compile or disagrees. (On a GPU, tests/test_cupy_parity.py
runs the real kernels.)"""
import warnings

import numpy as np
import pytest

from nn import backend, fused, optim, optim_flat
from nn.layers import conv, norm, pool

import fused_cpu  # tests/fused_cpu.py
pytestmark = pytest.mark.skipif(fused_cpu.COMPILER is None, reason="no C++ compiler on this machine to build "
                                "the CUDA kernel bodies for the CPU")

PLAIN = {"im2col": conv.im2col, "col2im": conv.col2im, "max_pool": pool.max_pool_windows,
         "max_pool_backward": pool.max_pool_scatter, "batchnorm_scale_shift": norm.scale_and_shift,
         "batchnorm_input_grad": norm.normalized_input_grad, "batchnorm_running": norm.running_statistics, "sgd": optim.SGD.update, "sgd_no_momentum": optim.SGD.update,
         "adam": optim.Adam.update, "average": optim_flat._average_plain}

GEOMETRIES = [  # (N, C, H, W), kernel, stride, padding: the ConvNet's 3x3, the DCGAN discriminator's 4x4 / 2, odd ones
    ((4, 3, 8, 8), (3, 3), (1, 1), (1, 1)),
    ((3, 2, 16, 16), (4, 4), (2, 2), (1, 1)),
    ((2, 3, 9, 7), (3, 2), (2, 1), (1, 0)),
    ((2, 2, 5, 6), (5, 5), (1, 1), (2, 2)),
    ((1, 1, 4, 4), (1, 1), (1, 1), (0, 0)),
    ((2, 3, 7, 8), (3, 3), (3, 2), (0, 2)),
]


@pytest.fixture
def cpu_kernels(monkeypatch):
    monkeypatch.setattr(fused, "_kernel", fused_cpu.kernel)


def test_every_kernel_has_a_check_and_a_plain_function():
    assert set(fused._SOURCES) == set(fused._CHECKS) == set(PLAIN)


@pytest.mark.parametrize("shape,kernel,stride,padding", GEOMETRIES)
def test_im2col_and_col2im_kernels_equal_the_plain_functions(shape, kernel, stride, padding, cpu_kernels):
    r = np.random.default_rng(0)
    x = r.standard_normal((shape[1], shape[0]) + shape[2:]).astype(np.float32).transpose(1, 0, 2, 3)  # a view
    cols = conv.im2col(x, kernel, stride, padding)
    np.testing.assert_array_equal(fused.im2col(x, kernel, stride, padding), cols)
    dcols = r.standard_normal(cols.shape).astype(np.float32)
    dx = fused.col2im(dcols, x.shape, stride, padding)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, conv.col2im(dcols, x.shape, stride, padding))  # same sums, same order


@pytest.mark.parametrize("name,settings,n_state", [
    ("sgd", dict(lr=0.05, momentum=0.9, weight_decay=1e-3), 1),
    ("sgd_no_momentum", dict(lr=0.05, momentum=0.0, weight_decay=0.0), 0),
    ("adam", dict(lr=1e-2, beta1=0.5, beta2=0.999, eps=1e-8, weight_decay=1e-3), 2),
])
def test_optimizer_kernels_equal_the_update_methods_over_several_steps(name, settings, n_state, cpu_kernels):
    import types
    r = np.random.default_rng(1)
    grads = [r.standard_normal(500).astype(np.float32) for _ in range(4)]
    results = []
    for update in (fused.sgd if name.startswith("sgd") else fused.adam, PLAIN[name]):
        opt = types.SimpleNamespace(t=0, **settings)
        arrays = [np.random.default_rng(2).standard_normal(500).astype(np.float32)] + \
                 [np.zeros(500, np.float32) for _ in range(n_state)]
        for g in grads:
            opt.t += 1
            update(opt, arrays[0], g, *arrays[1:])
        results.append(arrays)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(results[0][0], np.random.default_rng(2).standard_normal(500).astype(np.float32))


def test_average_kernel_equals_the_plain_average(cpu_kernels):
    r = np.random.default_rng(3)
    a, theta = r.standard_normal(300).astype(np.float32), r.standard_normal(300).astype(np.float32)
    b = a.copy()
    fused.average(a, theta, 0.9)
    optim_flat._average_plain(b, theta, 0.9)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_each_kernels_first_use_check_passes(name, cpu_kernels):
    assert fused._CHECKS[name](PLAIN[name]) is None


@pytest.fixture
def as_if_on_a_gpu(monkeypatch):
    """`ready` believes it runs on CuPy (the arrays stay NumPy), with a fresh record of checked kernels."""
    monkeypatch.setattr(backend, "name", "cupy")
    monkeypatch.setattr(fused, "_state", {})


def test_ready_turns_a_kernel_on_once_it_agrees(cpu_kernels, as_if_on_a_gpu):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fused.ready("im2col", conv.im2col) and fused.ready("adam", optim.Adam.update)
    assert fused.status() == {"im2col": True, "adam": True}


def test_ready_switches_off_a_kernel_that_disagrees_with_one_warning(monkeypatch, as_if_on_a_gpu):
    def wrong(name):
        def call(*values):
            values[-1][...] = 0                     # writes zeros instead of the columns
        return call
    monkeypatch.setattr(fused, "_kernel", wrong)
    with pytest.warns(RuntimeWarning, match=r"the im2col kernel is off \(disagrees with the plain code"):
        assert not fused.ready("im2col", conv.im2col)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # decided once: no second check, no second warning
        assert not fused.ready("im2col", conv.im2col)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    assert np.abs(conv.im2col(x, (3, 3), (1, 1), (1, 1))).sum() > 0      # the plain code runs


def test_ready_switches_off_a_kernel_that_does_not_compile(monkeypatch, as_if_on_a_gpu):
    def broken(name):
        raise RuntimeError("nvrtc: error: identifier \"q\" is undefined\n  p = q + g;\n      ^")
    monkeypatch.setattr(fused, "_kernel", broken)
    with pytest.warns(RuntimeWarning) as record:
        assert not fused.ready("adam", optim.Adam.update)
    message = str(record[0].message)
    assert "\n" not in message and 'RuntimeError: nvrtc: error: identifier "q" is undefined' in message


def test_numpy_never_uses_the_kernels(monkeypatch):
    monkeypatch.setattr(backend, "name", "numpy")
    monkeypatch.setattr(fused, "_kernel", lambda name: pytest.fail("a kernel was asked for on NumPy"))
    assert not fused.ready("im2col", conv.im2col)


def _gpu_path_training(fused_on, monkeypatch):
    """Three SGD steps and weight averages of a net with every layer kind that has a kernel, on the code
    paths CuPy takes (backend.name is "cupy": no chunking, im2col everywhere, the max-pool loop), on NumPy
    arrays; the kernels are the CPU builds of the CUDA bodies."""
    import copy
    from nn import Sequential, layers
    monkeypatch.setattr(fused, "ENABLED", fused_on)
    monkeypatch.setattr(fused, "_state", {})
    backend.set_backend("numpy")
    backend.seed(0)
    # SGD, not Adam: the kernels return contiguous arrays where the plain code returns other memory layouts,
    # so later sums round differently, and Adam would turn rounding in a near-zero gradient into whole steps
    model = Sequential(layers.Conv2D(3, 4, 3, padding=1, bias=False), layers.BatchNorm2D(4), layers.LeakyReLU(0.2),
                       layers.MaxPool2D(2), layers.Conv2D(4, 6, 4, stride=2, padding=1, bias=False),
                       layers.BatchNorm2D(6), layers.ReLU(), layers.MaxPool2D(3, stride=1, padding=1),
                       layers.Upsample2D(2), layers.Conv2D(6, 2, 3, padding=1, method="auto"), layers.Flatten(),
                       layers.Dense(2 * 4 * 4, 5, bias=False), layers.BatchNorm1D(5))
    average = copy.deepcopy(model)
    opt = optim.SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-3)
    monkeypatch.setattr(backend, "name", "cupy")
    r = np.random.default_rng(0)
    for step in range(3):
        x = r.standard_normal((6, 3, 8, 8)).astype(np.float32)
        y = model.forward(x, training=True)
        model.backward(y - r.standard_normal(y.shape).astype(np.float32))
        opt.step()
        optim.ema_update(average, model, optim.ema_decay(step, 0.99))
    out = average.predict(r.standard_normal((4, 3, 8, 8)).astype(np.float32))
    monkeypatch.setattr(backend, "name", "numpy")
    return {**model.state_dict(), **{"avg." + k: v for k, v in average.state_dict().items()}, "predict": out}


def test_a_training_step_on_the_gpu_code_path_gives_the_same_numbers_with_the_kernels(cpu_kernels, monkeypatch):
    plain = _gpu_path_training(False, monkeypatch)
    with_kernels = _gpu_path_training(True, monkeypatch)
    used = {name: True for name in PLAIN if name not in ("adam", "sgd_no_momentum")}   # SGD with momentum trains
    assert fused.status() == used                                           # used, and none switched off
    for k in plain:
        np.testing.assert_allclose(with_kernels[k], plain[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_max_pool_kernel_keeps_nan_like_the_plain_maximum(cpu_kernels):
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    x[0, 0, 1, 0] = np.nan          # in the first window, after the first offset
    x[0, 1, 0, 0] = np.nan          # the first offset of a window
    y, winner = fused.max_pool(x, (2, 2), (2, 2), (2, 2))
    y_plain, winner_plain = pool.max_pool_windows(x, (2, 2), (2, 2), (2, 2))
    np.testing.assert_array_equal(y, y_plain)                 # NaN where the plain code has NaN
    np.testing.assert_array_equal(winner, winner_plain)
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y[0, 1, 0, 0])


def _cupy_codegen():
    """CuPy's own code generator and NVRTC, where CuPy imports (no GPU needed); else skip."""
    try:
        import cupy
        from cupy._core import _carray, _kernel, _scalar, core
        from cupy.cuda import compiler
        compiler._NVRTCProgram                                     # private APIs of CuPy 14
        _kernel._get_elementwise_kernel_code, _kernel._ArgInfo, _kernel._TypeMap
    except Exception as exc:
        pytest.skip(f"CuPy's kernel code generator is not available here ({type(exc).__name__})")
    return cupy, _carray, _kernel, _scalar, core, compiler


def _argument_kinds(monkeypatch):
    """{kernel: [(is_scalar, ndim)] per input} as nn/fused.py's wrappers really call each kernel (recorded
    while its first-use check runs on the CPU builds)."""
    kinds = {}

    def recording(name):
        run = fused_cpu.kernel(name)

        def call(*values):
            n_in = len(fused._SOURCES[name][0].split(","))
            kinds.setdefault(name, [(np.ndim(v) == 0, np.ndim(v)) for v in values[:n_in]])
            run(*values)
        return call
    monkeypatch.setattr(fused, "_kernel", recording)
    for name, check in fused._CHECKS.items():
        assert check(PLAIN[name]) is None
    return kinds


def test_every_kernel_compiles_as_cupy_generates_it(monkeypatch):
    """The CUDA source as CuPy 14's ElementwiseKernel writes it (its headers, CArray, CIndexer, the
    parameters as the wrappers pass them), compiled by NVRTC for compute_90 in float32 — so a typo in a
    kernel is found on any machine with CuPy, before a GPU ever sees it."""
    cupy, _carray, _kernel, _scalar, core, compiler = _cupy_codegen()
    kinds = _argument_kinds(monkeypatch)
    options = core.assemble_cupy_compiler_options(("-ftz=true",)) + ("-arch=compute_90",)
    headers = "".join(f"#include <{h}>\n" for h in core._cupy_header_list)
    for name, (in_params, out_params, body) in fused._SOURCES.items():
        kernel = cupy.ElementwiseKernel(in_params, out_params, body, f"nn_fused_{name}")
        out_ndim = 1 if name in ("sgd", "sgd_no_momentum", "adam", "average", "batchnorm_running") else 4
        infos = []
        for param, (is_scalar, ndim) in zip(kernel.params, kinds[name] + [(False, out_ndim)] * len(out_params.split(","))):
            dtype = np.dtype(param.dtype) if param.dtype is not None else np.dtype(np.float32)
            if is_scalar:
                infos.append(_kernel._ArgInfo(3, _scalar.CScalar, dtype, 0, True, True))
            else:
                infos.append(_kernel._ArgInfo(1, cupy.ndarray, dtype, ndim if param.raw else out_ndim,
                                              not param.raw, False))
        infos.append(_kernel._ArgInfo(2, _carray.Indexer, None, out_ndim, True, False))
        code = _kernel._get_elementwise_kernel_code(tuple(infos), _kernel._TypeMap((("T", np.dtype(np.float32)),)),
                                                    kernel.params, kernel.operation, kernel.name, kernel.preamble)
        try:
            compiler._NVRTCProgram(headers + code, name="kern.cu", method="ptx").compile(options)
        except Exception as exc:
            pytest.fail(f"{name} does not compile: {str(exc)[:1500]}")


@pytest.mark.parametrize("make", ["convnet_step", "dcgan_step"])
def test_the_real_training_steps_run_on_the_gpu_code_path_with_every_kernel_on(make, cpu_kernels, monkeypatch):
    """classify's ConvNet step and the DCGAN iteration as the trainers run them (bench/counts.py), on the
    code paths CuPy takes, with the CPU builds of the kernels: every kernel they reach stays on, and the
    first step's losses and metrics equal those of the plain code."""
    from bench import counts
    results = []
    for on in (False, True):
        monkeypatch.setattr(fused, "ENABLED", on)
        monkeypatch.setattr(fused, "_state", {})
        backend.set_backend("numpy")
        monkeypatch.setattr(backend, "name", "cupy")
        masks = np.random.default_rng(0)                # Dropout's masks (CuPy's generator is not here)
        monkeypatch.setattr(backend, "random_uniform", lambda shape, dtype: masks.random(shape, dtype=dtype))
        backend.seed(0)
        step = getattr(counts, make)(batch=16)          # builds the nets and runs one step
        results.append([float(v) for v in np.atleast_1d(_metric_values(step()))])
        monkeypatch.setattr(backend, "name", "numpy")
        if on:
            assert fused.status() and all(fused.status().values()), fused.status()
            assert {"im2col", "col2im", "batchnorm_scale_shift", "batchnorm_input_grad"} <= set(fused.status())
    assert len(results[0]) >= 1 and np.isfinite(results[0]).all()
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4, atol=1e-5)


def _metric_values(out):
    """The numbers a training step returns (a loss, or a dict / tuple of losses and metrics)."""
    if isinstance(out, dict):
        return [float(v) for k, v in sorted(out.items()) if np.ndim(v) == 0 and not isinstance(v, str)]
    if isinstance(out, (tuple, list)):
        return [float(v) for v in out if np.ndim(v) == 0]
    return [float(out)]
