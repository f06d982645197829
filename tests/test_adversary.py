#!/usr/bin/python3
"""Adversarial edges of dlsend/dlrecv: a FIFO nobody opens (signals must still end the wait),
a peer or the output's reader stopped (SIGSTOP) longer than the receive timeout, a full disk
at the receiver seen from the sender."""

import os
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import MiB  # noqa: E402


def signals_routed(proc):
    """True once proc blocks or catches SIGTERM (its SignalWatcher exists): a signal sent from
    then on is the tool's to handle, not the default action's."""
    bit = 1 << (signal.SIGTERM - 1)
    try:
        with open("/proc/%d/status" % proc.pid) as f:
            for line in f:
                if line.startswith(("SigBlk:", "SigCgt:")) and int(line.split()[1], 16) & bit:
                    return True
    except FileNotFoundError:
        pass
    return not proc.running


class FifoTest(dltest.DlTestCase):
    """A FIFO's open() waits for its other end; SIGINT/SIGTERM/SIGHUP must end that wait with
    exit 130 like at any other moment (they were blocked for the reactor, so the tool ignored
    them until a writer or reader came)."""

    def _stopped_while_opening(self, start, sig):
        fifo = self.path("fifo")
        os.mkfifo(fifo)
        p = start(fifo)
        dltest.wait_until(lambda: signals_routed(p), 10, "%s to route its signals" % p.name)
        p.signal(sig)
        self.assertExited(p, 10, dltest.EXIT_INTERRUPTED)
        self.assertNoCrash(p)

    def test_dlsend_file_fifo_without_writer(self):
        port = dltest.reserved_port()
        self._stopped_while_opening(
            lambda f: self.dlsend("-f", f, "127.0.0.1:%d" % port), signal.SIGTERM)

    def test_dlrecv_output_fifo_without_reader(self):
        self._stopped_while_opening(
            lambda f: self.dlrecv("-o", f, "-l", "127.0.0.1:0"), signal.SIGINT)

    def test_dlrecv_timestamps_fifo_without_reader(self):
        self._stopped_while_opening(
            lambda f: self.dlrecv("--timestamps", f, "-o", self.path("out"), "-l",
                                  "127.0.0.1:0"), signal.SIGHUP)

    def test_fifo_whose_writer_dies_mid_stream_ends_the_stream(self):
        # The writer's end is an end of input, as for a pipe: what it wrote arrives whole.
        fifo = self.path("fifo")
        os.mkfifo(fifo)
        out = self.path("out")
        recv, port = self.listen("dlrecv", stdout=out)
        send = self.dlsend("-f", fifo, "127.0.0.1:%d" % port)
        writer = self.P.start(["/bin/sh", "-c", 'exec >"$1"; head -c 3000000 /dev/zero; '
                               'kill -9 $$', "sh", fifo], name="writer")
        self.assertExited(writer, 20)
        self.assertExitCodes(30, (send, 0), (recv, 0))
        self.assertEqual(os.path.getsize(out), 3000000)


class HandshakeSignalTest(dltest.DlTestCase):
    """A signal while the handshake is half done: exit 130 and the summary, at once."""

    def test_dialer_whose_listener_never_answers(self):
        l = socket.socket()
        self.addCleanup(l.close)
        l.bind(("127.0.0.1", 0))
        l.listen(1)
        l.settimeout(dltest.t(10))
        send = self.dlsend("127.0.0.1:%d" % l.getsockname()[1], stdin=subprocess.PIPE)
        c, _ = l.accept()
        self.addCleanup(c.close)
        c.settimeout(dltest.t(10))
        self.assertTrue(c.recv(1), "no HELLO from dlsend")  # its HELLO, which we never answer
        send.signal(signal.SIGTERM)
        self.assertExited(send, 10, dltest.EXIT_INTERRUPTED)
        self.assertRegex(send.stderr(), r"dlsend: read 0 bytes")
        self.assertNoCrash(send)

    def test_listener_with_half_a_hello(self):
        recv, port = self.listen("dlrecv", stdout=self.path("out"))

        def sockets():
            fds = os.listdir("/proc/%d/fd" % recv.pid)
            return sum(os.readlink("/proc/%d/fd/%s" % (recv.pid, fd)).startswith("socket:")
                       for fd in fds)
        before = sockets()   # the listening socket(s); the accepted one joins them
        c = socket.create_connection(("127.0.0.1", port), timeout=dltest.t(10))
        self.addCleanup(c.close)
        c.sendall(b"\xd7")   # the native first byte, then nothing
        dltest.wait_until(lambda: sockets() > before or not recv.running, 10,
                          "dlrecv to accept the stranger")
        recv.signal(signal.SIGINT)
        self.assertExited(recv, 10, dltest.EXIT_INTERRUPTED)
        self.assertRegex(recv.stderr(), r"dlrecv: received 0 bytes")
        self.assertNoCrash(recv)


