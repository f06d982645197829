#!/usr/bin/python3
"""Black-box tests of pymodaq-emu on loopback (stdlib only).

`server` against `grabber` and `actuator` in every dialect (all commands, all data dimensions,
set_info, Quit), stdin arrays, reconnecting, strangers and garbage (clean errors naming byte
offsets), a long run of pushes with flat memory, and decode of the golden captures.

Binary: --pymodaq-emu PATH (tests/BUILD passes it), $PYMODAQ_EMU, or bazel-bin.
Run by hand from the repo root:  /usr/bin/python3 tests/test_pymodaq.py
"""

import json
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SCALE = float(os.environ.get("DLTEST_TIMEOUT_SCALE", "1"))
EXIT_OK, EXIT_USAGE, EXIT_CONNECT, EXIT_DISCONNECTED, EXIT_PROTOCOL, EXIT_TIMEOUT = 0, 2, 4, 5, 6, 7

EMU = os.environ.get("PYMODAQ_EMU") or os.path.join(REPO, "bazel-bin", "tools", "pymodaq-emu", "pymodaq-emu")
if "--pymodaq-emu" in sys.argv:
    i = sys.argv.index("--pymodaq-emu")
    EMU = os.path.abspath(sys.argv[i + 1])
    del sys.argv[i:i + 2]
if not os.path.exists(os.path.join(REPO, "testdata", "pymodaq")):
    REPO = os.getcwd()  # Bazel runfiles root
GOLDEN = os.path.join(REPO, "testdata", "pymodaq")

DIALECTS = ["v1", "3.6.2", "v2", "4.1.0", "4.1.3", "4.2", "v4", "v5"]


def t(seconds):
    return seconds * SCALE


def tmpdir():
    return tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))


