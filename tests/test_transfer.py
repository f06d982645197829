#!/usr/bin/python3
"""Transfers that must work: big files both ways, IPv6, unix sockets, empty input, record modes,
a framed relay chain, and --count."""

import os
import signal
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import MiB, wait_port_file  # noqa: E402


class TransferTest(dltest.DlTestCase):

    def _file(self, name, size):
        path = self.path(name)
        dltest.make_random_file(path, size)
        return path

    def test_100mib_receiver_listens(self):
        src = self._file("in", 100 * MiB)
        out = self.path("out")
        recv, port = self.listen("dlrecv", stdout=out)
        send = self.dlsend("127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(120, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertNoCrash(send)
        self.assertNoCrash(recv)

    def test_100mib_sender_listens(self):
        src = self._file("in", 100 * MiB)
        out = self.path("out")
        send, port = self.listen("dlsend", "-f", src)
        recv = self.dlrecv("127.0.0.1:%d" % port, stdout=out)
        self.assertExitCodes(120, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_stdin_to_stdout(self):
        src = self._file("in", 3 * MiB + 17)
        out = self.path("out")
        recv, port = self.listen("dlrecv", stdout=out)
        send = self.dlsend("127.0.0.1:%d" % port, stdin=src)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_output_option(self):
        src = self._file("in", 1 * MiB + 5)
        out = self.path("out")
        recv, port = self.listen("dlrecv", "-o", out)
        send = self.dlsend("127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    @unittest.skipUnless(dltest.have_ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6(self):
        src = self._file("in", 256 * 1024 + 3)
        out = self.path("out")
        recv, port = self.listen("dlrecv", port="[::1]:0", stdout=out)
        send = self.dlsend("[::1]:%d" % port, "-f", src)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_unix_socket(self):
        src = self._file("in", 256 * 1024 + 5)
        out = self.path("out")
        sock = self.sock_path("s.sock")
        recv = self.dlrecv("-l", "unix:" + sock, stdout=out)
        # No port to report for unix sockets: wait for the socket file instead (bind happens
        # just before listen, so the dialer gets --wait to cover that instant).
        dltest.wait_until(lambda: os.path.exists(sock) or not recv.running, 10,
                          "unix socket %s to appear" % sock)
        self.assertTrue(recv.running, recv.describe())
        send = self.dlsend("--wait", "10", "unix:" + sock, "-f", src)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_unix_socket_sender_listens(self):
        src = self._file("in", 64 * 1024)
        out = self.path("out")
        sock = self.sock_path("s2.sock")
        send = self.dlsend("-l", "unix:" + sock, "-f", src)
        dltest.wait_until(lambda: os.path.exists(sock) or not send.running, 10,
                          "unix socket %s to appear" % sock)
        recv = self.dlrecv("--wait", "10", "unix:" + sock, stdout=out)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_empty_input(self):
        empty = self.path("empty")
        open(empty, "wb").close()
        for how in ("file", "stdin"):
            with self.subTest(how=how):
                out = self.path("out-" + how)
                recv, port = self.listen("dlrecv", stdout=out)
                if how == "file":
                    send = self.dlsend("127.0.0.1:%d" % port, "-f", empty)
                else:
                    send = self.dlsend("127.0.0.1:%d" % port)   # stdin = /dev/null
                self.assertExitCodes(30, (send, 0), (recv, 0))
                self.assertEqual(os.path.getsize(out), 0)

    def _records(self, mode, sep):
        recs = [b"", b"a", b"hello world", b"x" * 5000, b"\xff\xfe binary \x01",
                b"tab\tsep", b""] + [b"line %d" % i for i in range(2000)]
        other = b"\0" if sep == b"\n" else b"\n"
        recs.append(b"contains the other separator " + other + b" inside")
        data = b"".join(r + sep for r in recs)
        src = self.path("in-" + mode)
        with open(src, "wb") as f:
            f.write(data)
        out = self.path("out-" + mode)
        recv, port = self.listen("dlrecv", mode, stdout=out)
        send = self.dlsend(mode, "127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_lines(self):
        self._records("--lines", b"\n")

    def test_null(self):
        self._records("--null", b"\0")

    def test_timestamps_log_and_framed_timestamps_kept(self):
        import struct
        recs = [(b"one", 1.5), (b"two!", 1700000000.25), (b"", -3.0)]
        src = self.path("in.dlr")
        with open(src, "wb") as f:
            for payload, ts in recs:
                f.write(b"DLRF" + struct.pack(">Id", len(payload), ts) + payload)
        out, log = self.path("out.dlr"), self.path("ts.log")
        recv, port = self.listen("dlrecv", "--framed", "--timestamps=" + log, stdout=out)
        send = self.dlsend("--framed", "127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(30, (send, 0), (recv, 0))
        self.assertSameFile(src, out)   # boundaries and timestamps survive the trip
        with open(log) as f:
            lines = [l.split() for l in f.read().splitlines()]
        self.assertEqual([(float(a), int(b), int(c)) for a, b, c in lines],
                         [(ts, i + 1, len(p)) for i, (p, ts) in enumerate(recs)])

    def test_keep_open_serves_one_session_after_another(self):
        out = self.path("out")
        recv, port = self.listen("dlrecv", "--keep-open", stdout=out)
        parts = []
        for i in range(3):
            src = self._file("in%d" % i, 1 * MiB + i)
            send = self.dlsend("127.0.0.1:%d" % port, "-f", src, name="dlsend-%d" % i)
            self.assertExitCodes(30, (send, 0))
            with open(src, "rb") as f:
                parts.append(f.read())
        self.assertTrue(recv.running, "dlrecv --keep-open exited after a session")
        recv.signal(signal.SIGTERM)
        self.assertExited(recv, 10, code=130)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"".join(parts))

    def test_forced_progress_and_summary(self):
        src = self._file("in", 4 * MiB)
        recv, port = self.listen("dlrecv", "-o", self.path("out"))
        send = self.dlsend("--progress", "127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(30, (send, 0), (recv, 0))
        self.assertRegex(send.stderr(), r"dlsend: read 4194304 bytes .* acknowledged 4194304 bytes .*bit/s")
        self.assertEqual(recv.stderr(), "")   # not a terminal and not asked: silent


    def test_framed_relay_chain(self):
        # dlsend -> dlrecv --framed | dlsend --framed -> dlrecv : byte-exact end to end
        src = self._file("in", 8 * MiB + 333)
        out = self.path("out")
        final, port3 = self.listen("dlrecv", stdout=out, name="final-dlrecv")
        mid_recv, port1 = None, None
        pf1 = self.path("pf1")
        mid_recv = self.dlrecv("-l", "0", "--port-file", pf1, "--framed",
                               stdout=subprocess.PIPE, name="mid-dlrecv")
        mid_send = self.dlsend("--framed", "127.0.0.1:%d" % port3,
                               stdin=mid_recv.popen.stdout, name="mid-dlsend")
        mid_recv.popen.stdout.close()   # only mid-dlsend holds the pipe now
        port1 = wait_port_file(pf1, mid_recv)
        first = self.dlsend("127.0.0.1:%d" % port1, "-f", src, "--chunk", "65536",
                            name="first-dlsend")
        self.assertExitCodes(90, (first, 0), (mid_recv, 0), (mid_send, 0), (final, 0))
        self.assertSameFile(src, out)

    def test_framed_lines_chain(self):
        # record boundaries survive the chain: --lines in, --framed in the middle, --lines out
        data = b"".join(b"record %d %s\n" % (i, b"z" * (i % 97)) for i in range(5000))
        src = self.path("in")
        with open(src, "wb") as f:
            f.write(data)
        out = self.path("out")
        final, port3 = self.listen("dlrecv", "--lines", stdout=out, name="final-dlrecv")
        pf1 = self.path("pf1")
        mid_recv = self.dlrecv("-l", "0", "--port-file", pf1, "--framed",
                               stdout=subprocess.PIPE, name="mid-dlrecv")
        mid_send = self.dlsend("--framed", "127.0.0.1:%d" % port3,
                               stdin=mid_recv.popen.stdout, name="mid-dlsend")
        mid_recv.popen.stdout.close()
        port1 = wait_port_file(pf1, mid_recv)
        first = self.dlsend("--lines", "127.0.0.1:%d" % port1, "-f", src, name="first-dlsend")
        self.assertExitCodes(90, (first, 0), (mid_recv, 0), (mid_send, 0), (final, 0))
        self.assertSameFile(src, out)

    def test_count_stops_after_n_lines(self):
        out = self.path("out")
        recv, port = self.listen("dlrecv", "--lines", "-c", "3", stdout=out)
        send = self.dlsend("--lines", "127.0.0.1:%d" % port, stdin=subprocess.PIPE)
        # The sender's input stays open: dlrecv must stop on its own after 3 lines.
        lines = b"".join(b"line %d\n" % i for i in range(10))
        send.popen.stdin.write(lines)
        send.popen.stdin.flush()
        self.assertExited(recv, 30, 0)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"line 0\nline 1\nline 2\n")
        # The receiver tells the sender it stopped on purpose: no waiting to reconnect.
        rc = self.assertExited(send, 5)
        self.assertEqual(rc, dltest.EXIT_DISCONNECTED, send.describe())
        self.assertIn("stopped: dlrecv received the --count messages", send.stderr())
        self.assertEqual(len(send.stderr().strip().splitlines()), 1, send.describe())
        send.popen.stdin.close()
        self.assertNoCrash(send)

    def test_verbose_summary(self):
        src = self._file("in", 1 * MiB)
        out = self.path("out")
        recv, port = self.listen("dlrecv", "-v", stdout=out)
        send = self.dlsend("-v", "127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertIn("listening on", recv.stderr(), recv.describe())
        for p in (send, recv):
            self.assertTrue(p.stderr().strip(), "%s -v printed no summary" % p.name)

    def test_quiet(self):
        src = self._file("in", 1 * MiB)
        out = self.path("out")
        recv, port = self.listen("dlrecv", "-q", stdout=out)
        send = self.dlsend("-q", "127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertEqual((send.stderr(), recv.stderr()), ("", ""))


if __name__ == "__main__":
    unittest.main(testRunner=dltest.SummaryRunner(verbosity=2))
