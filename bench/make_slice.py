"""Write a stratified slice of the CIFAR-10 training zip (and of the test zip, or a copy of it),
for carrying the data to a GPU host under a size limit: 25,000 training images are about 26 MB.

    python bench/make_slice.py ../shared/data/cifar10-jpeg .gpu/data --train 25000 --test 2000
"""

from __future__ import annotations

import argparse
import shutil
import zipfile
from collections import defaultdict
from pathlib import Path


def write_slice(source: Path, target: Path, count: int) -> int:
    """The first `count` // classes images of each class of zip `source`, into zip `target`."""
    with zipfile.ZipFile(source) as src:
        by_class: dict[str, list[str]] = defaultdict(list)
        for name in sorted(src.namelist()):
            if name.lower().endswith((".jpg", ".jpeg", ".png")):
                by_class[name.split("/")[1]].append(name)
        per_class = count // len(by_class)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
            for names in by_class.values():
                for name in names[:per_class]:
                    dst.writestr(name, src.read(name))
    return per_class * len(by_class)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder holding train.zip and test.zip")
    parser.add_argument("target", type=Path, help="folder to write")
    parser.add_argument("--train", type=int, default=30000, help="training images to keep")
    parser.add_argument(
        "--test", type=int, default=None, help="test images to keep (default: all, copied)"
    )
    parser.add_argument("--no-test", action="store_true", help="leave the test zip out")
    args = parser.parse_args()
    args.target.mkdir(parents=True, exist_ok=True)
    kept = write_slice(args.source / "train.zip", args.target / "train.zip", args.train)
    print(f"wrote {kept} training images to {args.target}")
    if args.no_test:
        return
    if args.test is None:
        shutil.copy(args.source / "test.zip", args.target / "test.zip")
    else:
        kept = write_slice(args.source / "test.zip", args.target / "test.zip", args.test)
        print(f"wrote {kept} test images to {args.target}")


if __name__ == "__main__":
    main()
