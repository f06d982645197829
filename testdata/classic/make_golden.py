#!/usr/bin/env python3
"""Regenerates the classic-format golden files in this directory (python3 stdlib only).

Run from anywhere: python3 testdata/classic/make_golden.py
Output is deterministic, so re-running must leave `git diff` empty.
Also refreshes the libFuzzer seed corpus in testdata/fuzz/classic_codec/.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FUZZ_DIR = os.path.join(HERE, "..", "fuzz", "classic_codec")


def frame(payload: bytes, ts: float) -> bytes:
    # Length is a signed int64 on the wire, timestamp an IEEE-754 double, both little-endian.
    return (b"\x20" * 5 + struct.pack("<q", len(payload)) + struct.pack("<d", ts)
            + b"\x21" * 5 + payload + b"\x22" * 5)


WORKED_EXAMPLE = bytes.fromhex(
    "2020202020" "0300000000000000" "cdcccccccc" "dc5e40" "2121212121" "414243" "2222222222")
assert frame(b"ABC", 123.45) == WORKED_EXAMPLE and len(WORKED_EXAMPLE) == 34

GOLDEN = {
    "worked_example.bin": WORKED_EXAMPLE,
    "keepalive.bin": frame(b"", 1.0),
    "empty_frame.bin": frame(b"", 0.0),
    "negative_ts.bin": frame(b"lost in the seed", -1.0),
    "two_frames.bin": frame(b"first", 1700000000.25) + frame(b"second frame", 2.5),
    # No 0x20 in the garbage, so a single bad-start skip of 7 bytes reaches the frame.
    "garbage_then_frame.bin": b"GARBAGE" + frame(b"after garbage", 42.0),
    "spaces_then_frame.bin": b"\x20" + frame(b"after a space", 7.0),
    "large_frame.bin": frame(bytes((i * 7) % 251 for i in range(100000)), 3.14159),
}


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def main() -> None:
    for name, data in GOLDEN.items():
        write(os.path.join(HERE, name), data)

    os.makedirs(FUZZ_DIR, exist_ok=True)
    # The 100 kB frame stays out of the corpus: libFuzzer sizes its inputs after the largest seed.
    for name, data in GOLDEN.items():
        if name != "large_frame.bin":
            write(os.path.join(FUZZ_DIR, name), data)
    # Truncated variants exercise need_more at every interesting boundary.
    we = WORKED_EXAMPLE
    truncated = {
        "trunc_start.bin": we[:3],
        "trunc_header.bin": we[:20],
        "trunc_payload.bin": we[:28],
        "trunc_footer.bin": we[:32],
        "bad_footer.bin": we[:29] + b"\x22\x22\x21\x22\x22",
        "negative_length.bin": b"\x20" * 5 + struct.pack("<q", -5) + we[13:],
        "huge_length.bin": b"\x20" * 5 + struct.pack("<q", 1 << 62) + we[13:],
        "medium_frame.bin": frame(bytes((i * 7) % 251 for i in range(2000)), 9.0),
        "garbage_then_partial.bin": b"xy\x20\x20z" + we[:10],
    }
    for name, data in truncated.items():
        write(os.path.join(FUZZ_DIR, name), data)


if __name__ == "__main__":
    main()
