"""CIFAR-10 loading: the official python release or a folder-per-class tree, cached as tensors.

Every source ends up as the same thing: a `LabeledImages` holding uint8 images (N, 3, 32, 32) and
int64 labels in CIFAR-10's label order. Decoding happens once; later loads read a cached `.pt` file.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import stat
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._io import _can_create_in, atomic_write

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# The short names the reference report prints in its per-class tables.
CIFAR10_SHORT_NAMES: tuple[str, ...] = (
    "plane",
    "car",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DATA_ENV = "CIFAR10_DATA"
CACHE_ENV = "CIFAR10_CACHE"
# Bumped whenever the decoding changes, so stale caches are not reused.
_CACHE_FORMAT = 1


class DataError(ValueError):
    """The data at a path is missing or not what was expected; the message names both."""


@dataclass(frozen=True)
class LabeledImages:
    """A set of images: `images` uint8 (N, 3, 32, 32), `labels` int64 (N,) indexing `classes`."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...] = CIFAR10_CLASSES
    source: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> LabeledImages:
        """The images at `indices`, same classes and source."""
        return LabeledImages(self.images[indices], self.labels[indices], self.classes, self.source)

    def to(self, device: torch.device | str) -> LabeledImages:
        """The same images moved to `device`."""
        return LabeledImages(
            self.images.to(device), self.labels.to(device), self.classes, self.source
        )

    def fingerprint(self) -> str:
        """A short hash of the images and labels: equal exactly when two sets hold the same
        images with the same labels in the same order (a study's split, a fold model's data)."""
        digest = hashlib.sha256(self.labels.cpu().numpy().tobytes())
        digest.update(self.images.cpu().numpy().tobytes())
        return digest.hexdigest()[:16]


def default_data_root() -> Path:
    """`$CIFAR10_DATA` when set, else `./data` (where torchvision downloads to)."""
    return Path(os.environ.get(DATA_ENV, "data"))


# What a data folder must hold, for the errors that say it was not found.
_EXPECTED = (
    f"--data (or ${DATA_ENV}) must name a folder holding the official cifar-10-batches-py/, "
    "or train.zip and test.zip, or train/ and test/ of class folders"
)


def load_cifar10(
    root: str | Path | None = None, split: str = "train", *, download: bool = True
) -> LabeledImages:
    """Load one split of CIFAR-10 from `root`, decoding and caching it on first use.

    `root` may hold `train.zip`/`test.zip`, `train/`/`test/` folders of class folders,
    `cifar-10-batches-py/`, or be `cifar-10-batches-py` itself. A `root` given here or by
    `$CIFAR10_DATA` is only read: when it holds none of these, the error says what it must hold.
    Only the default location, `./data`, is downloaded into (by torchvision, md5-checked), and
    only when `download` is true. A command that may still refuse its input after reading the
    data uses `locate_cifar10` and writes the cache once the input is accepted.
    """
    files = locate_cifar10(root, split, download=download)
    data = files.read()
    files.write_cache(data)
    return data


@dataclass(frozen=True)
class CifarFiles:
    """Where one split of CIFAR-10 is read from, and where its decoded cache goes."""

    source: Path
    split: str
    cache: Path

    def read(self) -> LabeledImages:
        """The split: from the cache when it holds it, else decoded from the source (nothing
        is written)."""
        if self.cache.exists():
            try:
                cached = torch.load(self.cache, weights_only=True)
                return LabeledImages(
                    cached["images"], cached["labels"], CIFAR10_CLASSES, str(self.source)
                )
            except Exception:  # a truncated or foreign cache file is rebuilt, never trusted
                pass
        if self.source.name == "cifar-10-batches-py":
            images, labels = _read_official(self.source, self.split)
        else:
            images, labels = _read_image_tree(self.source, self.split)
        return LabeledImages(images, labels, CIFAR10_CLASSES, str(self.source))

    def write_cache(self, data: LabeledImages) -> None:
        """Cache `data` (what `read` returned) for the next run, unless it is cached already."""
        if not self.cache.exists():
            _write_cache(self.cache, data.images, data.labels)


