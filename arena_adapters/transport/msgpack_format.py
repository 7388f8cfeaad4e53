"""The msgpack format's type codes, for plugins that walk msgpack bytes themselves.

One table of what follows each code, so that every reader of raw msgpack (the openpi reader, the
GR00T payload walk) sizes values the same way.
"""

from __future__ import annotations

import struct

U16 = struct.Struct(">H").unpack_from
U32 = struct.Struct(">I").unpack_from

NUMBERS = {
    0xCA: struct.Struct(">f"), 0xCB: struct.Struct(">d"),
    0xCC: struct.Struct(">B"), 0xCD: struct.Struct(">H"), 0xCE: struct.Struct(">I"), 0xCF: struct.Struct(">Q"),
    0xD0: struct.Struct(">b"), 0xD1: struct.Struct(">h"), 0xD2: struct.Struct(">i"), 0xD3: struct.Struct(">q"),
}
"""A number's code: the layout of the bytes after it."""
CONSTANTS = {0xC0: None, 0xC2: False, 0xC3: True}
"""nil, false and true: one byte each."""
SIZED = {
    0xC4: (1, "bin"), 0xC5: (2, "bin"), 0xC6: (4, "bin"), 0xD9: (1, "str"), 0xDA: (2, "str"), 0xDB: (4, "str"),
    0xDC: (2, "list"), 0xDD: (4, "list"), 0xDE: (2, "map"), 0xDF: (4, "map"),
}
"""A sized value's code: (width of its big-endian size, what follows: bin, str, list or map)."""
FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
"""A fixext code: the bytes of its data (after the type byte)."""
EXT_WIDTH = {0xC7: 1, 0xC8: 2, 0xC9: 4}
"""An ext code: the width of its size."""
