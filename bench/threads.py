"""The thread sweep of `python -m bench --threads 1,2,...`: nn and PyTorch on the same number of threads.

For each thread count t, `nn` runs on t threads (nn.parallel.set_threads) and PyTorch on t threads
(torch.set_num_threads), their steps timed alternately in the same process (wall clock), so machine
noise hits both. Printed per net: images/s of each, the ratio nn / PyTorch, and each one's speed-up
over its own 1-thread figure (when 1 is in the sweep).
"""
from nn import parallel


def parse_thread_list(text):
    """'1,2,4' -> [1, 2, 4]; 'all' -> 1, 2, 4, ... up to every core we may use (and that count itself)."""
    text = str(text).strip()
    if text == "all":
        n, counts = parallel.available_cores(), [1]
        while counts[-1] * 2 < n:
            counts.append(counts[-1] * 2)
        return sorted(set(counts + [n]))
    counts = [parallel.parse_threads(part, source="--threads") for part in text.split(",") if part.strip()]
    if not counts:
        raise ValueError(f"--threads={text!r} names no thread count; give e.g. 1,2 or all")
    return counts


def sweep(counts, nets, repeats, rounds, compare, torch_threads=True):
    """Time every (net, thread count); `nets` is [(name, make_ours, make_theirs or None, batch)] where the
    makers build a fresh step function. Returns the rows (dicts), also printed as a table."""
    rows = []
    saved = parallel.threads_setting()
    try:
        for name, make_ours, make_theirs, batch in nets:
            base = {}
            print(f"{name} (batch {batch}, wall clock)")
            print(f"  {'threads':>7}{'nn img/s':>11}{'speed-up':>10}{'PyTorch img/s':>15}{'speed-up':>10}{'ratio':>8}")
            for t in counts:
                parallel.set_threads(t)
                if make_theirs is not None and torch_threads:
                    import torch
                    torch.set_num_threads(t)
                row = compare(name, make_ours(), make_theirs() if make_theirs else None, batch, repeats, rounds)
                row["threads"] = t
                if t == 1:
                    base = {"nn": row["nn_images_per_s"], "torch": row.get("torch_images_per_s")}
                if base:
                    row["nn_speedup"] = round(row["nn_images_per_s"] / base["nn"], 2)
                    if base.get("torch") and "torch_images_per_s" in row:
                        row["torch_speedup"] = round(row["torch_images_per_s"] / base["torch"], 2)
                rows.append(row)

                def fmt(key, width, spec):
                    return f"{row[key]:>{width}{spec}}" if key in row else f"{'-':>{width}}"
                print(f"  {t:>7}{fmt('nn_images_per_s', 11, '.1f')}{fmt('nn_speedup', 9, '.2f')}x"
                      f"{fmt('torch_images_per_s', 15, '.1f')}{fmt('torch_speedup', 9, '.2f')}x"
                      f"{fmt('ratio', 7, '.2f')}x")
    finally:
        parallel.set_threads(saved)
    return rows
