#!/usr/bin/python3
"""dlping against adversaries: a responder stopped (SIGSTOP), killed or restarted while a client
measures, over TCP and udp:; a stopped client; garbage datagrams and a client that never reads
its replies at the responder while a real client measures; fastSocket servers that break the
format; deadlines with nobody (or a silent peer) at the other end.

Binary: $DLPING (run_py_test.sh --dlping sets it) or bazel-bin/tools/dlping/dlping.
"""

import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import t, wait_port_file, wait_until  # noqa: E402
from test_dlping import DlpingCase, RawFastSocketServer  # noqa: E402


class DlpingAdversaryTest(DlpingCase):
    def start_client(self, *args):
        out = self.path("client-%d.out" % len(self.P.procs))
        p = self.P.start([self.DLPING] + list(args), stdout=out)
        p.out_path = out
        return p

    def wait_acks(self, r, n):
        """Until responder `r` (run with -v) counted n ACK3s: the measurement is under way."""
        wait_until(lambda: self.read_out(r).count("ack3 from") >= n, 10, "%d acknowledged probes" % n)

    def replies(self, p):
        return self.read_out(p).count(" bytes from ")

    def summary_json(self, p):
        try:
            return json.loads(self.read_out(p))
        except ValueError as e:
            self.fail("--json output does not parse (%s):\n%s" % (e, self.read_out(p)))

    def check_consistent(self, ph):
        self.assertEqual(ph["received"] + ph["lost"], ph["sent"], ph)
        self.assertLessEqual(ph["late"], ph["received"], ph)
        self.assertEqual(ph["rtt"]["count"], ph["received"], ph)
        self.assertGreaterEqual(ph["rtt"]["min"], 0, ph)

    # -- the responder misbehaves mid-measurement
    def test_responder_stopped_mid_measurement(self):
        # Stopped for longer than --timeout: the probes sent meanwhile time out, the replies
        # that come after SIGCONT count as late; the figures add up and the client exits 0.
        for endpoint in ("127.0.0.1:0", "udp:127.0.0.1:0"):
            with self.subTest(endpoint=endpoint):
                r, port = self.responder("-v", endpoint=endpoint)
                target = ("udp:127.0.0.1:%d" if endpoint.startswith("udp:") else "127.0.0.1:%d") % port
                c = self.start_client("--json", "-c", "40", "-i", "20ms", "--timeout", "150ms", target)
                self.wait_acks(r, 3)
                r.signal(signal.SIGSTOP)
                time.sleep(0.4)  # the fault: 20 probes' time with the responder stopped
                r.signal(signal.SIGCONT)
                self.assertExited(c, 20, 0)
                ph = self.summary_json(c)["phases"][0]
                self.check_consistent(ph)
                self.assertEqual(ph["sent"], 40)
                self.assertGreaterEqual(ph["timeouts"], 3, ph)
                self.assertGreater(ph["received"], 20, ph)
                self.assertGreaterEqual(ph["rate"]["longest_gap_ns"], 0.3e9, ph["rate"])
                self.assertTrue(r.running)

    def test_a_stopped_responder_does_not_grow_the_client(self):
        # The responder stops reading (SIGSTOP) under a flood of 1 MiB probes that time out
        # every 20 ms: the client must not queue a probe per timeout without bound, nor spin
        # while its socket is full; after SIGCONT it carries on to its count.
        for mode in (["--flood", "--window", "4"], ["-i", "2ms"]):
            with self.subTest(mode=mode):
                r, port = self.responder("-q")
                c = self.start_client("--json", "-c", "200", "-s", "1M", "--timeout", "20ms", *mode,
                                      "127.0.0.1:%d" % port)
                wait_until(lambda: dltest.vm_rss_kib(c.pid), 5, "the client")
                r.signal(signal.SIGSTOP)
                try:
                    time.sleep(0.3)  # the socket buffers fill
                    cpu0, rss0 = dltest.cpu_seconds(c.pid), dltest.vm_rss_kib(c.pid)
                    time.sleep(1.5)  # the fault goes on: 75 timeouts' worth
                    cpu1, rss1 = dltest.cpu_seconds(c.pid), dltest.vm_rss_kib(c.pid)
                finally:
                    r.signal(signal.SIGCONT)
                self.assertLess(rss1 - rss0, 8 * 1024, "client RSS %d -> %d KiB" % (rss0, rss1))
                self.assertLess(rss1, 96 * 1024, "client RSS %d KiB" % rss1)
                self.assertLess(cpu1 - cpu0, 0.5, "the client spun while its socket was full")
                self.assertExited(c, 30, 0)
                ph = self.summary_json(c)["phases"][0]
                self.check_consistent(ph)
                self.assertEqual(ph["sent"], 200)
                r.kill()

    def test_udp_responder_killed_and_restarted(self):
        # udp: has no connection to lose: the client goes on through ICMP refusals (said once),
        # counts the probes lost, and hears the new responder on the same port.
        pf = self.path("udp-port")
        r, port = self.responder(endpoint="udp:127.0.0.1:0", port_file=pf)
        c = self.start_client("-c", "150", "-i", "20ms", "--timeout", "200ms", "-v", "udp:127.0.0.1:%d" % port)
        wait_until(lambda: self.replies(c) >= 5, 10, "replies")
        r.kill()
        r.wait(5)
        wait_until(lambda: "refused" in c.stderr(), 10, "the client to notice")
        before = self.replies(c)
        os.unlink(pf)
        r2, port2 = self.responder(endpoint="udp:127.0.0.1:%d" % port, port_file=pf)
        self.assertEqual(port2, port)
        wait_until(lambda: self.replies(c) >= before + 5, 10, "replies from the new responder")
        c.signal(signal.SIGINT)
        self.assertExited(c, 10, 0)
        self.assertEqual(c.stderr().count("refused"), 1, c.stderr())
        m = re.search(r"(\d+) sent, (\d+) received, (\d+) lost", self.read_out(c))
        self.assertIsNotNone(m, self.read_out(c))
        sent, received, lost = map(int, m.groups())
        self.assertEqual(received + lost, sent)
        self.assertGreater(lost, 0)

    def test_udp_responder_killed_for_good(self):
        r, port = self.responder("-v", endpoint="udp:127.0.0.1:0")
        c = self.start_client("--json", "-c", "40", "-i", "20ms", "--timeout", "200ms", "udp:127.0.0.1:%d" % port)
        self.wait_acks(r, 3)
        r.kill()
        self.assertExited(c, 15, 0)  # some replies came back: ping's rule
        ph = self.summary_json(c)["phases"][0]
        self.check_consistent(ph)
        self.assertEqual(ph["sent"], 40)
        self.assertGreater(ph["lost"], 10, ph)
        self.assertEqual(ph["timeouts"], ph["lost"], ph)

    def test_clients_killed_mid_flood(self):
        # kill -9 a flooding client (small probes, then 1 MiB ones four in flight): the
        # responder ends that session with its figures and one line naming the peer once,
        # and answers the next client.
        r, port = self.responder()
        for args in (["--flood", "--every", "100"], ["--flood", "--every", "10", "-s", "1M", "--window", "4"]):
            c = self.start_client(*args, "127.0.0.1:%d" % port)
            wait_until(lambda: self.replies(c) >= 2, 10, "the flood under way")
            c.kill()
            c.wait(5)
        wait_until(lambda: self.read_out(r).count(" ended: ") >= 2, 10, "both sessions' figures")
        for line in r.stderr().splitlines():
            peer = line.split(": ")[1] if ": " in line else ""
            self.assertEqual(line.count(peer), 1, "the peer named twice: %r" % line)
        c = self.start_client("--json", "-c", "3", "-i", "10ms", "127.0.0.1:%d" % port)
        self.assertExited(c, 10, 0)
        self.assertEqual(self.summary_json(c)["phases"][0]["received"], 3)
        self.assertTrue(r.running)
        self.assertNoCrash(r)

    def test_client_stopped_mid_measurement(self):
        # The client itself stopped longer than --timeout: when it continues, its probes are
        # timed out by its clock and the replies waiting in its socket count as late; no
        # burst of catch-up probes, figures that add up, exit 0.
        r, port = self.responder("-v")
        c = self.start_client("--json", "-c", "30", "-i", "20ms", "--timeout", "100ms", "127.0.0.1:%d" % port)
        self.wait_acks(r, 3)
        c.signal(signal.SIGSTOP)
        time.sleep(0.5)  # the fault
        c.signal(signal.SIGCONT)
        self.assertExited(c, 20, 0)
        ph = self.summary_json(c)["phases"][0]
        self.check_consistent(ph)
        self.assertEqual(ph["sent"], 30)
        self.assertEqual(ph["duplicated"], 0)
        self.assertGreaterEqual(ph["rate"]["longest_gap_ns"], 0.4e9, ph["rate"])

    # -- strangers at the responder while a real client measures
    def test_udp_garbage_at_the_responder(self):
        r, port = self.responder(endpoint="udp:127.0.0.1:0")
        stop = threading.Event()
        answered = []

        def attack():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            i = 0
            frame = b"\xd7\x02\x00\x00\x00\x00\x00\x40" + bytes(24) + bytes(64)
            while not stop.is_set():
                i += 1
                for d in (b"", os.urandom(i % 300), frame, frame[:20], frame + b"x",
                          b"\xd7\x02\x00\x00\xff\xff\xff\xff" + bytes(24), os.urandom(65000) if i % 40 == 0 else b"D"):
                    try:
                        s.sendto(d, ("127.0.0.1", port))
                    except OSError:
                        pass
                try:
                    while True:
                        answered.append(s.recv(65536))
                except OSError:
                    pass
                time.sleep(0.002)
            s.close()
        th = threading.Thread(target=attack, daemon=True)
        th.start()
        try:
            c = self.start_client("--json", "-c", "50", "-i", "10ms", "udp:127.0.0.1:%d" % port)
            self.assertExited(c, 20, 0)
        finally:
            stop.set()
            th.join(5)
        ph = self.summary_json(c)["phases"][0]
        self.assertEqual((ph["sent"], ph["received"], ph["unknown"]), (50, 50, 0), ph)
        self.assertEqual(answered, [], "the responder answered garbage")
        self.assertTrue(r.running, r.describe())
        self.assertNoCrash(r)

    def test_udp_flood_at_a_responder_that_holds_replies(self):
        # udp: cannot be stopped from sending. With --reply-delay, every probe of a flood was
        # held (some 450 MB a second of them); the hold is bounded now, the rest is dropped
        # (and counted), and a real client is answered once the flood is over.
        r, port = self.responder("--reply-delay", "1s", endpoint="udp:127.0.0.1:0")
        cap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cap.bind(("127.0.0.1", 0))
        cap.settimeout(t(5))
        self.addCleanup(cap.close)
        g = self.start_client("-c", "1", "-s", "60000", "udp:127.0.0.1:%d" % cap.getsockname()[1])
        probe, _ = cap.recvfrom(65536)
        g.kill()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            try:
                s.sendto(probe, ("127.0.0.1", port))
            except OSError:
                pass
        rss = dltest.vm_rss_kib(r.pid)
        self.assertLess(rss, 128 * 1024, "responder RSS %d KiB after a 1.5 s flood" % rss)
        time.sleep(1.2)  # the held replies go out (the delay is the responder's, on purpose)
        c = self.start_client("--json", "-c", "3", "-i", "10ms", "--timeout", "3s", "udp:127.0.0.1:%d" % port)
        self.assertExited(c, 15, 0)
        self.assertEqual(self.summary_json(c)["phases"][0]["received"], 3)
        r.signal(signal.SIGINT)
        self.assertExited(r, 10, dltest.EXIT_INTERRUPTED)
        self.assertRegex(self.read_out(r), r"\d+ probes dropped")

    def test_a_client_that_never_reads_its_replies(self):
        # A stranger pours PINGs in and reads nothing back: the responder stops reading it
        # (backpressure) instead of buffering replies without bound, and still answers a real
        # client at once.
        r, port = self.responder("-q")
        probe = capture_probe(self.DLPING, 64 * 1024, self.path("."))
        self.assertEqual(len(probe), 32 + 64 * 1024)
        s = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(0.05)
        sent = 0
        deadline = time.monotonic() + t(5)
        while time.monotonic() < deadline:
            try:
                s.sendall(probe)
                sent += len(probe)
            except socket.timeout:
                break  # the responder stopped reading us: its buffer and ours are full
        self.assertLess(time.monotonic(), deadline, "the responder took %d bytes and kept reading" % sent)
        rss = dltest.vm_rss_kib(r.pid)
        self.assertLess(rss, 64 * 1024, "responder RSS %d KiB after %d bytes unread" % (rss, sent))
        c = self.start_client("--json", "-c", "5", "-i", "10ms", "127.0.0.1:%d" % port)
        self.assertExited(c, 20, 0)
        self.assertEqual(self.summary_json(c)["phases"][0]["received"], 5)
        self.assertTrue(r.running)

    def test_out_of_descriptors_at_the_responder(self):
        # More strangers connect than the responder has descriptors for: it must pause
        # accepting (the backlog holds them), say so once, not spin, and serve a real client
        # once descriptors are free again.
        pf = self.path("emfile-port")
        out = self.path("emfile.out")
        r = self.P.start(["/bin/sh", "-c", 'ulimit -n 24 && exec "$0" "$@"', self.DLPING, "-l", "127.0.0.1:0",
                          "--port-file", pf], stdout=out)
        port = wait_port_file(pf, r)
        crowd = []
        try:
            for _ in range(40):
                crowd.append(socket.create_connection(("127.0.0.1", port), timeout=t(5)))
            wait_until(lambda: "Too many open files" in r.stderr(), 10, "the responder to run short")
            cpu0 = dltest.cpu_seconds(r.pid)
            time.sleep(1)  # the shortage goes on
            self.assertLess(dltest.cpu_seconds(r.pid) - cpu0, 0.3, "the responder spun on its listener")
            self.assertLessEqual(r.stderr().count("Too many open files"), 2, r.stderr()[:2000])
        finally:
            for s in crowd:
                s.close()
        c = self.start_client("--json", "-c", "3", "-i", "10ms", "127.0.0.1:%d" % port)
        self.assertExited(c, 20, 0)
        self.assertEqual(self.summary_json(c)["phases"][0]["received"], 3)
        self.assertTrue(r.running)
        self.assertNoCrash(r)

    # -- fastSocket servers that break the format
    def test_fastsocket_server_breaking_the_format(self):
        cases = [
            (b"{not json}\n", "json"),
            (b"x" * 70000, "64 KiB"),
            (b'{"id": "%s", "type": "ack", "send_and_ack_time_ns": 5}\n', "only acks"),
            (b'{"id": "%s", "type": "message", "payload": 1}\n', "only acks"),
            (b"\xff\xfe\n", ""),
        ]
        for reply, needle in cases:
            with self.subTest(reply=reply[:40]):
                srv = BadFastSocketServer(reply)
                self.addCleanup(srv.close)
                c = self.start_client("--proto", "fastsocket", "-c", "3", "-i", "10ms", "127.0.0.1:%d" % srv.port)
                self.assertExited(c, 10, dltest.EXIT_PROTOCOL)
                self.assertOneLineError(c, "dlping", needle)
                self.assertEqual(len(c.stderr().strip().splitlines()), 1, c.stderr())

    def test_fastsocket_probes_must_fit_its_lines(self):
        # fastSocket readers drop a connection on a line over 64 KiB: a bigger probe used to
        # end in "Connection reset by peer" (exit 5); now it is a usage error up front.
        r, port = self.responder("--proto", "fastsocket", "-q")
        for args in (["-s", "100K"], ["-s", "65456"], ["--sweep", "64,64K"]):
            c = self.start_client("--proto", "fastsocket", "-c", "2", *args, "127.0.0.1:%d" % port)
            self.assertExited(c, 10, dltest.EXIT_USAGE)
            self.assertOneLineError(c, "dlping", "--size", "64 KiB")
        c = self.start_client("--json", "--proto", "fastsocket", "-c", "2", "-i", "10ms", "-s", "65455",
                              "127.0.0.1:%d" % port)
        self.assertExited(c, 10, 0)  # the largest that fits: answered
        self.assertEqual(self.summary_json(c)["phases"][0]["received"], 2)

    # -- deadlines with nobody, or a silent peer, at the other end
    def test_deadline_with_a_silent_peer(self):
        # udp: a bound socket that never answers; TCP: a listener that accepts and says nothing.
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        self.addCleanup(u.close)
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(4)
        self.addCleanup(lst.close)
        for target in ("udp:127.0.0.1:%d" % u.getsockname()[1], "127.0.0.1:%d" % lst.getsockname()[1]):
            with self.subTest(target=target):
                t0 = time.monotonic()
                c = self.start_client("-w", "1", "-i", "100ms", "--timeout", "300ms", target)
                self.assertExited(c, 10, dltest.EXIT_TIMEOUT)
                self.assertLess(time.monotonic() - t0, t(4), "the deadline was not kept")
                self.assertOneLineError(c, "dlping", "no reply")
                m = re.search(r"(\d+) sent, 0 received", self.read_out(c))
                self.assertIsNotNone(m, self.read_out(c))
                self.assertGreaterEqual(int(m.group(1)), 8)

    def test_deadlines_at_both_ends(self):
        # Client -w: it stops sending at the deadline, then waits for the replies still out
        # (held 300 ms by the responder), which count as received, not lost.
        r, port = self.responder("--reply-delay", "300ms")
        t0 = time.monotonic()
        c = self.start_client("--json", "-w", "0.5", "-i", "100ms", "127.0.0.1:%d" % port)
        self.assertExited(c, 10, 0)
        self.assertGreaterEqual(time.monotonic() - t0, 0.65)  # the last probe (0.4 s) + 0.3 s
        ph = self.summary_json(c)["phases"][0]
        self.check_consistent(ph)
        self.assertGreaterEqual(ph["sent"], 4)
        self.assertEqual(ph["received"], ph["sent"], ph)
        # Responder -w: it ends at its deadline with exit 0 and its session's figures, even with
        # a client mid-measurement (which then sees the connection close: exit 5).
        r2, port2 = self.responder("-w", "1", "-v")
        c2 = self.start_client("-i", "20ms", "127.0.0.1:%d" % port2)
        self.assertExited(r2, 10, 0)
        self.assertIn("probes answered", self.read_out(r2))
        self.assertExited(c2, 10, dltest.EXIT_DISCONNECTED)
        self.assertIn("dlping statistics", self.read_out(c2))

    def test_deadline_bounds_the_connection_attempt(self):
        # A listener whose backlog is full drops our SYNs: -w 1 must not wait out the 10 s
        # connect timeout (it did).
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        self.addCleanup(lst.close)
        port = lst.getsockname()[1]
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            self.addCleanup(s.close)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
        t0 = time.monotonic()
        c = self.start_client("-w", "1", "127.0.0.1:%d" % port)
        self.assertExited(c, 10, dltest.EXIT_TIMEOUT)
        self.assertLess(time.monotonic() - t0, t(4))
        self.assertOneLineError(c, "dlping", "connect", "no answer within")

    def test_deadline_with_nobody_there_over_udp(self):
        port = dltest.reserved_port(socket.AF_INET)
        c = self.start_client("-w", "0.5", "-i", "50ms", "--timeout", "200ms", "udp:127.0.0.1:%d" % port)
        self.assertExited(c, 10, dltest.EXIT_TIMEOUT)
        self.assertIn("refused", c.stderr())
        self.assertIn("no reply", c.stderr())