def locate_cifar10(
    root: str | Path | None = None, split: str = "train", *, download: bool = True
) -> CifarFiles:
    """The files of one split (see `load_cifar10`), downloading them into the default location
    when absent there; DataError when `root` holds no such split."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    explicit = root is not None or bool(os.environ.get(DATA_ENV))
    root = Path(root) if root is not None else default_data_root()
    source = _find_source(root, split)
    if source is None:
        if explicit or not download:
            raise DataError(_not_found(root, split))
        source = _download(root)
    return CifarFiles(source, split, _cache_path(source, split, beside=not explicit))


def _find_source(root: Path, split: str) -> Path | None:
    """The file or folder to read `split` from (an official-release folder, a zip or a tree),
    or None when `root` holds none of them."""
    if root.is_file() and root.suffix == ".zip":
        return root
    if root.is_dir():
        if (root / "data_batch_1").exists() or (root / "test_batch").exists():
            return root
        if (root / "cifar-10-batches-py").is_dir():
            return root / "cifar-10-batches-py"
        if (root / f"{split}.zip").is_file():
            return root / f"{split}.zip"
        if (root / split).is_dir():
            return root / split
    return None


def _not_found(root: Path, split: str) -> str:
    """Why `root` holds no `split` split, and what it must hold."""
    if not root.exists():
        why = "the folder does not exist"
    elif not root.is_dir():
        why = "it is a file, not a folder"
    else:
        why = f"no CIFAR-10 {split} split found there"
    return f"CIFAR-10 not found in {root}: {why}; {_EXPECTED}"


def _download(root: Path) -> Path:
    """Fetch the official release into the default location with torchvision's md5-checked
    downloader."""
    from torchvision.datasets.utils import download_and_extract_archive

    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    created = not root.exists()
    try:
        download_and_extract_archive(
            url,
            str(root),
            filename="cifar-10-python.tar.gz",
            md5="c58f30108f718f92721af3b95e74349a",
        )
    except Exception as exc:
        if created:  # a failed download leaves nothing behind: no folder, no partial archive
            shutil.rmtree(root, ignore_errors=True)
        raise DataError(
            f"CIFAR-10 not found in {root} and the download failed ({type(exc).__name__}); "
            f"pass --data PATH or set ${DATA_ENV} to a folder holding the data"
        ) from None
    return root / "cifar-10-batches-py"


# The only globals a CIFAR-10 batch needs: numpy's array reconstruction (its module moved in
# numpy 2, and protocol 5 uses _frombuffer), and _codecs.encode, which Python 3 writes for bytes
# under protocol 2. Anything else (os.system, builtins.open, ...) is what a payload would call.
_BATCH_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


class UnsafeBatchError(pickle.UnpicklingError):
    """A pickled batch names a global that CIFAR-10's batches never hold."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what CIFAR-10's python batches hold (dicts, lists, bytes, str, numbers, numpy
    arrays) and refuses every other global, so a file cannot run code when it is read."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _BATCH_GLOBALS:
            raise UnsafeBatchError(f"{module}.{name}")
        return super().find_class(module, name)


def _load_batch(path: Path) -> dict[str, Any]:
    """One official batch file as a dict with str keys; DataError when it is anything else."""
    try:
        with open(path, "rb") as f:
            # Pickled by Python 2: keys come back as bytes with encoding="bytes".
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except UnsafeBatchError as exc:
        raise DataError(
            f"refused {path}: it asks to call {exc} when read, which a CIFAR-10 batch never "
            "does; expected the official CIFAR-10 python batches (dicts of arrays and lists)"
        ) from None
    except Exception as exc:
        raise DataError(
            f"cannot read {path} ({type(exc).__name__}); expected a pickled CIFAR-10 batch "
            "with 'data' and 'labels'"
        ) from None
    if not isinstance(batch, dict):
        raise DataError(
            f"{path} holds a {type(batch).__name__}; expected a pickled CIFAR-10 batch (a dict "
            "with 'data' and 'labels')"
        )
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _read_official(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse the pickled batches of the official python release."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(f"missing file {path}; expected the official CIFAR-10 python batches")
        batch = _load_batch(path)
        try:
            data = np.asarray(batch["data"], dtype=np.uint8)
            batch_labels = np.asarray(batch["labels"], dtype=np.int64)
        except Exception as exc:
            raise DataError(
                f"cannot read {path} ({type(exc).__name__}); expected a pickled CIFAR-10 batch "
                "with 'data' and 'labels'"
            ) from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch_labels):
            raise DataError(
                f"{path} holds data of shape {data.shape}; expected (N, 3072) 32x32 RGB rows"
            )
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.from_numpy(batch_labels.copy()))
    label_tensor = torch.cat(labels)
    if label_tensor.min() < 0 or label_tensor.max() >= len(CIFAR10_CLASSES):
        raise DataError(f"labels in {folder} fall outside 0..9")
    return torch.cat(images), label_tensor


