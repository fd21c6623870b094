"""python -m bench — how fast is `nn`?

Prints per-layer forward/backward times and the training throughput (images/s) of the reference
ConvNet (batch 128) and of one DCGAN-shaped G+D iteration (batch 64), on each backend asked for.
With --vs-torch (where PyTorch is installed) the same nets run in PyTorch, interleaved with ours
in one run so machine noise hits both, and the ratio is printed.
"""
import argparse
import sys
import time

import numpy as np

from nn import Sequential, backend, losses, optim, parallel
from common.cli import ArgumentParser, check_backend_list, run_cli, tf32_setting, whole
from common.files import atomic_write_json, check_output_path
from bench import counts, e2e, nets, threads


def _synchronize_all():
    backend.synchronize()
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        sys.modules["torch"].cuda.synchronize()


TORCH_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"   # the CPU build
CLOCK = time.perf_counter     # --cpu-time switches to time.process_time


def _timeit(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    _synchronize_all()
    times = []
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        _synchronize_all()
        times.append(CLOCK() - t0)
    return float(np.median(times))


# --- our steps -------------------------------------------------------------------------------

def convnet_step_fn(batch, method="auto"):
    backend.seed(0)
    model = nets.reference_convnet(method)
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    y = backend.asarray(rng.integers(0, 10, batch))
    loss, opt = losses.SoftmaxCrossEntropy(), optim.SGD(model, lr=0.01, momentum=0.9)

    def step():
        loss.forward(model.forward(x), y)
        model.backward(loss.backward(), input_grad=False)   # the images need no gradient
        opt.step()
    return step, model, x


def dcgan_step_fn(batch, method="auto"):
    """One iteration: D on a real and a generated batch (paper's loss), then G through D."""
    xp = backend.xp
    backend.seed(0)
    G, D = nets.dcgan_generator(method), nets.dcgan_discriminator(method)
    rng = np.random.default_rng(0)
    real = backend.asarray(rng.uniform(-1, 1, (batch, 3, 32, 32)).astype(np.float32))
    z = backend.asarray(rng.standard_normal((batch, 100)).astype(np.float32))
    ones, zeros = xp.ones((batch, 1), np.float32), xp.zeros((batch, 1), np.float32)
    d_loss, g_loss = losses.PaperDiscriminatorLoss(), losses.PaperGeneratorLoss()
    opt_d, opt_g = optim.Adam(D, 2e-4, (0.5, 0.999)), optim.Adam(G, 2e-4, (0.5, 0.999))

    def step():
        fake = G.forward(z)
        d_loss.forward(D.forward(real), zeros)          # X1 = 0: real
        D.backward(d_loss.backward(), input_grad=False)  # (PyTorch: no gradient for the images either)
        grads = {k: g.copy() for k, _, g in D.named_parameters()}
        d_loss.forward(D.forward(fake), ones)           # X1 = 1: synthetic
        D.backward(d_loss.backward(), input_grad=False)
        for (k, _, g) in D.named_parameters():
            g += grads[k]
        opt_d.step()
        g_loss.forward(D.forward(fake))                 # G = 1 - D
        G.backward(D.backward(g_loss.backward()))
        opt_g.step()
    return step


def layer_times(model, x, repeats):
    """Forward and backward time of each layer of `model` for input x (training mode), each run as the
    train step runs it: as a one-layer Sequential (on NumPy: in chunks of the batch, on nn's threads; the
    times include joining the chunks' outputs, a copy the whole step makes only once)."""
    rows = []
    for layer in model.layers:
        one = Sequential(layer)
        y = one.forward(x)
        dy = backend.xp.ones_like(y)
        f = _timeit(lambda: one.forward(x), repeats)
        one.forward(x)
        b = _timeit(lambda: one.backward(dy), repeats)
        rows.append((repr(layer), tuple(y.shape), f * 1e3, b * 1e3))
        x = y
    return rows


# --- torch steps -----------------------------------------------------------------------------

def torch_convnet_step_fn(batch, device="cpu"):
    import torch
    torch.manual_seed(0)
    model = nets.torch_reference_convnet().to(device)
    x, y = torch.randn(batch, 3, 32, 32, device=device), torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        lossf(model(x), y).backward()
        opt.step()
    return step


def torch_dcgan_step_fn(batch, device="cpu"):
    import torch
    torch.manual_seed(0)
    G, D = (m.to(device) for m in nets.torch_dcgan())
    real, z = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1, torch.randn(batch, 100, device=device)
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))

    def step():
        fake = G(z)
        opt_d.zero_grad(set_to_none=True)
        (D(real).mean() + (1 - D(fake.detach())).mean()).backward()     # |X1 - X| with X1 = 0, 1
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        D(fake).mean().backward()                                      # G = 1 - D = mean(X)
        opt_g.step()
    return step


