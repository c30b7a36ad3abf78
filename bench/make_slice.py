"""Write a stratified slice of the CIFAR-10 training zip (and copy the test zip), for carrying
the data to a GPU host under a size limit: 30,000 training images are about 32 MB.

    python bench/make_slice.py ../shared/data/cifar10-jpeg .gpu/data --train 30000
"""

from __future__ import annotations

import argparse
import shutil
import zipfile
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder holding train.zip and test.zip")
    parser.add_argument("target", type=Path, help="folder to write")
    parser.add_argument("--train", type=int, default=30000, help="training images to keep")
    parser.add_argument("--no-test", action="store_true", help="leave the test zip out")
    args = parser.parse_args()
    args.target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.source / "train.zip") as src:
        by_class: dict[str, list[str]] = defaultdict(list)
        for name in sorted(src.namelist()):
            if name.lower().endswith((".jpg", ".jpeg", ".png")):
                by_class[name.split("/")[1]].append(name)
        per_class = args.train // len(by_class)
        with zipfile.ZipFile(args.target / "train.zip", "w", zipfile.ZIP_STORED) as dst:
            for names in by_class.values():
                for name in names[:per_class]:
                    dst.writestr(name, src.read(name))
    if not args.no_test:
        shutil.copy(args.source / "test.zip", args.target / "test.zip")
    print(f"wrote {per_class * len(by_class)} training images to {args.target}")


if __name__ == "__main__":
    main()