def _read_image_tree(source: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a folder-per-class tree (a folder or a zip of `<split>/<class>/<image>`)."""
    members = list(_tree_members(source, split))
    if not members:
        raise DataError(
            f"no images found in {source}; expected {split}/<class>/*.jpg|png with CIFAR-10 "
            "class folders"
        )
    folders = sorted({cls for cls, _ in members})
    unknown = [c for c in folders if c not in CIFAR10_CLASSES]
    if unknown:
        raise DataError(
            f"unknown class folder {unknown[0]!r} in {source}; expected CIFAR-10 class names: "
            + ", ".join(CIFAR10_CLASSES)
        )
    # Sorted names make the image order, and so every split and subset, identical across runs.
    members.sort()
    labels = torch.tensor([CIFAR10_CLASSES.index(cls) for cls, _ in members], dtype=torch.int64)

    def decode(item: tuple[str, str]) -> np.ndarray:
        return _decode_image(source, item[1], read(item[1]))

    if source.suffix == ".zip":
        try:
            archive = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"cannot open {source} as a zip file ({exc})") from None

        def read(name: str) -> bytes:
            try:
                return archive.read(name)
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise DataError(f"cannot read {name} in {source} ({exc})") from None
    else:

        def read(name: str) -> bytes:
            return (source.parent / name).read_bytes()

    # PIL releases the GIL while decoding, so a few threads help on a multi-core machine.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(decode, members, chunksize=256))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, labels


def _tree_members(source: Path, split: str) -> Iterator[tuple[str, str]]:
    """(class folder, member path) for each image under `<split>/<class>/`."""
    if source.suffix == ".zip":
        try:
            with zipfile.ZipFile(source) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"cannot open {source} as a zip file ({exc})") from None
    else:
        names = [str(p.relative_to(source.parent)) for p in source.rglob("*") if p.is_file()]
    for name in names:
        parts = name.split("/")
        if not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        if len(parts) != 3 or parts[0] != split:
            raise DataError(
                f"unexpected image path {name!r} in {source}; expected {split}/<class>/<image>"
            )
        yield parts[1], name


def _decode_image(source: Path, name: str, data: bytes) -> np.ndarray:
    """One image as an (H, W, 3) uint8 array, checked to be 32x32."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image.convert("RGB"))
    except Exception as exc:
        raise DataError(
            f"cannot decode {name} in {source} ({type(exc).__name__}); expected a JPEG or PNG image"
        ) from None
    if array.shape != (32, 32, 3):
        raise DataError(
            f"image {name} in {source} is {array.shape[1]}x{array.shape[0]}; expected 32x32"
        )
    return array


def _cache_path(source: Path, split: str, *, beside: bool) -> Path:
    """Under `$CIFAR10_CACHE` when set; else, when `beside` (the default ./data, which is ours)
    and writable, beside the source; else under ~/.cache/cifar-search. A folder the user named
    is only read, never written into."""
    stats = [source.stat()] if source.is_file() else [p.stat() for p in sorted(source.iterdir())]
    key = hashlib.sha1(
        f"{_CACHE_FORMAT}|{source.resolve()}|{split}|"
        f"{[(s.st_size, s.st_mtime_ns) for s in stats]}".encode()
    ).hexdigest()[:16]
    name = f"cifar10-{split}-{key}.pt"
    folder = source.parent
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / name
    # Mode bits as well as a real probe file: root may write anywhere, but a folder without
    # write bits (a shared, read-only data set) is not ours to write into.
    if beside and folder.stat().st_mode & stat.S_IWUSR and _can_create_in(folder):
        return folder / ".cache" / name
    return Path.home() / ".cache" / "cifar-search" / name


def _write_cache(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write atomically, so a killed run never leaves a truncated cache behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save({"images": images, "labels": labels}, tmp))
    except (OSError, RuntimeError):  # torch.save reports some write errors as RuntimeError
        pass  # a read-only machine still trains, it just decodes again next time


def stratified_split(
    labels: torch.Tensor, holdout: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held out): `holdout` images drawn per class in proportion, deterministic."""
    n = int(labels.shape[0])
    if not 0 <= holdout < n:
        raise ValueError(f"cannot hold out {holdout} of {n} images; expected 0 <= size < {n}")
    generator = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(labels, return_counts=True)
    # Largest-remainder rounding makes the per-class shares add up to exactly `holdout`.
    exact = counts.double() * holdout / n
    take = exact.floor().long()
    remainder = holdout - int(take.sum())
    if remainder:
        order = torch.argsort(exact - take, descending=True, stable=True)
        take[order[:remainder]] += 1
    held = []
    for cls, k in zip(classes.tolist(), take.tolist(), strict=True):
        members = torch.nonzero(labels == cls).flatten()
        held.append(members[torch.randperm(len(members), generator=generator)[:k]])
    held_out = torch.sort(torch.cat(held)).values
    mask = torch.ones(n, dtype=torch.bool)
    mask[held_out] = False
    return torch.nonzero(mask).flatten(), held_out


def train_val_split(
    data: LabeledImages, val_size: int = 5000, seed: int = 0, train_size: int | None = None
) -> tuple[LabeledImages, LabeledImages]:
    """Carve a stratified validation set of `val_size` from the training split.

    `train_size`, when given, then draws a stratified subset of that many training images from
    what is left (for quick runs). The same seed always gives the same split.
    """
    train_idx, val_idx = stratified_split(data.labels, val_size, seed)
    if train_size is not None:
        if not 0 < train_size <= len(train_idx):
            raise ValueError(
                f"train_size {train_size} is out of range; expected 1..{len(train_idx)} "
                f"(the training split less {val_size} validation images)"
            )
        if train_size < len(train_idx):
            rest, _ = stratified_split(data.labels[train_idx], len(train_idx) - train_size, seed)
            train_idx = train_idx[rest]
    return data.subset(train_idx), data.subset(val_idx)
