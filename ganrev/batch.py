"""Batch jobs over files, with the rules every ganrev command keeps: inputs -> outputs -> groups -> files.

- Outputs are named and checked before anything runs (:func:`compress_targets`, :func:`decompress_targets`):
  an output that is an input is refused even with ``force``, existing outputs without it, two inputs sharing
  one output, folders that cannot be written.
- Every input is checked before any search starts; one unusable input stops the batch with nothing written,
  unless ``keep_going``, which skips it and reports it.
- Each group of images is written as it finishes, every file atomically; an error or Ctrl-C in the middle
  says which outputs were written (the first ones in input order: :class:`Interrupted`).
- Under torchrun the processes share the inputs round-robin (rank r takes inputs r, r + world, ...) and
  rank 0 gathers the results (:func:`torchrun_env`, :func:`process_group`).

:func:`compress_files` and :func:`decompress_files` are the jobs ``ganrev compress`` and ``ganrev
decompress`` run; scripts get the same guarantees by calling them.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganrev.errors import GanrevError

if TYPE_CHECKING:
    from ganrev.codecs.gan import GanCodec
    from ganrev.bitstream.ratecontrol import RatedFile, RateTarget

MIN_IMAGE_SIDE = 3
"""Smallest height and width compress accepts: SSIM, which it measures and reports, needs 3 pixels a side."""

DECODED_SUFFIX = ".dec.png"
"""decompress without -o writes ``a.grv`` to ``a.dec.png`` beside it, so the original ``a.png`` is never touched."""

PROCESS_GROUP_TIMEOUT = datetime.timedelta(days=7)
"""How long a torchrun process waits at the end of a batch for the slowest one (torchrun ends them all if one
fails, so this only has to outlast an uneven split of a long batch)."""


class Interrupted(Exception):
    """Ctrl-C during a batch command: which outputs were written. ``main`` prints it and exits 130.

    Outputs are written in input order, so the written ones are the first ``len(done)`` of the batch's
    (or, under torchrun, this process's share's) inputs.
    """

    def __init__(self, done: list[Path], total: int, rank: int | None = None) -> None:
        super().__init__("interrupted")
        self.done, self.total, self.rank = done, total, rank

    def report(self) -> str:
        who = f"rank {self.rank}: " if self.rank is not None else ""
        if not self.done:
            return f"{who}no outputs were written (0 of {self.total})"
        if len(self.done) <= 10:
            return f"{who}{len(self.done)} of {self.total} outputs were written: {', '.join(map(str, self.done))}"
        return (f"{who}{len(self.done)} of {self.total} outputs were written (the first {len(self.done)} in input "
                f"order; the last: {self.done[-1]})")


def torchrun_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them in the environment; (0, 1, 0) for a plain run."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise GanrevError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them)") from None
    if world <= 1:
        return 0, 1, 0
    if not 0 <= rank < world:
        raise GanrevError(f"RANK {rank} is out of range for WORLD_SIZE {world}")
    return rank, world, local_rank


@contextlib.contextmanager
def process_group(world: int) -> Iterator[None]:
    """Join torchrun's process group for a batch's bookkeeping; nothing for a plain run.

    gloo on every device: only small Python objects travel (which inputs failed, result rows), never tensors,
    so one backend serves CPU and GPU processes alike, and several processes may share a GPU.
    """
    if world <= 1:
        yield
        return
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", timeout=PROCESS_GROUP_TIMEOUT)
    except (RuntimeError, ValueError) as exc:
        raise GanrevError(f"cannot join the torchrun process group: {exc}") from exc
    try:
        yield
    finally:
        dist.destroy_process_group()


def all_gather(value: object, world: int) -> list:
    if world <= 1:
        return [value]
    import torch.distributed as dist

    gathered: list = [None] * world
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def gather_to_rank0(value: object, rank: int, world: int) -> list:
    """Every process's ``value`` on rank 0 (in rank order); an empty list on the others."""
    if world <= 1:
        return [value]
    import torch.distributed as dist

    gathered: list | None = [None] * world if rank == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered or []


