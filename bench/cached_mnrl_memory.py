"""Peak memory of one training step: CachedMultipleNegativesRankingLoss vs the plain MultipleNegativesRankingLoss.

MiniLM (all-MiniLM-L6-v2, bundled) with max_seq_length 32, in train mode (dropout on), on
synthetic (anchor, positive) pairs of about 20 words each. Each configuration runs in a fresh
child process, which loads the model and runs one small warm-up step of the same loss (so the
gradient buffers exist and the allocator is warm), then resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``), runs one forward + backward at the measured batch size and reports
the peak RSS (VmHWM) minus the RSS before that step: the memory the step itself needed
(activations, logits, cached embeddings). Where the peak cannot be reset, ``ru_maxrss`` is used
and the baseline is the RSS after the warm-up (the figure is then an upper bound).

RSS counts what the C allocator keeps, not only live tensors. glibc raises its mmap threshold
as large blocks are freed, after which freed activations stay in a fragmenting heap and the RSS
creeps up with the number of mini-batches. The children therefore run with a fixed threshold
(``MALLOC_MMAP_THRESHOLD_=131072``: large tensors are mmapped and returned on free), so the
figures measure the memory the step holds; ``--malloc default`` measures with glibc's defaults
and ``--malloc both`` prints both tables.

    nice python bench/cached_mnrl_memory.py [--cached-sizes 64,256,1024] [--plain-sizes 64,256]
        [--mini-batch-size 32] [--threads 2] [--malloc fixed|default|both]

The plain loss at batch 1024 needs roughly 10 GiB on this model (2048 sequences of activations);
add 1024 to ``--plain-sizes`` to measure it on a machine with room to spare.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

VOCABULARY = """
the a of to and in is was for on with as by at from that this it be are were has had not but or an
market weather music goal password train bread city river mountain coffee window garden teacher
student doctor engine winter summer morning evening quickly slowly bright quiet heavy small large
ancient modern green blue red yellow happy angry tired curious open closed broken new old early late
report story message letter picture song movie game team player price value number question answer
"""


MMAP_THRESHOLD = 131072


def texts(count: int, seed: int, words: int = 20) -> list[str]:
    rng = random.Random(seed)
    words_list = VOCABULARY.split()
    return [" ".join(rng.choice(words_list) for _ in range(words)) for _ in range(count)]


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def child(kind: str, batch_size: int, mini_batch_size: int, threads: int) -> None:
    import torch

    from labelspace.data.batch import TextBatch
    from labelspace.losses.text import MultipleNegativesRankingLoss
    from labelspace.models import LabelspaceModel
    from labelspace.objectives import CachedMultipleNegativesRankingLoss, as_model_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LabelspaceModel.from_pretrained("minilm", max_seq_length=32)
    model.train()
    if kind == "cached":
        loss = CachedMultipleNegativesRankingLoss(mini_batch_size=mini_batch_size)
    else:
        loss = as_model_loss(MultipleNegativesRankingLoss())

    def step(size: int, seed: int) -> float:
        batch = TextBatch("pairs", [texts(size, seed), texts(size, seed + 1)])
        model.zero_grad(set_to_none=False)
        value = loss(model, batch)
        value.backward()
        return float(value.detach())

    step(8, seed=100)  # warm-up: gradient buffers, allocator, lazy initialisation
    baseline = _status("VmRSS")
    exact = _reset_peak()
    started = time.perf_counter()
    value = step(batch_size, seed=0)
    seconds = time.perf_counter() - started
    peak = _status("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "kind": kind,
                "batch": batch_size,
                "baseline_mib": baseline / 2**20,
                "step_mib": (peak - baseline) / 2**20,
                "seconds": seconds,
                "loss": value,
                "exact_peak": exact,
            }
        )
    )


def run(kind: str, batch_size: int, mini_batch_size: int, threads: int, fixed_malloc: bool) -> dict:
    command = [sys.executable, __file__, "--child", kind, str(batch_size), str(mini_batch_size), str(threads)]
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if fixed_malloc:
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        return {"kind": kind, "batch": batch_size, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cached-sizes", default="64,256,1024")
    parser.add_argument("--plain-sizes", default="64,256")
    parser.add_argument("--mini-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--malloc", choices=("fixed", "default", "both"), default="fixed")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "BATCH", "MINI_BATCH", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, batch, mini_batch, threads = args.child
        child(kind, int(batch), int(mini_batch), int(threads))
        return

    configs = [("cached", int(size)) for size in args.cached_sizes.split(",") if size]
    configs += [("plain", int(size)) for size in args.plain_sizes.split(",") if size]
    print(
        "MiniLM-L6 (max_seq_length 32, train mode), pairs of ~20-word texts, "
        "one forward + backward per fresh process.\n"
        "step MiB = peak RSS during the step (VmHWM, reset just before) - RSS after loading + a warm-up step."
    )
    modes = {"fixed": [True], "default": [False], "both": [True, False]}[args.malloc]
    for fixed in modes:
        table(configs, args.mini_batch_size, args.threads, fixed)


def table(configs: list[tuple[str, int]], mini_batch_size: int, threads: int, fixed_malloc: bool) -> None:
    allocator = f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}" if fixed_malloc else "glibc default malloc settings"
    print(f"\nallocator: {allocator}")
    header = f"{'loss':<44} {'batch':>6} {'step MiB':>10} {'base MiB':>9} {'seconds':>8} {'loss value':>10}"
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, int], dict] = {}
    for kind, size in configs:
        result = run(kind, size, mini_batch_size, threads, fixed_malloc)
        results[(kind, size)] = result
        name = (
            f"CachedMultipleNegativesRankingLoss(mbs={mini_batch_size})"
            if kind == "cached"
            else "MultipleNegativesRankingLoss (not cached)"
        )
        if "error" in result:
            print(f"{name:<44} {size:>6} failed: {result['error']}")
            continue
        print(
            f"{name:<44} {size:>6} {result['step_mib']:>10.1f} {result['baseline_mib']:>9.1f} "
            f"{result['seconds']:>8.1f} {result['loss']:>10.4f}" + ("" if result["exact_peak"] else "  (upper bound)")
        )
        sys.stdout.flush()
    for kind in ("cached", "plain"):
        sizes = sorted(size for key, size in results if key == kind and "error" not in results[(key, size)])
        if len(sizes) >= 2:
            ratio = results[(kind, sizes[-1])]["step_mib"] / results[(kind, sizes[0])]["step_mib"]
            print(f"{kind:<6} peak({sizes[-1]}) / peak({sizes[0]}) = {ratio:.2f}")


if __name__ == "__main__":
    main()
