"""lhotse Shar: the prepared splits as shards that stream (cuts.N.jsonl.gz + codes.N.tar of numpy arrays, and
recording.N.tar of FLAC audio when asked), for corpora that outgrow one HDF5 file per split or a shared disk.

    SHAR/<split>/cuts.000000.jsonl.gz, codes.000000.tar, [recording.000000.tar], ..., shards.json
    SHAR/text_tokenizer.json (and unique_text_tokens.k2symbols for espeak)

shards.json lists every shard file with its size: opening a folder checks them (one stat a file), so a missing
or truncated shard is one line naming it, not an error deep inside a DataLoader worker."""

from __future__ import annotations

import functools
import json
import logging
import shutil
import tarfile
from pathlib import Path

import lhotse.shar.readers.lazy
from lhotse import CutSet
from lhotse.serialization import decode_json_line, deserialize_item, open_best
from lhotse.shar.readers.tar import TarIterator, iterate_tarfile_pairwise
from lhotse.shar.utils import fill_shar_placeholder

from valle.data.files import open_cuts, write_text
from valle.errors import UserError
from valle.storage import atomic_write_folder

log = logging.getLogger(__name__)

SHARDS_FILE = "shards.json"
TOKENIZER_FILES = ("text_tokenizer.json", "unique_text_tokens.k2symbols")
TAR_BLOCK = 512  # a tar file is whole blocks of this size


def _write_split(folder: Path, manifest: Path, fields: dict, shard_size: int) -> None:
    """The Shar shards of one split's manifest in `folder`, and shards.json listing them with their sizes."""
    paths = open_cuts(manifest).to_shar(folder, fields=fields, shard_size=shard_size, warn_unused_fields=False)
    sizes = {Path(p).name: Path(p).stat().st_size for files in paths.values() for p in files}
    write_text(folder / SHARDS_FILE, json.dumps({"fields": sorted(paths), "files": sizes}, indent=1) + "\n",
               "Shar index")


def export_shar(tokenized: Path, out: Path, shard_size: int, audio: bool, splits=("train", "dev", "test")) -> dict:
    """tokenized/cuts_<split>.jsonl.gz (codes in HDF5) -> out/<split>/ Shar shards of `shard_size` cuts (+ the
    tokenizer files). Returns {split: {"shards": n, "bytes": total}}. Each split folder is written whole
    (`atomic_write_folder`): the old one or the new one, never half of either."""
    fields = {"codes": "numpy", **({"recording": "flac"} if audio else {})}
    written = {}
    for split in splits:
        manifest = tokenized / f"cuts_{split}.jsonl.gz"
        if not manifest.is_file():
            continue
        final = atomic_write_folder(out / split, functools.partial(_write_split, manifest=manifest, fields=fields,
                                                                     shard_size=shard_size),
                                    f"the Shar shards of {split}", "free space (or use a --data-dir on a larger "
                                    "disk) and export again")
        sizes = json.loads((final / SHARDS_FILE).read_text())["files"]
        written[split] = {"shards": sum(name.startswith("cuts.") for name in sizes), "bytes": sum(sizes.values())}
        log.info("shar %s: %d shard(s), %.1f MB in %s", split, written[split]["shards"], sum(sizes.values()) / 1e6,
                 final)
    if not written:
        raise UserError(f"no {tokenized}/cuts_*.jsonl.gz: run the split stage of prepare.sh first")
    for name in TOKENIZER_FILES:
        if (tokenized / name).is_file():
            shutil.copyfile(tokenized / name, out / name)
    return written


def check_shar(folder: Path) -> dict[str, list[Path]]:
    """The shards of a Shar split folder by field ({"cuts": [...], "codes": [...]}), after checking that every
    shard it lists is there, whole: a UserError naming the first missing or truncated one."""
    index = folder / SHARDS_FILE
    if not index.is_file():
        raise UserError(f"{index} not found: {folder} is not a Shar split written by prepare.sh --format shar "
                        "(export it again)")
    files = json.loads(index.read_text())["files"]
    for name, size in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            raise UserError(f"{path}: Shar shard missing; export the Shar folder again (prepare.sh --format shar)")
        if path.stat().st_size != size or (name.endswith(".tar") and size % TAR_BLOCK):
            raise UserError(f"{path}: Shar shard truncated ({path.stat().st_size} of {size} bytes); export the Shar "
                            "folder again (prepare.sh --format shar)")
    fields: dict[str, list[Path]] = {}
    for name in sorted(files):  # cuts.000000.jsonl.gz, codes.000000.tar, ...
        fields.setdefault(name.split(".")[0], []).append(folder / name)
    return fields


class _ShardReader(TarIterator):
    """lhotse's TarIterator, closing the shard file it opens: lhotse hands the file to tarfile, which never
    closes a file it was given, so every shard read left an open file (a ResourceWarning, and a descriptor
    held until garbage collection when training stops mid-shard). Yields (manifest or None, member path)."""

    def __iter__(self):
        with open_best(self.source, mode="rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for (data, data_path), (meta, _) in iterate_tarfile_pairwise(tar):
                if meta is not None:
                    meta = deserialize_item(decode_json_line(meta.decode("utf-8")))
                    fill_shar_placeholder(manifest=meta, data=data, tarpath=data_path)
                yield meta, data_path


lhotse.shar.readers.lazy.TarIterator = _ShardReader  # the name lhotse's lazy Shar reader opens shards with


def shar_cuts(folder: Path, split_for_dataloading: bool = False, shuffle_shards: bool = False, seed: int = 0) -> CutSet:
    """The cuts of a checked Shar split, lazily, with their codes (and audio) read from the shards. With
    `split_for_dataloading` each DDP rank and DataLoader worker reads its own shards (lhotse splits them);
    `shuffle_shards` orders them by `seed`, the same on every rank."""
    return CutSet.from_shar(fields=check_shar(folder), split_for_dataloading=split_for_dataloading,
                            shuffle_shards=shuffle_shards, stateful_shuffle=False, seed=seed)


def shar_manifest_cuts(folder: Path) -> CutSet:
    """The cuts of a Shar split without their fields (only the cut files are read): for duration bins,
    speaker rates and the like."""
    return CutSet.from_files(check_shar(folder)["cuts"])
