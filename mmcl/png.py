"""PNG decoding that cannot take the interpreter down.

torchvision's libpng decoder is about 4x faster than PIL on our renders (docs/bench/train.md),
but any error libpng raises inside it -- a chunk CRC that does not match, a zlib stream that
fails its check, a bad row filter, too little image data -- ends the process with a
segmentation fault (measured with torchvision 0.29: ``libpng error: IDAT: CRC error`` followed
by exit status 139, also inside DataLoader workers, where the file is then never named).

So :func:`check_png` proves, in Python and before libpng sees the bytes, everything libpng
would reject in the streams we decode with it: the signature, every chunk's length and CRC,
``IHDR`` first and well-formed, the ``IDAT`` chunks consecutive, ``IEND`` last, the zlib
stream complete (its Adler-32 checked by :mod:`zlib`) and exactly as long as the image needs,
and every scanline's filter type in 0..4. Only 8-bit greyscale/RGB(A) images (what the
renderer writes) take the libpng path; anything else (palette, 16-bit, unknown critical
chunks) is decoded by PIL, which raises ordinary exceptions. A problem is a
:class:`PNGError` whose message says what is wrong; callers add the shard and key.

Cost: one extra zlib inflate of the image data: the first decode of a 64x64 render takes
0.61 ms against 0.33 ms for libpng alone (1.81x, docs/bench/integrity.json). A training run
reads each image many times, so a process remembers the BLAKE2b digest of every image it has
checked and decodes those directly afterwards (0.30 ms, no cost measurable against the plain
decode); changed bytes have another digest and are checked again.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib

import numpy as np
import torch

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# channels per pixel for the colour types libpng decodes here without a palette
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")
# digests of the images this process has checked (bounded: about 100 MB at the limit)
_CHECKED: set[bytes] = set()
MAX_REMEMBERED = 1 << 20
# libpng's default user limit on width and height; larger images go to PIL
MAX_SIDE = 1_000_000
# Adam7: (x start, y start, x step, y step) of each pass
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


class PNGError(ValueError):
    """The bytes are not a PNG we can decode; the message says why."""


def _scanlines(width: int, height: int, channels: int, interlace: int) -> list[tuple[int, int]]:
    """(rows, bytes per row without the filter byte) of every (pass of the) image."""
    if interlace == 0:
        return [(height, width * channels)]
    out = []
    for x0, y0, dx, dy in ADAM7:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w > 0 and h > 0:
            out.append((h, w * channels))
    return out


def check_png(data: bytes) -> bool:
    """Raise :class:`PNGError` unless ``data`` is a complete, uncorrupted PNG. Returns True when
    libpng may decode it (8-bit, no palette, no unknown critical chunk), False when only PIL should."""
    if not data.startswith(SIGNATURE):
        raise PNGError("no PNG signature")
    pos, n = len(SIGNATURE), len(data)
    header: tuple[int, ...] | None = None
    idat: list[bytes] = []
    idat_done = False
    libpng_ok = True
    while True:
        if pos + 8 > n:
            raise PNGError(f"truncated: chunk header at byte {pos} of {n}, IEND not reached")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if length > 0x7FFFFFFF or pos + 12 + length > n:
            raise PNGError(f"truncated: chunk {kind!r} at byte {pos} needs {length} bytes, IEND not reached")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if not kind.isalpha():
            raise PNGError(f"chunk type {kind!r} at byte {pos} is not four letters")
        if zlib.crc32(kind + body) != crc:
            raise PNGError(f"CRC mismatch in chunk {kind.decode('latin-1')!r} at byte {pos}")
        if header is None and kind != b"IHDR":
            raise PNGError(f"first chunk is {kind!r}, not IHDR")
        if kind == b"IHDR":
            if header is not None or length != 13:
                raise PNGError("IHDR repeated or not 13 bytes long")
            header = struct.unpack(">IIBBBBB", body)
            width, height, depth, colour, compression, filtering, interlace = header
            if not (0 < width < 1 << 31 and 0 < height < 1 << 31):
                raise PNGError(f"image size {width}x{height} out of range")
            if width > MAX_SIDE or height > MAX_SIDE:
                libpng_ok = False
            if compression != 0 or filtering != 0 or interlace not in (0, 1):
                raise PNGError("unknown compression, filter or interlace method in IHDR")
            if depth != 8 or colour not in CHANNELS:
                libpng_ok = False
        elif kind == b"IDAT":
            if idat_done:
                raise PNGError("IDAT chunks are not consecutive")
            idat.append(body)
        elif kind == b"IEND":
            break
        else:
            if idat:
                idat_done = True
            if kind[0] & 0x20 == 0 and kind not in CRITICAL:
                libpng_ok = False  # an unknown critical chunk: libpng refuses it, PIL may not
        pos += 12 + length
    if not idat:
        raise PNGError("no IDAT chunk")
    if not libpng_ok:
        return False
    width, height, _, colour, _, _, interlace = header
    stream = b"".join(idat)
    if len(stream) >= 2 and stream[0] >> 4 != 7:
        # a window under 32 KiB: libpng inflates row by row and then rejects distances beyond
        # the declared window, which a one-shot inflate here would not notice (PIL decodes it)
        return False
    expected = sum(rows * (1 + size) for rows, size in _scanlines(width, height, CHANNELS[colour], interlace))
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(stream, expected + 1)  # never more than the image needs (zip bombs)
        if len(raw) == expected and not inflater.eof:  # the stream's end and Adler-32 may be pending
            raw += inflater.decompress(inflater.unconsumed_tail, 1)
    except zlib.error as exc:
        raise PNGError(f"image data do not inflate ({exc})") from None
    if len(raw) > expected:
        raise PNGError(f"image data hold more than the {expected} bytes a {width}x{height} image needs")
    if not inflater.eof:
        raise PNGError("image data end before the zlib stream does")
    if len(raw) != expected or inflater.unused_data:
        raise PNGError(f"image data hold {len(raw)} bytes, a {width}x{height} image needs {expected}")
    offset = 0
    for rows, size in _scanlines(width, height, CHANNELS[colour], interlace):
        filters = np.frombuffer(raw, np.uint8, offset=offset, count=rows * (1 + size))[:: 1 + size]
        if int(filters.max()) > 4:
            raise PNGError(f"scanline filter type {int(filters.max())} (PNG knows 0..4)")
        offset += rows * (1 + size)
    return True


def _torchvision_decoder():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_png
    except ImportError:
        return None
    return lambda data: decode_png(
        torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB
    )


# torchvision's libpng decoder, PNG bytes -> uint8 (3, H, W) RGB, or None where torchvision has
# none; unguarded: only for bytes :func:`check_png` cleared (docs/bench/integrity.json times it)
TORCHVISION_DECODE = _torchvision_decoder()


def _pil_decode(data: bytes) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()
    except Exception as exc:  # PIL raises many types for corrupt data
        raise PNGError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def decode_png_rgb(data: bytes) -> torch.Tensor:
    """PNG bytes -> uint8 ``(3, H, W)``; :class:`PNGError` for anything that is not a sound PNG.
    torchvision's libpng decoder for what :func:`check_png` cleared, PIL otherwise."""
    digest = hashlib.blake2b(data, digest_size=16).digest()
    if digest in _CHECKED or (check_png(data) and TORCHVISION_DECODE is not None):
        with warnings.catch_warnings():  # torchvision >= 0.29 deprecates its image codecs (still present)
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                image = TORCHVISION_DECODE(data)
            except RuntimeError as exc:  # what libpng reports before it could crash (header stage)
                raise PNGError(str(exc).splitlines()[0]) from None
        if len(_CHECKED) < MAX_REMEMBERED:
            _CHECKED.add(digest)
        return image
    return _pil_decode(data)
