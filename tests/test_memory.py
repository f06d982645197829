#!/usr/bin/python3
"""Memory stays bounded: 2 GiB streamed through dlsend | dlrecv, peak RSS of each < 64 MiB.

Peak RSS is os.wait4()'s ru_maxrss (KiB), taken by a small launcher process that fork()s the
tool (dltest._RSS_LAUNCHER): spawned straight from this test process, a child's ru_maxrss would
include this process's own peak RSS (Linux folds the pre-exec address space into it)."""

import os
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import GiB, MiB  # noqa: E402

LIMIT_KIB = 64 * 1024
SIZE = int(os.environ.get("DLTEST_MEMORY_BYTES", 2 * GiB))


class MemoryTest(dltest.DlTestCase):

    def _stream(self, receiver_listens, extra_send=(), extra_recv=(), blocks=None):
        if receiver_listens:
            recv, port = self.listen("dlrecv", *extra_recv, stdout=subprocess.PIPE,
                                     measure_rss=True)
            send = self.dlsend("127.0.0.1:%d" % port, *extra_send, stdin=subprocess.PIPE,
                               measure_rss=True)
        else:
            send, port = self.listen("dlsend", *extra_send, stdin=subprocess.PIPE,
                                     measure_rss=True)
            recv = self.dlrecv("127.0.0.1:%d" % port, *extra_recv, stdout=subprocess.PIPE,
                               measure_rss=True)
        drain = dltest.Drainer(recv.popen.stdout)
        feed = dltest.Feeder(send.popen.stdin, blocks or dltest.pattern_blocks(SIZE))
        t0 = time.monotonic()
        drain.start()
        feed.start()
        self.assertExitCodes(120, (send, 0), (recv, 0))
        feed.join(10)
        drain.join(10)
        elapsed = time.monotonic() - t0
        self.assertIsNone(feed.error, "feeding dlsend failed: %s" % feed.error)
        self.assertEqual(drain.count, SIZE, "received byte count")
        self.assertEqual(drain.sha.hexdigest(), feed.sha.hexdigest(), "content differs")
        rss = {p.name: p.maxrss_kib for p in (send, recv)}
        sys.stderr.write("\n  %d MiB in %.1f s (%.0f MiB/s); peak RSS KiB: %s\n"
                         % (SIZE // MiB, elapsed, SIZE / MiB / elapsed, rss))
        for name, kib in rss.items():
            self.assertIsNotNone(kib, "no rusage for %s" % name)
            self.assertLess(kib, LIMIT_KIB, "%s peak RSS %d KiB >= %d KiB"
                            % (name, kib, LIMIT_KIB))

    def test_rss_measurement_excludes_the_test_process(self):
        # Control: /bin/true, measured while this process holds 256 MiB, must show a few MiB.
        ballast = bytearray(256 * MiB)
        ballast[::4096] = b"x" * len(ballast[::4096])   # touch every page
        p = self.P.start(["/bin/true"], measure_rss=True)
        self.assertExited(p, 20, 0)
        self.assertIsNotNone(p.maxrss_kib)
        self.assertLess(p.maxrss_kib, 32 * 1024, "launcher measured %d KiB for /bin/true"
                        % p.maxrss_kib)
        del ballast

    def test_2gib_stream_receiver_listens(self):
        self._stream(receiver_listens=True)

    def test_512mib_lines_sender_listens(self):
        # Record mode, many small messages (~100 bytes): per-message bookkeeping must not grow
        # either. A quarter of SIZE to stay quick.
        global SIZE
        saved = SIZE
        SIZE = (saved // 4) // MiB * MiB
        try:
            self._stream(receiver_listens=False, extra_send=("--lines",),
                         extra_recv=("--lines",), blocks=line_blocks(SIZE))
        finally:
            SIZE = saved


def line_blocks(size):
    """size bytes (a multiple of 1 MiB) of text lines; each 1 MiB block ends with a newline."""
    lines, n, i = [], 0, 0
    while True:
        line = b"%08d %s\n" % (i, b"abcdefghij" * (i % 20))
        if n + len(line) > MiB - 64:
            break
        lines.append(line)
        n += len(line)
        i += 1
    body = b"".join(lines)
    pad = MiB - len(body) - 9 - 1
    body += b"p" * pad + b"\n"
    for k in range(size // MiB):
        yield b"%08d\n" % (k % 100000000) + body


if __name__ == "__main__":
    unittest.main(testRunner=dltest.SummaryRunner(verbosity=2))
