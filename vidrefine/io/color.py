"""Colour tag names (FFmpeg's spelling) <-> codes, and the YUV matrix swscale uses for them."""

from __future__ import annotations

from dataclasses import dataclass

from av.video.reformatter import ColorRange, Colorspace

# AVColorPrimaries / AVColorTransferCharacteristic / AVColorSpace / AVColorRange codes,
# named as FFmpeg's av_color_*_name() spells them. 2 ("unspecified") and 0 map to None.
PRIMARIES = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "ebu3213",
}
TRANSFERS = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    18: "arib-std-b67",
}
SPACES = {
    0: "gbr",
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    9: "bt2020nc",
    10: "bt2020c",
}
RANGES = {1: "tv", 2: "pc"}

# YUV<->RGB matrix per colour space name, in swscale's terms.
_SWS_MATRIX = {
    "bt709": Colorspace.ITU709,
    "fcc": Colorspace.FCC,
    "bt470bg": Colorspace.ITU601,
    "smpte170m": Colorspace.ITU601,
    "smpte240m": Colorspace.SMPTE240M,
    "bt2020nc": Colorspace.BT2020,
    "bt2020c": Colorspace.BT2020,
}


@dataclass(frozen=True)
class ColorTags:
    """Colour description written into (or read from) a video stream; names as FFmpeg spells them.

    The default is BT.709 limited ("tv") range, what HD players assume for 1080p output.
    """

    primaries: str | None = "bt709"
    trc: str | None = "bt709"
    space: str | None = "bt709"
    range: str | None = "tv"


def name_of(table: dict[int, str], code: int | None) -> str | None:
    """The FFmpeg name of a colour code, or None when unspecified or unknown."""
    return None if code is None else table.get(int(code))


def code_of(table: dict[int, str], name: str | None, what: str) -> int:
    """The code for a colour name (2, "unspecified", for None); ValueError names the choices."""
    if name is None:
        return 2 if table is not RANGES else 0
    for code, known in table.items():
        if known == name:
            return code
    raise ValueError(f"unknown colour {what} {name!r}; known: {', '.join(table.values())}")


def yuv_matrix(space: str | None, height: int) -> Colorspace:
    """The swscale matrix for a colour space; untagged video is BT.709 from 720 lines up, else 601.

    The size rule is what players do for untagged files, so our RGB matches what people saw.
    """
    if space in _SWS_MATRIX:
        return _SWS_MATRIX[space]
    return Colorspace.ITU709 if height >= 720 else Colorspace.ITU601


def swscale_range(range_name: str | None) -> ColorRange:
    """The swscale range for a tag; untagged YUV is limited ("tv") range, as FFmpeg assumes."""
    return ColorRange.JPEG if range_name == "pc" else ColorRange.MPEG
