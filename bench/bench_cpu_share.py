"""How a search should share a CPU's cores: K trials at once with T torch threads each.

`search.run` on a CPU runs `cores / --cpus-per-trial` trials at once, each with that many torch
threads. This trains the same run in each arrangement "KxT" (K processes at once, T threads
each) and reports the training images per second of all K together, from each process's last
epoch, rounds interleaved so a busy machine slows every arrangement alike.

    .venv/bin/python bench/bench_cpu_share.py --arrangements 2x1 1x2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import machine_name  # noqa: E402
from _split import DEFAULT_DATA  # noqa: E402


def arrangement(text: str) -> tuple[int, int]:
    """'2x1' -> (2 processes, 1 thread each)."""
    processes, sep, threads = text.partition("x")
    if sep and processes.isdigit() and threads.isdigit() and int(processes) and int(threads):
        return int(processes), int(threads)
    raise argparse.ArgumentTypeError(f"invalid arrangement {text!r}; expected KxT, e.g. 2x1")


def worker(args: argparse.Namespace) -> None:
    """One process of an arrangement: train, print the last epoch's images/s as JSON."""
    import torch

    from training import TrainConfig, load_cifar10, train, train_val_split

    torch.set_num_threads(args.threads)
    data = load_cifar10(args.data, "train")
    train_set, _ = train_val_split(data, 5000, 0, args.images)
    config = TrainConfig(
        model="cnn_reg", epochs=args.epochs, batch_size=args.batch_size, precision=args.precision
    )
    last = train(config, train_set, device="cpu").history[-1]
    print(json.dumps({"images_per_second": last.images_per_second}))


def measure(args: argparse.Namespace, processes: int, threads: int) -> list[float]:
    """Start `processes` workers at once; the images/s of each."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--threads",
        str(threads),
        *("--images", str(args.images), "--epochs", str(args.epochs)),
        *("--batch-size", str(args.batch_size), "--precision", args.precision),
        *("--data", str(args.data)),
    ]
    running = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)
    ]
    speeds = []
    for process in running:
        out, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"a worker failed (exit {process.returncode})")
        speeds.append(json.loads(out.strip().splitlines()[-1])["images_per_second"])
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrangements", type=arrangement, nargs="+", default=[(2, 1), (1, 2)])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto", help="TrainConfig.precision")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    totals: dict[tuple[int, int], list[float]] = {a: [] for a in args.arrangements}
    for round_ in range(1, args.rounds + 1):
        for processes, threads in args.arrangements:
            speeds = measure(args, processes, threads)
            totals[(processes, threads)].append(sum(speeds))
            print(
                f"round {round_} {processes}x{threads}: {sum(speeds):.0f} img/s in all "
                f"({', '.join(f'{s:.0f}' for s in speeds)})",
                flush=True,
            )
    first = args.arrangements[0]
    print(f"\n{machine_name()}, cnn_reg, batch {args.batch_size}, precision {args.precision}")
    print(f"| trials at once x threads | images/s in all, per round | vs {first[0]}x{first[1]} |")
    print("|---|---|---|")
    for (processes, threads), runs in totals.items():
        ratio = sum(runs) / sum(totals[first])
        print(f"| {processes}x{threads} | {', '.join(f'{r:.0f}' for r in runs)} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
