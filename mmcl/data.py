"""Streaming Multimodal3DIdent image/text pairs from webdataset shards (SPEC 2.7, docs/formats.md).

Everything the learning side knows about the dataset comes from ``ROOT/manifest.json``: the
factor table (names, kinds, roles), the tokenizer and vocabulary, and the per-shard sample
counts. ``mmcl`` never imports ``datagen`` (SPEC §1).

How an epoch is cut (finite mode)
    The shards of a split are put in an order that depends only on ``(seed, epoch)`` (the same
    on every rank) and read as one sequence of N samples. Each rank takes a contiguous range of
    that sequence and each DataLoader worker a contiguous sub-range, so every consumer reads only
    the shards that overlap its range. Several workers can share one shard (each skips to its
    own sub-range), so fewer shards than workers is fine, and every rank gets exactly the same
    number of batches, which DDP needs. Training drops the last ``< world_size * batch_size``
    samples of an epoch (like ``drop_last``); evaluation keeps them. Within a worker a shuffle
    buffer seeded by ``(seed, epoch, rank, worker role)`` mixes samples, so the order of every
    batch is a function of the seed, the epoch and the number of ranks and workers.

Resampled mode (long runs)
    Each worker draws whole shards with replacement from its own seeded generator; an epoch is
    a nominal ``epoch_batches`` batches per rank.

Resuming mid-epoch
    Batches reach the trainer round-robin over workers, so batch ``j`` of an epoch comes from
    worker role ``j % num_workers``. To resume after ``k`` batches each role replays its shuffle,
    drops the samples of its finished batches before decoding them, and worker ``w`` plays role
    ``(w + k) % num_workers`` so the order continues exactly where it stopped.

Corrupt samples
    ``on_corrupt="error"`` (default) raises :class:`DataError` naming the shard and key;
    ``"skip"`` drops the sample, warns with a running count, and keeps the batch count fixed by
    drawing further samples from the worker's range. PNGs are checked in Python before libpng
    decodes them (:mod:`mmcl.png`: libpng's own errors end the process with a segfault). With
    ``verify`` (default) each process compares a shard's sha256 with the manifest the first time
    it opens it.

Images leave the workers as uint8 ``(B, 3, H, W)`` tensors (4x less to copy and pin than
float); :meth:`MultimodalDataModule.on_after_batch_transfer` turns them into normalised float
tensors on the device (upstream's ``ToTensor`` + ``Normalize`` with the 3DIdent statistics).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from mmcl.manifest import (  # noqa: F401  (re-exported: mmcl.data was their home)
    FORMAT,
    SPLITS,
    CorruptSample,
    DataError,
    FactorInfo,
    Manifest,
    ShardInfo,
    file_sha256,
    load_manifest,
    sha256_matches,
)
from mmcl.png import PNGError, decode_png_rgb
from mmcl.tokenizer import Tokenizer, TokenizerError

MEMBERS: tuple[str, ...] = ("png", "txt", "json")
# Per-channel statistics the upstream code normalises with (values from 3DIdent).
IMAGE_MEAN: tuple[float, float, float] = (0.4327, 0.2689, 0.2839)
IMAGE_STD: tuple[float, float, float] = (0.1201, 0.1457, 0.1082)

OnCorrupt = Literal["error", "skip"]


# ----------------------------------------------------------------------------- samples
@dataclass
class RawSample:
    """Undecoded members of one sample plus where it came from (for error messages).

    ``decoded``: what :class:`SampleDecoder` made of it, where a stream caches decoded samples
    (the members are dropped then)."""

    key: str
    where: str
    members: dict[str, bytes]
    decoded: dict[str, Any] | None = None


def iter_shard(shard: ShardInfo, skip: int = 0, take: int | None = None) -> Iterator[RawSample]:
    """Samples ``[skip, skip + take)`` of one shard, undecoded; members grouped by key.

    A shard that ends early (truncated, fewer samples than the manifest says) yields a final
    ``RawSample`` with no members, which decoding reports as corrupt.
    """
    end = shard.count if take is None else min(shard.count, skip + take)
    pos = 0
    current: RawSample | None = None
    with open(shard.path, "rb") as fh:
        try:
            for member in tar_file_iterator(fh):
                key, ext = base_plus_ext(member["fname"])
                if key is None:
                    continue
                if current is None or key != current.key:
                    if current is not None:
                        if pos >= skip:
                            yield current
                        pos += 1
                        if pos >= end:
                            return
                    current = RawSample(key, f"{shard.path}:{key}", {})
                if pos >= skip:  # the bytes of skipped samples are read but not kept
                    current.members[ext.lower()] = member["data"]
        except Exception as exc:  # truncated/damaged tar: report where, let the policy decide
            if current is not None and pos >= skip:
                yield RawSample(current.key, current.where, {"__error__": str(exc).encode()})
            else:
                yield RawSample("?", f"{shard.path}", {"__error__": str(exc).encode()})
            return
    if current is not None:
        if pos >= skip:
            yield current
        pos += 1
    if pos < end:
        yield RawSample(
            "?",
            f"{shard.path}",
            {"__error__": (f"shard ends after {pos} samples but the manifest says {shard.count}").encode()},
        )


def latent_problem(factor: FactorInfo, value: Any) -> str | None:
    """What is wrong with one latent's JSON value (None if nothing): a discrete factor takes an
    integer in [0, n_values), a continuous one a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{value!r}, expected a number"
    if factor.kind == "discrete":
        if not isinstance(value, int):
            return f"{value!r}, expected an integer"
        if value < 0 or (factor.n_values is not None and value >= factor.n_values):
            return f"{value}, outside [0, {factor.n_values})"
    elif not math.isfinite(value):
        return f"{value!r}, expected a finite number"
    return None


