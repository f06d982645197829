#!/usr/bin/python3
"""The tools' own edges (issue 7 items 6, 9, 10, 13, 14, 15, 17 and the house issue's raw-mode
and flag fixes): which error wins when the link fails, durations, raw message sizes and --fixed,
closed standard descriptors, the --timestamps log, SIGHUP, SIGPIPE, and the family's letters."""

import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import MiB, wait_port_file  # noqa: E402


def framed(payload, ts=1.0):
    return b"DLRF" + struct.pack(">Id", len(payload), ts) + payload


class Base(dltest.DlTestCase):

    def _file(self, name, data):
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def _random(self, name, size):
        path = self.path(name)
        dltest.make_random_file(path, size)
        return path

    def _sizes(self, log):
        """Payload sizes from a dlrecv --timestamps log ("TS SEQ SIZE" lines)."""
        with open(log) as f:
            return [int(l.split()[2]) for l in f.read().splitlines() if l.strip()]

    def _closed_fd_run(self, tool, redirect, *args):
        """Runs tool with stdin or stdout closed (`<&-` / `>&-`) through /bin/sh."""
        exe = self.DLSEND if tool == "dlsend" else self.DLRECV
        return self.P.start(["/bin/sh", "-c", 'exec "$0" "$@" %s' % redirect, exe] + list(args),
                            name=tool)


class ErrorPrecedenceTest(Base):
    """Item 6: the link's own failure wins over the sender's "send: link is closed"."""

    def test_refused_connect_wins_in_every_mode(self):
        lines = b"".join(b"%d\n" % i for i in range(1, 1001))
        inputs = {
            "--lines": lines,
            "--null": lines.replace(b"\n", b"\0"),
            "--framed": b"".join(framed(b"%d" % i) for i in range(1000)),
            "raw": lines,
        }
        port = dltest.reserved_port()
        for mode, data in inputs.items():
            src = self._file("in" + mode, data)
            for i in range(12):
                with self.subTest(mode=mode, run=i):
                    args = ([] if mode == "raw" else [mode]) + ["127.0.0.1:%d" % port]
                    p = self.dlsend(*args, stdin=subprocess.PIPE)
                    # A pipe, as in `seq 1000 | dlsend --lines`: input arrives while dialing
                    # (dlsend may be gone before it is all written: a broken pipe is fine).
                    f = dltest.Feeder(p.popen.stdin, iter([data]), close=True)
                    f.start()
                    self.assertExited(p, 10)
                    self.assertEqual(p.returncode, dltest.EXIT_CONNECT, p.describe())
                    self.assertIn("Connection refused", p.stderr(), p.describe())
                    self.assertNotIn("link is closed", p.stderr(), p.describe())
                    f.join(10)

    def test_peer_gone_later_in_a_session_is_exit_5(self):
        # The receiver dies for good mid-session while input keeps coming: the sender's
        # verdict is the link's ("gone for 1 s", exit 5), never exit 130.
        for run in range(3):
            with self.subTest(run=run):
                out = self.path("out%d" % run)
                recv, port = self.listen("dlrecv", "--lines", "--reconnect", "1", stdout=out,
                                         name="dlrecv-%d" % run)
                send = self.dlsend("--lines", "--reconnect", "1", "127.0.0.1:%d" % port,
                                   stdin=subprocess.PIPE, name="dlsend-%d" % run)
                feeder = dltest.Feeder(send.popen.stdin,
                                       (b"line %d\n" % i for i in range(10 ** 9)), close=True)
                feeder.start()
                dltest.wait_until(lambda: os.path.getsize(out) > 100000 or not recv.running,
                                  20, "lines at the receiver")
                recv.kill()
                self.assertExited(send, 30)
                self.assertEqual(send.returncode, dltest.EXIT_DISCONNECTED, send.describe())
                self.assertNotIn("link is closed", send.stderr(), send.describe())
                feeder.join(10)   # it ends on the broken pipe and closes the pipe itself