def unique_inputs(paths: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Drop repeats of the same file (given twice, or as itself and inside a folder), keeping the first."""
    seen: set[Path] = set()
    kept = []
    for pair in paths:
        key = pair[0].resolve()
        if key not in seen:
            seen.add(key)
            kept.append(pair)
    return kept


def is_input(path: Path, inputs: list[Path]) -> bool:
    return path.resolve() in {item.resolve() for item in inputs}


def check_outputs(pairs: list[tuple[Path | None, Path]], force: bool, verb: str) -> None:
    """Refuse, before anything runs: an output that is an input (even with --force), two inputs sharing one
    output, an output that is a directory, existing outputs (without --force), folders that cannot be written."""
    inputs = {source.resolve() for source, _ in pairs if source is not None}
    owner: dict[Path, Path | None] = {}
    for source, target in pairs:
        key = target.resolve()
        if key in inputs:
            raise GanrevError(f"output {target} is one of the inputs: refusing to overwrite an input")
        if key in owner:
            other = owner[key]
            if other is None or source is None:
                raise GanrevError(f"{target} is named for two outputs: give each output its own file")
            cause = ("the same name apart from the suffix" if other.resolve().parent == source.resolve().parent
                     else "the same file name in different folders")
            raise GanrevError(f"{other} and {source} would both be written to {target} ({cause}): {verb} them "
                              "separately, with different -o")
        owner[key] = source
        if target.is_dir():
            raise GanrevError(f"output {target} is a directory")
    existing = [target for _, target in pairs if target.exists() or target.is_symlink()]
    if existing and not force:
        listing = ", ".join(map(str, existing[:3])) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        what = "output exists" if len(existing) == 1 else f"{len(existing)} outputs exist"
        raise GanrevError(f"{what}: {listing} (--force overwrites)")
    check_writable({target.parent for _, target in pairs})


def check_writable(directories: set[Path]) -> None:
    """Every folder can take a new file (missing ones: their nearest existing parent can), tried for real."""
    probed: set[Path] = set()
    for directory in sorted(directories):
        existing = directory
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if existing.resolve() in probed:
            continue
        probed.add(existing.resolve())
        if not existing.is_dir():
            raise GanrevError(f"cannot write into {directory}: {existing} is not a directory")
        try:
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            raise GanrevError(f"cannot write into {existing}: {exc.strerror or exc}") from None


def compress_targets(inputs: list[Path], out: Path | None, force: bool = False) -> list[tuple[Path, Path]]:
    """(image, .grv file) pairs in a fixed order, all checked before anything runs.

    Folders expand to their images (recursively, sorted); a path given twice counts once. Outputs go beside
    each input; with ``-o DIR`` into DIR, a folder's images keeping their sub-folder layout; ``-o x.grv``
    names the file for a single image. Refused: a wrong -o, outputs that collide, exist (without ``force``),
    are inputs, or cannot be written.
    """
    from ganrev.bitstream.container import EXTENSION
    from ganrev.io import IMAGE_SUFFIXES, list_images

    if out is not None and not out.is_dir() and is_input(out, inputs):
        raise GanrevError(f"-o {out} is one of the inputs: refusing to overwrite an input")
    found: list[tuple[Path, Path]] = []  # (image, its path under -o DIR)
    for item in inputs:
        if item.is_dir():
            found += [(image, image.relative_to(item)) for image in list_images(item)]
        else:
            found.append((item, Path(item.name)))
    found = unique_inputs(found)
    if not found:
        raise GanrevError(f"no images in {', '.join(map(str, inputs))} (folders are searched recursively for "
                          f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    if out is not None and out.suffix.lower() == EXTENSION and not out.is_dir():
        if len(found) > 1:
            raise GanrevError(f"-o {out} names one file but {len(found)} images were given: pass a directory")
        pairs = [(found[0][0], out)]
    elif out is not None:
        if out.exists() and not out.is_dir():
            raise GanrevError(f"-o {out} is an existing file: give a {EXTENSION} file name (one image) or a "
                              "directory")
        if not out.exists() and out.suffix:
            raise GanrevError(f"-o {out}: a compressed file's name ends in {EXTENSION}; for a directory of outputs "
                              "give an existing directory or a new name without a suffix")
        pairs = [(image, (out / name).with_suffix(EXTENSION)) for image, name in found]
    else:
        pairs = [(image, image.with_suffix(EXTENSION)) for image, _ in found]
    check_outputs(pairs, force, "compress")  # type: ignore[arg-type]
    return pairs


def load_checked(path: Path):
    """An input image for compress, refused if too small to measure."""
    from ganrev.io import load_image

    image = load_image(path)
    if min(image.shape[1:]) < MIN_IMAGE_SIDE:
        raise GanrevError(f"image {path} is {image.shape[2]}x{image.shape[1]} pixels: compress needs at least "
                          f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    return image


def write_output(target: Path, write: Callable[[], None]) -> None:
    """Run ``write`` (an atomic write of ``target``); a failure (disk full, ...) is an error naming the file."""
    try:
        write()
    except OSError as exc:
        raise GanrevError(f"cannot write {target}: {exc.strerror or exc}") from exc


def after_partial(exc: GanrevError, done: list[Path], total: int) -> GanrevError:
    """An error in the middle of a batch, saying which outputs were already written."""
    if not done:
        return exc
    return GanrevError(f"{exc} (after writing {len(done)} of {total} outputs, the first {len(done)} in input "
                       f"order; the last: {done[-1]})")


def decompress_targets(files: list[Path], out: Path | None, force: bool = False) -> list[tuple[Path, Path]]:
    """(.grv file, image) pairs, all checked before anything is decoded. Default: ``a.grv`` -> ``a.dec.png``
    beside it; ``-o DIR``: ``DIR/a.png``; ``-o x.png`` (.png, .bmp, .tif, .tiff) for a single file."""
    from ganrev.io import image_output_format

    if out is not None and not out.is_dir() and is_input(out, files):
        raise GanrevError(f"-o {out} is one of the inputs: refusing to overwrite an input")
    unique = [path for path, _ in unique_inputs([(path, path) for path in files])]
    if out is None:
        pairs = [(path, path.with_name(path.stem + DECODED_SUFFIX)) for path in unique]
    elif out.is_dir() or (not out.exists() and not out.suffix):
        pairs = [(path, out / (path.stem + ".png")) for path in unique]
    else:
        if len(unique) > 1:
            raise GanrevError(f"-o {out} names one file but {len(unique)} inputs were given: pass a directory")
        image_output_format(out)
        pairs = [(unique[0], out)]
    check_outputs(pairs, force, "decompress")  # type: ignore[arg-type]
    return pairs


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GanrevError(f"cannot read {path}: {exc.strerror or exc}") from exc


class InputsRefused(GanrevError):
    """Some inputs cannot be used and ``keep_going`` was not given: nothing was compressed. Under torchrun
    every rank raises it, after every rank has checked its share."""


@dataclass
class CompressReport:
    """What a compress batch did: one row per written file (input order; on rank 0 only, under torchrun), the
    warnings the search raised, and the inputs skipped under ``keep_going`` (one message each)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _rate_control_fields(result: RatedFile, goal: RateTarget) -> dict[str, Any]:
    """The row fields of a rate-controlled file (a :class:`ganrev.bitstream.ratecontrol.RatedFile`)."""
    return {"mode": result.mode, "bits": result.bits, "leading": result.leading, "latent_bytes": result.latent_bytes,
            "layers": [{"codec": codec, "bytes": size} for codec, size in result.layers],
            "header_bytes": result.header_bytes, "target": goal.describe(), "met": result.met,
            "reason": result.reason}


def compress_files(codec: GanCodec, pairs: list[tuple[Path, Path]], *, goal: RateTarget | None = None,
                   keep_going: bool = False, group_size: int = 64, rank: int = 0, world: int = 1,
                   on_group: Callable[[int, int], None] | None = None) -> CompressReport:
    """Compress (image, .grv file) ``pairs`` (from :func:`compress_targets`) with ``codec``, or to ``goal`` by
    rate control, ``group_size`` images per search, writing each group's files as it finishes.

    Each row: input, output, bytes, bpp, PSNR and SSIM of the decoded file against the input, and the search's
    SSIM stages (or, with a goal, the rate-control fields). ``on_group(done, total)`` runs after each group.
    Under torchrun (``world`` > 1, inside :func:`process_group`) this process takes its share of ``pairs`` and
    rank 0's report holds every rank's rows.
    """
    from ganrev.codecs.base import bits_per_pixel
    from ganrev.io import atomic_write_bytes
    from ganrev.metrics import psnr, ssim
    from ganrev.bitstream.ratecontrol import compress_to_target

    mine = list(enumerate(pairs))[rank::world]
    usable, unusable = [], []
    for index, (image_path, target) in mine:
        try:
            load_checked(image_path)
            usable.append((index, image_path, target))
        except GanrevError as exc:
            unusable.append((index, str(exc)))
    skipped = [message for _, message in sorted(u for part in all_gather(unusable, world) for u in part)]
    if skipped and not keep_going:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        hint = " (--keep-going compresses the others)" if len(pairs) > len(skipped) else ""
        raise InputsRefused(f"{skipped[0]}{more}; nothing was compressed{hint}")
    rows: list[dict[str, Any]] = []
    notes: set[str] = set()
    done: list[Path] = []
    try:
        for start in range(0, len(usable), group_size):
            group = usable[start:start + group_size]
            originals = [load_checked(image_path) for _, image_path, _ in group]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                results = compress_to_target(codec, originals, goal) if goal is not None else codec.compress(originals)
            notes |= {str(w.message) for w in caught}
            measured = []
            for (index, image_path, target), original, result in zip(group, originals, results):
                decoded = codec.decode(result.data)
                measured.append((target, result.data, {
                    "input": str(image_path), "output": str(target), "bytes": len(result.data),
                    "bpp": bits_per_pixel(len(result.data), original.shape[2], original.shape[1]),
                    "psnr": float(psnr(decoded[None], original[None])[0]),
                    "ssim": float(ssim(decoded[None], original[None])[0]),
                    **(_rate_control_fields(result, goal) if goal is not None else {
                        "ssim_latent": result.ssim_latent, "ssim_quantized": result.ssim_quantized,
                        "ssim_refined": result.ssim_refined, "iterations": result.iterations}),
                    "_index": index, **({"rank": rank} if world > 1 else {}),
                }))
            for target, data, row in measured:
                write_output(target, lambda: atomic_write_bytes(target, data))
                done.append(target)
                rows.append(row)
            if on_group is not None:
                on_group(len(done), len(usable))
    except KeyboardInterrupt:
        raise Interrupted(done, len(usable), rank if world > 1 else None) from None
    except GanrevError as exc:
        raise after_partial(exc, done, len(usable)) from exc
    gathered = gather_to_rank0((rows, sorted(notes)), rank, world)
    merged = sorted((row for part_rows, _ in gathered for row in part_rows), key=lambda row: row["_index"])
    for row in merged:
        del row["_index"]
    return CompressReport(merged, sorted({note for _, part_notes in gathered for note in part_notes}), skipped)


def decompress_files(codec: GanCodec, pairs: list[tuple[Path, Path]], *, keep_going: bool = False,
                     explain: Callable[[GanrevError], str] = lambda exc: "",
                     on_file: Callable[[Path, Path, Any], None] | None = None) -> list[str]:
    """Decode (.grv file, image) ``pairs`` (from :func:`decompress_targets`) and write the images.

    Every file is decoded once before anything is written: a damaged one stops the batch with nothing written
    (``explain(error)`` is added to its message), unless ``keep_going``, which skips it. ``on_file(source,
    target, image)`` runs after each write. Returns the skipped files' messages.
    """
    from ganrev.io import save_image

    usable, skipped = [], []
    for path, target in pairs:
        try:
            codec.decode(read_bytes(path))
            usable.append((path, target))
        except GanrevError as exc:
            message = (str(exc) if str(path) in str(exc) else f"{path}: {exc}") + explain(exc)
            if not keep_going:
                hint = " (--keep-going decodes the others)" if len(pairs) > 1 else ""
                raise GanrevError(f"{message}; nothing was decoded{hint}") from exc
            skipped.append(message)
    done: list[Path] = []
    try:
        for path, target in usable:
            image = codec.decode(read_bytes(path))
            write_output(target, lambda: save_image(image, target))
            done.append(target)
            if on_file is not None:
                on_file(path, target, image)
    except KeyboardInterrupt:
        raise Interrupted(done, len(usable)) from None
    except GanrevError as exc:
        raise after_partial(exc, done, len(usable)) from exc
    return skipped
