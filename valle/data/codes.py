"""Audio codes: Encodec 24 kHz codes of every cut, int16 (frames, 8) under the cut id in an HDF5 store that lhotse
reads back (NumpyHdf5Writer layout, DATA/tokenized/codes_<part>.h5). The store is resumable and never half-written:
a rerun encodes only what is missing or changed; a full disk or a kill loses at most one piece of work.

The codes do not depend on how the work was split, by construction: every cut is encoded alone (`encode_cut`: no
batch neighbours) with ENCODE_THREADS torch threads (float results depend on the thread count, and a near tie
between two codebook entries flips a code), whatever the process, shard, rank, node or resume that encodes it.

Sharded (`compute_codes_sharded`): the cuts are dealt to N shards that run in parallel (worker processes, torchrun
ranks, nodes), each with its own store codes_<part>.<k>-of-<N>.h5 and done-marker (.done), so that a killed shard
resumes alone."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import torch
from lhotse import CutSet
from lhotse.array import Array, TemporalArray
from lhotse.features.io import NumpyHdf5Writer, close_cached_file_handles
from tqdm import tqdm

from valle.codec import FRAME_RATE, Codec, code_frames
from valle.config import NUM_QUANTIZERS
from valle.data.files import write_whole
from valle.device import torch_threads
from valle.errors import UserError
from valle.markers import marker_line, read_marker, write_marker
from valle.storage import check_free_space, remove_partials

log = logging.getLogger(__name__)


def _fingerprint(cut) -> str:
    """The audio file a cut's codes were made from, as it was (path, size, modification time)."""
    source = Path(cut.recording.sources[0].source)
    try:
        stat = source.stat()
    except FileNotFoundError:
        raise UserError(f"{source} not found: cut {cut.id} was prepared from it; if the corpus moved, prepare the "
                        "data folder again from stage 0") from None
    return f"{source}:{stat.st_size}:{stat.st_mtime_ns}"


# Codes are stored so that no file is ever half-written (a full disk, a kill): DATA/tokenized/codes_<part>.h5 is
# only ever replaced whole (written to a temporary file, synced, renamed). New codes go to pieces,
# codes_<part>.h5.pieces/N.h5 (each also written whole), at least every PIECE_SECONDS of audio and on Ctrl-C;
# the end of the stage merges the store and the pieces into a new store. A rerun after any interruption finds the
# store and the pieces intact.
PIECE_SECONDS = 600.0  # audio between two pieces: what a SIGKILL or a power cut can cost
H5_BYTES_PER_CUT = 1024  # HDF5 header, name and attributes of one stored array (measured: about 520)
# torch threads of every encoding, whoever runs it: processes (--num-workers, ranks) are the unit of parallelism
# (docs/scale.md has the cost against one process with torch's default threads).
ENCODE_THREADS = 1


def _pieces_dir(h5_path: Path) -> Path:
    return h5_path.with_name(h5_path.name + ".pieces")