class StoppedTest(dltest.DlTestCase):
    """SIGSTOP for longer than the 1 s receive timeout, then SIGCONT, in the middle of a stream."""

    def _peer_stopped(self, who):
        out = self.path("out")
        recv, port = self.listen("dlrecv", "-v", "-t", "1s", stdout=out)
        send = self.dlsend("-v", "-t", "1s", "127.0.0.1:%d" % port, stdin=subprocess.PIPE)
        blocks = list(dltest.pattern_blocks(16 * MiB))
        self.feed(send.popen.stdin, blocks[:4], close=False)
        dltest.wait_until(lambda: os.path.getsize(out) >= 4 * MiB or not recv.running, 20,
                          "4 MiB at the receiver")
        victim, other = (send, recv) if who == "dlsend" else (recv, send)
        victim.signal(signal.SIGSTOP)
        rest = dltest.Feeder(send.popen.stdin, iter(blocks[4:]), close=True)
        rest.start()
        # The other side gives up on the connection (receive timeout), not on the session.
        dltest.wait_until(lambda: "nothing received" in other.stderr() or not other.running,
                          20, "%s to notice the silence" % other.name)
        victim.signal(signal.SIGCONT)
        self.assertExitCodes(30, (send, 0), (recv, 0))
        with open(out, "rb") as f:
            self.assertTrue(f.read() == b"".join(blocks), "output differs after the stop")
        self.assertIn("session resumed", recv.stderr())

    def test_sender_stopped(self):
        self._peer_stopped("dlsend")

    def test_receiver_stopped(self):
        self._peer_stopped("dlrecv")

    def test_output_reader_stopped(self):
        # dlrecv | cat, cat stopped: dlrecv stops reading (its receive timeout does not run),
        # the sender's input stalls within the window, and all completes after SIGCONT.
        pf = self.path("pf")
        recv = self.dlrecv("-v", "-t", "1s", "-l", "127.0.0.1:0", "--port-file", pf,
                           stdout=subprocess.PIPE, measure_rss=True)
        cat = self.P.start(["cat"], stdin=recv.popen.stdout, stdout=subprocess.PIPE, name="cat")
        recv.popen.stdout.close()
        port = dltest.wait_port_file(pf, recv)
        send = self.dlsend("-v", "-t", "1s", "127.0.0.1:%d" % port, stdin=subprocess.PIPE)
        drain = dltest.Drainer(cat.popen.stdout)
        drain.start()
        total = 128 * MiB
        feed = dltest.Feeder(send.popen.stdin, dltest.pattern_blocks(total), close=True)
        feed.start()
        dltest.wait_until(lambda: drain.count >= 8 * MiB, 20, "8 MiB through cat")
        cat.signal(signal.SIGSTOP)
        # The input stalls: bounded by the window (8M), the pipes and socket buffers.
        def stalled():
            before = feed.count
            time.sleep(0.5)
            return feed.count == before
        dltest.wait_until(stalled, 20, "dlsend to stop reading its input")
        time.sleep(1.5)   # the stop itself: longer than -t 1s (a fault duration)
        # What dlsend took in beyond what came out of cat: the window (8M), pipes and socket
        # buffers, never the rest of the 128 MiB.
        self.assertLess(feed.count - drain.count, 40 * MiB, "dlsend read on while the reader "
                        "was stopped (%d of %d bytes taken)" % (feed.count, total))
        cat.signal(signal.SIGCONT)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        drain.join(10)
        self.assertEqual(drain.count, total)
        self.assertEqual(drain.sha.hexdigest(), feed.sha.hexdigest())
        for p in (send, recv):
            self.assertNotIn("nothing received", p.stderr(), p.describe())
            self.assertNotIn("reconnect", p.stderr().replace("0 reconnects", ""), p.describe())
        self.assertLess(recv.maxrss_kib, 64 * 1024, "dlrecv's peak RSS while its reader stopped")

    def test_interrupted_while_the_output_reader_is_stopped(self):
        # SIGTERM while dlrecv waits for its output (cat stopped): it leaves at once (130, the
        # summary) without waiting to write what it holds, and the sender is told (5).
        pf = self.path("pf")
        recv = self.dlrecv("-l", "127.0.0.1:0", "--port-file", pf, stdout=subprocess.PIPE)
        cat = self.P.start(["cat"], stdin=recv.popen.stdout, stdout=subprocess.PIPE, name="cat")
        recv.popen.stdout.close()
        port = dltest.wait_port_file(pf, recv)
        send = self.dlsend("127.0.0.1:%d" % port, stdin=subprocess.PIPE)
        drain = dltest.Drainer(cat.popen.stdout)
        drain.start()
        feed = dltest.Feeder(send.popen.stdin, dltest.pattern_blocks(64 * MiB), close=True)
        feed.start()
        dltest.wait_until(lambda: drain.count >= 4 * MiB, 20, "4 MiB through cat")
        cat.signal(signal.SIGSTOP)
        self.addCleanup(cat.signal, signal.SIGCONT)

        def stalled():
            before = feed.count
            time.sleep(0.3)
            return feed.count == before
        dltest.wait_until(stalled, 20, "dlsend to stop reading its input")
        recv.signal(signal.SIGTERM)
        self.assertExitCodes(10, (recv, dltest.EXIT_INTERRUPTED), (send, dltest.EXIT_DISCONNECTED))
        self.assertRegex(recv.stderr(), r"dlrecv: received \d+ bytes")
        self.assertIn("stopped: dlrecv was interrupted", send.stderr())


if __name__ == "__main__":
    unittest.main(testRunner=dltest.SummaryRunner(verbosity=2))
