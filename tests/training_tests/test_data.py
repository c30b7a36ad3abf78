"""Data loading on the real JPEG files and on official-format and image trees the tests write."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from training import CIFAR10_CLASSES, DataError, load_cifar10, stratified_split, train_val_split


def test_real_jpeg_train_split(cifar_train):
    assert cifar_train.images.shape == (50000, 3, 32, 32)
    assert cifar_train.images.dtype == torch.uint8
    assert cifar_train.labels.bincount().tolist() == [5000] * 10
    # Real photographs: pixel statistics close to CIFAR-10's published channel means.
    means = cifar_train.images[::10].float().mean((0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor([0.491, 0.482, 0.447]), atol=0.02)


def test_real_jpeg_test_split(data_root):
    test = load_cifar10(data_root, "test", download=False)
    assert test.images.shape == (10000, 3, 32, 32)
    assert test.labels.bincount().tolist() == [1000] * 10


def _write_official(folder, n_per_batch=20, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    all_data, all_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        # The real release was pickled by Python 2 with bytes keys.
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f)
        if name != "test_batch":
            all_data.append(data)
            all_labels += labels
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, f)
    return np.concatenate(all_data), all_labels


def test_official_format(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "cache"))
    data, labels = _write_official(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        train = load_cifar10(root, "train", download=False)
        assert train.images.shape == (100, 3, 32, 32)
        assert torch.equal(train.images, torch.from_numpy(data.reshape(-1, 3, 32, 32)))
        assert train.labels.tolist() == labels
    assert len(load_cifar10(tmp_path, "test", download=False)) == 20
    assert list((tmp_path / "cache").glob("cifar10-train-*.pt")), "decoded tensors are cached"


def test_official_format_str_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cifar-10-batches-py"
    _write_official(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((3, 3072), np.uint8), "labels": [1, 2, 3]}, f)
    test = load_cifar10(tmp_path, "test", download=False)
    assert test.labels.tolist() == [1, 2, 3]


def _png(color, size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_tree(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_image_tree_folder_and_zip(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "cache"))
    files = {
        "train/cat/1.png": _png((10, 20, 30)),
        "train/airplane/1.png": _png((1, 2, 3)),
        "train/truck/9.png": _png((200, 100, 0)),
    }
    _write_tree(tmp_path / "tree", files)
    with zipfile.ZipFile(tmp_path / "train.zip", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    for root in (tmp_path / "tree", tmp_path):
        data = load_cifar10(root, "train", download=False)
        # Class order is CIFAR-10's label order, not folder order.
        assert sorted(data.labels.tolist()) == [0, 3, 9]
        cat = data.images[data.labels == 3][0]
        assert cat[:, 0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("given_by", ["argument", "environment"])
def test_a_named_data_folder_is_never_written_into(tmp_path, monkeypatch, given_by):
    """The cache goes to ~/.cache/cifar-search for a folder the user named; only the default
    ./data (ours: it is downloaded into) keeps its cache beside the data."""
    monkeypatch.delenv("CIFAR10_CACHE", raising=False)
    monkeypatch.delenv("CIFAR10_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    files = {"train/cat/1.png": _png((10, 20, 30)), "train/dog/2.png": _png((1, 2, 3))}
    for folder in (tmp_path / "named", tmp_path / "data"):
        _write_tree(folder, files)
    before = sorted((tmp_path / "named").rglob("*"))
    if given_by == "environment":
        monkeypatch.setenv("CIFAR10_DATA", str(tmp_path / "named"))
    assert len(load_cifar10(tmp_path / "named" if given_by == "argument" else None)) == 2
    assert sorted((tmp_path / "named").rglob("*")) == before
    assert list((tmp_path / "home" / ".cache" / "cifar-search").glob("cifar10-train-*.pt"))
    monkeypatch.delenv("CIFAR10_DATA", raising=False)
    load_cifar10(None, "train")  # the default ./data
    assert list((tmp_path / "data" / ".cache").glob("cifar10-train-*.pt"))


@pytest.mark.parametrize(
    "files, message",
    [
        ({"train/kitten/1.png": _png((0, 0, 0))}, "unknown class folder 'kitten'"),
        ({"train/cat/1.png": _png((0, 0, 0), (64, 64))}, "is 64x64; expected 32x32"),
        ({"train/cat/1.jpg": b"not an image"}, "cannot decode train/cat/1.jpg"),
        ({"train/1.png": _png((0, 0, 0))}, "expected train/<class>/<image>"),
    ],
)
def test_bad_image_tree(tmp_path, monkeypatch, files, message):
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "cache"))
    _write_tree(tmp_path, files)
    with pytest.raises(DataError, match=message):
        load_cifar10(tmp_path, "train", download=False)


def test_missing_and_empty_data(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere", "train", download=False)
    with pytest.raises(DataError, match="no CIFAR-10 train split found"):
        load_cifar10(tmp_path, "train", download=False)
    (tmp_path / "train.zip").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot open .* as a zip file"):
        load_cifar10(tmp_path, "train", download=False)


# A proxy nobody listens on: a download attempt fails at once, online or not.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
WHAT_IT_MUST_HOLD = (
    "--data (or $CIFAR10_DATA) must name a folder holding the official cifar-10-batches-py/, "
    "or train.zip and test.zip, or train/ and test/ of class folders"
)


@pytest.fixture
def no_network(monkeypatch):
    import urllib.request

    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    # urlopen keeps the first opener it builds, proxies included: drop it before and after, so
    # the dead proxy neither misses this test nor outlives it.
    urllib.request.install_opener(None)
    yield
    urllib.request.install_opener(None)


@pytest.mark.parametrize(
    "kind, why",
    [
        ("missing", "the folder does not exist"),
        ("empty", "no CIFAR-10 train split found there"),
        ("file", "it is a file, not a folder"),
        ("nested", "the folder does not exist"),
    ],
)
@pytest.mark.parametrize("given_by", ["argument", "environment"])
def test_explicit_data_is_read_never_downloaded_into(
    tmp_path, monkeypatch, no_network, kind, why, given_by
):
    """A location the user named holds no data: one error saying what it must hold; no
    download starts and nothing is created (issue 11, item 8)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIFAR10_DATA", raising=False)
    root = {
        "missing": tmp_path / "nowhere",
        "empty": tmp_path / "empty",
        "file": tmp_path / "a_file",
        "nested": tmp_path / "a" / "b",
    }[kind]
    if kind == "empty":
        root.mkdir()
    if kind == "file":
        root.write_text("not data")
    before = sorted(tmp_path.rglob("*"))
    if given_by == "environment":
        monkeypatch.setenv("CIFAR10_DATA", str(root))
        argument = None
    else:
        argument = root
    with pytest.raises(DataError) as raised:
        load_cifar10(argument, "train")
    assert str(raised.value) == f"CIFAR-10 not found in {root}: {why}; {WHAT_IT_MUST_HOLD}"
    assert sorted(tmp_path.rglob("*")) == before, "nothing is created"