def _read_index(path: Path, weights: str) -> dict[str, tuple] | None:
    """{key: (shape, fingerprint)} of a codes file made with `weights`; None when made with other weights."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("codec_weights") != weights:
            return None
        return {key: (f[key].shape, f[key].attrs.get("source")) for key in f.keys()}


def _stored_codes(h5_path: Path, weights: str) -> dict[str, tuple]:
    """key -> (file, shape, fingerprint) of the codes already stored, in the store and its pieces (resume).
    A store that is unreadable or holds codes of other codec weights is moved aside (codes_<part>.old.h5);
    such a piece is removed, and so are the temporary files a killed run left."""
    remove_partials(h5_path.parent, "*.h5")
    remove_partials(_pieces_dir(h5_path))
    found = {}
    if h5_path.is_file():
        try:
            index = _read_index(h5_path, weights)
        except OSError:
            index = None
        if index is None:
            aside = h5_path.with_suffix(".old.h5")
            log.warning("%s is unreadable or made with other --codec-weights: moved to %s, computing its codes again",
                        h5_path, aside)
            shutil.move(h5_path, aside)
        else:
            found.update({key: (h5_path, *value) for key, value in index.items()})
    for piece in sorted(_pieces_dir(h5_path).glob("*.h5"), key=lambda p: int(p.stem)):
        try:
            index = _read_index(piece, weights)
        except OSError:
            index = None
        if index is None:
            log.warning("%s is unreadable or made with other --codec-weights: removed", piece)
            piece.unlink()
            continue
        found.update({key: (piece, *value) for key, value in index.items()})  # a later piece wins
    return found


def _write_whole(path: Path, items, weights: str) -> None:
    """An HDF5 codes file at `path` from (key, codes (frames, 8) int16, fingerprint) items, written whole and
    synced (`write_whole`): `path` is either absent, its old self, or complete. The file is built in memory and
    written with plain writes, because HDF5 crashes the process (segfault) when the disk fills under it."""
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        f.attrs["codec_weights"] = weights
        for key, codes, source in items:
            f.create_dataset(key, data=codes)
            f[key].attrs["source"] = source

    write_whole(path, lambda tmp: tmp.write_bytes(image.getbuffer()), f"codes ({path.name})")


def _merge(h5_path: Path, cuts: list, stored: dict[str, tuple], weights: str) -> None:
    """Write the store anew from the stored codes of `cuts` (old store and pieces), then drop the pieces."""
    with contextlib.ExitStack() as stack:
        files = {path: stack.enter_context(h5py.File(path, "r")) for path in {stored[c.id][0] for c in cuts}}
        _write_whole(h5_path, ((c.id, files[stored[c.id][0]][c.id][()], stored[c.id][2]) for c in cuts), weights)
    shutil.rmtree(_pieces_dir(h5_path), ignore_errors=True)
    close_cached_file_handles()  # lhotse keeps HDF5 files open by path: the next read must see the new store


def _check_space(h5_path: Path, todo: list, cuts: list, expected: dict) -> None:
    """Before encoding: room for the new pieces and for the merged store (both exist for a moment)."""
    def size(cut_list) -> int:
        return sum(expected[c.id][0] * NUM_QUANTIZERS * 2 + H5_BYTES_PER_CUT for c in cut_list)  # int16 (frames, 8)

    check_free_space(h5_path.parent, size(todo) + size(cuts), f"the codes of {len(todo)} cut(s)",
                     "free space or use a --data-dir on a larger disk, then run the codes stage again")


def _codes_array(h5_path: Path, key: str, shape) -> TemporalArray:
    """The manifest NumpyHdf5Writer.store_array returns, for codes that are already stored."""
    array = Array(storage_type=NumpyHdf5Writer.name, storage_path=str(h5_path), storage_key=key, shape=list(shape))
    return TemporalArray(array=array, temporal_dim=0, frame_shift=1 / FRAME_RATE, start=0)


def compute_codes(cuts: CutSet, h5_path: Path, codec: Codec, progress: str = "encodec") -> CutSet:
    """Encode every cut's audio and store int16 codes (frames, 8) under the cut id in h5_path.

    Resumable: codes already stored for the same audio file (path, size, mtime) with the right number of
    frames (`code_frames(cut.duration)`) are kept; only the rest is computed. Free space is checked first.
    Returns the cuts with `cut.codes` attached.
    """
    h5_path = h5_path.resolve()
    h5_path.parent.mkdir(parents=True, exist_ok=True)
    cuts = list(cuts)
    stored = _stored_codes(h5_path, codec.weights)
    expected = {c.id: (code_frames(c.duration), NUM_QUANTIZERS) for c in cuts}
    todo = [c for c in cuts if stored.get(c.id, (None,))[1:] != (expected[c.id], _fingerprint(c))]
    log.info("codes: %d cuts, %d already in %s, %d to encode", len(cuts), len(cuts) - len(todo), h5_path, len(todo))
    if todo:
        _check_space(h5_path, todo, cuts, expected)
        _encode_to_pieces(todo, h5_path, codec, expected, stored, progress)
    if todo or _pieces_dir(h5_path).is_dir():
        _merge(h5_path, cuts, stored, codec.weights)
    return CutSet.from_cuts(_with_codes(c, h5_path, expected[c.id]) for c in cuts)


def encode_cut(cut, codec: Codec, frames: int) -> np.ndarray:
    """The codes of one cut, int16 (frames, 8): encoded alone, so that they never depend on which cuts share its
    process or batch. The caller holds the thread count at ENCODE_THREADS."""
    wave = torch.from_numpy(cut.load_audio()[0])  # (T,) mono 24 kHz
    return codec.encode([wave])[0][:frames].numpy().astype(np.int16)  # (frames, 8)


def _encode_to_pieces(todo: list, h5_path: Path, codec: Codec, expected: dict, stored: dict,
                      progress: str) -> None:
    """Encode `todo` cut by cut; write a piece every PIECE_SECONDS of audio, at the end and on Ctrl-C.
    Adds what it wrote to `stored`."""
    pieces = _pieces_dir(h5_path)
    pieces.mkdir(exist_ok=True)
    pending: list[tuple] = []  # (cut id, codes (frames, 8) int16, fingerprint)

    def flush() -> None:
        if pending:
            piece = pieces / f"{1 + max((int(p.stem) for p in pieces.glob('*.h5')), default=0)}.h5"
            _write_whole(piece, pending, codec.weights)
            stored.update({key: (piece, codes.shape, source) for key, codes, source in pending})
            pending.clear()

    with tqdm(total=round(sum(c.duration for c in todo)), desc=progress, unit="s audio") as bar, \
            torch_threads(ENCODE_THREADS):
        try:
            for cut in todo:
                pending.append((cut.id, encode_cut(cut, codec, expected[cut.id][0]), _fingerprint(cut)))
                bar.update(cut.duration)
                if sum(len(codes) for _, codes, _ in pending) >= PIECE_SECONDS * FRAME_RATE:
                    flush()
        except KeyboardInterrupt:
            flush()  # what was encoded is kept for the rerun
            raise
        flush()


def _with_codes(cut, h5_path: Path, shape):
    cut.codes = _codes_array(h5_path, cut.id, shape)
    return cut


# ---- shards ----------------------------------------------------------------------------------------------------

def shard_path(h5_path: Path, shard: int, num_shards: int) -> Path:
    """The store of one shard (one shard: the store itself)."""
    return h5_path if num_shards == 1 else h5_path.with_name(f"{h5_path.stem}.{shard:05d}-of-{num_shards:05d}.h5")


def assign_shards(cuts: list, num_shards: int) -> list[int]:
    """The shard of every cut: longest first, dealt round-robin (shards of about the same length of audio). The
    deal only decides where the work runs: every cut's codes are the same in any shard (`encode_cut`)."""
    shards = [0] * len(cuts)
    for n, i in enumerate(sorted(range(len(cuts)), key=lambda i: -cuts[i].num_samples)):
        shards[i] = n % num_shards
    return shards


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def _digest(cuts: list) -> dict:
    """A shard's cuts and their audio files as they are when the run starts (one stat per file, once per run)."""
    listing = "\n".join(f"{c.id} {_fingerprint(c)}" for c in cuts)
    return {"cuts": len(cuts), "sha1": hashlib.sha1(listing.encode()).hexdigest()}