class Proc:
    """A child with its stdout read line by line into a queue (JSON parsed when it is JSON)."""

    def __init__(self, args, stdin=subprocess.PIPE, stdout=subprocess.PIPE):
        self.args = args
        self.p = subprocess.Popen([EMU] + args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.seen = []
        self.stderr = b""
        self.rusage = None
        if stdout == subprocess.PIPE:
            threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"raw": line})
        self.lines.put(None)

    def _read_err(self):
        self.stderr = self.p.stderr.read()
        self.p.stderr.close()

    def send(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def close_stdin(self):
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass

    def expect(self, pred, timeout=10, what="a line"):
        """Next line matching pred (earlier non-matching lines are kept in self.seen)."""
        deadline = time.monotonic() + t(timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s; seen %r; stderr %r" % (what, self.seen[-5:], self.stderr))
            try:
                item = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if item is None:
                raise AssertionError("output ended waiting for %s; seen %r; stderr %r" % (what, self.seen[-5:], self.stderr))
            self.seen.append(item)
            if pred(item):
                return item

    def expect_command(self, name, timeout=10):
        return self.expect(lambda m: m.get("command") == name, timeout, name)

    def wait(self, timeout=10):
        deadline = time.monotonic() + t(timeout)
        while True:
            pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
            if pid:
                self.rusage = ru
                self.p.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("%s did not end in time; stderr %r" % (self.args[:2], self.stderr))
            time.sleep(0.01)
        for _ in range(200):  # let the stderr reader finish
            if self.p.stderr.closed or self.stderr:
                break
            time.sleep(0.005)
        return self.p.returncode

    def err(self):
        return self.stderr.decode("utf-8", "replace")

    def kill(self):
        if self.p.returncode is None and self.p.poll() is None:
            try:
                self.p.kill()
                self.p.wait(5)
            except (ProcessLookupError, ChildProcessError, subprocess.TimeoutExpired):
                pass
        for f in (self.p.stdin, self.p.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass


def wait_file(path, timeout=10):
    deadline = time.monotonic() + t(timeout)
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path) as f:
                return int(f.read().strip())
        time.sleep(0.01)
    raise AssertionError("no port file " + path)


class EmuTest(unittest.TestCase):
    def setUp(self):
        self.procs = []
        self.dir = tmpdir()

    def tearDown(self):
        for p in self.procs:
            p.kill()

    def start(self, args, **kw):
        p = Proc(args, **kw)
        self.procs.append(p)
        return p

    def server(self, expect="grabber", dialect="v4", extra=()):
        pf = os.path.join(self.dir, "port%d" % len(self.procs))
        s = self.start(["server", "-l", "127.0.0.1:0", "--port-file", pf, "--expect", expect,
                        "--dialect", dialect] + list(extra))
        return s, wait_file(pf)

    def assert_grabber_served(self, s, port, *extra, shape="2x2"):
        """A real grabber connects and is served to the end (grab 2D, quit): both exit 0.
        Returns the server's line for its Done."""
        g = self.start(["grabber", "127.0.0.1:%d" % port, "--shape-2d", shape] + list(extra))
        s.expect_command("Infos")
        s.send("grab 2D\nquit\n")
        done = s.expect_command("Done")
        self.assertEqual(g.wait(), EXIT_OK, g.err())
        self.assertEqual(s.wait(), EXIT_OK, s.err())
        return done


class ServerGrabberTest(EmuTest):
    def test_every_dialect_every_dimension_set_info_quit(self):
        for d in DIALECTS:
            with self.subTest(dialect=d):
                s, port = self.server("grabber", d)
                g = self.start(["grabber", "127.0.0.1:%d" % port, "--dialect", d, "--shape-1d", "32",
                                "--shape-2d", "8x12", "--shape-nd", "2x3x4", "--dtype", ">u2"])
                s.expect_command("GRABBER")
                infos = s.expect_command("Infos")
                self.assertIn("<dtype", infos["xml"])
                if d == "v5":
                    self.assertEqual(infos["xml_type"], "bytes")  # as PyMoDAQ 5 sends it
                dims = ["0D", "1D", "2D"] + ([] if d == "v1" else ["ND"])
                shapes = {"0D": [1], "1D": [32], "2D": [8, 12], "ND": [2, 3, 4]}
                for dim in dims:
                    s.send("grab %s\n" % dim)
                    m = s.expect_command("Done")
                    arr = m["data"][0]["arrays"][0]
                    self.assertEqual(arr["shape"], shapes[dim])
                    self.assertEqual(arr["dtype"], ">u2")
                    self.assertEqual(m["data"][0]["dim"], "Data" + dim)
                    self.assertGreater(arr["max"], arr["min"] if dim != "0D" else -1)
                s.send("set_info channels 3\ngrab 1D\n")
                m = s.expect_command("Done")
                self.assertEqual(len(m["data"][0]["arrays"]), 3)
                self.assertEqual(m["data"][0]["labels"], ["CH00", "CH01", "CH02"])
                s.send("quit\n")
                self.assertEqual(g.wait(), EXIT_OK, g.err())
                self.assertEqual(s.wait(), EXIT_OK, s.err())

    def test_unknown_command_is_logged_and_the_stream_stays_in_step(self):
        s, port = self.server("grabber", "v4")
        g = self.start(["grabber", "127.0.0.1:%d" % port, "--shape-2d", "4x4"])
        s.expect_command("Infos")
        s.send("send frobnicate\ngrab 2D\nquit\n")
        s.expect_command("Done")
        self.assertEqual(g.wait(), EXIT_OK)
        self.assertIn("unknown command 'frobnicate'", g.err())
        s.wait()

    def test_pushes_at_rate_and_count(self):
        s, port = self.server("grabber", "v5")
        g = self.start(["grabber", "127.0.0.1:%d" % port, "--dialect", "v5", "--rate", "200",
                        "--push-dim", "1D", "-c", "20"])
        for _ in range(20):
            m = s.expect_command("Done")
            self.assertEqual(m["data"][0]["dim"], "Data1D")
        self.assertEqual(g.wait(), EXIT_OK, g.err())
        s.close_stdin()
        s.expect(lambda m: m.get("event") == "closed", what="closed")
        s.kill()

    def test_data_from_stdin_text_header_and_npy(self):
        s, port = self.server("grabber", "v4", extra=["--full"])
        g = self.start(["grabber", "127.0.0.1:%d" % port, "--data", "-"])
        s.expect_command("Infos")
        s.send("grab 2D\ngrab 1D\ngrab 2D\n")
        g.send("ARRAY <i4 2x3\n")
        g.send("")
        g.p.stdin.write(struct.pack("<6i", 1, 2, 3, 4, 5, -6))
        g.p.stdin.flush()
        m = s.expect_command("Done")
        arr = m["data"][0]["arrays"][0]
        self.assertEqual((arr["dtype"], arr["shape"], arr["values"]), ("<i4", [2, 3], [1, 2, 3, 4, 5, -6]))
        # .npy, as np.save writes it (version 1.0 header, padded to 64 bytes)
        header = "{'descr': '>f8', 'fortran_order': False, 'shape': (3,), }"
        header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
        npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack(">3d", 0.5, 1.5, -2)
        g.p.stdin.write(npy)
        g.p.stdin.flush()
        m = s.expect_command("Done")
        arr = m["data"][0]["arrays"][0]
        self.assertEqual((arr["dtype"], arr["shape"], arr["values"]), (">f8", [3], [0.5, 1.5, -2]))
        self.assertEqual(m["data"][0]["dim"], "Data1D")
        g.close_stdin()  # end of input: the grabber ends cleanly
        self.assertEqual(g.wait(), EXIT_OK, g.err())

    def test_bad_stdin_data_names_the_offset(self):
        s, port = self.server("grabber", "v4")
        g = self.start(["grabber", "127.0.0.1:%d" % port, "--data", "-"])
        s.expect_command("Infos")
        s.send("grab 1D\ngrab 1D\n")
        g.send("ARRAY <f8 2\n" + "x" * 16 + "ARRAY <q3 2\n")
        s.expect_command("Done")
        self.assertEqual(g.wait(), EXIT_PROTOCOL)
        self.assertIn("at byte 28", g.err())  # 12-byte header + 16 data bytes

    def test_done_bytes_match_what_pymodaq_encodes(self):
        """Golden arrays piped in and a hand-made PyMoDAQ side asking for them: the reply is
        PyMoDAQ's own encoding, byte for byte but the timestamps (all f8 scalars are masked)."""
        gens = {"v1": "v2.0.0", "v2": "v4.0.11", "v4": "v4.4.5", "v5": "v5.0.x"}
        ts = re.compile(rb"(\x00\x00\x00\x03<f8\x00\x00\x00\x08).{8}", re.S)
        for d, folder in gens.items():
            with self.subTest(dialect=d):
                f = FakeServer()
                g = self.start(["grabber", "127.0.0.1:%d" % f.port, "--dialect", d, "--data", "-",
                                "--name", "pymodaq_peer"])
                g.send("ARRAY <f8 3x4\n")
                g.p.stdin.write(struct.pack("<12d", *range(12)))
                g.p.stdin.flush()
                c = f.accept()
                c.sendall(golden(folder, "%s_str_Send_Data_2D.bin" % d) + enc_str(d, "Quit"))
                data = b""
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.assertEqual(g.wait(), EXIT_OK, g.err())
                c.close()
                want = golden(folder, "%s_str_Done.bin" % d) + golden(folder, "%s_data_2D.bin" % d)
                got = data[-len(want):]
                mask = lambda b: ts.sub(lambda m: m.group(1) + b"T" * 8, b)
                self.assertEqual(mask(got).hex(), mask(want).hex())

    def test_v1_has_no_send_data_nd(self):
        s, port = self.server("grabber", "v1")
        g = self.start(["grabber", "127.0.0.1:%d" % port, "--dialect", "v1", "--shape-2d", "2x2"])
        s.expect_command("Infos")
        s.send("grab ND\nsend Send Data ND\ngrab 2D\nquit\n")
        self.assertEqual(s.expect_command("Done")["data"][0]["dim"], "Data2D")
        self.assertEqual(g.wait(), EXIT_OK)
        self.assertIn("has no Send Data ND", s.err() if s.wait() == 0 else "")
        self.assertIn("'Send Data ND' is not in", g.err())

    def test_v1_cannot_carry_nd_from_stdin(self):
        s, port = self.server("grabber", "v1")
        g = self.start(["grabber", "127.0.0.1:%d" % port, "--dialect", "v1", "--data", "-"])
        s.expect_command("Infos")
        s.send("grab 2D\n")
        g.send("ARRAY <f8 2x2x2\n" + "\0" * 64)
        self.assertEqual(g.wait(), EXIT_USAGE)
        self.assertIn("v1 carries arrays of 1 or 2 dimensions", g.err())


class ServerActuatorTest(EmuTest):
    def test_every_dialect_every_command(self):
        for d in DIALECTS:
            with self.subTest(dialect=d):
                s, port = self.server("actuator", d)
                a = self.start(["actuator", "127.0.0.1:%d" % port, "--dialect", d, "--velocity", "4",
                                "-i", "0.02", "--min", "-1", "--max", "2", "--home", "0.5", "--units", "mm"])
                s.expect_command("ACTUATOR")
                infos = s.expect_command("Infos")
                self.assertIn(">mm</units>", infos["xml"])
                s.send("position\n")
                self.assertEqual(s.expect_command("position_is")["position"], 0)
                s.send("move_abs 1\n")
                done = s.expect_command("move_done")
                self.assertEqual(done["position"], 1)
                moving = [m for m in s.seen if m.get("command") == "position_is"]
                self.assertGreaterEqual(len(moving), 3, "position_is while moving")
                s.send("move_rel -0.25\n")
                self.assertEqual(s.expect_command("move_done")["position"], 0.75)
                s.send("move_abs 7\n")  # clamped to --max
                self.assertEqual(s.expect_command("move_done")["position"], 2)
                s.send("home\n")
                self.assertEqual(s.expect_command("move_done")["position"], 0.5)
                s.send("set_info units um\nposition\n")
                p = s.expect_command("position_is")
                if d in ("v4", "v5"):
                    self.assertEqual(p["units"], "um")
                s.send("set_info velocity 0.5\nmove_abs -1\n")
                s.expect_command("position_is")
                s.send("stop\nposition\n")
                p = s.expect_command("position_is")
                self.assertGreater(p["position"], -0.9)  # stopped on the way
                s.send("sync\nquit\n")
                self.assertEqual(a.wait(), EXIT_OK, a.err())
                self.assertEqual(s.wait(), EXIT_OK, s.err())

    def test_v2_query_command_name_follows_the_version(self):
        for d, name in (("3.6.2", "check_position"), ("3.6.3", "get_actuator_value")):
            s, port = self.server("actuator", d)
            raw = socket.create_connection(("127.0.0.1", port), timeout=t(5))
            raw.sendall(b"\x00\x00\x00\x08ACTUATOR")
            s.expect_command("ACTUATOR")
            s.send("position\nquit\n")
            data = b""
            want = struct.pack(">I", len(name)) + name.encode()
            deadline = time.monotonic() + t(5)
            while want not in data and time.monotonic() < deadline:
                data += raw.recv(4096)
            self.assertIn(want, data)
            raw.close()
            s.wait()

    def test_move_done_bytes_match_what_pymodaq_encodes(self):
        """A hand-made PyMoDAQ side sends golden bytes; the reply is PyMoDAQ's own encoding of
        move_done + 1.25 (byte for byte, but the timestamp of v4/v5's DataActuator)."""
        gens = {"v1": ("v2.0.0", None), "v2": ("v4.0.11", None), "v4": ("v4.4.5", 27), "v5": ("v5.0.x", 40)}
        for d, (folder, ts_at) in gens.items():
            with self.subTest(dialect=d):
                f = FakeServer()
                a = self.start(["actuator", "127.0.0.1:%d" % f.port, "--dialect", d, "--velocity", "0",
                                "--units", ""])
                c = f.accept()
                pos = golden(folder, "%s_position_1p25.bin" % d)
                c.sendall(enc_str(d, "move_abs") + pos + enc_str(d, "Quit"))
                data = b""
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.assertEqual(a.wait(), EXIT_OK, a.err())
                c.close()
                want = golden(folder, "%s_str_move_done.bin" % d) + pos
                got = data[-len(want):]
                self.assertTrue(data.startswith(golden(folder, "%s_str_ACTUATOR.bin" % d)))
                if ts_at is not None:
                    at = len(golden(folder, "%s_str_move_done.bin" % d)) + ts_at
                    got = got[:at] + want[at:at + 8] + got[at + 8:]
                self.assertEqual(got.hex(), want.hex())

    def test_real_pymodaq_44_moves_units_mm_then_empty(self):
        """PyMoDAQ 4.4 sends move_abs with units 'mm' and move_rel with ''; both are accepted."""
        s, port = self.server("actuator", "v4")
        a = self.start(["actuator", "127.0.0.1:%d" % port, "--velocity", "0"])
        s.expect_command("Infos")  # the server takes 'mm' from the client's settings
        s.send("move_abs 1.5\nmove_rel 0.5\nsync\nquit\n")
        self.assertEqual(s.expect_command("move_done")["position"], 1.5)
        self.assertEqual(s.expect_command("move_done")["position"], 2.0)
        self.assertEqual(a.wait(), EXIT_OK)


def golden(folder, name):
    with open(os.path.join(GOLDEN, folder, name), "rb") as f:
        return f.read()


def enc_str(dialect, text):
    """A command string as each generation frames it (v5: length + typed str)."""
    b = text.encode()
    body = struct.pack(">I", len(b)) + b
    if dialect == "v5":
        typed = struct.pack(">I", 3) + b"str" + body
        return struct.pack(">I", len(typed)) + typed
    return body


class FakeServer:
    """A listening socket the test drives by hand."""

    def __init__(self):
        self.l = socket.socket()
        self.l.bind(("127.0.0.1", 0))
        self.l.listen(1)
        self.l.settimeout(t(10))
        self.port = self.l.getsockname()[1]

    def accept(self):
        c, _ = self.l.accept()
        c.settimeout(t(10))
        return c


class BadInputTest(EmuTest):
    def test_grabber_gets_garbage_protocol_error_with_offset(self):
        f = FakeServer()
        g = self.start(["grabber", "127.0.0.1:%d" % f.port, "--dialect", "v2"])
        c = f.accept()
        c.sendall(golden("v4.0.11", "v2_str_Send_Data_2D.bin") + b"\xff\xff\xff\xffjunk")
        self.assertEqual(g.wait(), EXIT_PROTOCOL)
        self.assertRegex(g.err(), r"command length at byte 16")
        c.close()

    def test_grabber_peer_closes_mid_message(self):
        f = FakeServer()
        g = self.start(["grabber", "127.0.0.1:%d" % f.port, "--dialect", "v4"])
        c = f.accept()
        c.sendall(golden("v4.4.5", "v4_str_Send_Data_2D.bin")[:9])
        c.shutdown(socket.SHUT_WR)  # the grabber's own bytes are read below, so no reset
        while c.recv(65536):
            pass
        self.assertEqual(g.wait(), EXIT_DISCONNECTED)
        self.assertIn("in the middle of the message at byte 0", g.err())

    def test_actuator_huge_length_is_refused_not_awaited(self):
        f = FakeServer()
        a = self.start(["actuator", "127.0.0.1:%d" % f.port, "--dialect", "v5", "--max-message", "1M"])
        c = f.accept()
        c.sendall(b"\x7f\xff\xff\xff")
        self.assertEqual(a.wait(), 8)  # too large
        self.assertIn("command frame length at byte 0", a.err())
        c.close()

    def test_server_survives_strangers_and_garbage(self):
        s, port = self.server("grabber", "v4")
        # A stranger that sends garbage is dropped with the offset named; one that says ACTUATOR too.
        x = socket.create_connection(("127.0.0.1", port))
        x.sendall(b"\x00\x00\x00\x07GRABBER\x00\x00\x00\x04Done\x00\x00\x00\x0cDataToExpurt" + b"\x00" * 64)
        ev = s.expect(lambda m: m.get("event") == "closed", what="stranger closed")
        self.assertRegex(ev["reason"], r"DataToExport class at byte 19")
        y = socket.create_connection(("127.0.0.1", port))
        y.sendall(b"\x00\x00\x00\x08ACTUATOR")
        s.expect(lambda m: m.get("event") == "closed" and "wrong client type" in m.get("reason", ""), what="wrong type")
        z = socket.create_connection(("127.0.0.1", port))
        z.sendall(b"\x00\x00\x00\x07GRAB")
        z.close()
        ev = s.expect(lambda m: m.get("event") == "closed", what="truncated closed")
        self.assertIn("middle of the message at byte 0", ev["reason"])
        # ...and a real grabber still gets served.
        self.assert_grabber_served(s, port)
        x.close()
        y.close()

    def test_a_silent_crowd_cannot_lock_out_a_real_grabber(self):
        # 80 strangers that never announce a type, against a server allowed 80 descriptors:
        # they used to hold one each for ever, so the real grabber could not be accepted. Now
        # at most 64 wait at once (the oldest makes room) and none longer than 5 s.
        import resource
        s, port = self.server("grabber", "v4")
        resource.prlimit(s.p.pid, resource.RLIMIT_NOFILE, (80, 80))
        trickler = socket.create_connection(("127.0.0.1", port), timeout=t(5))
        trickler.sendall(b"\x00")  # a slowloris: one byte of the type's length, then nothing
        crowd = []
        self.addCleanup(lambda: [c.close() for c in crowd + [trickler]])
        for _ in range(80):
            crowd.append(socket.create_connection(("127.0.0.1", port), timeout=t(5)))
        # Room is made (the oldest goes), or on a slow machine the first 5 s were up already.
        ev = s.expect(lambda m: m.get("event") == "closed", what="room made for newcomers")
        self.assertRegex(ev["reason"], "too many clients without a type|within 5 s")
        g = self.start(["grabber", "127.0.0.1:%d" % port, "--shape-2d", "2x2"])
        s.expect_command("Infos")
        s.send("grab 2D\n")
        s.expect_command("Done")
        # Whoever of the crowd is still there is closed once 5 s have passed without a type.
        ev = s.expect(lambda m: m.get("event") == "closed" and "within 5 s" in m.get("reason", ""),
                      timeout=15, what="a silent stranger closed after 5 s")
        s.send("quit\n")
        self.assertEqual(g.wait(), EXIT_OK, g.err())
        self.assertEqual(s.wait(), EXIT_OK, s.err())

    def test_a_burst_of_connects_is_taken_at_once(self):
        # 48 clients connecting in the same instant: with a backlog of 4 the kernel dropped
        # the SYNs beyond it and those clients waited out a 1 s retransmission.
        import select
        s, port = self.server("grabber", "v4")
        socks = []
        self.addCleanup(lambda: [c.close() for c in socks])
        started = time.monotonic()
        for _ in range(48):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            socks.append(c)
        pending = list(socks)
        while pending and time.monotonic() - started < t(5):
            _, w, _ = select.select([], pending, [], 0.1)
            pending = [c for c in pending if c not in w]
        took = time.monotonic() - started
        self.assertFalse(pending, "connects still pending")
        self.assertLess(took, 0.9, "a burst of connects waited for SYN retransmissions")
        for c in socks:
            c.close()
        socks.clear()
        self.assert_grabber_served(s, port)

    def test_a_stranger_cannot_make_the_server_buffer_max_message(self):
        # v5 frames the client type by a length: one announcing 200 MiB was buffered whole
        # (64 of them: 12 GiB). Until a client has announced its type, 64 KiB is the limit;
        # after that --max-message (the grabber's 512 KiB frames below) as before.
        s, port = self.server("grabber", "v5")
        x = socket.create_connection(("127.0.0.1", port), timeout=t(10))
        self.addCleanup(x.close)
        x.sendall(struct.pack(">I", 200 << 20) + b"\x00" * 65536)
        ev = s.expect(lambda m: m.get("event") == "closed", what="the stranger closed")
        self.assertRegex(ev["reason"], "at byte 0: .*beyond the 65536-byte")
        done = self.assert_grabber_served(s, port, "--dialect", "v5", shape="256x256")
        self.assertEqual(done["data"][0]["arrays"][0]["shape"], [256, 256])

    def test_current_client_killed_mid_reply_the_next_one_is_served(self):
        # The grabber being commanded dies (reset) half-way through its Done: the server names
        # the byte, forgets the reply it owed, and commands the next grabber; no exit, no hang.
        s, port = self.server("grabber", "v4")
        x = socket.create_connection(("127.0.0.1", port), timeout=t(10))
        x.sendall(b"\x00\x00\x00\x07GRABBER")
        s.expect(lambda m: m.get("command") == "GRABBER", what="the first grabber")
        s.send("grab 2D\n")
        got = b""
        while b"Send Data 2D" not in got:
            chunk = x.recv(4096)
            self.assertTrue(chunk, "the server closed the first grabber")
            got += chunk
        x.sendall(b"\x00\x00\x00\x04Done\x00\x00\x00\x0cDataToExport\x00\x00")
        x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        x.close()  # a reset: as if killed
        ev = s.expect(lambda m: m.get("event") == "closed", what="the first grabber closed")
        self.assertIn("Connection reset by peer", ev["reason"])
        self.assert_grabber_served(s, port)

    def test_wrong_client_type_is_closed(self):
        s, port = self.server("actuator", "v4")
        g = self.start(["grabber", "127.0.0.1:%d" % port])
        self.assertEqual(g.wait(), EXIT_DISCONNECTED)
        s.expect(lambda m: "wrong client type" in m.get("reason", ""), what="refusal")


class ConnectTest(EmuTest):
    def test_refused_without_wait(self):
        f = socket.socket()
        f.bind(("127.0.0.1", 0))
        port = f.getsockname()[1]
        f.close()
        g = self.start(["grabber", "127.0.0.1:%d" % port])
        self.assertEqual(g.wait(), EXIT_CONNECT)
        self.assertRegex(g.err(), r"^pymodaq-emu: .*connect 127\.0\.0\.1:%d.*refused" % port)

    def test_wait_then_reconnect_after_server_restart(self):
        f = socket.socket()
        f.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        f.bind(("127.0.0.1", 0))
        port = f.getsockname()[1]
        f.close()
        g = self.start(["grabber", "127.0.0.1:%d" % port, "-w", "20", "--shape-2d", "2x2"])
        s1 = self.start(["server", "-l", "127.0.0.1:%d" % port])
        s1.expect_command("Infos", timeout=15)
        s1.send("grab 2D\n")
        s1.expect_command("Done")
        s1.p.kill()  # the PyMoDAQ side goes away; the grabber dials again with backoff
        s1.wait()
        s2 = self.start(["server", "-l", "127.0.0.1:%d" % port])
        s2.expect_command("Infos", timeout=15)
        s2.send("grab 2D\nquit\n")
        s2.expect_command("Done")
        self.assertEqual(g.wait(), EXIT_OK, g.err())

    def test_server_wait_times_out(self):
        s = self.start(["server", "-l", "127.0.0.1:0", "-w", "0.2", "-q"])
        self.assertEqual(s.wait(), EXIT_TIMEOUT)

    def test_signal_ends_with_130(self):
        s, port = self.server("grabber", "v4")
        g = self.start(["grabber", "127.0.0.1:%d" % port])
        s.expect_command("Infos")
        g.p.send_signal(signal.SIGTERM)
        self.assertEqual(g.wait(), 130)
        s.expect_command("Quit")  # as PyMoDAQ's own client says when it stops


    def test_signal_ends_the_wait_for_a_data_fifo_writer(self):
        # Opening a FIFO waits for its writer; the signals are the reactor's by then (blocked),
        # so the wait must end on them itself, or SIGTERM did nothing until a writer came.
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        g = self.start(["grabber", "127.0.0.1:1", "--data", fifo])
        bit = 1 << (signal.SIGTERM - 1)

        def routed():  # SIGTERM blocked or caught: the tool's own, not the default action's
            with open("/proc/%d/status" % g.p.pid) as f:
                return any(l.startswith(("SigBlk:", "SigCgt:")) and int(l.split()[1], 16) & bit
                           for l in f)
        deadline = time.monotonic() + t(10)
        while not routed() and time.monotonic() < deadline:
            time.sleep(0.01)
        g.p.send_signal(signal.SIGTERM)
        self.assertEqual(g.wait(), 130, g.err())


class MemoryTest(EmuTest):
    def test_long_run_of_pushes_keeps_memory_flat(self):
        # 4000 frames of 256x256 float64 (2 GiB) pushed as fast as the server takes them.
        s, port = self.server("grabber", "v4")
        s_out = s  # its JSON goes through our reader and is dropped
        g = self.start(["grabber", "127.0.0.1:%d" % port, "--shape-2d", "256x256", "--push-dim", "2D",
                        "--rate", "1000000", "-c", "4000"], stdout=subprocess.DEVNULL)
        self.assertEqual(g.wait(timeout=120), EXIT_OK, g.err())
        n = 0
        while n < 4000:
            m = s_out.expect(lambda m: m.get("command") == "Done", timeout=60)
            n += 1
        s.close_stdin()
        s.expect(lambda m: m.get("event") == "closed", what="closed")
        s.p.send_signal(signal.SIGTERM)
        s.wait()
        frame = 256 * 256 * 8
        g_rss = g.rusage.ru_maxrss * 1024
        s_rss = s.rusage.ru_maxrss * 1024
        # Bounded by the output high-water mark (8 MiB) plus a few frames, not by 2 GiB.
        sys.stderr.write("\npushes: 4000 x %d KiB frames; peak RSS grabber %d KiB, server %d KiB\n" % (frame >> 10, g_rss >> 10, s_rss >> 10))
        self.assertLess(g_rss, 48 << 20, "grabber peak RSS %d" % g_rss)
        self.assertLess(s_rss, 48 << 20, "server peak RSS %d" % s_rss)
        self.assertGreater(4000 * frame, 40 * max(g_rss, s_rss))


    def test_server_that_stops_printing_pushes_back_on_the_grabber(self):
        """stdout nobody reads: the server stops reading its socket, the grabber's pushes pause."""
        pf = os.path.join(self.dir, "port")
        server = subprocess.Popen([EMU, "server", "-l", "127.0.0.1:0", "--port-file", pf, "-q"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            port = wait_file(pf)
            g = self.start(["grabber", "127.0.0.1:%d" % port, "--shape-2d", "256x256", "--rate", "1000000"],
                           stdout=subprocess.DEVNULL)

            def rss(pid):
                with open("/proc/%d/status" % pid) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            return int(line.split()[1]) << 10
                return 0

            deadline = time.monotonic() + t(3)
            peak = 0
            while time.monotonic() < deadline:
                self.assertIsNone(g.p.poll(), g.err())
                peak = max(peak, rss(g.p.pid), rss(server.pid))
                time.sleep(0.05)
            self.assertLess(peak, 64 << 20, "peak RSS %d with a stalled reader" % peak)
            # The stall is only backpressure: once stdout is read, the frames flow again.
            got = 0
            end = time.monotonic() + t(10)
            while got < 50 and time.monotonic() < end:
                line = server.stdout.readline()
                if b'"command":"Done"' in line:
                    got += 1
            self.assertEqual(got, 50)
        finally:
            server.kill()
            server.wait()
            server.stdout.close()
            server.stdin.close()


class DecodeTest(EmuTest):
    CAPTURES = {
        "v1": ("v2.0.0", ["str_GRABBER", "xml_Infos", "str_Send_Data_2D", "str_Done", "data_0D", "str_Done", "data_1D",
                          "str_Done", "data_2D", "str_move_done", "position_1p25"]),
        "v2": ("v4.0.11", ["str_ACTUATOR", "xml_Infos", "str_Done", "data_ND", "str_move_done", "position_1p25",
                           "str_Done", "data_2D"]),
        "v4": ("v4.4.5", ["str_GRABBER", "xml_Infos", "str_Send_Data_2D", "str_Done", "data_0D", "str_Done", "data_1D",
                          "str_Done", "data_2D", "str_Done", "data_ND", "str_move_done", "position_1p25"]),
        "v5": ("v5.0.x", ["str_GRABBER", "xml_Infos", "str_Send_Data_2D", "str_Done", "data_0D", "str_Done", "data_1D",
                          "str_Done", "data_2D", "str_Done", "data_ND", "str_move_done", "position_1p25"]),
    }

    def capture(self, dialect):
        folder, parts = self.CAPTURES[dialect]
        out = b""
        for p in parts:
            if p == "xml_Infos":  # the command before the XML
                out += enc_str(dialect, "Infos")
            out += golden(folder, "%s_%s.bin" % (dialect, p))
        return out

    def decode(self, data, *args):
        p = subprocess.run([EMU, "decode"] + list(args), input=data, capture_output=True, timeout=t(20))
        lines = [json.loads(x) for x in p.stdout.decode().splitlines()]
        return p.returncode, lines, p.stderr.decode()

    def test_golden_captures_every_dialect(self):
        for d in ("v1", "v2", "v4", "v5"):
            with self.subTest(dialect=d):
                data = self.capture(d)
                rc, lines, err = self.decode(data, "--dialect", d)
                self.assertEqual(rc, EXIT_OK, err)
                cmds = [m["command"] for m in lines]
                self.assertEqual(cmds[1], "Infos")
                self.assertIn("<npts type=\"int\"", lines[1]["xml"])
                dones = [m for m in lines if m["command"] == "Done"]
                self.assertEqual(len(dones), sum(1 for p in self.CAPTURES[d][1] if p.startswith("data_")))
                shapes = [m["data"][0]["arrays"][0]["shape"] for m in dones]
                self.assertIn([3, 4], shapes)
                mv = [m for m in lines if m["command"] == "move_done"][0]
                self.assertEqual(mv["position"], 1.25)
                # offsets and sizes tile the capture exactly
                self.assertEqual(lines[0]["offset"], 0)
                for a, b in zip(lines, lines[1:]):
                    self.assertEqual(a["offset"] + a["bytes"], b["offset"])
                self.assertEqual(lines[-1]["offset"] + lines[-1]["bytes"], len(data))

    def test_full_values(self):
        data = golden("v4.4.5", "v4_str_Done.bin") + golden("v4.4.5", "v4_data_2D.bin")
        rc, lines, _ = self.decode(data, "--full")
        self.assertEqual(rc, 0)
        self.assertEqual(lines[0]["data"][0]["arrays"][0]["values"], list(range(12)))

    def test_truncated_and_malformed_name_the_offset(self):
        data = self.capture("v4")
        rc, lines, err = self.decode(data[:-10], "--dialect", "v4")
        self.assertEqual(rc, EXIT_PROTOCOL)
        self.assertGreater(len(lines), 5)  # everything before the cut is printed
        last_end = lines[-1]["offset"] + lines[-1]["bytes"]
        self.assertIn("inside the message at byte %d" % last_end, err)
        bad = bytearray(data)
        at = data.index(b"<f8", 60)
        bad[at] = ord("x")
        rc, lines, err = self.decode(bytes(bad), "--dialect", "v4")
        self.assertEqual(rc, EXIT_PROTOCOL)
        self.assertRegex(err, r"bad-dtype.*at byte %d" % (at - 4))
        # A 4.1.0 reader cannot read 4.4 DataWithAxes: a clean error, not a crash.
        rc, _, err = self.decode(data, "--dialect", "4.1.0")
        self.assertEqual(rc, EXIT_PROTOCOL)
        self.assertRegex(err, r"at byte \d+")

    def test_file_and_usage(self):
        path = os.path.join(self.dir, "cap.bin")
        with open(path, "wb") as f:
            f.write(self.capture("v5"))
        p = subprocess.run([EMU, "decode", "--dialect", "v5", "-f", path], capture_output=True, timeout=t(20))
        self.assertEqual(p.returncode, 0)
        p = subprocess.run([EMU, "decode", "--dialect", "v3.9"], capture_output=True, timeout=t(20), input=b"")
        self.assertEqual(p.returncode, 0)  # 3.9 is a v2 release
        p = subprocess.run([EMU, "decode", "--dialect", "v7"], capture_output=True, timeout=t(20), input=b"")
        self.assertEqual(p.returncode, EXIT_USAGE)
        self.assertRegex(p.stderr.decode(), r"^pymodaq-emu: .*--dialect v7")
        p = subprocess.run([EMU, "decode", "-f", "/nonexistent"], capture_output=True, timeout=t(20))
        self.assertEqual(p.returncode, 1)


class ManPageTest(unittest.TestCase):
    def test_every_subcommand_option_is_in_the_man_page(self):
        man = None
        for cand in (os.path.join(REPO, "man", "pymodaq-emu.1"),):
            if os.path.exists(cand):
                man = open(cand).read().replace("\\-", "-")
        self.assertIsNotNone(man, "man/pymodaq-emu.1")
        for sub in ("grabber", "actuator", "server", "decode"):
            self.assertIn(sub, man)
            h = subprocess.run([EMU, sub, "--help"], capture_output=True, timeout=t(10)).stdout.decode()
            opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?=[ ,=\n])", h))
            self.assertGreater(len(opts), 3, h)
            for o in opts:
                self.assertRegex(man, r"(?<![\w-])%s(?![\w-])" % re.escape(o), "%s %s missing from the man page" % (sub, o))


if __name__ == "__main__":
    unittest.main(verbosity=2)