class SampleDecoder:
    """RawSample -> dict of tensors (uint8 image, token ids, numeric latents)."""

    def __init__(self, manifest: Manifest):
        self.tokenizer = manifest.tokenizer
        self.image_factors = manifest.factors_of("image")
        self.text_factors = manifest.factors_of("text")
        self.resolution = manifest.resolution

    def __call__(self, raw: RawSample) -> dict[str, Any]:
        if "__error__" in raw.members:
            raise CorruptSample(f"{raw.where}: {raw.members['__error__'].decode()}")
        missing = [m for m in MEMBERS if m not in raw.members]
        if missing:
            have = ", ".join(sorted(raw.members)) or "nothing"
            raise CorruptSample(
                f"{raw.where}: sample has no .{'/.'.join(missing)} member (has {have}); "
                "every sample needs png, txt and json (docs/formats.md)"
            )
        try:
            image = decode_png_rgb(raw.members["png"])
        except PNGError as exc:
            raise CorruptSample(f"{raw.where}.png: not a sound PNG ({exc})") from None
        if self.resolution is not None and tuple(image.shape[1:]) != (self.resolution, self.resolution):
            raise CorruptSample(
                f"{raw.where}.png: image is {image.shape[2]}x{image.shape[1]}, the manifest "
                f"says {self.resolution}x{self.resolution}"
            )
        try:
            meta = json.loads(raw.members["json"])
            sentence = raw.members["txt"].decode("utf-8")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptSample(f"{raw.where}: unreadable json/txt member ({exc})") from None
        try:
            text, length = self.tokenizer.encode_padded(sentence, where=f"{raw.where}.txt")
        except TokenizerError as exc:  # a vocabulary mismatch is never a per-sample accident
            raise DataError(str(exc)) from None
        try:
            latents = {
                "image": {f.name: meta["image"][f.name] for f in self.image_factors},
                "text": {f.name: meta["text"][f.name] for f in self.text_factors},
            }
            index = meta["index"]
        except (KeyError, TypeError) as exc:
            raise CorruptSample(f"{raw.where}.json: missing latent {exc}") from None
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise CorruptSample(f"{raw.where}.json: index is {index!r}, expected an integer >= 0")
        for modality, factors in (("image", self.image_factors), ("text", self.text_factors)):
            for f in factors:
                problem = latent_problem(f, latents[modality][f.name])
                if problem:
                    raise CorruptSample(f"{raw.where}.json: {modality}.{f.name} is {problem}")
        return {
            "image": image,
            "text": text,
            "text_length": length,
            "index": index,
            "latents": latents,
            "key": raw.key,
        }


