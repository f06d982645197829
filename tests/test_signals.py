#!/usr/bin/python3
"""Signals: SIGINT/SIGTERM end a waiting tool with exit 130 and a summary line; SIGUSR1 prints
interim stats on stderr without stopping a running transfer."""

import os
import signal
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import MiB  # noqa: E402


class SignalTest(dltest.DlTestCase):

    def _interrupt_waiting(self, tool, sig, *args):
        p, _ = self.listen(tool, "-v", *args, stdin=subprocess.PIPE
                           if tool == "dlsend" else None)
        p.signal(sig)
        self.assertExited(p, 10, dltest.EXIT_INTERRUPTED)
        lines = [l for l in p.stderr().splitlines() if l.strip()]
        # -v: "listening on ..." then the end-of-run summary line.
        summary = [l for l in lines if "listening on" not in l]
        self.assertTrue(summary, "%s: no summary line after %s\n%s"
                        % (tool, signal.Signals(sig).name, p.describe()))
        self.assertNoCrash(p)

    def test_sigint_waiting_dlrecv(self):
        self._interrupt_waiting("dlrecv", signal.SIGINT)

    def test_sigterm_waiting_dlrecv(self):
        self._interrupt_waiting("dlrecv", signal.SIGTERM)

    def test_sigint_waiting_dlsend_listener(self):
        self._interrupt_waiting("dlsend", signal.SIGINT)

    def test_sigint_dialer_retrying(self):
        # dlsend --wait: interrupted while retrying its first connect.
        port = dltest.reserved_port()
        p = self.dlsend("-v", "--wait", "30", "127.0.0.1:%d" % port, stdin=subprocess.PIPE)
        self.assertIsNone(p.wait(1.0), "dlsend --wait 30 gave up at once\n%s" % p.describe())
        p.signal(signal.SIGINT)
        self.assertExited(p, 10, dltest.EXIT_INTERRUPTED)
        self.assertNoCrash(p)

    def test_sigint_mid_transfer(self):
        out = self.path("out")
        recv, port = self.listen("dlrecv", "-v", stdout=out)
        send = self.dlsend("-v", "127.0.0.1:%d" % port, stdin=subprocess.PIPE)
        blocks = list(dltest.pattern_blocks(2 * MiB))
        self.feed(send.popen.stdin, blocks, close=False)
        dltest.wait_until(lambda: os.path.getsize(out) >= 2 * MiB or not recv.running, 20,
                          "2 MiB at the receiver")
        send.signal(signal.SIGINT)
        self.assertExited(send, 10, dltest.EXIT_INTERRUPTED)
        self.assertNoCrash(send)
        # The interrupted sender tells the receiver, which keeps what it got and stops at once
        # (disconnected) instead of waiting --reconnect seconds for a session that is gone.
        self.assertExited(recv, 10, dltest.EXIT_DISCONNECTED)
        self.assertIn("stopped: dlsend was interrupted", recv.stderr())
        with open(out, "rb") as f:
            self.assertTrue(f.read() == b"".join(blocks), "received data differs")

    def test_sigusr1_interim_stats(self):
        out = self.path("out")
        recv, port = self.listen("dlrecv", stdout=out)
        send = self.dlsend("127.0.0.1:%d" % port, stdin=subprocess.PIPE)
        blocks = list(dltest.pattern_blocks(16 * MiB))
        # First half, then make sure the transfer is under way (bytes at the receiver).
        self.feed(send.popen.stdin, blocks[:8], close=False)
        dltest.wait_until(lambda: os.path.getsize(out) >= 8 * MiB or not recv.running, 20,
                          "8 MiB at the receiver")
        self.assertTrue(send.running and recv.running, self.P.describe())
        for p in (send, recv):
            before = p.stderr()
            p.signal(signal.SIGUSR1)
            dltest.wait_until(lambda p=p: p.stderr() != before or not p.running, 10,
                              "%s to print stats on SIGUSR1" % p.name)
            self.assertTrue(p.running, "%s stopped on SIGUSR1\n%s" % (p.name, p.describe()))
            new = p.stderr()[len(before):]
            self.assertTrue(any(ch.isdigit() for ch in new),
                            "%s SIGUSR1 stats carry no numbers: %r" % (p.name, new))
        # Second half: the transfer goes on and completes.
        self.feed(send.popen.stdin, blocks[8:], close=True)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        with open(out, "rb") as f:
            self.assertTrue(f.read() == b"".join(blocks), "output differs after SIGUSR1")
        self.assertNoCrash(send)
        self.assertNoCrash(recv)


if __name__ == "__main__":
    unittest.main(testRunner=dltest.SummaryRunner(verbosity=2))