def torch_available():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


# --- main --------------------------------------------------------------------------------------

def compare(name, ours, theirs, batch, repeats, rounds):
    """Time our step and PyTorch's alternately, `rounds` times; report the median images/s of each."""
    t_ours, t_torch = [], []
    for _ in range(rounds):
        t_ours.append(_timeit(ours, repeats))
        if theirs is not None:
            t_torch.append(_timeit(theirs, repeats))
    ours_ips = batch / float(np.median(t_ours))
    row = {"net": name, "batch": batch, "nn_images_per_s": round(ours_ips, 1), "nn_ms_per_step": round(1e3 * batch / ours_ips, 1)}
    if t_torch:
        torch_ips = batch / float(np.median(t_torch))
        row.update(torch_images_per_s=round(torch_ips, 1), ratio=round(ours_ips / torch_ips, 3))
    return row


def set_torch_tf32(torch, enabled):
    """PyTorch's CUDA matrix products and cuDNN convolutions in TF32 or strict FP32, to match nn
    (PyTorch's own default lets cuDNN convolutions use TF32)."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def torch_precision(device):
    """"tf32" where PyTorch on `device` may use TF32 for float32 products, else "fp32"."""
    import torch
    allowed = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    return "tf32" if device == "cuda" and allowed else "fp32"


def result_line(net, row):
    """One benchmark line: images/s of nn (and PyTorch), each with its precision (fp32 / tf32)."""
    extra = (f"   PyTorch {row['torch_images_per_s']:8.1f} images/s [{row['torch_precision']}]   ratio {row['ratio']:.2f}x"
             if "ratio" in row else "")
    return (f"{net:<30} nn {row['nn_images_per_s']:8.1f} images/s ({row['nn_ms_per_step']} ms/step) "
            f"[{row['precision']}]{extra}")


def main(argv=None):
    p = ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default=None, help="numpy, cupy, or numpy,cupy (default: $NN_BACKEND or numpy)")
    p.add_argument("--vs-torch", action="store_true",
                   help="also time the same nets in PyTorch and print the ratio (CPU PyTorch beside the numpy "
                        "backend, CUDA PyTorch beside the cupy backend)")
    p.add_argument("--repeats", type=whole(1), default=5, help="timed steps per measurement (median taken)")
    p.add_argument("--rounds", type=whole(1), default=3, help="alternating rounds of ours vs PyTorch")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    p.add_argument("--conv-method", default="auto", choices=["auto", "im2col", "winograd"],
                   help="Conv2D algorithm for our nets (default auto: Winograd where it pays on NumPy)")
    p.add_argument("--torch-threads", type=whole(1),
                   help="PyTorch's CPU threads (default: as many as nn uses, see --threads / NN_THREADS)")
    p.add_argument("--threads", metavar="LIST",
                   help="a thread sweep instead: e.g. 1,2 or all (1, 2, 4, ... every core); nn and PyTorch each on "
                        "that many threads, images/s and the speed-up over one thread (numpy backend)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time with this process's CPU time instead of the wall clock: a fair single-core "
                        "comparison on a busy machine when run as NN_THREADS=1 python -m bench "
                        "--vs-torch --torch-threads 1 --cpu-time")
    p.add_argument("--tf32", action="store_true",
                   help="TF32 matrix products on the GPU, for nn and PyTorch alike (default: strict FP32 on both, "
                        "or $NN_TF32=1); every result line states the precision")
    p.add_argument("--count", action="store_true",
                   help="instead, count per step the device->host reads (and, on CuPy, the kernel launches where "
                        "measurable) of one ConvNet train step and one DCGAN iteration (bench/counts.py)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--seed", type=whole(0), default=0, help="(benchmarks use fixed seeds; accepted for uniformity)")
    p.add_argument("--e2e", action="store_true",
                   help="instead, time each stage of run_all.py (smoke-sized) on the --backend(s) and write a table "
                        "and a bar chart (--tf32, --threads N, --json and --seed are passed on); more options: "
                        "python -m bench.e2e --help")
    args = p.parse_args(argv)
    names, _ = check_backend_list(argparse.Namespace(backend=args.backend, tf32=args.tf32))
    args.backend = ",".join(names)
    tf32 = tf32_setting(args.tf32)
    if args.e2e:                         # bench.e2e checks the rest (--threads: one count there)
        return e2e.main(["--backend", args.backend, "--seed", str(args.seed)]
                        + (["--json", args.json] if args.json else []) + (["--tf32"] if args.tf32 else [])
                        + (["--threads", args.threads] if args.threads is not None else []))
    sweep = threads.parse_thread_list(args.threads) if args.threads is not None else None
    if args.json:
        check_output_path(args.json, "file", "--json")
    backend.reuse_freed_memory()         # the allocator tweak the applications opt into
    backend.set_tf32(tf32)               # before CuPy's first matrix product
    for name in names:                   # a missing CuPy or GPU is found before any timing
        backend.set_backend(name)
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    if torch_available():
        import torch
        torch.set_num_threads(args.torch_threads or parallel.get_threads())
        set_torch_tf32(torch, tf32)
    if args.count:
        return counts.main(names, args.json)
    if sweep is not None:
        return threads_main(args, sweep)
    results = []
    for name in args.backend.split(","):
        backend.set_backend(name)
        print(f"== backend: {name}")
        conv_step, model, x = convnet_step_fn(128, args.conv_method)
        if not args.no_layers:
            print(f"{'layer (reference ConvNet, batch 128)':<52}{'output':<22}{'fwd ms':>8}{'bwd ms':>8}")
            for r, shape, f, b in layer_times(model, x, args.repeats):
                print(f"{r:<52}{str(shape):<22}{f:>8.2f}{b:>8.2f}")
        use_torch = args.vs_torch
        if args.vs_torch and not torch_available():
            print(f"PyTorch is not installed: {TORCH_INSTALL} to compare")
            use_torch = False
        device = "cpu"
        if use_torch:
            import torch
            device = "cuda" if name == "cupy" else "cpu"
            if device == "cuda" and not torch.cuda.is_available():
                print("PyTorch has no CUDA here: no GPU comparison")
                use_torch = False
            else:
                print(f"PyTorch {torch.__version__} on {device}" + (f", {torch.get_num_threads()} threads" if device == "cpu" else "")
                      + (f"; nn on {parallel.get_threads()} threads" if name == "numpy" else ""))
        for net, ours, theirs, batch in [
                ("reference ConvNet train step", conv_step, torch_convnet_step_fn(128, device) if use_torch else None, 128),
                ("DCGAN G+D iteration", dcgan_step_fn(64, args.conv_method), torch_dcgan_step_fn(64, device) if use_torch else None, 64)]:
            row = compare(net, ours, theirs, batch, args.repeats, args.rounds if use_torch else 1)
            row["backend"], row["precision"] = name, backend.precision()
            if use_torch:
                row["torch_device"], row["torch_precision"] = device, torch_precision(device)
            results.append(row)
            print(result_line(net, row))
    if args.json:
        atomic_write_json(args.json, results)
    return 0


def threads_main(args, thread_counts):
    """--threads LIST: both nets on 1, 2, ... threads, nn beside PyTorch (see bench/threads.py)."""
    backend.set_backend("numpy")
    use_torch = torch_available()
    print(f"== thread sweep {thread_counts} (numpy backend; this process may use {parallel.available_cores()} cores)"
          + ("" if use_torch else f"; PyTorch is not installed ({TORCH_INSTALL}), nn only"))
    nets_ = [("reference ConvNet train step", lambda: convnet_step_fn(128, args.conv_method)[0],
              torch_convnet_step_fn if use_torch else None, 128),
             ("DCGAN G+D iteration", lambda: dcgan_step_fn(64, args.conv_method),
              torch_dcgan_step_fn if use_torch else None, 64)]
    nets_ = [(n, ours, (lambda f=theirs, b=b: f(b)) if theirs else None, b) for n, ours, theirs, b in nets_]
    rows = threads.sweep(thread_counts, nets_, args.repeats, args.rounds, compare,
                         torch_threads=not args.torch_threads)
    if args.json:
        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    run_cli(main)