class DurationTest(Base):
    """Item 9: --wait, --reconnect, --timeout and --keepalive are durations with one meaning."""

    def test_nonsense_is_a_usage_error_naming_the_flag(self):
        flags = ["-w", "--wait", "--reconnect", "-t", "--timeout", "--keepalive"]
        for flag in flags:
            for value in ("nan", "-1", "-0.5", "soon", "1e400", "10 s", ""):
                for tool in ("dlsend", "dlrecv"):
                    with self.subTest(tool=tool, flag=flag, value=value):
                        p = self.run_tool(tool, flag, value, "127.0.0.1:1", timeout=10)
                        self.assertEqual(p.returncode, dltest.EXIT_USAGE, p.describe())
                        long = {"-w": "--wait", "-t": "--timeout"}.get(flag, flag)
                        if value:
                            self.assertIn(long, p.stderr(), p.describe())
                        self.assertNoCrash(p)

    def test_keepalive_zero_and_too_long_timeout_are_refused(self):
        for args in (("--keepalive", "0"), ("--timeout", "1s", "--keepalive", "1s"),
                     ("--timeout", "30d"), ("--timeout", "100d")):
            with self.subTest(args=args):
                p = self.run_tool("dlrecv", *args, "127.0.0.1:1", timeout=10)
                self.assertEqual(p.returncode, dltest.EXIT_USAGE, p.describe())

    def test_units_are_accepted(self):
        # 500ms of retrying an address nobody listens on: exit 4 after about half a second.
        host = dltest.private_loopback()
        port = dltest.reserved_port(host=host)
        t0 = time.monotonic()
        p = self.run_tool("dlsend", "-w", "500ms", "-t", "2.5s", "--keepalive", "100ms",
                          "--reconnect", "1m", "%s:%d" % (host, port), timeout=15,
                          stdin=self._file("in", b"x"))
        elapsed = time.monotonic() - t0
        self.assertEqual(p.returncode, dltest.EXIT_CONNECT, p.describe())
        # (When exactly it gives up is the link's business: a retry that would land past the
        # deadline is not made. Here only: the unit was read, so it did not give up at once.)
        self.assertGreater(elapsed, 0.1, "-w 500ms gave up after %.3f s" % elapsed)

    def test_wait_inf_dials_for_ever(self):
        host = dltest.private_loopback()
        port = dltest.reserved_port(host=host)
        src = self._random("in", 256 * 1024)
        out = self.path("out")
        send = self.dlsend("-w", "inf", "%s:%d" % (host, port), "-f", src)
        # Negative check (a bounded wait): -w inf must keep retrying, not fail at once.
        self.assertIsNone(send.wait(1.5), "dlsend -w inf gave up\n%s" % send.describe())
        pf = self.path("pf")
        recv = self.dlrecv("-l", "%s:%d" % (host, port), "--port-file", pf, stdout=out)
        wait_port_file(pf, recv)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_reconnect_inf_waits_for_ever(self):
        for value in ("inf", "forever"):
            with self.subTest(value=value):
                out = self.path("out-" + value)
                recv, port = self.listen("dlrecv", "--lines", "--reconnect", value, stdout=out)
                send = self.dlsend("--lines", "127.0.0.1:%d" % port, stdin=subprocess.PIPE)
                send.popen.stdin.write(b"one\n")
                send.popen.stdin.flush()
                dltest.wait_until(lambda: os.path.getsize(out) >= 4 or not recv.running, 20,
                                  "the first line at the receiver")
                send.kill()   # no notice: the receiver must wait for it to come back
                self.assertIsNone(recv.wait(2.0), "dlrecv --reconnect %s gave up\n%s"
                                  % (value, recv.describe()))
                recv.signal(signal.SIGTERM)
                self.assertExited(recv, 10, dltest.EXIT_INTERRUPTED)


