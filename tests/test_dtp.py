#!/usr/bin/python3
"""dtpserve/dtpget black-box tests on loopback (UDP): byte-exact transfers at 0% and 10% loss,
kill -9 and resume from the session file, a changed payload refused on resume, path escapes
refused, two clients at once, --range across the 4 GiB boundary of a sparse file, and garbage
datagrams at the server while a session carries on.

Binaries: $DTPSERVE / $DTPGET (run_py_test.sh sets them), else bazel-bin/tools/<tool>/<tool>.
"""

import os
import re
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
from dltest import MiB, GiB  # noqa: E402

EXIT_INCOMPLETE = 9


def tool(name):
    return dltest._find_binary(name)


def session_received(path):
    """Bytes the session file says were received (dtp-session(5): the u64 before the checksum)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 16 or not data.startswith(b"DTPSESS\0"):
        return None
    return struct.unpack(">Q", data[-16:-8])[0]


class DtpCase(dltest.DlTestCase):
    """The helpers, without tests (test_dtp_adversary.py builds on them too)."""
    need_binaries = False

    @classmethod
    def setUpClass(cls):
        cls.SERVE, cls.GET = tool("dtpserve"), tool("dtpget")
        for p in (cls.SERVE, cls.GET):
            if not os.access(p, os.X_OK):
                raise AssertionError("binary not built: %s (bazel build //tools/...)" % p)

    # -- helpers
    def serve(self, *args, root=None):
        root = root or self.path("root")
        os.makedirs(root, exist_ok=True)
        pf = self.path("port-%d" % len(self.P.procs))
        p = self.P.start([self.SERVE, "-l", "127.0.0.1:0", "--port-file", pf, "--root", root] + list(args),
                         name="dtpserve#%d" % len(self.P.procs))
        return p, "127.0.0.1:%d" % dltest.wait_port_file(pf, p)

    def get(self, *args, **kw):
        return self.P.start([self.GET] + [str(a) for a in args], name=kw.pop("name", None), **kw)

    def fetch(self, *args, code=0, timeout=60, **kw):
        p = self.get(*args, **kw)
        self.assertExited(p, timeout, code)
        self.assertNoCrash(p)
        return p

    def random_file(self, name, size):
        path = os.path.join(self.path("root"), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        dltest.make_random_file(path, size)
        return path

    def craft_path(self):
        """tests/dtp_craft: hand-made datagrams with valid checksums."""
        craft = dltest._find_binary("dtp_craft")
        if not os.access(craft, os.X_OK):
            for cand in (os.path.join(dltest.REPO, "bazel-bin", "tests", "dtp_craft"),
                         os.path.join(dltest.REPO, "tests", "dtp_craft")):
                if os.access(cand, os.X_OK):
                    craft = cand
        self.assertTrue(os.access(craft, os.X_OK), "dtp_craft not built")
        return craft

    def summary(self, proc):
        m = re.search(r"received (\d+) new bytes \((\d+) duplicate\)", proc.stderr())
        self.assertTrue(m, "no summary line\n%s" % proc.describe())
        return int(m.group(1)), int(m.group(2))


class DtpTest(DtpCase):
    # -- whole transfers
    def test_50mib_no_loss(self):
        src = self.random_file("a.bin", 50 * MiB)
        srv, addr = self.serve()
        out = self.path("a.out")
        p = self.fetch(addr, "a.bin", "-o", out, "-v")
        self.assertSameFile(src, out)
        new, dup = self.summary(p)
        self.assertEqual(new, 50 * MiB)
        self.assertFalse(os.path.exists(out + ".dtp-session"), "session file left after success")
        self.assertTrue(srv.running)

    def test_50mib_ten_percent_loss(self):
        src = self.random_file("a.bin", 50 * MiB)
        srv, addr = self.serve()
        out = self.path("a.out")
        p = self.fetch(addr, "a.bin", "-o", out, "-v", "--drop", "10%", "--reorder")
        self.assertSameFile(src, out)
        m = re.search(r"(\d+) passes", p.stderr())
        self.assertTrue(m and int(m.group(1)) >= 2, "10%% loss healed in one pass?\n%s" % p.describe())

    def test_loss_and_reorder_at_the_server_too(self):
        src = self.random_file("b.bin", 8 * MiB + 12345)
        srv, addr = self.serve("--drop", "0.05", "--reorder")
        out = self.path("b.out")
        self.fetch(addr, "b.bin", "-o", out, "--drop", "5%", "--reorder")
        self.assertSameFile(src, out)

    def test_stdout_streams_in_order(self):
        src = self.random_file("s.bin", 6 * MiB + 7)
        srv, addr = self.serve()
        out = self.path("s.out")
        self.fetch(addr, "s.bin", "-o", "-", "--drop", "5%", stdout=out)
        self.assertSameFile(src, out)

    @unittest.skipUnless(dltest.have_ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6_and_udp_prefix(self):
        src = self.random_file("six.bin", 3 * MiB + 1)
        root = self.path("root")
        pf = self.path("port6")
        srv = self.P.start([self.SERVE, "-l", "udp:[::1]:0", "--port-file", pf, "--root", root])
        port = dltest.wait_port_file(pf, srv)
        out = self.path("six.out")
        self.fetch("udp:[::1]:%d" % port, "six.bin", "-o", out, "--drop", "5%", "--mtu", "9000")
        self.assertSameFile(src, out)

    def test_empty_payload(self):
        src = self.random_file("e.bin", 0)
        srv, addr = self.serve()
        out = self.path("e.out")
        self.fetch(addr, "e.bin", "-o", out)
        self.assertSameFile(src, out)

    def test_two_clients_at_once(self):
        a = self.random_file("x/a.bin", 20 * MiB)
        b = self.random_file("b.bin", 20 * MiB + 3)
        srv, addr = self.serve()
        pa = self.get(addr, "x/a.bin", "-o", self.path("a.out"), "--drop", "5%")
        pb = self.get(addr, "b.bin", "-o", self.path("b.out"))
        self.assertExitCodes(60, (pa, 0), (pb, 0))
        self.assertSameFile(a, self.path("a.out"))
        self.assertSameFile(b, self.path("b.out"))
        dltest.wait_until(lambda: srv.stderr().count(" session ") >= 2, 10, "two session log lines")

    # -- resume
    def test_kill9_then_resume(self):
        size = 50 * MiB
        src = self.random_file("k.bin", size)
        srv, addr = self.serve()
        out = self.path("k.out")
        sess = out + ".dtp-session"
        p = self.get(addr, "k.bin", "-o", out, "--rate", "100M", "--save-interval", "0.1")

        def far_enough():
            try:
                got = session_received(sess)
            except FileNotFoundError:
                got = None
            return got is not None and got >= 0.4 * size
        dltest.wait_until(far_enough, 30, "40% in the session file")
        p.kill()
        p.wait(5)
        saved = session_received(sess)
        self.assertLess(saved, size, "finished before the kill; test proves nothing")
        # Bytes already in the output that the session does not know of are what the resume
        # must fetch again: count them chunk by chunk (random data never matches by chance).
        chunk = 1500 - 28 - 32
        on_disk = 0
        with open(src, "rb") as a, open(out, "rb") as b:
            while True:
                x, y = a.read(chunk), b.read(chunk)
                if not x:
                    break
                if x == y:
                    on_disk += len(x)
        lost = on_disk - saved
        self.assertLessEqual(lost, 0.1 * size,
                             "%d bytes written but not in the session (saved %d)" % (lost, saved))
        r = self.fetch("--resume", sess, "-v")
        self.assertSameFile(src, out)
        new, dup = self.summary(r)
        self.assertEqual(new, size - saved, "the resume fetched more than the session lacked")
        self.assertLess(dup, 0.05 * size)
        self.assertFalse(os.path.exists(sess))

    def test_server_killed_and_restarted_mid_transfer(self):
        src = self.random_file("r.bin", 16 * MiB)
        srv, addr = self.serve()
        out = self.path("r.out")
        p = self.get(addr, "r.bin", "-o", out, "--rate", "60M", "-v")
        dltest.wait_until(lambda: os.path.exists(out + ".dtp-session"), 10, "transfer started")
        srv.kill()
        srv.wait(5)
        # Same port again (the one the first server was given): the client's session is unknown
        # there, it is told so (STOP expired), opens again and carries on.
        port = addr.rsplit(":", 1)[1]
        self.P.start([self.SERVE, "-l", "127.0.0.1:" + port, "--root", self.path("root")], name="dtpserve-again")
        self.assertExited(p, 60, 0)
        self.assertSameFile(src, out)

    def test_deadline_saves_session_and_changed_payload_is_refused(self):
        size = 16 * MiB
        src = self.random_file("c.bin", size)
        srv, addr = self.serve()
        out = self.path("c.out")
        sess = self.path("my.session")
        p = self.fetch(addr, "c.bin", "-o", out, "--session", sess, "--rate", "40M", "-w", "1",
                       code=EXIT_INCOMPLETE)
        self.assertIn("--resume", p.stderr())
        info = subprocess.run([self.GET, "--info", sess], capture_output=True, timeout=10)
        self.assertEqual(info.returncode, 0, info.stderr)
        text = info.stdout.decode()
        self.assertIn("c.bin", text)
        m = re.search(r"missing:\s+(\d+) bytes", text)
        self.assertTrue(m and 0 < int(m.group(1)) < size, text)
        # The payload changes on the server (same size, new bytes): resuming must refuse.
        dltest.make_random_file(src, size)
        r = self.fetch("--resume", sess, code=dltest.EXIT_PROTOCOL)
        self.assertIn("changed", r.stderr())
        self.assertIn("--restart", r.stderr())
        self.fetch("--resume", sess, "--restart")
        self.assertSameFile(src, out)

    def test_payload_changing_mid_transfer_fails_the_hash_check(self):
        size = 16 * MiB
        src = self.random_file("m.bin", size)
        srv, addr = self.serve()
        out = self.path("m.out")
        p = self.get(addr, "m.bin", "-o", out, "--rate", "60M")
        dltest.wait_until(lambda: os.path.exists(out + ".dtp-session"), 10, "transfer started")
        with open(src, "r+b") as f:   # same size, new bytes at the end: not sent yet
            f.seek(size - MiB)
            f.write(os.urandom(MiB))
        self.assertExited(p, 30, dltest.EXIT_PROTOCOL)
        self.assertIn("SHA-256", p.stderr())
        self.assertNoCrash(p)

    def test_sigterm_saves_session_exit_9(self):
        src = self.random_file("t.bin", 16 * MiB)
        srv, addr = self.serve()
        out = self.path("t.out")
        p = self.get(addr, "t.bin", "-o", out, "--rate", "40M")
        dltest.wait_until(lambda: os.path.exists(out + ".dtp-session"), 10, "session file")
        p.signal(signal.SIGTERM)
        self.assertExited(p, 10, EXIT_INCOMPLETE)
        # Running the same command again continues from the session.
        self.fetch(addr, "t.bin", "-o", out)
        self.assertSameFile(src, out)

    def test_total_loss_gives_up_resumably(self):
        src = self.random_file("z.bin", 3 * MiB)
        srv, addr = self.serve()
        out = self.path("z.out")
        p = self.fetch(addr, "z.bin", "-o", out, "--drop", "100%", "-t", "1", code=EXIT_INCOMPLETE, timeout=15)
        self.assertIn("no new data", p.stderr())
        self.fetch("--resume", out + ".dtp-session")
        self.assertSameFile(src, out)

    def test_damaged_session_file_is_refused(self):
        self.random_file("d.bin", 4 * MiB)
        srv, addr = self.serve()
        out = self.path("d.out")
        self.fetch(addr, "d.bin", "-o", out, "--rate", "10M", "-w", "0.5", code=EXIT_INCOMPLETE)
        sess = out + ".dtp-session"
        with open(sess, "r+b") as f:
            f.seek(60)
            b = f.read(1)
            f.seek(60)
            f.write(bytes([b[0] ^ 0x40]))
        r = self.fetch("--resume", sess, code=dltest.EXIT_PROTOCOL)
        self.assertIn("checksum", r.stderr())

    # -- refusals
    def test_unknown_payload(self):
        srv, addr = self.serve()
        p = self.fetch(addr, "nope.bin", "-o", self.path("n.out"), code=dltest.EXIT_IO, timeout=15)
        self.assertIn("no such payload", p.stderr())

    def test_named_files_are_served_by_base_name_only(self):
        src = self.path("elsewhere.bin")
        dltest.make_random_file(src, MiB + 5)
        pf = self.path("portn")
        srv = self.P.start([self.SERVE, "-l", "127.0.0.1:0", "--port-file", pf, src])
        addr = "127.0.0.1:%d" % dltest.wait_port_file(pf, srv)
        self.fetch(addr, "elsewhere.bin", "-o", self.path("n.out"))
        self.assertSameFile(src, self.path("n.out"))
        p = self.fetch(addr, src, "-o", self.path("n2.out"), code=dltest.EXIT_IO, timeout=15)
        self.assertIn("no such payload", p.stderr())

    def test_busy_beyond_max_sessions(self):
        src = self.random_file("q.bin", 4 * MiB)
        srv, addr = self.serve("--max-sessions", "1")
        first = self.get(addr, "q.bin", "-o", self.path("q1.out"), "--rate", "8M")
        # Under way (data arrived, so it sent a REQUEST with the cookie): an unanswered
        # session would give way to the new one instead.
        def under_way():
            try:
                return (session_received(self.path("q1.out.dtp-session")) or 0) > 0
            except FileNotFoundError:
                return False
        dltest.wait_until(under_way, 10, "first session")
        p = self.fetch(addr, "q.bin", "-o", self.path("q2.out"), code=dltest.EXIT_CONNECT, timeout=15)
        self.assertIn("busy", p.stderr())
        self.assertExited(first, 30, 0)
        self.assertSameFile(src, self.path("q1.out"))

    def test_path_escape_refused(self):
        root = self.path("root")
        os.makedirs(os.path.join(root, "sub"))
        secret = self.path("secret.txt")
        with open(secret, "wb") as f:
            f.write(b"top secret\n" * 100)
        os.symlink(secret, os.path.join(root, "out-link"))
        os.symlink("../../secret.txt", os.path.join(root, "sub", "rel-link"))
        inside = self.random_file("sub/ok.bin", 1000)
        os.symlink("sub/ok.bin", os.path.join(root, "in-link"))
        srv, addr = self.serve()
        for name in ("../secret.txt", secret, "/etc/passwd", "sub/../../secret.txt", "out-link",
                     "sub/rel-link", "sub/../../../../../etc/passwd"):
            out = self.path("esc.out")
            p = self.fetch(addr, name, "-o", out, code=dltest.EXIT_IO, timeout=15)
            self.assertRegex(p.stderr(), "refused|no such payload", name)
            if os.path.exists(out):
                with open(out, "rb") as f:
                    self.assertNotIn(b"secret", f.read())
        # A link that stays beneath the root is fine.
        self.fetch(addr, "in-link", "-o", self.path("in.out"))
        self.assertSameFile(inside, self.path("in.out"))
        self.assertTrue(srv.running)

    # -- 64-bit offsets
    def test_ranges_near_and_across_4gib_of_a_sparse_file(self):
        root = self.path("root")
        os.makedirs(root, exist_ok=True)
        path = os.path.join(root, "sparse.bin")
        size = 4 * GiB + 2 * MiB
        marks = {4 * GiB - 300000: os.urandom(600000), 4 * GiB + MiB: os.urandom(MiB)}
        with open(path, "wb") as f:
            f.truncate(size)
            for off, data in marks.items():
                f.seek(off)
                f.write(data)
        srv, addr = self.serve()
        out = self.path("sparse.out")
        g4 = 4 * GiB
        ranges = [(g4 - 250000, g4 - 100000), (g4 - 5000, g4 + 7000), (g4 + MiB + 10, size)]
        spec = ",".join("%d-%d" % r for r in ranges)
        self.fetch(addr, "sparse.bin", "-o", out, "--range", spec, "--drop", "5%", timeout=120)
        self.assertEqual(os.path.getsize(out), size)
        with open(path, "rb") as a, open(out, "rb") as b:
            for s, e in ranges:
                a.seek(s)
                b.seek(s)
                self.assertEqual(a.read(e - s), b.read(e - s), "range %d-%d differs" % (s, e))
            # Outside the ranges nothing was written (the output stays a hole there).
            b.seek(g4 - 300000)
            self.assertEqual(b.read(1000), bytes(1000))

    # -- hostile datagrams
    def test_garbage_datagrams_do_not_wedge_the_server(self):
        src = self.random_file("g.bin", 20 * MiB)
        srv, addr = self.serve()
        host, port = addr.rsplit(":", 1)
        target = (host, int(port))
        # A real OPEN, captured by pointing dtpget at a socket of ours.
        cap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cap.bind(("127.0.0.1", 0))
        cap.settimeout(5)
        g = self.get("127.0.0.1:%d" % cap.getsockname()[1], "g.bin", "-o", self.path("cap.out"), "-t", "1")
        opened, _ = cap.recvfrom(65536)
        cap.close()
        g.kill()
        self.assertEqual(opened[:2], b"DT")

        out = self.path("g.out")
        p = self.get(addr, "g.bin", "-o", out, "--rate", "200M")
        stop = threading.Event()

        def attack():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            i = 0
            while not stop.is_set():
                i += 1
                junk = [b"", b"D", b"DT", opened[:15], opened[:16], opened[:-1], opened + b"x",
                        os.urandom(i % 200), b"DT\x01" + bytes([i % 12]) + os.urandom(40),
                        bytearray(opened[:4]) + os.urandom(len(opened) - 4),
                        os.urandom(65507) if i % 50 == 0 else b"DT\x02\x01" + os.urandom(20)]
                flipped = bytearray(opened)
                flipped[i % len(flipped)] ^= 1 << (i % 8)
                junk.append(bytes(flipped))
                for j in junk:
                    try:
                        s.sendto(j, target)
                    except OSError:
                        pass
                time.sleep(0.001)
            s.close()
        th = threading.Thread(target=attack, daemon=True)
        th.start()
        try:
            self.assertExited(p, 60, 0)
        finally:
            stop.set()
            th.join(5)
        self.assertSameFile(src, out)
        self.assertTrue(srv.running, srv.describe())
        # And the server still serves a new client after the storm.
        self.fetch(addr, "g.bin", "-o", self.path("g2.out"))
        self.assertSameFile(src, self.path("g2.out"))
        self.assertNoCrash(srv)

    def test_every_bad_field_is_answered_and_forged_requests_get_nothing(self):
        craft = self.craft_path()
        src = self.random_file("v.bin", 8 * MiB)
        srv, addr = self.serve()
        # A real session runs throughout; it must not notice any of this.
        out = self.path("v.out")
        p = self.get(addr, "v.bin", "-o", out, "--rate", "30M")

        def craft_run(kind):
            r = subprocess.run([craft, addr, kind, "v.bin"], capture_output=True, timeout=20)
            self.assertEqual(r.returncode, 0, r.stderr)
            return r.stdout.decode().strip()
        for kind, want in (("bad-chunk", "ERROR 2: bad request: bad-chunk"),
                           ("nul-name", "ERROR 2: bad request: bad-name"),
                           ("version2", "ERROR 2: bad request: bad-version"),
                           ("unknown-type", "ERROR 2: bad request: bad-type"),
                           ("stranger-request", "STOP 3"),
                           ("beyond-end", "ERROR 2: range 0-8388609 beyond the payload's end 8388608"),
                           ("bad-cookie", "none"),
                           ("good", "DATA")):
            self.assertEqual(craft_run(kind), want, kind)
        self.assertExited(p, 60, 0)
        self.assertSameFile(src, out)
        self.assertTrue(srv.running)

    def test_usage_errors(self):
        for args in (["127.0.0.1:1"], ["--mtu", "100", "127.0.0.1:1", "x"],
                     ["--range", "5-3", "127.0.0.1:1", "x"], ["--drop", "2", "127.0.0.1:1", "x"]):
            p = self.fetch(*args, code=dltest.EXIT_USAGE, timeout=10)
            self.assertTrue(p.stderr().startswith("dtpget: "), p.stderr())

    def test_nothing_listening_is_refused(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        p = self.fetch("127.0.0.1:%d" % port, "x", "-o", self.path("x"), code=dltest.EXIT_CONNECT, timeout=15)
        self.assertIn("refused", p.stderr())

    def test_server_silent_times_out(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        self.addCleanup(s.close)
        p = self.fetch("127.0.0.1:%d" % s.getsockname()[1], "x", "-o", self.path("x"), "-t", "1",
                       code=dltest.EXIT_TIMEOUT, timeout=15)
        self.assertIn("no answer", p.stderr())


if __name__ == "__main__":
    unittest.main(testRunner=dltest.SummaryRunner(verbosity=2))
