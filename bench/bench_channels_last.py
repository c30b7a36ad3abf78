"""Interleaved A/B of the trainer's memory format on this machine: channels_last (what
`training.train` does on every device) against plain NCHW, in fp32 and bf16 (bf16 needs a CPU
with native bf16 or a GPU).

The NCHW arm patches the trainer's two places that choose the format (`normalize` and
`build_model`) back to contiguous tensors; everything else is the real `training.train`, no
validation. Reported: the last epoch's images/s of each arm, per round, rounds interleaved so a
busy machine slows both alike.

    .venv/bin/python bench/bench_channels_last.py [--images 5000] [--rounds 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    args = parser.parse_args()

    import torch

    import training._trainer as trainer
    from training import TrainConfig, load_cifar10, train, train_val_split

    channels_last = (trainer.normalize, trainer.build_model)

    def nchw_normalize(images: torch.Tensor) -> torch.Tensor:
        return channels_last[0](images).contiguous()

    def nchw_build_model(config: TrainConfig, device: torch.device) -> torch.nn.Module:
        return channels_last[1](config, device).to(memory_format=torch.contiguous_format)

    torch.set_num_threads(args.threads)
    data = load_cifar10(args.data, "train")
    train_set, _ = train_val_split(data, 5000, 0, args.images)
    speeds: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for precision in args.precisions:
            for name, (norm, build) in (
                ("nchw", (nchw_normalize, nchw_build_model)),
                ("channels_last", channels_last),
            ):
                trainer.normalize, trainer.build_model = norm, build
                config = TrainConfig(model="cnn_reg", epochs=args.epochs, precision=precision)
                times = [s.epoch_time for s in train(config, train_set, device=args.device).history]
                speeds.setdefault((precision, name), []).append(len(train_set) / times[-1])
                print(f"{precision} {name}: {len(train_set) / times[-1]:.0f} img/s", flush=True)
    trainer.normalize, trainer.build_model = channels_last
    for precision in args.precisions:
        nchw, last = speeds[(precision, "nchw")], speeds[(precision, "channels_last")]
        print(
            f"{precision}: NCHW {', '.join(f'{s:.0f}' for s in nchw)} img/s, channels_last "
            f"{', '.join(f'{s:.0f}' for s in last)} img/s: {sum(last) / sum(nchw):.2f}x"
        )


if __name__ == "__main__":
    main()