def test_only_the_default_location_downloads(tmp_path, monkeypatch, no_network):
    """No --data and no $CIFAR10_DATA: ./data is where the official release is downloaded."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIFAR10_DATA", raising=False)
    with pytest.raises(DataError, match=r"CIFAR-10 not found in data and the download failed"):
        load_cifar10(None, "train")
    assert list(tmp_path.iterdir()) == [], "a failed download leaves nothing behind"
    with pytest.raises(DataError, match="CIFAR-10 not found in data: the folder does not exist"):
        load_cifar10(None, "train", download=False)


def test_corrupt_official_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cifar-10-batches-py"
    _write_official(folder)
    (folder / "data_batch_3").write_bytes(b"\x80\x04truncated")
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(tmp_path, "train", download=False)


class _Payload:
    """What a hostile batch file holds: unpickling it calls os.mkdir (any callable would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("where", ["data_batch_1", "test_batch"])
def test_official_batch_with_a_payload_runs_nothing(tmp_path, monkeypatch, where):
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cifar-10-batches-py"
    _write_official(folder)
    marker = tmp_path / "payload-ran"
    hostile = {b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 20, b"x": _Payload(marker)}
    (folder / where).write_bytes(pickle.dumps(hostile))
    split = "train" if where.startswith("data") else "test"
    with pytest.raises(DataError, match=f"refused .*{where}: it asks to call posix.mkdir"):
        load_cifar10(tmp_path, split, download=False)
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "cache").exists(), "nothing is cached from a refused file"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_official_batches_of_every_pickle_protocol_load(tmp_path, monkeypatch, protocol):
    # Protocol 2 is the real release's (Python 2; Python 3 writes its bytes via _codecs.encode),
    # 5 stores arrays out of band (numpy's _frombuffer).
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cifar-10-batches-py"
    data, labels = _write_official(folder)
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        batch = pickle.loads((folder / name).read_bytes())
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    train = load_cifar10(tmp_path, "train", download=False)
    assert torch.equal(train.images, torch.from_numpy(data.reshape(-1, 3, 32, 32)))
    assert train.labels.tolist() == labels


def test_official_batch_that_is_not_a_dict(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cifar-10-batches-py"
    _write_official(folder)
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="test_batch holds a list; expected a pickled CIFAR-10"):
        load_cifar10(tmp_path, "test", download=False)


def test_split_is_stratified_deterministic_and_disjoint(cifar_train):
    train, val = train_val_split(cifar_train, 5000, seed=3)
    assert len(train) == 45000 and len(val) == 5000
    assert val.labels.bincount().tolist() == [500] * 10
    kept, held = stratified_split(cifar_train.labels, 5000, seed=3)
    assert not set(kept.tolist()) & set(held.tolist())
    assert len(set(kept.tolist()) | set(held.tolist())) == 50000
    again_kept, again_held = stratified_split(cifar_train.labels, 5000, seed=3)
    assert torch.equal(held, again_held)
    _, other = stratified_split(cifar_train.labels, 5000, seed=4)
    assert not torch.equal(held, other)


def test_train_size_subset_never_touches_validation(cifar_train):
    train, val = train_val_split(cifar_train, 1000, seed=0, train_size=2000)
    assert len(train) == 2000 and train.labels.bincount().tolist() == [200] * 10
    # Images are unique in CIFAR-10, so compare pixel content between the two sets.
    train_keys = {hash(img.numpy().tobytes()) for img in train.images}
    val_keys = {hash(img.numpy().tobytes()) for img in val.images}
    assert not train_keys & val_keys
    with pytest.raises(ValueError, match="train_size 60000 is out of range"):
        train_val_split(cifar_train, 1000, seed=0, train_size=60000)