def capture_probe(dlping, size, workdir):
    """A native PING frame with `size` payload bytes, exactly as dlping sends it (its checksum
    is XXH3, which Python's stdlib lacks): a listener of ours takes one from `dlping -c 1`."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    lst.settimeout(t(10))
    import subprocess
    p = subprocess.Popen([dlping, "-c", "1", "-s", str(size), "--timeout", "1s",
                          "127.0.0.1:%d" % lst.getsockname()[1]],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    try:
        c, _ = lst.accept()
        c.settimeout(t(10))
        f = c.makefile("rb")
        head = f.read(32)
        length = struct.unpack(">I", head[4:8])[0]
        frame = head + f.read(length)
        c.close()
    finally:
        lst.close()
        p.kill()
        p.wait()
    return frame


class BadFastSocketServer(RawFastSocketServer):
    """Accepts one client, reads its first message and answers with `reply` (with the
    message's id put in at %s), then keeps the connection open until closed."""

    def __init__(self, reply):
        self.reply = reply
        super().__init__()

    def run(self):
        try:
            c, _ = self.sock.accept()
            self.conn = c
            line = c.makefile("rb").readline(65536)
            mid = json.loads(line)["id"].encode()
            c.sendall(self.reply.replace(b"%s", mid) if b"%s" in self.reply else self.reply)
            while c.recv(65536):
                pass
        except (OSError, ValueError):
            pass


if __name__ == "__main__":
    dltest.main()