class RawSizeTest(Base):
    """Item 10 and the house fix: raw messages are cut only by the input."""

    def test_chunks_are_whole_messages(self):
        # --chunk 1M over an 8 MiB file: 8 messages of exactly 1 MiB (the ring's free room
        # used to cut one to 1 048 328 bytes and add one of 248).
        src = self._random("in", 8 * MiB)
        out, log = self.path("out"), self.path("ts")
        recv, port = self.listen("dlrecv", "--timestamps=" + log, stdout=out)
        send = self.dlsend("--chunk", "1M", "127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertEqual(self._sizes(log), [MiB] * 8)

    def test_chunks_with_a_small_window(self):
        src = self._random("in", 3 * MiB + 5)
        out, log = self.path("out"), self.path("ts")
        recv, port = self.listen("dlrecv", "--timestamps=" + log, stdout=out)
        # A window of 1.5 chunks: the old code cut the second chunk to the free room.
        send = self.dlsend("--chunk", "1M", "--window", "1536K", "127.0.0.1:%d" % port,
                           "-f", src)
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertEqual(self._sizes(log), [MiB] * 3 + [5])

    def test_receivers_max_message_cuts_raw_chunks(self):
        for how in ("file", "pipe"):
            with self.subTest(how=how):
                src = self._random("in-" + how, 100 * 1024)
                out, log = self.path("out-" + how), self.path("ts-" + how)
                recv, port = self.listen("dlrecv", "--max-message", "64K", "--reconnect", "2",
                                         "--timestamps=" + log, stdout=out)
                if how == "file":
                    send = self.dlsend("127.0.0.1:%d" % port, "-f", src)
                else:
                    send = self.dlsend("127.0.0.1:%d" % port, stdin=src)
                self.assertExitCodes(30, (send, 0), (recv, 0))
                self.assertSameFile(src, out)
                sizes = self._sizes(log)
                self.assertTrue(sizes and max(sizes) <= 65536, sizes)

    def _paced_pipe(self, send, pieces):
        def run():
            try:
                for piece in pieces:
                    send.popen.stdin.write(piece)
                    send.popen.stdin.flush()
                    time.sleep(0.02)   # pacing: the pipe runs dry between pieces
            except OSError:
                pass
            finally:
                try:
                    send.popen.stdin.close()
                except OSError:
                    pass
        th = threading.Thread(target=run, daemon=True)
        th.start()
        return th

    def test_fixed_waits_for_whole_messages(self):
        pieces = [os.urandom(n) for n in (7, 300, 1500, 999, 1, 4000, 2, 1000, 3333)] * 4
        data = b"".join(pieces)
        for fixed in (True, False):
            with self.subTest(fixed=fixed):
                tag = "fixed" if fixed else "chunk"
                out, log = self.path("out-" + tag), self.path("ts-" + tag)
                recv, port = self.listen("dlrecv", "--timestamps=" + log, stdout=out)
                args = ["--fixed", "1000"] if fixed else ["--chunk", "1000"]
                send = self.dlsend(*args, "127.0.0.1:%d" % port, stdin=subprocess.PIPE)
                th = self._paced_pipe(send, pieces)
                self.assertExitCodes(60, (send, 0), (recv, 0))
                th.join(10)
                with open(out, "rb") as f:
                    self.assertTrue(f.read() == data, "output differs")
                sizes = self._sizes(log)
                if fixed:
                    full, last = divmod(len(data), 1000)
                    self.assertEqual(sizes, [1000] * full + ([last] if last else []))
                else:
                    # The control: without --fixed a pausing pipe gives short messages.
                    self.assertTrue(any(s < 1000 for s in sizes[:-1]), sizes)

    def test_fixed_usage_errors(self):
        for args in (("--fixed", "0"), ("--fixed", "100", "--chunk", "100"),
                     ("--fixed", "100", "--lines"), ("--fixed", "2M", "--max-message", "1M"),
                     ("--fixed", "lots")):
            with self.subTest(args=args):
                p = self.run_tool("dlsend", *args, "127.0.0.1:1", timeout=10)
                self.assertEqual(p.returncode, dltest.EXIT_USAGE, p.describe())
                self.assertIn("--", p.stderr())

    def test_fixed_larger_than_the_receivers_limit(self):
        recv, port = self.listen("dlrecv", "--max-message", "1K", "--reconnect", "2",
                                 stdout=self.path("out"))
        send = self.run_tool("dlsend", "--fixed", "2K", "127.0.0.1:%d" % port, timeout=30,
                             stdin=self._random("in", 10000))
        self.assertEqual(send.returncode, dltest.EXIT_TOO_LARGE, send.describe())
        self.assertOneLineError(send, "dlsend", "--fixed", "1024")
        recv.kill()


class ClosedStdioTest(Base):
    """Item 13: a tool started with stdin or stdout closed fails at once with exit 1."""

    def test_dlsend_with_stdin_closed(self):
        recv, port = self.listen("dlrecv", stdout=self.path("out"))
        p = self._closed_fd_run("dlsend", "<&-", "127.0.0.1:%d" % port)
        self.assertExited(p, 10, dltest.EXIT_IO)
        self.assertOneLineError(p, "dlsend", "stdin: Bad file descriptor")
        self.assertTrue(recv.running, recv.describe())   # nothing was sent to it
        recv.kill()

    def test_dlsend_with_stdin_closed_reads_a_file(self):
        src = self._random("in", 64 * 1024)
        out = self.path("out")
        recv, port = self.listen("dlrecv", stdout=out)
        p = self._closed_fd_run("dlsend", "<&-", "-f", src, "127.0.0.1:%d" % port)
        self.assertExitCodes(30, (p, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_dlrecv_with_stdout_closed(self):
        for args in (("-l", "127.0.0.1:0"), ("--wait", "inf", "127.0.0.1:%d"
                                              % dltest.reserved_port())):
            with self.subTest(args=args):
                p = self._closed_fd_run("dlrecv", ">&-", *args)
                self.assertExited(p, 10, dltest.EXIT_IO)
                self.assertOneLineError(p, "dlrecv", "stdout: Bad file descriptor")

    def test_dlrecv_with_stdout_closed_writes_a_file(self):
        src = self._random("in", 64 * 1024)
        out, pf = self.path("out"), self.path("pf")
        recv = self._closed_fd_run("dlrecv", ">&-", "-l", "127.0.0.1:0", "--port-file", pf,
                                   "-o", out)
        port = wait_port_file(pf, recv)
        send = self.dlsend("127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(30, (send, 0), (recv, 0))
        self.assertSameFile(src, out)


class TimestampLogTest(Base):
    """Item 14: --timestamps write errors end the run; a slow log loses nothing."""

    def test_full_log_is_an_io_error(self):
        recv, port = self.listen("dlrecv", "--lines", "--timestamps=/dev/full",
                                 "--reconnect", "2", stdout=self.path("out"))
        send = self.dlsend("--lines", "127.0.0.1:%d" % port,
                           stdin=self._file("in", b"a\nb\nc\n"))
        self.assertExited(recv, 20, dltest.EXIT_IO)
        self.assertOneLineError(recv, "dlrecv", "/dev/full", "No space left on device")
        self.assertExited(send, 20)

    def test_slow_nonblocking_log_loses_no_line(self):
        # The log goes to stderr, a pipe whose shared description is non-blocking (as some
        # parents leave it): writes then fail with EAGAIN or go in part when the reader lags.
        n = 20000
        r, w = os.pipe()
        fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
        pf = self.path("pf")
        recv = self.dlrecv("-q", "--lines", "-l", "127.0.0.1:0", "--port-file", pf,
                           "--timestamps", stdout=self.path("out"), stderr=w)
        os.close(w)
        got = bytearray()

        def slow_reader():
            while True:
                b = os.read(r, 4096)
                if not b:
                    break
                got.extend(b)
                time.sleep(0.01)   # pacing: a slow consumer of the log
            os.close(r)
        th = threading.Thread(target=slow_reader, daemon=True)
        th.start()
        port = wait_port_file(pf, recv)
        send = self.dlsend("--lines", "127.0.0.1:%d" % port,
                           stdin=self._file("in", b"".join(b"%d\n" % i for i in range(n))))
        self.assertExitCodes(60, (send, 0), (recv, 0))
        th.join(30)
        lines = bytes(got).decode().splitlines()
        seqs = [int(l.split()[1]) for l in lines if len(l.split()) == 3]
        self.assertEqual(seqs, list(range(1, n + 1)), "log lines lost or garbled (%d of %d)"
                         % (len(seqs), n))


class HangupTest(Base):
    """Item 17: SIGHUP ends a tool like SIGTERM."""

    def _hang_up(self, victim, send, recv, out):
        """One line through, then SIGHUP to `victim`: it stops like on SIGTERM (summary, exit
        130) and its peer is told (exit 5, "stopped: ... was interrupted")."""
        send.popen.stdin.write(b"hello\n")
        send.popen.stdin.flush()
        dltest.wait_until(lambda: os.path.getsize(out) >= 6 or not recv.running, 20,
                          "the line at the receiver")
        me, peer = (send, recv) if victim == "dlsend" else (recv, send)
        me.signal(signal.SIGHUP)
        self.assertExited(me, 10, dltest.EXIT_INTERRUPTED)
        self.assertRegex(me.stderr(), r"%s: (read|received) \d+ bytes" % victim)
        self.assertExited(peer, 10, dltest.EXIT_DISCONNECTED)
        self.assertIn("stopped: %s was interrupted" % victim, peer.stderr())
        send.popen.stdin.close()

    def test_sighup_listening_dlrecv(self):
        sock = self.sock_path("hup.sock")
        out = self.path("out")
        recv = self.dlrecv("-v", "--lines", "-l", "unix:" + sock, stdout=out)
        dltest.wait_until(lambda: os.path.exists(sock) or not recv.running, 10,
                          "the unix socket")
        # -w: the socket file exists from bind(), a moment before listen(); a busy machine
        # can put a refused connect in between.
        send = self.dlsend("--lines", "-w", "10", "unix:" + sock, stdin=subprocess.PIPE)
        self._hang_up("dlrecv", send, recv, out)
        self.assertFalse(os.path.exists(sock), "unix socket file left behind")

    def test_sighup_dialing_dlsend(self):
        out = self.path("out")
        recv, port = self.listen("dlrecv", "--lines", stdout=out)
        send = self.dlsend("-v", "--lines", "127.0.0.1:%d" % port, stdin=subprocess.PIPE)
        self._hang_up("dlsend", send, recv, out)


class BrokenPipeTest(Base):
    """`dlrecv | head -c 1` ends with the documented code (0), never killed by SIGPIPE."""

    def _into_head(self, *recv_args):
        src = self._random("in", 20 * MiB)
        pf = self.path("pf")
        recv = self.dlrecv("-l", "127.0.0.1:0", "--port-file", pf, *recv_args,
                           stdout=subprocess.PIPE)
        head = self.P.start(["head", "-c", "1"], stdin=recv.popen.stdout,
                            stdout=subprocess.PIPE, name="head")
        recv.popen.stdout.close()
        port = wait_port_file(pf, recv)
        send = self.dlsend("--reconnect", "2", "127.0.0.1:%d" % port, "-f", src)
        self.assertExited(head, 30, 0)
        self.assertEqual(head.popen.stdout.read(), open(src, "rb").read(1))
        rc = self.assertExited(recv, 30)
        self.assertEqual(rc, 0, "dlrecv | head -c 1: exit %s (-13: killed by SIGPIPE)\n%s"
                         % (rc, recv.describe()))
        self.assertEqual(recv.stderr().strip(), "", recv.describe())
        self.assertExited(send, 30)

    def test_raw(self):
        self._into_head()

    def test_lines(self):
        self._into_head("--lines")


class LetterTest(Base):
    """One letter, one meaning: -k keep-open, -c count (-n hidden), -n -1 refused."""

    def test_count_letters(self):
        for args in (("-c", "3"), ("-n", "3"), ("--count", "3")):
            with self.subTest(args=args):
                out = self.path("out" + args[0])
                recv, port = self.listen("dlrecv", "--lines", *args, stdout=out)
                send = self.dlsend("--lines", "127.0.0.1:%d" % port,
                                   stdin=self._file("in", b"".join(b"l%d\n" % i
                                                                  for i in range(10))))
                self.assertExited(recv, 30, 0)
                with open(out, "rb") as f:
                    self.assertEqual(f.read(), b"l0\nl1\nl2\n")
                self.assertExited(send, 30)

    def test_bad_counts_are_refused(self):
        for args in (("-n", "-1"), ("-c", "-1"), ("-c", "0"), ("--count", "1.5"),
                     ("-c", "99999999999999999999999"), ("-c", "2", "-n", "2")):
            with self.subTest(args=args):
                p = self.run_tool("dlrecv", *args, "127.0.0.1:1", timeout=10)
                self.assertEqual(p.returncode, dltest.EXIT_USAGE, p.describe())

    def test_help_lists_the_family_letters(self):
        for tool in ("dlsend", "dlrecv"):
            p = subprocess.run([self.DLSEND if tool == "dlsend" else self.DLRECV, "--help"],
                               capture_output=True, timeout=10)
            text = p.stdout.decode()
            self.assertNotIn("-k,--keepalive", text)
            self.assertIn("--keepalive", text)
            self.assertNotRegex(text, r"(^|\s)-n[, ]")
            for code in ("9 incomplete", "10 auth", "130 interrupted"):
                self.assertIn(code, text)
        text = subprocess.run([self.DLRECV, "--help"], capture_output=True,
                              timeout=10).stdout.decode()
        self.assertIn("-k,--keep-open", text)
        self.assertIn("-c,--count", text)

    def test_k_keeps_a_listener_open(self):
        out = self.path("out")
        recv, port = self.listen("dlrecv", "-k", stdout=out)
        for i in range(2):
            send = self.dlsend("127.0.0.1:%d" % port, stdin=self._file("in%d" % i, b"%d" % i),
                               name="dlsend-%d" % i)
            self.assertExitCodes(30, (send, 0))
        self.assertTrue(recv.running, "dlrecv -k exited after a session\n%s" % recv.describe())
        recv.signal(signal.SIGTERM)
        self.assertExited(recv, 10, dltest.EXIT_INTERRUPTED)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"01")


if __name__ == "__main__":
    unittest.main(testRunner=dltest.SummaryRunner(verbosity=2))