def _signature(path: Path, digest: dict, weights: str) -> str:
    """What a shard's done-marker (valle.markers) holds: the codec weights, its cuts' `_digest` and the size of its
    store (a store cut short or replaced later no longer matches, and is checked again by `compute_codes`)."""
    return marker_line({"codec_weights": weights, **digest, "store_bytes": path.stat().st_size})


def _shard_done(path: Path, digest: dict, weights: str) -> bool:
    return path.is_file() and read_marker(_marker(path)) == _signature(path, digest, weights)


def _run_shard(cuts: list, digest: dict, path: Path, codec: Codec) -> None:
    """One shard (in a process of its own when there are several): encode (`compute_codes`, resumable), then
    write its done-marker with the `digest` rank 0 waits for."""
    compute_codes(cuts, path, codec, progress=f"encodec {path.name}")
    write_marker(_marker(path), _signature(path, digest, codec.weights))


def compute_codes_sharded(cuts: CutSet, h5_path: Path, codec: Codec, num_workers: int = 1, rank: int = 0,
                          world_size: int = 1, poll_seconds: float = 2.0) -> CutSet | None:
    """Codes of `cuts` in world_size x num_workers shards: this process (torchrun rank `rank` of `world_size`)
    runs shards rank * num_workers ... in `num_workers` processes (each gets a copy of `codec`), skipping those
    whose done-marker is there. Rank 0 then waits for every shard's marker and returns the cuts with `cut.codes`
    (the other ranks: None)."""
    h5_path = h5_path.resolve()
    h5_path.parent.mkdir(parents=True, exist_ok=True)
    cuts = list(cuts)
    num_shards = world_size * num_workers
    shard_of = assign_shards(cuts, num_shards)
    members = [[c for c, s in zip(cuts, shard_of) if s == k] for k in range(num_shards)]
    paths = [shard_path(h5_path, k, num_shards) for k in range(num_shards)]
    digests = [_digest(m) for m in members]  # rank 0 polls the other ranks' shards with these, not a stat per cut

    def done(k: int) -> bool:
        return _shard_done(paths[k], digests[k], codec.weights)

    todo = [k for k in range(rank * num_workers, (rank + 1) * num_workers) if members[k] and not done(k)]
    log.info("codes: %d cuts in %d shard(s); %d to run here", len(cuts), num_shards, len(todo))
    if num_workers == 1:
        for k in todo:
            _run_shard(members[k], digests[k], paths[k], codec)
    elif todo:
        with ProcessPoolExecutor(len(todo), mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in [pool.submit(_run_shard, members[k], digests[k], paths[k], codec) for k in todo]:
                future.result()  # a shard's error is raised here; the other shards finish first
    if rank != 0:
        return None
    waiting = [k for k in range(num_shards) if members[k] and not done(k)]
    if waiting:
        log.info("codes: waiting for %d shard(s) of the other ranks", len(waiting))
    while waiting:
        time.sleep(poll_seconds)
        waiting = [k for k in waiting if not done(k)]
    _remove_other_layouts(h5_path, set(paths))
    return CutSet.from_cuts(_with_codes(c, paths[s], (code_frames(c.duration), NUM_QUANTIZERS))
                            for c, s in zip(cuts, shard_of))


def _remove_other_layouts(h5_path: Path, keep: set[Path]) -> None:
    """Stores (and markers) of this part made with another number of shards: their codes are in `keep` now."""
    for old in [h5_path, *h5_path.parent.glob(f"{h5_path.stem}.*-of-*.h5")]:
        if old not in keep and old.is_file():
            old.unlink()
            _marker(old).unlink(missing_ok=True)
            shutil.rmtree(_pieces_dir(old), ignore_errors=True)