def collate(samples: Sequence[dict], decoder: SampleDecoder) -> dict[str, Any]:
    """Stack decoded samples; discrete latents become int64, continuous ones float64."""
    batch: dict[str, Any] = {
        "image": torch.stack([s["image"] for s in samples]),
        "text": torch.stack([s["text"] for s in samples]),
        "text_length": torch.tensor([s["text_length"] for s in samples], dtype=torch.int64),
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.int64),
        "key": [s["key"] for s in samples],
    }
    for modality, factors in (("image", decoder.image_factors), ("text", decoder.text_factors)):
        batch[f"latents_{modality}"] = {
            f.name: torch.tensor(
                [s["latents"][modality][f.name] for s in samples],
                dtype=torch.int64 if f.kind == "discrete" else torch.float64,
            )
            for f in factors
        }
    return batch


# ----------------------------------------------------------------------------- epoch plan
def _rng(*words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(w) & 0xFFFFFFFF for w in words])))


def worker_quotas(n_batches: int, n_workers: int) -> list[int]:
    """Batches per worker role when batch ``j`` comes from role ``j % n_workers``."""
    return [n_batches // n_workers + (w < n_batches % n_workers) for w in range(n_workers)]


def skipped_batches(start_batch: int, role: int, n_workers: int) -> int:
    """How many of role's batches are among the first ``start_batch`` batches of the epoch."""
    return max(0, -(-(start_batch - role) // n_workers))


@dataclass(frozen=True)
class EpochPlan:
    """Per-rank batch count and the sample range of each (rank, role) in one epoch."""

    n_batches: int  # per rank
    ranges: tuple[tuple[tuple[int, int], ...], ...]  # [rank][role] -> (start, stop) in the epoch sequence

    @staticmethod
    def make(n_samples: int, world_size: int, n_workers: int, batch_size: int, drop_last: bool) -> EpochPlan:
        if drop_last:
            n_batches = n_samples // (world_size * batch_size)
            per_rank = n_batches * batch_size
        else:
            # Every rank must see the same number of batches: with several ranks the last
            # n_samples % world_size samples are left out (reported by the caller).
            per_rank = n_samples // world_size
            n_batches = math.ceil(per_rank / batch_size)
        quotas = worker_quotas(n_batches, n_workers)
        ranges = []
        for rank in range(world_size):
            start = (rank * n_samples) // world_size
            stop_rank = start + per_rank
            roles, pos = [], start
            for q in quotas:
                stop = min(pos + q * batch_size, stop_rank)
                roles.append((pos, stop))
                pos = stop
            ranges.append(tuple(roles))
        return EpochPlan(n_batches, tuple(ranges))


def _slice_sequence(
    shards: Sequence[ShardInfo], start: int, stop: int, open_shard=iter_shard
) -> Iterator[RawSample]:
    """Samples ``[start, stop)`` of the concatenation of ``shards``."""
    offset = 0
    for shard in shards:
        lo, hi = max(start, offset), min(stop, offset + shard.count)
        if lo < hi:
            yield from open_shard(shard, skip=lo - offset, take=hi - lo)
        offset += shard.count
        if offset >= stop:
            return


def _shuffled(
    samples: Iterator[RawSample], buffer_size: int, rng: np.random.Generator
) -> Iterator[RawSample]:
    """Reservoir-style shuffle buffer (webdataset's): deterministic given ``rng``."""
    buf: list[RawSample] = []
    for s in samples:
        if len(buf) < buffer_size:
            buf.append(s)
            continue
        i = int(rng.integers(len(buf)))
        buf[i], s = s, buf[i]
        yield s
    while buf:
        i = int(rng.integers(len(buf)))
        buf[i], buf[-1] = buf[-1], buf[i]
        yield buf.pop()


# ----------------------------------------------------------------------------- dataset
class ShardStream(IterableDataset):
    """Yields whole batches of one split for one rank; see the module docstring for the cut.

    The epoch and the resume position live in a small shared-memory tensor so that persistent
    workers see the values the main process sets before each ``iter()``.
    """

    def __init__(
        self,
        manifest: Manifest,
        split: str,
        batch_size: int,
        *,
        train: bool,
        shuffle: bool,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        epoch_batches: int | None = None,
        on_corrupt: OnCorrupt = "error",
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        verify: bool = True,
        cache: bool = False,
    ):
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if on_corrupt not in ("error", "skip"):
            raise DataError(f"on_corrupt must be 'error' or 'skip', got {on_corrupt!r}")
        self.manifest, self.split, self.batch_size = manifest, split, batch_size
        self.train, self.shuffle, self.seed = train, shuffle, seed
        self.shuffle_buffer, self.resampled, self.on_corrupt = shuffle_buffer, resampled, on_corrupt
        self.shard_list = manifest.shards(split)
        self.n_samples = sum(s.count for s in self.shard_list)
        self.rank, self.world_size = rank, world_size
        self.n_workers = max(1, num_workers)
        self.decoder = SampleDecoder(manifest)
        self.verify = verify
        # shards this process (the main one or a worker) has hashed; persistent workers keep it
        self._verified: set[str] = set()
        # cache: every shard this process has opened, read whole, its samples each decoded once
        self.cache = cache
        self._cached: dict[str, list[RawSample]] = {}
        plan = EpochPlan.make(self.n_samples, world_size, self.n_workers, batch_size, drop_last=train)
        if resampled:
            self._n_batches = (
                epoch_batches if epoch_batches is not None else self.n_samples // (world_size * batch_size)
            )
        else:
            self._n_batches = plan.n_batches
        if self._n_batches < 1:
            raise DataError(
                f"{manifest.root / split}: {self.n_samples} samples make no batch of {batch_size} per rank "
                f"on {world_size} rank(s); lower the batch size"
            )
        # [epoch, start_batch]: written by the main process before each iter(), read by workers
        self._state = torch.zeros(2, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return self._n_batches

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        if not 0 <= start_batch <= self._n_batches:
            raise ValueError(f"start_batch {start_batch} outside [0, {self._n_batches}]")
        self._state[0], self._state[1] = epoch, start_batch

    @property
    def epoch(self) -> int:
        return int(self._state[0])

    def _shard_order(self, epoch: int) -> list[ShardInfo]:
        if not self.shuffle:
            return list(self.shard_list)
        perm = _rng(self.seed, 1, epoch).permutation(len(self.shard_list))
        return [self.shard_list[i] for i in perm]

    def _open_shard(self, shard: ShardInfo, skip: int = 0, take: int | None = None) -> Iterator[RawSample]:
        """:func:`iter_shard`, after comparing the shard's sha256 with the manifest the first time
        this process opens it (``verify``): a mismatch is an error under ``on_corrupt: error``;
        under ``skip`` a warning, and the shard's samples are still decoded one by one."""
        if self.verify and shard.relpath not in self._verified:
            if not sha256_matches(shard):
                message = (
                    f"{shard.path}: sha256 differs from {self.manifest.path}, the shard was changed or "
                    "damaged (`datagen validate` lists its problems; `datagen generate` rewrites it)"
                )
                if self.on_corrupt == "error":
                    raise DataError(message)
                warnings.warn(
                    f"{message}; reading its samples anyway, unusable ones are skipped", stacklevel=2
                )
            self._verified.add(shard.relpath)  # matched, or warned once under skip
        if not self.cache:
            yield from iter_shard(shard, skip, take)
            return
        if shard.relpath not in self._cached:  # read whole once, whatever part is asked for
            self._cached[shard.relpath] = list(iter_shard(shard))
        yield from self._cached[shard.relpath][skip : None if take is None else skip + take]

    def _decode(self, raw: RawSample) -> dict[str, Any]:
        """The decoder's sample; kept on ``raw`` (and its bytes dropped) when caching. A corrupt
        sample is not kept: it raises again, and warns again under ``skip``, each epoch."""
        if raw.decoded is not None:
            return raw.decoded
        sample = self.decoder(raw)
        if self.cache:
            raw.decoded, raw.members = sample, {}
        return sample

    def _raw_stream(self, epoch: int, role: int, cycle: int) -> Iterator[RawSample]:
        """Undecoded samples of one role; ``cycle`` > 0 only when corrupt samples forced a top-up."""
        rng = _rng(self.seed, 2, epoch, self.rank, role, cycle)
        if self.resampled:

            def draw() -> Iterator[RawSample]:
                while True:
                    yield from self._open_shard(self.shard_list[int(rng.integers(len(self.shard_list)))])

            stream: Iterator[RawSample] = draw()
        else:
            plan = EpochPlan.make(
                self.n_samples, self.world_size, self.n_workers, self.batch_size, drop_last=self.train
            )
            start, stop = plan.ranges[self.rank][role]
            stream = _slice_sequence(self._shard_order(epoch), start, stop, self._open_shard)
        return _shuffled(stream, self.shuffle_buffer, rng) if self.shuffle else stream

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        n_workers = info.num_workers if info is not None else 1
        if n_workers != self.n_workers:
            raise RuntimeError(
                f"ShardStream was planned for {self.n_workers} workers but runs in {n_workers}"
            )
        epoch, start_batch = int(self._state[0]), int(self._state[1])
        role = (worker + start_batch) % n_workers
        quota = worker_quotas(self._n_batches, n_workers)[role]
        skip = skipped_batches(start_batch, role, n_workers)
        yield from self._role_batches(epoch, role, quota - skip, skip * self.batch_size)

    def _role_batches(self, epoch: int, role: int, n_batches: int, skip_samples: int) -> Iterator[dict]:
        if n_batches <= 0:
            return
        produced, corrupt, cycle, pending = 0, 0, 0, []
        while produced < n_batches:
            got_any = False
            stream = self._raw_stream(epoch, role, cycle)
            for raw in stream:
                if skip_samples > 0:
                    skip_samples -= 1
                    continue
                got_any = True
                try:
                    pending.append(self._decode(raw))
                except CorruptSample as exc:
                    if self.on_corrupt == "error":
                        raise
                    corrupt += 1
                    warnings.warn(
                        f"skipped corrupt sample ({corrupt} so far in {self.split} worker {role} of "
                        f"rank {self.rank}): {exc}",
                        stacklevel=2,
                    )
                    continue
                if len(pending) == self.batch_size:
                    yield collate(pending, self.decoder)
                    pending, produced = [], produced + 1
                    if produced == n_batches:
                        break
            if produced == n_batches:
                break
            if pending and not self.train:  # evaluation keeps its last partial batch
                yield collate(pending, self.decoder)
                break
            if not got_any and skip_samples == 0:
                raise DataError(
                    f"{self.manifest.root / self.split}: worker {role} of rank {self.rank} found no "
                    "usable sample in its range"
                )
            cycle += 1  # corrupt samples were dropped: top up from the same range, reshuffled


class ShardLoader(DataLoader):
    """DataLoader over a :class:`ShardStream` that knows its epoch and resumes mid-epoch.

    Lightning treats it as stateful (``state_dict``/``load_state_dict``), saving the epoch and
    the number of batches already trained so that ``--ckpt_path`` resumes the exact batch order.
    """

    def __init__(self, stream: ShardStream, progress=None, **kwargs):
        super().__init__(stream, batch_size=None, **kwargs)
        self.stream = stream
        self._progress = progress  # () -> (epoch, batches trained in this epoch), from the trainer
        self._pending: dict | None = None
        self._auto_epoch = 0
        self.wait_seconds = 0.0

    def state_dict(self) -> dict:
        epoch, done = self._progress(saving=True) if self._progress else (self.stream.epoch, 0)
        return {"epoch": int(epoch), "batches_done": int(done), "n_batches": len(self.stream)}

    def load_state_dict(self, state: dict) -> None:
        self._pending = dict(state)

    def __iter__(self):
        pending, self._pending = self._pending, None
        if self._progress is not None:  # the restored trainer's progress is authoritative
            epoch, done = self._progress()
        elif pending is not None:
            epoch, done = int(pending["epoch"]), int(pending["batches_done"])
        else:
            epoch, done = self._auto_epoch, 0
            self._auto_epoch += 1
        if done >= len(self.stream):
            # Resuming from a checkpoint written after an epoch's last batch, Lightning runs the
            # next epoch's batches before it advances current_epoch: give them the next order.
            epoch, done = epoch + 1, 0
        self.stream.set_position(epoch, done)
        return _TimedIterator(super().__iter__(), self)


class _TimedIterator:
    """Adds the time spent blocked in ``next()`` to ``loader.wait_seconds`` (the data wait)."""

    def __init__(self, it, loader: ShardLoader):
        self.it, self.loader = it, loader

    def __iter__(self):
        return self

    def __next__(self):
        t = time.perf_counter()
        try:
            return next(self.it)
        finally:
            self.loader.wait_seconds += time.perf_counter() - t

    def __len__(self) -> int:
        return len(self.it)


# ----------------------------------------------------------------------------- module
class MultimodalDataModule(pl.LightningDataModule):
    """Image/text pairs of a Multimodal3DIdent shard dataset.

    Args:
        root: dataset root holding ``manifest.json`` and ``{train,val,test}/shard-*.tar``.
        batch_size: samples per rank and step (the global batch is ``batch_size * world_size``).
        eval_batch_size: batch size for val/test (default: ``batch_size``).
        num_workers: decoding worker processes per rank (0 decodes in the main process).
        seed: seed of shard order and shuffle buffers (with the epoch, rank and worker role);
            ``mmcl fit`` sets it to ``seed_everything`` unless given; None here means 0.
        shuffle_buffer: samples held by each worker's shuffle buffer.
        resampled: draw shards with replacement forever; an epoch is ``epoch_batches`` batches.
        epoch_batches: nominal epoch length per rank in resampled mode.
        on_corrupt: 'error' to stop at the first unusable sample, 'skip' to drop and count it.
        pin_memory: pin host batches (only used when CUDA is available).
        persistent_workers: keep decoding workers alive between epochs.
        prefetch_factor: batches each worker prepares ahead.
        cache: keep every decoded sample in memory after its first read, so that later epochs
            neither read the shards nor decode a PNG again; the batches are the same. Memory: a
            decoded 64x64 sample is ~12 kB (the demo's 12 000 training pairs: ~150 MB), a 224x224
            one ~150 kB (125 000: ~19 GB). Each process caches what it reads, so with
            ``num_workers > 0`` it helps only with ``persistent_workers``.
        verify: compare each shard's sha256 with the manifest the first time a process (the
            main one or a DataLoader worker) reads from it. On by default: it reads the whole
            shard once more, 2-4 % of the time its images take to decode
            (docs/benchmarks.md). Each worker hashes every shard it reads from, also when it
            reads only part of it, and non-persistent workers hash again every epoch.
        image_mean, image_std: per-channel normalisation (upstream: 3DIdent statistics).
        expected_vocabulary: if given (e.g. a checkpoint's), must equal the manifest's.
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        seed: int | None = None,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        epoch_batches: int | None = None,
        on_corrupt: OnCorrupt = "error",
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        verify: bool = True,
        cache: bool = False,
        image_mean: tuple[float, float, float] = IMAGE_MEAN,
        image_std: tuple[float, float, float] = IMAGE_STD,
        expected_vocabulary: list[str] | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise DataError(f"data.batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise DataError(f"data.num_workers must be >= 0, got {num_workers}")
        if on_corrupt not in ("error", "skip"):
            raise DataError(f"data.on_corrupt must be 'error' or 'skip', got {on_corrupt!r}")
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        if expected_vocabulary is not None:
            try:
                self.manifest.tokenizer.check_same_vocabulary(expected_vocabulary, "the checkpoint")
            except TokenizerError as exc:
                raise DataError(f"{self.manifest.path}: {exc}") from None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.seed, self.shuffle_buffer = num_workers, seed or 0, shuffle_buffer
        self.resampled, self.epoch_batches, self.on_corrupt = resampled, epoch_batches, on_corrupt
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self.prefetch_factor, self.verify, self.cache = prefetch_factor, verify, cache
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)

    # What the model and the probes need to know, all from the manifest.
    @property
    def tokenizer(self) -> Tokenizer:
        return self.manifest.tokenizer

    @property
    def vocabulary(self) -> list[str]:
        return list(self.manifest.tokenizer.vocabulary)

    @property
    def max_text_length(self) -> int:
        return self.manifest.tokenizer.max_length

    @property
    def image_resolution(self) -> int | None:
        return self.manifest.resolution

    @property
    def factor_table(self) -> dict[str, dict]:
        return {f.name: f.to_json() for f in self.manifest.factors}

    def _dist(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _progress(self, saving: bool = False) -> tuple[int, int]:
        """(epoch, batches of it already trained): when saving a checkpoint, or as a restored
        trainer sees it (``ready`` counts the batches whose step has finished)."""
        trainer = self.trainer
        loop = trainer.fit_loop
        done = loop.epoch_loop.batch_progress.current.ready if (saving or loop.restarting) else 0
        return trainer.current_epoch, done

    def dataloader(
        self,
        split: str,
        *,
        train: bool,
        rank: int | None = None,
        world_size: int | None = None,
        num_workers: int | None = None,
    ) -> ShardLoader:
        """Loader of one split for one rank; ``train`` shuffles and drops the last partial batch."""
        r, w = self._dist()
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
        workers = self.num_workers if num_workers is None else num_workers
        stream = ShardStream(
            self.manifest,
            split,
            self.batch_size if train else self.eval_batch_size,
            train=train,
            shuffle=train,
            seed=self.seed,
            shuffle_buffer=self.shuffle_buffer,
            resampled=self.resampled and train,
            epoch_batches=self.epoch_batches,
            on_corrupt=self.on_corrupt,
            rank=rank,
            world_size=world_size,
            num_workers=workers,
            verify=self.verify,
            cache=self.cache,
        )
        if not train and world_size > 1 and stream.n_samples % world_size:
            warnings.warn(
                f"{split}: {stream.n_samples % world_size} of {stream.n_samples} samples are left out so "
                f"that all {world_size} ranks evaluate the same number of batches",
                stacklevel=2,
            )
        trainer = getattr(self, "trainer", None)
        progress = self._progress if (train and trainer is not None) else None
        kwargs: dict[str, Any] = {
            "num_workers": workers,
            "pin_memory": self.pin_memory and torch.cuda.is_available(),
        }
        if workers > 0:
            kwargs.update(persistent_workers=self.persistent_workers, prefetch_factor=self.prefetch_factor)
        return ShardLoader(stream, progress=progress, **kwargs)

    def train_dataloader(self) -> ShardLoader:
        return self.dataloader("train", train=True)

    def val_dataloader(self) -> ShardLoader:
        return self.dataloader("val", train=False)

    def test_dataloader(self) -> ShardLoader:
        return self.dataloader("test", train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.prepare_images(batch)

    def prepare_images(self, batch: dict) -> dict:
        """uint8 images -> normalised float32 (``(x / 255 - mean) / std``), on the batch's device."""
        return normalize_images(batch, self.image_mean, self.image_std)


def normalize_images(
    batch: dict, mean: Sequence[float] = IMAGE_MEAN, std: Sequence[float] = IMAGE_STD
) -> dict:
    image = batch["image"]
    if image.dtype != torch.uint8:
        return batch
    m = torch.tensor(mean, device=image.device, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, device=image.device, dtype=torch.float32).view(1, 3, 1, 1)
    # (x / 255 - m) / s  ==  x * (1 / (255 s)) - m / s  : one fused multiply-add per pixel
    out = dict(batch)
    out["image"] = torch.addcmul(-m / s, image.float(), 1.0 / (255.0 * s))
    return out
