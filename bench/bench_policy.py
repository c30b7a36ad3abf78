"""Policy search cost and result.

Runs a real policy search (`python -m search.run --space policy`), exports its policy, then trains
`cnn_reg` on a short schedule with the same seed three times: no policy, AutoAugment's `cifar10`
policy, and the exported one, and prints the validation accuracy of each beside the search's
device-minutes. Published anchors for the search cost: AutoAugment about 5,000 GPU-hours, PBA
about 5, Fast AutoAugment 3.5 (Cubuk et al. 2018; Ho et al. 2019; Lim et al. 2019).

    python bench/bench_policy.py --data ../shared/data/cifar10-jpeg --trials 64 --epochs 30
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import machine_name  # noqa: E402  (bench/ is sys.path[0] when run as a script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--trials", type=int, default=64, help="policy-search trials")
    parser.add_argument("--search-epochs", type=int, default=30, help="max epochs per trial")
    parser.add_argument("--search-train-size", type=int, default=4000)
    parser.add_argument("--gpus-per-trial", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=30, help="the short comparison schedule")
    parser.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="training images for the comparison (default: all but validation)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    from training import TrainConfig, load_cifar10, train, train_val_split

    work = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    search = [
        sys.executable,
        "-m",
        "search.run",
        "--space",
        "policy",
        "--data",
        args.data,
        "--trials",
        str(args.trials),
        "--max-epochs",
        str(args.search_epochs),
        "--train-size",
        str(args.search_train_size),
        "--seed",
        str(args.seed),
        "--out",
        str(work),
    ]
    if args.gpus_per_trial is not None:
        search += ["--gpus-per-trial", str(args.gpus_per_trial)]
    start = time.perf_counter()
    subprocess.run(search, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    search_seconds = time.perf_counter() - start
    policy_file = work / "policy.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "search.export_policy",
            "--study",
            "policy",
            "--studies-dir",
            str(work),
            "-o",
            str(policy_file),
        ],
        cwd=REPO,
        check=True,
    )

    data = load_cifar10(args.data, "train")
    train_set, val_set = train_val_split(data, 5000, args.seed, args.train_size)
    base = TrainConfig(
        model="cnn_reg",
        epochs=args.epochs,
        batch_size=128,
        lr=2e-3,
        weight_decay=5e-4,
        schedule="cosine",
        cutout=16,
        seed=args.seed,
    )
    accuracies = {}
    for name, policy in (("none", None), ("cifar10", "cifar10"), ("exported", str(policy_file))):
        result = train(base.replace(policy=policy), train_set, val_set)
        accuracies[name] = result.history[-1].val_accuracy
        print(f"{name:>9}: validation accuracy {100 * accuracies[name]:.2f}%", flush=True)

    import torch

    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    results = {
        "machine": machine_name(),
        "torch": torch.__version__,
        "trials": args.trials,
        "search_seconds": round(search_seconds, 1),
        "search_device_minutes": round(search_seconds / 60 * max(devices, 1), 2),
        "comparison_epochs": args.epochs,
        "val_accuracy": accuracies,
        "policy_file": str(policy_file),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
