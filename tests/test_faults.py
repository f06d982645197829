#!/usr/bin/python3
"""Faults: cut and corrupted links (through FaultRelay), dead links, a late receiver, refused and
unresolvable endpoints, busy ports, garbage input, oversize messages, a closed stdout, bad usage."""

import os
import threading
import socket
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import MiB, wait_port_file  # noqa: E402
from fault_relay import FaultRelay  # noqa: E402


class RelayFaultTest(dltest.DlTestCase):
    """100 MiB through a FaultRelay that cuts or corrupts the link at given stream offsets."""

    SIZE = 100 * MiB
    POINTS = (10 * MiB, 35 * MiB, 60 * MiB, 85 * MiB)

    def _setup(self, reverse, extra=(), send_extra=()):
        src = self.path("in")
        dltest.make_random_file(src, self.SIZE)
        out = self.path("out")
        if not reverse:
            # dlsend -> relay -> dlrecv -l   (data goes "up", from the relay's client)
            recv, port = self.listen("dlrecv", *extra, stdout=out)
            relay = FaultRelay(("127.0.0.1", port))
            self.addCleanup(relay.close)
            send = self.dlsend("127.0.0.1:%d" % relay.port, "-f", src, *extra, *send_extra)
            direction = "up"
        else:
            # dlrecv -> relay -> dlsend -l   (data goes "down", towards the relay's client)
            send, port = self.listen("dlsend", "-f", src, *extra, *send_extra)
            relay = FaultRelay(("127.0.0.1", port))
            self.addCleanup(relay.close)
            recv = self.dlrecv("127.0.0.1:%d" % relay.port, *extra, stdout=out)
            direction = "down"
        return src, out, send, recv, relay, direction

    def _wait_relay(self, relay, pred, what, procs, timeout=60):
        """Wait (bounded) for pred(relay); fail early, with details, if a tool exits."""
        try:
            relay.wait_for(lambda r: pred(r) or any(not p.running for p in procs),
                           dltest.t(timeout), what)
        except TimeoutError as e:
            self.fail("%s\n%s\nrelay log tail: %s" % (e, self.P.describe(), relay.log[-10:]))
        if not pred(relay):
            self.fail("a tool exited while waiting for %s (relay: connections=%d cuts=%d "
                      "corruptions=%d up=%d down=%d)\n%s"
                      % (what, relay.connections, relay.cuts, relay.corruptions,
                         relay.bytes_up, relay.bytes_down, self.P.describe()))

    def _run_faults(self, kind, reverse=False, send_extra=()):
        src, out, send, recv, relay, direction = self._setup(reverse, send_extra=send_extra)
        procs = (send, recv)
        prev = 0
        for i, point in enumerate(self.POINTS):
            # Re-armed after each reconnect: the offset counts from the new connection's bytes
            # (so the stream positions are approximate: resumed data is sent again).
            self._wait_relay(relay, lambda r, n=i + 1: r.connections >= n,
                             "connection #%d" % (i + 1), procs)
            if kind == "cut":
                relay.cut_after(point - prev, direction)
                self._wait_relay(relay, lambda r, n=i + 1: r.cuts >= n, "cut #%d" % (i + 1),
                                 procs)
            else:
                relay.corrupt_after(point - prev, direction)
                self._wait_relay(relay, lambda r, n=i + 1: r.corruptions >= n,
                                 "corruption #%d" % (i + 1), procs)
            # The tools must notice and reconnect (a corrupted frame must drop the link).
            self._wait_relay(relay, lambda r, n=i + 2: r.connections >= n,
                             "reconnect #%d after %s" % (i + 1, kind), procs)
            prev = point
        self.assertExitCodes(180, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertNoCrash(send)
        self.assertNoCrash(recv)
        if kind == "corrupt":
            err = (send.stderr() + recv.stderr()).lower()
            self.assertIn("checksum", err, "no side mentioned the checksum failure\n%s"
                          % self.P.describe())
        return relay

    def test_cuts(self):
        relay = self._run_faults("cut")
        self.assertEqual(relay.cuts, 4)
        self.assertGreaterEqual(relay.connections, 5)

    def test_cuts_with_a_small_window(self):
        # A replay ring far smaller than the data: backpressure and resume work together.
        relay = self._run_faults("cut", send_extra=("--window", "256K", "--chunk", "32K"))
        self.assertEqual(relay.cuts, 4)

    def test_cuts_receiver_dials(self):
        relay = self._run_faults("cut", reverse=True)
        self.assertEqual(relay.cuts, 4)

    def test_corruption(self):
        relay = self._run_faults("corrupt")
        self.assertEqual(relay.corruptions, 4)

    def test_corruption_receiver_dials(self):
        relay = self._run_faults("corrupt", reverse=True)
        self.assertEqual(relay.corruptions, 4)

    def test_dead_link_pause_resume(self):
        # A link that goes silent (no FIN, no RST) for a few seconds: the receive timeout must
        # notice, the tools reconnect once the link is back, and nothing is lost or duplicated.
        out = self.path("out")
        recv, port = self.listen("dlrecv", "-t", "1s", "--keepalive", "200ms", stdout=out)
        relay = FaultRelay(("127.0.0.1", port))
        self.addCleanup(relay.close)
        send = self.dlsend("-t", "1s", "--keepalive", "200ms", "127.0.0.1:%d" % relay.port,
                           stdin=subprocess.PIPE)
        blocks = list(dltest.pattern_blocks(8 * MiB))
        self.feed(send.popen.stdin, blocks[:4], close=False)
        self._wait_relay(relay, lambda r: r.bytes_up >= 2 * MiB, "2 MiB through the relay",
                         (send, recv))
        relay.pause(True)
        rest = dltest.Feeder(send.popen.stdin, iter(blocks[4:]), close=True)
        rest.start()
        time.sleep(3.0)   # the outage itself (a fault duration, not synchronisation)
        self.assertTrue(send.running and recv.running, self.P.describe())
        relay.pause(False)
        self.assertExitCodes(90, (send, 0), (recv, 0))
        with open(out, "rb") as f:
            got = f.read()
        self.assertEqual(len(got), 8 * MiB)
        self.assertTrue(got == b"".join(blocks), "output differs after the dead link")
        self.assertGreaterEqual(relay.connections, 2, "no reconnect after a 3 s dead link")


class EndpointFaultTest(dltest.DlTestCase):

    def _small(self, size=100 * 1024):
        src = self.path("in")
        dltest.make_random_file(src, size)
        return src

    def test_sender_started_before_receiver(self):
        src = self._small(2 * MiB)
        for attempt in (1, 2):
            out = self.path("out%d" % attempt)
            host = dltest.private_loopback()
            port = dltest.reserved_port(host=host)
            send = self.dlsend("--wait", "20", "%s:%d" % (host, port), "-f", src,
                               name="dlsend-%d" % attempt)
            # Negative check: with --wait it must keep retrying instead of failing at once.
            self.assertIsNone(send.wait(1.0), "dlsend --wait 20 gave up at once\n%s"
                              % send.describe())
            pf = self.path("pf%d" % attempt)
            recv = self.dlrecv("-l", "%s:%d" % (host, port), "--port-file", pf, stdout=out,
                               name="dlrecv-%d" % attempt)
            try:
                wait_port_file(pf, recv)
            except AssertionError:
                if recv.returncode == dltest.EXIT_CONNECT and attempt == 1:
                    send.kill()
                    continue   # somebody took the port meanwhile: try once more
                raise
            self.assertExitCodes(60, (send, 0), (recv, 0))
            self.assertSameFile(src, out)
            return

    def test_receiver_dials_with_wait(self):
        host = dltest.private_loopback()
        port = dltest.reserved_port(host=host)
        out = self.path("out")
        src = self._small()
        recv = self.dlrecv("--wait", "20", "%s:%d" % (host, port), stdout=out)
        self.assertIsNone(recv.wait(1.0), "dlrecv --wait 20 gave up at once\n%s"
                          % recv.describe())
        pf = self.path("pf")
        send = self.dlsend("-l", "%s:%d" % (host, port), "--port-file", pf, "-f", src)
        wait_port_file(pf, send)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_classic_stranger_cannot_join_a_native_session(self):
        # While a native session is between connections, a listener in auto mode must not
        # take a classic (or silent) stranger for the peer and splice its data in.
        import struct
        out = self.path("out")
        recv, port = self.listen("dlrecv", "--proto", "auto", "--lines", stdout=out)
        relay = FaultRelay(target=("127.0.0.1", port))
        self.addCleanup(relay.close)
        send = self.dlsend("--lines", "127.0.0.1:%d" % relay.port, stdin=subprocess.PIPE)
        send.popen.stdin.write(b"native-1\n")
        send.popen.stdin.flush()
        dltest.wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 0, 10, "first line")
        relay.pause(True)
        relay.cut_all()
        payload = b"INJECTED-BY-STRANGER"
        frame = b" " * 5 + struct.pack("<qd", len(payload), 1.0) + b"!" * 5 + payload + b'"' * 5
        def refused(first_bytes):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.settimeout(dltest.t(10))
                try:
                    s.sendall(first_bytes)
                    while s.recv(4096):   # the listener closes it (maybe with a reset)
                        pass
                except socket.timeout:
                    self.fail("a stranger's connection was kept open\n%s" % recv.describe())
                except OSError:
                    pass
        refused(frame)
        refused(b"")   # a silent probe is refused too, not served as classic
        relay.pause(False)
        send.popen.stdin.write(b"native-2\n")
        send.popen.stdin.close()
        self.assertExitCodes(60, (send, 0), (recv, 0))
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"native-1\nnative-2\n")
        self.assertIn("session-busy", recv.stderr())

    def test_dialing_a_server_that_speaks_something_else(self):
        # A port that accepts TCP but answers with another protocol: a clear protocol error
        # (exit 6) at once, not retries for ever.
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        self.addCleanup(srv.close)
        stop = threading.Event()

        def serve():
            srv.settimeout(0.2)
            conns = []
            while not stop.is_set():
                try:
                    c, _ = srv.accept()
                except OSError:
                    continue
                c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                conns.append(c)
            for c in conns:
                c.close()
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        self.addCleanup(th.join, 5)
        self.addCleanup(stop.set)
        src = self._small()
        send = self.run_tool("dlsend", "127.0.0.1:%d" % srv.getsockname()[1], "-f", src, timeout=20)
        self.assertEqual(send.returncode, 6, send.describe())
        self.assertIn("bad-marker", send.stderr())
        self.assertEqual(len(send.stderr().strip().splitlines()), 1, send.describe())


    def test_unwritable_stdout(self):
        src = self._small()
        with open("/dev/full", "wb") as full:
            recv, port = self.listen("dlrecv", stdout=full)
            send = self.dlsend("127.0.0.1:%d" % port, "-f", src, "--reconnect", "2")
            self.assertExited(recv, 20, code=1)
        self.assertOneLineError(recv, "dlrecv", "No space left on device")
        # The sender never sees success for data that reached no disk: it is told why, at once.
        self.assertExited(send, 10, code=dltest.EXIT_DISCONNECTED)
        self.assertOneLineError(send, "dlsend", "stopped", "No space left on device")

    def test_port_zero_is_printed(self):
        recv = self.dlrecv("-l", "127.0.0.1:0")
        dltest.wait_until(lambda: "listening on 127.0.0.1:" in recv.stderr(), 10, "the chosen port")
        port = int(recv.stderr().split("listening on 127.0.0.1:")[1].split()[0])
        src = self._small()
        send = self.dlsend("127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(30, (send, 0), (recv, 0))

    def test_refused_without_wait(self):
        src = self._small()
        port = dltest.reserved_port()
        send = self.run_tool("dlsend", "127.0.0.1:%d" % port, "-f", src, timeout=10)
        self.assertEqual(send.returncode, dltest.EXIT_CONNECT, send.describe())
        self.assertOneLineError(send, "dlsend", "refused")
        recv = self.run_tool("dlrecv", "127.0.0.1:%d" % port, timeout=10)
        self.assertEqual(recv.returncode, dltest.EXIT_CONNECT, recv.describe())
        self.assertOneLineError(recv, "dlrecv", "refused")

    def test_refused_message_format(self):
        # "dlsend: connect 127.0.0.1:PORT: Connection refused"
        port = dltest.reserved_port()
        send = self.run_tool("dlsend", "127.0.0.1:%d" % port, timeout=10,
                             stdin=self._small())
        self.assertEqual(send.returncode, dltest.EXIT_CONNECT, send.describe())
        self.assertIn("127.0.0.1:%d" % port, send.stderr(), send.describe())

    def test_unknown_host(self):
        for tool in ("dlsend", "dlrecv"):
            with self.subTest(tool=tool):
                p = self.run_tool(tool, "no-such-host.invalid:1", timeout=30)
                self.assertEqual(p.returncode, dltest.EXIT_RESOLVE, p.describe())
                self.assertOneLineError(p, tool, "no-such-host.invalid")

    def test_port_in_use(self):
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("0.0.0.0", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        for tool, spec in (("dlrecv", str(port)), ("dlrecv", "127.0.0.1:%d" % port),
                           ("dlsend", str(port))):
            with self.subTest(tool=tool, spec=spec):
                p = self.run_tool(tool, "-l", spec, timeout=10, stdin=self._small(10))
                self.assertEqual(p.returncode, dltest.EXIT_CONNECT, p.describe())
                self.assertOneLineError(p, tool, "in use")

    def test_garbage_then_real_transfer(self):
        src = self._small(3 * MiB)
        out = self.path("out")
        recv, port = self.listen("dlrecv", stdout=out)
        junk = bytearray(os.urandom(4096))
        junk[0] = 0x7E   # not a classic start byte (0x20)
        s = socket.create_connection(("127.0.0.1", port), timeout=dltest.t(15))
        try:
            try:
                s.sendall(bytes(junk))
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):   # until dlrecv drops us (bounded by the socket timeout)
                    pass
            except socket.timeout:
                self.fail("dlrecv kept a garbage connection open for 15 s\n%s" % recv.describe())
            except OSError:
                pass   # reset, broken pipe, or already disconnected: dropped, as it should be
        finally:
            s.close()
        dltest.wait_until(lambda: recv.stderr().strip() or not recv.running, 10,
                          "dlrecv to log the garbage connection")
        self.assertTrue(recv.running, "dlrecv died on garbage\n%s" % recv.describe())
        garbage_log = recv.stderr()
        lines = [l for l in garbage_log.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, "expected one error line for the garbage connection, "
                         "got:\n%s" % garbage_log)
        self.assertTrue(lines[0].startswith("dlrecv:"), garbage_log)
        send = self.dlsend("127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertNoCrash(recv)

    def test_oversize_line_sender_limit(self):
        recv, port = self.listen("dlrecv", "--lines", stdout=self.path("out"))
        src = self.path("in")
        with open(src, "wb") as f:
            f.write(b"short\n" + b"L" * 2000 + b"\n")
        send = self.run_tool("dlsend", "--lines", "--max-message", "1024",
                             "127.0.0.1:%d" % port, timeout=30, stdin=src)
        self.assertEqual(send.returncode, dltest.EXIT_TOO_LARGE, send.describe())
        self.assertOneLineError(send, "dlsend", "1024")

    def test_oversize_message_receiver_limit(self):
        recv, port = self.listen("dlrecv", "--lines", "--max-message", "1024", "--reconnect",
                                 "2", stdout=self.path("out"))
        src = self.path("in")
        with open(src, "wb") as f:
            f.write(b"short\n" + b"L" * 2000 + b"\n")
        send = self.dlsend("--lines", "--reconnect", "2", "127.0.0.1:%d" % port, "-f", src)
        deadline = time.monotonic() + dltest.t(30)
        for p in (send, recv):
            p.wait(max(0, deadline - time.monotonic()))
        self.assertIn(dltest.EXIT_TOO_LARGE, (send.returncode, recv.returncode),
                      "a 2000-byte message against dlrecv --max-message 1024: nobody exited 8"
                      "\n%s" % self.P.describe())
        who = send if send.returncode == dltest.EXIT_TOO_LARGE else recv
        self.assertIn("1024", who.stderr(), who.describe())
        self.assertNoCrash(send)
        self.assertNoCrash(recv)

    def test_stdout_closed_early(self):
        # dlrecv | head -c 100 with a large stream: dlrecv ends quietly.
        src = self._small(50 * MiB)
        pf = self.path("pf")
        recv = self.dlrecv("-l", "0", "--port-file", pf, stdout=subprocess.PIPE)
        head = self.P.start(["head", "-c", "100"], stdin=recv.popen.stdout,
                            stdout=subprocess.PIPE, name="head")
        recv.popen.stdout.close()   # only head holds the read end now
        port = wait_port_file(pf, recv)
        send = self.dlsend("--reconnect", "2", "127.0.0.1:%d" % port, "-f", src)
        reader = dltest.Drainer(head.popen.stdout, keep=True)
        reader.start()
        self.assertExited(head, 30, 0)
        reader.join(10)
        got = bytes(reader.data)
        with open(src, "rb") as f:
            self.assertEqual(got, f.read(100))
        rc = self.assertExited(recv, 30)
        self.assertIn(rc, (0, dltest.EXIT_IO, -13),
                      "dlrecv after its stdout closed: unexpected exit\n%s" % recv.describe())
        err_lines = [l for l in recv.stderr().splitlines() if l.strip()]
        self.assertEqual(err_lines, [], "dlrecv was not quiet about a closed stdout "
                         "(exit %s)" % rc)
        self.assertNoCrash(recv)
        rc = self.assertExited(send, 30)
        self.assertIn(rc, (0, dltest.EXIT_DISCONNECTED), send.describe())
        self.assertNoCrash(send)

    def test_bad_usage(self):
        cases = [
            ("dlsend",),
            ("dlrecv",),
            ("dlsend", "--lines", "--null", "127.0.0.1:1"),
            ("dlrecv", "--lines", "--null", "127.0.0.1:1"),
            ("dlsend", "--lines", "--framed", "127.0.0.1:1"),
            ("dlsend", "--no-such-option", "127.0.0.1:1"),
            ("dlrecv", "--no-such-option", "127.0.0.1:1"),
            ("dlsend", "--proto", "bogus", "127.0.0.1:1"),
            ("dlrecv", "-n", "many", "127.0.0.1:1"),
            ("dlsend", "127.0.0.1:1", "127.0.0.1:2"),
            ("dlsend", "-f", "--lines"),
        ]
        for case in cases:
            with self.subTest(args=" ".join(case)):
                p = self.run_tool(case[0], *case[1:], timeout=10)
                self.assertEqual(p.returncode, dltest.EXIT_USAGE, p.describe())
                self.assertTrue(p.stderr().strip(), "usage error with an empty stderr")
                self.assertNoCrash(p)

    def test_missing_input_file(self):
        recv, port = self.listen("dlrecv", "--reconnect", "1", stdout=self.path("out"))
        p = self.run_tool("dlsend", "-f", self.path("does-not-exist"), "127.0.0.1:%d" % port,
                          timeout=10)
        self.assertEqual(p.returncode, dltest.EXIT_IO, p.describe())
        self.assertOneLineError(p, "dlsend", "does-not-exist")


if __name__ == "__main__":
    unittest.main(testRunner=dltest.SummaryRunner(verbosity=2))
