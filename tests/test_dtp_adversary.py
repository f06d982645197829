#!/usr/bin/python3
"""dtpserve/dtpget against adversaries, each while a real transfer runs: strangers replaying a
session's captured datagrams, floods of OPENs and of REQUESTs packed with ranges, either peer
stopped (SIGSTOP) or killed and restarted mid-stream, the payload truncated or grown while it
is served, a stdout reader that stalls or leaves, deadlines and damaged session files.

Binaries: $DTPSERVE / $DTPGET (run_py_test.sh sets them), else bazel-bin/tools/<tool>/<tool>.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import MiB, t  # noqa: E402
from test_dtp import DtpCase, EXIT_INCOMPLETE, session_received  # noqa: E402

DTP_DATA = 4


class Recorder(dltest.UdpRelay):
    """A UDP relay between one dtpget and a dtpserve that keeps a copy of every datagram the
    client sends (for strangers to replay), and can replay each one itself 200 ms later (the
    same source address as the client, from the server's view)."""

    def __init__(self, server, replay_own=False):
        super().__init__(server, rcvbuf=8 << 20)
        self.replay_own = replay_own
        self.captured, self.later = [], []
        self.lock = threading.Lock()
        self.start()

    def client_datagram(self, data):
        with self.lock:
            if len(self.captured) < 20000:
                self.captured.append(data)
        if self.replay_own:
            self.later.append((time.monotonic() + 0.2, data))
        return [data]

    def tick(self):
        now = time.monotonic()
        while self.later and self.later[0][0] <= now:
            try:
                self.back.send(self.later.pop(0)[1])
            except OSError:
                pass

    def snapshot(self):
        with self.lock:
            return list(self.captured)


class DtpAdversaryTest(DtpCase):
    def wait_session(self, path, fraction=0.0, size=1, timeout=15):
        def there():
            try:
                got = session_received(path)
            except FileNotFoundError:
                return False
            return got is not None and got >= fraction * size
        dltest.wait_until(there, timeout, "%s at %d%%" % (path, fraction * 100))

    # -- strangers
    def test_stranger_replaying_a_sessions_datagrams(self):
        # A real transfer through a recording relay; a stranger replays everything the client
        # sent (OPEN, REQUESTs with the cookie, REPORTs, STOP) from its own address, over and
        # over. It must get no DATA nor META (no reflection, no hijack) and the transfer must
        # not notice; the relay also replays each datagram itself 200 ms later (duplicated
        # control traffic from the genuine address).
        src = self.random_file("r.bin", 12 * MiB)
        srv, addr = self.serve()
        host, port = addr.rsplit(":", 1)
        relay = Recorder((host, int(port)), replay_own=True)
        self.addCleanup(relay.close)
        out = self.path("r.out")
        p = self.get("127.0.0.1:%d" % relay.port, "r.bin", "-o", out, "--rate", "60M")
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(stranger.close)
        stranger.bind(("127.0.0.1", 0))
        stranger.setblocking(False)
        got_types = {}
        deadline = time.monotonic() + t(40)
        while p.running and time.monotonic() < deadline:
            for d in relay.snapshot()[-200:]:
                try:
                    stranger.sendto(d, (host, int(port)))
                except OSError:
                    pass
            try:
                while True:
                    d = stranger.recv(65536)
                    if len(d) >= 4:
                        got_types[d[3]] = got_types.get(d[3], 0) + 1
            except OSError:
                pass
            time.sleep(0.01)
        self.assertExited(p, 10, 0)
        self.assertSameFile(src, out)
        # (Its replayed OPEN gets a session of its own once the real one ended: META with a
        # cookie of its own, so its replayed REQUESTs, with the old cookie, still get nothing.)
        self.assertNotIn(DTP_DATA, got_types, "the stranger was sent payload: %r" % got_types)
        self.assertTrue(srv.running, srv.describe())
        self.assertNoCrash(srv)

    def test_no_answer_to_an_open_is_larger_than_the_open(self):
        # A forged source address must buy no amplification: OPENs are padded to 256 bytes, and
        # whatever the server answers an OPEN with (META, KEEPALIVE, an ERROR for an unknown
        # name, another version, a bad field or an unpadded OPEN) is no larger than it.
        self.random_file("f.bin", 64 * 1024)
        srv, addr = self.serve()
        r = subprocess.run([self.craft_path(), addr, "reflection", "f.bin"], capture_output=True, timeout=t(20))
        self.assertEqual(r.returncode, 0, r.stderr)
        replies = re.findall(r"^sent (\d+) reply (\S+) (\d+)$", r.stdout.decode(), re.M)
        kinds = {k for _, k, _ in replies}
        self.assertTrue({"ERROR"} <= kinds and kinds & {"META", "KEEPALIVE"}, r.stdout.decode())
        for sent, kind, got in replies:
            self.assertGreater(int(sent), 0, r.stdout.decode())
            self.assertLessEqual(int(got), int(sent), "%s answer larger than the OPEN: %s" % (kind, r.stdout.decode()))
        self.assertTrue(srv.running)
        self.assertNoCrash(srv)

    def test_open_flood_does_not_lock_out_a_real_client(self):
        # A stranger opens far more sessions than --max-sessions and never follows up (it has
        # no use for them, or spoofs its source). Sessions that never proved they receive at
        # their address (no REQUEST with META's cookie) must not keep real clients out.
        src = self.random_file("f.bin", 2 * MiB)
        srv, addr = self.serve("--max-sessions", "8")
        self.fetch(addr, "f.bin", "-o", self.path("warm.out"))  # the hash is cached from now on
        craft = self.craft_path()
        r = subprocess.run([craft, addr, "open-flood", "f.bin", "50"], capture_output=True, timeout=t(20))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.decode(), r"^opened \d+ busy \d+")
        # The flood's sessions are still there (idle timeout 10 s); a real client gets in.
        out = self.path("f.out")
        self.fetch(addr, "f.bin", "-o", out, timeout=20)
        self.assertSameFile(src, out)
        # And a transfer in progress is never pushed out by a flood.
        big = self.random_file("g.bin", 12 * MiB)
        out2 = self.path("g.out")
        p = self.get(addr, "g.bin", "-o", out2, "--rate", "60M")
        self.wait_session(out2 + ".dtp-session")
        r = subprocess.run([craft, addr, "open-flood", "f.bin", "50"], capture_output=True, timeout=t(20))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertExited(p, 40, 0)
        self.assertSameFile(big, out2)
        self.assertNoCrash(srv)

    def test_opens_for_big_payloads_do_not_queue_hashing_ahead_of_real_clients(self):
        # One burst of OPENs for 30 big payloads (sparse, 20 GiB each: minutes of SHA-256 apiece),
        # never repeated. Hashing those for nobody once kept a real client's small payload
        # waiting behind all of them (it hung, kept alive by KEEPALIVEs); now sessions that
        # stop asking end after a few seconds, and their hash jobs with them.
        root = self.path("root")
        os.makedirs(root, exist_ok=True)
        for i in range(30):
            with open(os.path.join(root, "big%d" % i), "wb") as f:
                f.truncate(20 << 30)
        src = self.random_file("small.bin", 100000)
        srv, addr = self.serve()
        r = subprocess.run([self.craft_path(), addr, "open-each", "big", "30"], capture_output=True, timeout=t(20))
        self.assertEqual(r.returncode, 0, r.stderr)
        t0 = time.monotonic()
        out = self.path("small.out")
        self.fetch(addr, "small.bin", "-o", out, "-t", "5", timeout=25)
        self.assertSameFile(src, out)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertLess(len(os.listdir("/proc/%d/fd" % srv.pid)), 30, "hash jobs still hold their files")

    def test_request_flood_with_huge_range_lists(self):
        # A client with a real session (it has the cookie) floods REQUESTs packed with 1-byte
        # ranges, every part of pass after pass. The server's plan is bounded: its memory must
        # stay bounded, and a real transfer alongside must finish.
        src = self.random_file("h.bin", 8 * MiB)
        srv, addr = self.serve()
        out = self.path("h.out")
        p = self.get(addr, "h.bin", "-o", out, "--rate", "40M")
        self.wait_session(out + ".dtp-session")
        rss0 = dltest.vm_rss_kib(srv.pid)
        r = subprocess.run([self.craft_path(), addr, "request-flood", "h.bin", "2"], capture_output=True,
                           timeout=t(30))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.decode(), r"^requests [1-9]")
        rss1 = dltest.vm_rss_kib(srv.pid)
        self.assertLess(rss1 - rss0, 64 * 1024, "dtpserve grew from %d to %d KiB" % (rss0, rss1))
        self.assertExited(p, 60, 0)
        self.assertSameFile(src, out)
        self.assertTrue(srv.running, srv.describe())

    def test_both_directions_at_full_speed_at_once(self):
        # Two hosts each serving and fetching at once, no rate cap, one way lossy: both
        # payloads arrive byte-exact and neither server notices the other's traffic.
        a = self.random_file("x/a.bin", 24 * MiB)
        b_root = self.path("root-b")
        os.makedirs(b_root)
        b = os.path.join(b_root, "b.bin")
        dltest.make_random_file(b, 24 * MiB)
        srv_a, addr_a = self.serve()
        srv_b, addr_b = self.serve(root=b_root)
        pa = self.get(addr_a, "x/a.bin", "-o", self.path("a.out"), "--drop", "5%", name="get-from-a")
        pb = self.get(addr_b, "b.bin", "-o", self.path("b.out"), name="get-from-b")
        self.assertExitCodes(60, (pa, 0), (pb, 0))
        self.assertSameFile(a, self.path("a.out"))
        self.assertSameFile(b, self.path("b.out"))
        for s in (srv_a, srv_b):
            self.assertTrue(s.running)
            self.assertNoCrash(s)

    # -- peers stopped, killed, restarted
    def test_client_stopped_mid_transfer_then_continued(self):
        # SIGSTOP dtpget for longer than the server's stall and idle timeouts: the server
        # forgets the session; after SIGCONT the client must learn so, open again and finish.
        size = 12 * MiB
        src = self.random_file("c.bin", size)
        srv, addr = self.serve("--idle-timeout", "1.5")
        out = self.path("c.out")
        p = self.get(addr, "c.bin", "-o", out, "--rate", "60M", "-t", "5", "--save-interval", "0.1")
        self.wait_session(out + ".dtp-session", 0.2, size)
        p.signal(signal.SIGSTOP)
        try:
            dltest.wait_until(lambda: "client silent" in srv.stderr(), 10, "the server to expire the session")
        finally:
            p.signal(signal.SIGCONT)
        self.assertExited(p, 40, 0)
        self.assertSameFile(src, out)

    def test_server_stopped_mid_transfer(self):
        # A server stopped for less than the client's --timeout: the transfer carries on.
        # Stopped for longer: the client saves its session and exits 9, and it resumes.
        size = 12 * MiB
        src = self.random_file("s.bin", size)
        srv, addr = self.serve()
        out = self.path("s.out")
        p = self.get(addr, "s.bin", "-o", out, "--rate", "60M", "-t", "4", "--save-interval", "0.1")
        self.wait_session(out + ".dtp-session", 0.1, size)
        srv.signal(signal.SIGSTOP)
        time.sleep(1.5)  # the fault itself (a pause), not synchronisation
        srv.signal(signal.SIGCONT)
        self.assertExited(p, 40, 0)
        self.assertSameFile(src, out)
        out2 = self.path("s2.out")
        p = self.get(addr, "s.bin", "-o", out2, "--rate", "60M", "-t", "1", "--save-interval", "0.1")
        self.wait_session(out2 + ".dtp-session", 0.1, size)
        srv.signal(signal.SIGSTOP)
        try:
            self.assertExited(p, 15, EXIT_INCOMPLETE)
        finally:
            srv.signal(signal.SIGCONT)
        self.assertIn("--resume", p.stderr())
        self.fetch("--resume", out2 + ".dtp-session")
        self.assertSameFile(src, out2)

    def test_server_restarted_with_a_changed_payload(self):
        size = 12 * MiB
        src = self.random_file("p.bin", size)
        srv, addr = self.serve()
        out = self.path("p.out")
        sess = out + ".dtp-session"
        p = self.get(addr, "p.bin", "-o", out, "--rate", "60M", "--save-interval", "0.1")
        self.wait_session(sess, 0.1, size)
        srv.kill()
        srv.wait(5)
        dltest.make_random_file(src, size)  # same size, other bytes
        port = addr.rsplit(":", 1)[1]
        self.P.start([self.SERVE, "-l", "127.0.0.1:" + port, "--root", self.path("root")], name="dtpserve-again")
        self.assertExited(p, 30, dltest.EXIT_PROTOCOL)
        self.assertOneLineError(p, "dtpget", "changed", "--restart")
        self.assertTrue(os.path.exists(sess), "the session is kept for --info")
        # The same command again refuses likewise; --restart fetches the new payload.
        self.fetch(addr, "p.bin", "-o", out, code=dltest.EXIT_PROTOCOL, timeout=20)
        self.fetch(addr, "p.bin", "-o", out, "--restart")
        self.assertSameFile(src, out)

    def test_server_shut_down_mid_transfer(self):
        # SIGTERM at the server: it tells its clients (STOP shutdown) and exits 130 (its hashing
        # thread once took the signal's default action and died silently); the client
        # saves its session and exits 9 at once (not after --timeout), and resumes later.
        size = 12 * MiB
        src = self.random_file("q.bin", size)
        srv, addr = self.serve()
        out = self.path("q.out")
        p = self.get(addr, "q.bin", "-o", out, "--rate", "60M", "-t", "30", "--save-interval", "0.1")
        self.wait_session(out + ".dtp-session", 0.1, size)
        srv.signal(signal.SIGUSR1)  # its figures, and on (not SIGUSR1's default: death)
        dltest.wait_until(lambda: "1 sessions" in srv.stderr(), 10, "the SIGUSR1 line")
        self.assertTrue(srv.running)
        srv.signal(signal.SIGTERM)
        self.assertExited(srv, 10, dltest.EXIT_INTERRUPTED)
        self.assertIn("server shutting down", srv.stderr())
        t0 = time.monotonic()
        self.assertExited(p, 10, EXIT_INCOMPLETE)
        self.assertLess(time.monotonic() - t0, 5, "the client waited for its timeout")
        self.assertIn("shut down", p.stderr())
        port = addr.rsplit(":", 1)[1]
        pf = self.path("port-again")
        again = self.P.start([self.SERVE, "-l", "127.0.0.1:" + port, "--root", self.path("root"), "--port-file", pf],
                             name="dtpserve-again")
        dltest.wait_port_file(pf, again)
        self.fetch(addr, "q.bin", "-o", out)
        self.assertSameFile(src, out)

    def test_interrupted_before_the_server_answered(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        self.addCleanup(s.close)
        p = self.get("127.0.0.1:%d" % s.getsockname()[1], "x.bin", "-o", self.path("x.out"))
        s.settimeout(t(10))
        s.recv(65536)  # its OPEN: it is waiting for an answer
        p.signal(signal.SIGINT)
        self.assertExited(p, 5, dltest.EXIT_INTERRUPTED)
        self.assertOneLineError(p, "dtpget", "interrupted")
        self.assertFalse(os.path.exists(self.path("x.out.dtp-session")))

    def test_a_server_that_answers_garbage(self):
        # Whatever comes back to dtpget's OPEN (noise, its own OPEN echoed, truncated or
        # flipped copies) is not DTP from the server: dtpget keeps asking, then times out
        # (exit 7) with one line, never crashes.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        self.addCleanup(s.close)
        stop = threading.Event()

        def answer():
            s.settimeout(0.05)
            i = 0
            while not stop.is_set():
                try:
                    d, peer = s.recvfrom(65536)
                except OSError:
                    continue
                i += 1
                flipped = bytearray(d)
                flipped[i % len(d)] ^= 0x10
                for junk in (d, d[:16], d[:-1], bytes(flipped), os.urandom(1400), b"DT\x01\x02" + os.urandom(120),
                             b"DT\x01\x09" + bytes(12) + d[8:16] + os.urandom(40)):
                    try:
                        s.sendto(junk, peer)
                    except OSError:
                        pass
        th = threading.Thread(target=answer, daemon=True)
        th.start()
        try:
            p = self.fetch("127.0.0.1:%d" % s.getsockname()[1], "x.bin", "-o", self.path("x.out"), "-t", "1.5",
                           code=dltest.EXIT_TIMEOUT, timeout=15)
        finally:
            stop.set()
            th.join(5)
        self.assertOneLineError(p, "dtpget", "no answer")

    def fragment_server(self, size, secs, chunk=0):
        """tests/dtp_craft playing a server that answers OPEN with META for a `size`-byte payload,
        then sends 1-byte DATA at scattered offsets, never two adjacent, for `secs` seconds."""
        craft = self.P.start([self.craft_path(), "127.0.0.1:0", "fragment-server", size, secs, chunk],
                             stdout=subprocess.PIPE, name="fragment-server")
        m = re.match(rb"port (\d+)$", craft.popen.stdout.readline().strip())
        self.assertTrue(m, craft.describe())
        return craft, "127.0.0.1:%s" % m.group(1).decode()

    def test_a_server_that_fragments_the_payload(self):
        # A hostile (or broken) server answers with 1-byte DATA at scattered offsets of a 64 MiB
        # payload, as fast as it can. Each made one more range in dtpget's received set and
        # session file (2.7M ranges, 400 MB and a 44 MB session file in 20 s), long before the
        # final hash check could fail. Whole chunks make at most one range per chunk: past
        # that, dtpget stops at once with a protocol error, keeping what arrived resumable.
        craft, addr = self.fragment_server(64 * MiB, t(30))
        out = self.path("f.out")
        p = self.P.start([self.GET, addr, "f.bin", "-o", out, "-t", "5"], measure_rss=True, name="dtpget")
        self.assertExited(p, 20, dltest.EXIT_PROTOCOL)
        self.assertOneLineError(p, "dtpget", "fragments the payload", "separate ranges", out + ".dtp-session")
        self.assertLess(p.maxrss_kib, 96 * 1024, "dtpget peaked at %d KiB" % p.maxrss_kib)
        self.assertLess(os.path.getsize(out + ".dtp-session"), 4 * MiB)
        info = subprocess.run([self.GET, "--info", out + ".dtp-session"], capture_output=True, timeout=t(10))
        self.assertEqual(info.returncode, 0, info.stderr)
        self.assertExited(craft, 10, 0)  # told: dtpget's STOP, or its port closed

    def test_a_fragmenting_server_past_the_memory_budget(self):
        # The same with 64-byte chunks granted: whole chunks could make a million ranges of
        # 64 MiB, more than dtpget keeps (262144). Past those, data that would start another
        # range is dropped (and asked for again), so memory and the session file stay bounded
        # however long the server goes on, and dtpget still answers SIGINT at once.
        craft, addr = self.fragment_server(64 * MiB, t(60), chunk=64)
        out = self.path("g.out")
        p = self.P.start([self.GET, addr, "g.bin", "-o", out, "-t", "30"], measure_rss=True, name="dtpget")
        dltest.wait_until(lambda: "the most dtpget keeps" in p.stderr() or not p.running, t(45),
                          "dtpget to reach its budget of ranges")
        self.assertTrue(p.running, p.describe())
        time.sleep(1)  # the fault goes on: another second of scattered bytes, all dropped
        p.signal(signal.SIGINT)
        self.assertExited(p, 10, EXIT_INCOMPLETE)
        self.assertLess(p.maxrss_kib, 160 * 1024, "dtpget peaked at %d KiB" % p.maxrss_kib)
        self.assertLess(os.path.getsize(out + ".dtp-session"), 4 * MiB + 4096)  # 16 bytes a range
        self.assertExited(craft, 10, 0)

    # -- the payload changes under the server
    def test_payload_truncated_while_served(self):
        size = 12 * MiB
        src = self.random_file("t.bin", size)
        other = self.random_file("u.bin", 3 * MiB)
        srv, addr = self.serve()
        out = self.path("t.out")
        p = self.get(addr, "t.bin", "-o", out, "--rate", "40M")
        self.wait_session(out + ".dtp-session", 0.05, size)
        os.truncate(src, size // 4)
        self.assertExited(p, 30)
        self.assertNotEqual(p.returncode, 0, "a truncated payload arrived whole?")
        self.assertIn(p.returncode, (dltest.EXIT_IO, dltest.EXIT_PROTOCOL), p.describe())
        self.assertOneLineError(p, "dtpget")
        self.assertRegex(p.stderr(), "changed|cannot be read")
        # The server ended that session at once (not after its idle timeout, file held open).
        dltest.wait_until(lambda: "ended: the payload changed or cannot be read" in srv.stderr(), 5,
                          "the server to end the session")
        # The server carries on for others.
        self.fetch(addr, "u.bin", "-o", self.path("u.out"))
        self.assertSameFile(other, self.path("u.out"))
        self.assertNoCrash(srv)

    def test_payload_grown_while_served(self):
        # Bytes appended to the payload after META change nothing in [0, size): the client
        # receives the payload as announced, hash-checked.
        size = 8 * MiB
        src = self.random_file("g.bin", size)
        with open(src, "rb") as f:
            original = dltest.sha256_bytes(f.read())
        srv, addr = self.serve()
        out = self.path("g.out")
        p = self.get(addr, "g.bin", "-o", out, "--rate", "40M")
        self.wait_session(out + ".dtp-session", 0.05, size)
        with open(src, "ab") as f:
            f.write(os.urandom(MiB))
        self.assertExited(p, 30, 0)
        self.assertEqual(dltest.sha256_file(out), original)

    # -- -o - and its reader
    def test_stdout_reader_that_stalls_then_sigterm(self):
        # The reader of -o - stops reading. The transfer may wait for it (backpressure), but
        # SIGTERM must still end dtpget at once (130: nothing to resume), not leave it hanging.
        self.random_file("o.bin", 24 * MiB)
        srv, addr = self.serve()
        p = self.get(addr, "o.bin", "-o", "-", "--rate", "400M", stdout=subprocess.PIPE)
        p.popen.stdout.read(200000)  # some, then not another byte
        time.sleep(1)  # the fault: the reader stalls while the transfer goes on
        self.assertTrue(p.running, p.describe())
        p.signal(signal.SIGTERM)
        self.assertExited(p, 5, dltest.EXIT_INTERRUPTED)
        self.assertOneLineError(p, "dtpget", "terminated")

    def test_stdout_reader_that_pauses_then_reads_on(self):
        src = self.random_file("w.bin", 12 * MiB)
        srv, addr = self.serve()
        p = self.get(addr, "w.bin", "-o", "-", "--rate", "200M", stdout=subprocess.PIPE)
        first = p.popen.stdout.read(100000)
        time.sleep(2)  # the reader pauses (the fault), longer than a pass
        rest = p.popen.stdout.read()
        self.assertExited(p, 30, 0)
        with open(src, "rb") as f:
            self.assertEqual(first + rest, f.read())

    def test_stdout_reader_that_leaves(self):
        self.random_file("l.bin", 24 * MiB)
        srv, addr = self.serve()
        p = self.get(addr, "l.bin", "-o", "-", "--rate", "200M", stdout=subprocess.PIPE)
        p.popen.stdout.read(100000)
        p.popen.stdout.close()
        self.assertExited(p, 10, dltest.EXIT_IO)
        self.assertOneLineError(p, "dtpget", "stdout")
        self.assertTrue(srv.running)

    def test_stdout_deadline_has_nothing_to_resume(self):
        self.random_file("d.bin", 8 * MiB)
        srv, addr = self.serve()
        out = self.path("d.out")
        p = self.fetch(addr, "d.bin", "-o", "-", "--rate", "20M", "-w", "0.5", code=dltest.EXIT_TIMEOUT,
                       stdout=out, timeout=15)
        self.assertOneLineError(p, "dtpget", "deadline", "nothing to resume")

    # -- outputs and session files
    def test_outputs_that_are_not_regular_files(self):
        # Refused at once with a line naming the problem, before anything is sent: not as
        # "Illegal seek" or a failed read-back after the whole payload arrived.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        self.addCleanup(s.close)
        s.setblocking(False)
        fifo = self.path("fifo")
        os.mkfifo(fifo)
        for out, needle in (("/dev/null", "not a regular file"), (fifo, "not a regular file"),
                            (self.path("root"), "directory")):
            os.makedirs(self.path("root"), exist_ok=True)
            p = self.fetch("127.0.0.1:%d" % s.getsockname()[1], "x.bin", "-o", out, code=dltest.EXIT_IO, timeout=10)
            self.assertOneLineError(p, "dtpget", needle, "output " + out)
            self.assertFalse(os.path.exists(out + ".dtp-session"))
        with self.assertRaises(OSError):
            s.recv(100)  # nothing was sent

    def test_names_beyond_the_protocols_limits(self):
        # A NAME longer than dtp(7)'s 1024 bytes once overran dtpget's datagram buffer and
        # aborted it ("double free or corruption"); now a usage error before anything is sent.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        self.addCleanup(s.close)
        for n in (1025, 100000):
            p = self.fetch("127.0.0.1:%d" % s.getsockname()[1], "a" * n, "-o", self.path("n.out"),
                           code=dltest.EXIT_USAGE, timeout=10)
            self.assertOneLineError(p, "dtpget", "NAME", "1024")
            self.assertLess(len(p.stderr()), 200, "the name is not echoed back whole")
        with self.assertRaises(OSError):
            s.recv(100)  # nothing was sent
        srv, addr = self.serve()
        p = self.fetch(addr, "a" * 1024, "-o", self.path("n.out"), code=dltest.EXIT_IO, timeout=10)
        self.assertRegex(p.stderr(), "no such payload|File name too long")  # the server's answer
        self.assertTrue(srv.running)

    def test_output_cut_short_before_resume(self):
        # The output was truncated between the runs: what lay beyond the cut is fetched again
        # (it used to be taken as received, and the whole-payload hash failed at the very end).
        size = 12 * MiB
        src = self.random_file("k.bin", size)
        srv, addr = self.serve()
        out = self.path("k.out")
        sess = out + ".dtp-session"
        self.fetch(addr, "k.bin", "-o", out, "--rate", "40M", "-w", "1", code=EXIT_INCOMPLETE)
        saved = session_received(sess)
        self.assertGreater(saved, 2 * MiB)
        os.truncate(out, MiB)
        r = self.fetch("--resume", sess, "-v")
        self.assertSameFile(src, out)
        self.assertIn("is %d bytes now" % MiB, r.stderr())
        new, dup = self.summary(r)
        self.assertEqual(new, size - MiB)

    def test_an_unwritable_session_file_is_said_once(self):
        src = self.random_file("w.bin", 4 * MiB)
        srv, addr = self.serve()
        out = self.path("w.out")
        p = self.fetch(addr, "w.bin", "-o", out, "--session", self.path("nodir/w.session"), "--rate", "24M",
                       "--save-interval", "0.05")
        self.assertSameFile(src, out)
        self.assertEqual(p.stderr().count("w.session"), 1, p.stderr())
        self.assertIn("cannot be resumed", p.stderr())

    def test_info_on_damaged_session_files(self):
        self.random_file("i.bin", 4 * MiB)
        srv, addr = self.serve()
        out = self.path("i.out")
        sess = out + ".dtp-session"
        self.fetch(addr, "i.bin", "-o", out, "--rate", "10M", "-w", "0.5", code=EXIT_INCOMPLETE)
        with open(sess, "rb") as f:
            good = f.read()
        info = subprocess.run([self.GET, "--info", sess], capture_output=True, timeout=t(10))
        self.assertEqual(info.returncode, 0, info.stderr)
        cases = {
            "empty": b"",
            "magic only": good[:8],
            "truncated": good[:len(good) // 2],
            "one byte short": good[:-1],
            "one byte more": good + b"\0",
            "noise": os.urandom(len(good)),
            "flipped": good[:40] + bytes([good[40] ^ 1]) + good[41:],
        }
        for what, data in cases.items():
            bad = self.path("bad.session")
            with open(bad, "wb") as f:
                f.write(data)
            for flag in ("--info", "--resume"):
                r = subprocess.run([self.GET, flag, bad], capture_output=True, timeout=t(10))
                err = r.stderr.decode()
                self.assertEqual(r.returncode, dltest.EXIT_PROTOCOL, "%s %s: %s" % (flag, what, err))
                self.assertTrue(err.startswith("dtpget: ") and err.count("\n") == 1, "%s %s: %r" % (flag, what, err))
                self.assertEqual(r.stdout, b"", what)
        for what, path in (("missing", self.path("nope.session")), ("a directory", self.path("root"))):
            r = subprocess.run([self.GET, "--info", path], capture_output=True, timeout=t(10))
            err = r.stderr.decode()
            self.assertEqual(r.returncode, dltest.EXIT_IO, "%s: %s" % (what, err))
            self.assertTrue(err.startswith("dtpget: ") and err.count("\n") == 1, "%s: %r" % (what, err))


if __name__ == "__main__":
    import unittest
    unittest.main(testRunner=dltest.SummaryRunner(verbosity=2))
