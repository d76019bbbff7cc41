"""A 5x7 bitmap font for the labels of `runs plot` (drawn by hand for this project).

Each glyph is seven rows of five pixels, one hex byte per row (bit 4 is the leftmost pixel).
Lowercase letters, digits and the punctuation of numbers and names; an upper-case letter is
drawn as its lower case, anything else as `?`.
"""

from __future__ import annotations

WIDTH, HEIGHT = 5, 7
GLYPHS: dict[str, str] = {
    "0": "0e11131519110e",
    "1": "040c040404040e",
    "2": "0e11010204081f",
    "3": "1f02040201110e",
    "4": "02060a121f0202",
    "5": "1f101e0101110e",
    "6": "0608101e11110e",
    "7": "1f010204080808",
    "8": "0e11110e11110e",
    "9": "0e11110f01020c",
    ".": "00000000000c0c",
    "-": "0000001f000000",
    "+": "0004041f040400",
    ":": "000c0c000c0c00",
    "_": "0000000000001f",
    "/": "00010204081000",
    "(": "02040808080402",
    ")": "08040202020408",
    "=": "00001f001f0000",
    " ": "00000000000000",
    "a": "00000e010f110f",
    "b": "1010161911111e",
    "c": "00000e1010110e",
    "d": "01010d1311110f",
    "e": "00000e111f100e",
    "f": "0609081c080808",
    "g": "000f11110f010e",
    "h": "10101619111111",
    "i": "04000c0404040e",
    "j": "0200060202120c",
    "k": "10101214181412",
    "l": "0c04040404040e",
    "m": "00001a15151111",
    "n": "00001619111111",
    "o": "00000e1111110e",
    "p": "00001e111e1010",
    "q": "00000d130f0101",
    "r": "00001619101010",
    "s": "00000f100e011e",
    "t": "08081c08080906",
    "u": "0000111111130d",
    "v": "00001111110a04",
    "w": "0000111115150a",
    "x": "0000110a040a11",
    "y": "000011110f010e",
    "z": "00001f0204081f",
    "?": "0e110102040004",
}


def rows(char: str) -> list[int]:
    """The glyph's seven rows as 5-bit integers."""
    code = GLYPHS.get(char.lower(), GLYPHS["?"])
    return [int(code[i : i + 2], 16) for i in range(0, 14, 2)]
