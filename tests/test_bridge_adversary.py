#!/usr/bin/python3
"""dlbridge against a hostile user and a hostile network, with real processes on loopback: peers
that trickle a byte per segment, strangers on the listening sides, peers killed, stopped and
restarted mid-stream, signals at every phase, fault options at their extremes. Memory is watched
with VmRSS and idle CPU with utime+stime."""

import os
import signal
import struct
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
import test_bridge  # noqa: E402
from dltest import MiB, wait_port_file  # noqa: E402
from test_bridge import DLBRIDGE  # noqa: E402
from fault_relay import FaultRelay  # noqa: E402
from test_adversary import signals_routed as test_signals_routed  # noqa: E402


def silent_server():
    """A TCP server (thread) that accepts and keeps every connection without reading from it.
    Returns (server socket, port, list of accepted sockets)."""
    srv = socket.create_server(("127.0.0.1", 0))
    conns = []

    def loop():
        while True:
            try:
                conns.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=loop, daemon=True).start()
    return srv, srv.getsockname()[1], conns


def trickle(sock, seconds, check):
    """Sends one byte per segment (TCP_NODELAY) for `seconds`, or until `check()` says stop."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        try:
            sock.send(b"x")
            n += 1
        except BlockingIOError:
            time.sleep(0.001)
        if n % 5000 == 0 and check():
            break
    return n


def classic_frame(payload, ts):
    """The seed Datalink's frame (see test_classic.py)."""
    return b" " * 5 + struct.pack("<qd", len(payload), ts) + b"!" * 5 + payload + b'"' * 5


def classic_peer(port, frames, result, key):
    """Dials a classic side, sends `frames` while reading everything that comes back until the
    peer closes or 30 s of silence; result[key] = (frames sent, bytes received)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=dltest.t(30))
    got = bytearray()

    def reader():
        try:
            while True:
                b = c.recv(1 << 20)
                if not b:
                    return
                got.extend(b)
        except OSError:
            return

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    for f in frames:
        c.sendall(f)
    result[key + "-sent"] = True
    result[key] = (c, th, got)


def classic_payloads(data):
    """The non-empty payloads of a run of classic frames (empty ones are the seed's keepalives)."""
    out, i = [], 0
    while i + 31 <= len(data):
        n, _ = struct.unpack_from("<qd", data, i + 5)
        if n:
            out.append(bytes(data[i + 26:i + 26 + n]))
        i += 31 + n
    return out


class BridgeAdversaryTest(dltest.DlTestCase):

    # The same way of starting a bridge as test_bridge.py.
    bridge = test_bridge.BridgeTest.bridge
    bridge_listening_a = test_bridge.BridgeTest.bridge_listening_a

    def rss_growth_bounded(self, proc, before_kib, limit_kib):
        rss = dltest.vm_rss_kib(proc.pid)
        return rss is not None and rss - before_kib > limit_kib

    # ------------------------------------------------------------------ memory
    def test_raw_shaped_trickler_holds_bounded_memory(self):
        # --fault latency: the relay holds what it read for a while. A client that sends one
        # byte per segment must not pin a 64 KiB buffer per byte (4 MiB held becomes GiBs).
        srv, sport, conns = silent_server()
        self.addCleanup(srv.close)
        br, port = self.bridge_listening_a("127.0.0.1:%d" % sport, "--raw", "--fault", "latency=5s")
        c = socket.create_connection(("127.0.0.1", port), timeout=dltest.t(10))
        self.addCleanup(c.close)
        dltest.wait_until(lambda: conns, 10, "the relay's upstream connection")
        base = dltest.vm_rss_kib(br.pid)
        limit = 48 * 1024
        trickle(c, 3, lambda: self.rss_growth_bounded(br, base, limit))
        grew = dltest.vm_rss_kib(br.pid) - base
        self.assertLess(grew, limit, "the shaped relay grew by %d KiB holding a trickle" % grew)
        br.signal(signal.SIGTERM)
        self.assertExited(br, 10, dltest.EXIT_INTERRUPTED)
        self.assertNoCrash(br)

    def test_raw_fanout_trickling_source_and_a_client_that_never_reads(self):
        # dlbridge(1): the slowest fanout client sets the pace, and what waits for it is
        # bounded. A source that trickles a byte per segment must not turn that bound into a
        # 64 KiB buffer per byte.
        srv, sport, conns = silent_server()
        self.addCleanup(srv.close)
        # Side a on a unix socket: its small socket buffers fill at once, so what the sleeper
        # does not take waits in the bridge.
        path = self.sock_path("fan.sock")
        br = self.bridge("listen:unix:" + path, "127.0.0.1:%d" % sport, "--raw", "--fanout", "-v")
        dltest.wait_until(lambda: conns and os.path.exists(path), 10, "the fanout listening and its upstream")
        sleeper = socket.socket(socket.AF_UNIX)
        sleeper.connect(path)
        self.addCleanup(sleeper.close)
        dltest.wait_until(lambda: "joined" in br.stderr(), 10, "the client joined")
        base = dltest.vm_rss_kib(br.pid)
        limit = 48 * 1024
        trickle(conns[0], 3, lambda: self.rss_growth_bounded(br, base, limit))
        grew = dltest.vm_rss_kib(br.pid) - base
        self.assertLess(grew, limit, "the fanout grew by %d KiB for a client that never reads" % grew)
        br.signal(signal.SIGTERM)
        self.assertExited(br, 10, dltest.EXIT_INTERRUPTED)
        self.assertNoCrash(br)

    def test_raw_fanout_slow_client_gets_everything(self):
        # A client slower than b fills the fanout's queue; once it has caught up, the bridge
        # must read from b again (the slowest client sets the pace; it must not stop it).
        srv, sport, conns = silent_server()
        self.addCleanup(srv.close)
        pf = self.path("fan-port")
        br = self.bridge("listen:127.0.0.1:0", "127.0.0.1:%d" % sport, "--raw", "--fanout", "--port-file-a", pf, "-v")
        port = wait_port_file(pf, br)
        dltest.wait_until(lambda: conns, 10, "the fanout's upstream connection")
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        slow.connect(("127.0.0.1", port))
        self.addCleanup(slow.close)
        dltest.wait_until(lambda: "joined" in br.stderr(), 10, "the client joined")
        data = os.urandom(24 * MiB)
        up = conns[0]
        threading.Thread(target=lambda: (up.sendall(data), up.shutdown(socket.SHUT_WR)), daemon=True).start()
        got = bytearray()
        slow.settimeout(dltest.t(10))
        deadline = time.monotonic() + dltest.t(60)
        while time.monotonic() < deadline:
            try:
                b = slow.recv(64 * 1024)
            except socket.timeout:
                self.fail("the fanout stopped after %d of %d bytes\n%s" % (len(got), len(data), self.P.describe()))
            if not b:
                break
            got += b
            time.sleep(0.002)   # a slow reader, not synchronisation
        self.assertEqual(len(got), len(data))
        self.assertTrue(got == data, "the bytes differ")
        slow.close()
        up.close()
        self.assertExited(br, 20, 0)
        self.assertNoCrash(br)

    def test_raw_refusals_are_rate_limited(self):
        # 60 strangers outside --allow: the first ten are named, then a line says how many more
        # were refused (each used to get its own line, so a flood flooded the log).
        br, port = self.bridge_listening_a("127.0.0.1:1", "--raw", "--allow", "127.0.0.1")
        for _ in range(60):
            s = socket.socket()
            s.bind(("127.0.0.5", 0))
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                pass
            s.close()
        dltest.wait_until(lambda: "not shown" in br.stderr(), 10, "the count of refusals not shown\n" + br.stderr())
        named = [ln for ln in br.stderr().splitlines() if "refused 127.0.0.5" in ln]
        self.assertLessEqual(len(named), 12, br.stderr())
        self.assertGreaterEqual(len(named), 10, br.stderr())

    def test_raw_allow_keeps_strangers_out(self):
        # --allow holds in raw mode and raw fanout as in message mode: a stranger is reset
        # before a byte is read and never relayed; allowed peers are.
        for mode in (["--raw"], ["--raw", "--fanout"]):
            with self.subTest(mode=mode):
                pa, pb = self.path("pa%d" % len(self.P.procs)), self.path("pb%d" % len(self.P.procs))
                br = self.bridge("listen:127.0.0.1:0", "listen:127.0.0.1:0", "--port-file-a", pa, "--port-file-b", pb,
                                 *mode, "--allow", "127.0.0.1", "-v")
                porta, portb = wait_port_file(pa, br), wait_port_file(pb, br)
                for port in (porta, portb):
                    stranger = socket.socket()
                    stranger.bind(("127.0.0.5", 0))
                    stranger.connect(("127.0.0.1", port))
                    stranger.settimeout(dltest.t(5))
                    self.addCleanup(stranger.close)
                    addr = "127.0.0.5:%d" % stranger.getsockname()[1]
                    dltest.wait_until(lambda: addr in br.stderr(), 10, "the stranger named\n" + br.stderr()[-2000:])
                    with self.assertRaises((ConnectionResetError, BrokenPipeError)):
                        for _ in range(100):
                            stranger.sendall(b"x" * 65536)
                            time.sleep(0.01)
                self.assertIn("--allow", br.stderr())
                self.assertNotIn("joined", br.stderr())
                self.assertNotIn("accepted", br.stderr())
                a = socket.create_connection(("127.0.0.1", porta), timeout=dltest.t(10))
                b = socket.create_connection(("127.0.0.1", portb), timeout=dltest.t(10))
                self.addCleanup(a.close)
                self.addCleanup(b.close)
                if "--fanout" in mode:
                    dltest.wait_until(lambda: "joined" in br.stderr() and "b: accepted" in br.stderr(), 10, "both in")
                b.sendall(b"ping")
                self.assertEqual(a.recv(4), b"ping")
                br.signal(signal.SIGTERM)
                self.assertExited(br, 10, dltest.EXIT_INTERRUPTED)

    def test_allow_on_the_listening_side_of_a_dialing_bridge(self):
        # The usual bridge listens on one side and dials the other; --allow concerns the
        # listening side and must not be refused because the other side dials. A stranger is
        # refused, the allowed sender's data goes through.
        out = self.path("out")
        recv, rport = self.listen("dlrecv", "--lines", stdout=out)
        br, port = self.bridge_listening_a("127.0.0.1:%d" % rport, "--allow", "127.0.0.1", "-v")
        stranger = socket.socket()
        stranger.bind(("127.0.0.5", 0))
        stranger.connect(("127.0.0.1", port))
        self.addCleanup(stranger.close)
        addr = "127.0.0.5:%d" % stranger.getsockname()[1]
        dltest.wait_until(lambda: addr in br.stderr(), 10, "the stranger named\n" + br.stderr()[-2000:])
        send = self.dlsend("127.0.0.1:%d" % port, "--lines", stdin=subprocess.PIPE)
        self.feed(send.popen.stdin, [b"one\ntwo\n"], close=True)
        self.assertExitCodes(30, (send, 0), (recv, 0), (br, 0))
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"one\ntwo\n")
        # With no listening side at all it is still a usage error.
        p = self.bridge("127.0.0.1:1", "127.0.0.1:2", "--allow", "127.0.0.1")
        self.assertExited(p, 10, dltest.EXIT_USAGE)
        self.assertOneLineError(p, "dlbridge", "--allow")

    # ------------------------------------------------------------------ faults
    def test_raw_cut_every_on_each_side_counts(self):
        # A cut-every on side b cuts each relayed pair that long after it was made, whatever
        # side a's own (longer) cut-every says.
        srv, sport, conns = silent_server()
        self.addCleanup(srv.close)
        br, port = self.bridge_listening_a("127.0.0.1:%d" % sport, "--raw", "-v",
                                           "--fault", "a:cut-every=1h", "--fault", "b:cut-every=200ms")
        c = socket.create_connection(("127.0.0.1", port), timeout=dltest.t(10))
        self.addCleanup(c.close)
        dltest.wait_until(lambda: "b: fault cut-every" in br.stderr(), 10, "b's cut-every\n" + self.P.describe())
        with self.assertRaises(ConnectionResetError):
            c.recv(10)
        br.signal(signal.SIGTERM)
        self.assertExited(br, 10, dltest.EXIT_INTERRUPTED)

    def test_raw_fanout_refuses_faults_it_would_not_apply(self):
        # The raw fanout has no fault path: a --fault there must be refused, not silently
        # ignored (a test of someone's system that injects nothing passes for the wrong reason).
        srv, sport, conns = silent_server()
        self.addCleanup(srv.close)
        for spec in ("latency=1s", "b:cut=1M", "a:rate=1M"):
            with self.subTest(fault=spec):
                p = self.bridge("listen:127.0.0.1:0", "127.0.0.1:%d" % sport, "--raw", "--fanout", "--fault", spec)
                self.assertExited(p, 10, dltest.EXIT_USAGE)
                self.assertOneLineError(p, "dlbridge", "--fault")

    def test_window_out_of_range_is_a_usage_error(self):
        # --window is memory (a ring per side); dlsend refuses 0 and more than 1G as a typo,
        # and so must the bridge, whose classic sides have no sender's window to bound them.
        for w in ("0", "2G", "10T"):
            with self.subTest(window=w):
                p = self.bridge("listen:127.0.0.1:0", "127.0.0.1:1", "--window", w)
                self.assertExited(p, 10, dltest.EXIT_USAGE)
                self.assertOneLineError(p, "dlbridge", "--window " + w, "between 1 and 1G")

    def test_message_settings_with_raw_are_usage_errors(self):
        # A byte relay has no frames, sessions or reconnects: a setting for them was silently
        # ignored (a -t meant to drop silent clients dropped nobody).
        for flag in (["--proto-a", "classic"], ["--proto-b", "native"], ["-t", "5"], ["--reconnect", "1"],
                     ["--keepalive", "1"], ["--max-message", "64K"], ["--window", "1M"], ["--close-ends"],
                     ["--drop-negative-ts"]):
            with self.subTest(flag=flag):
                p = self.bridge("--raw", "listen:127.0.0.1:0", "127.0.0.1:1", *flag)
                self.assertExited(p, 10, dltest.EXIT_USAGE)
                self.assertOneLineError(p, "dlbridge", "with --raw", "message-mode setting")

    def test_stats_interval_in_raw_modes(self):
        # --stats-interval prints the counters every DURATION in every mode, raw ones included.
        srv, sport, conns = silent_server()
        self.addCleanup(srv.close)
        for mode, needle in ((["--raw"], "raw: "), (["--raw", "--fanout"], "fanout: ")):
            with self.subTest(mode=mode):
                br, port = self.bridge_listening_a("127.0.0.1:%d" % sport, *mode, "--stats-interval", "100ms")
                dltest.wait_until(lambda: br.stderr().count(needle) >= 3, 10,
                                  "three counter lines\n" + self.P.describe())
                br.signal(signal.SIGTERM)
                self.assertExited(br, 10, dltest.EXIT_INTERRUPTED)

    # ------------------------------------------------------------------ strangers
    def strangers(self, port, hello, stop):
        """Until `stop` is set: silent connections that stay, garbage, a replayed HELLO, and a
        slow one that sends a byte every 50 ms, all on `port`. Returns the threads."""
        def silent():
            held = []
            while not stop.is_set() and len(held) < 20:
                try:
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                except OSError:
                    time.sleep(0.05)
            stop.wait()
            for h in held:
                h.close()

        def hit(payload):
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                        c.sendall(payload())
                        c.recv(4096)
                except OSError:
                    pass
                time.sleep(0.02)

        def slow():
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                        for b in hello():
                            if stop.wait(0.05):
                                return
                            c.send(bytes([b]))
                except OSError:
                    time.sleep(0.05)

        threads = [threading.Thread(target=f, daemon=True) for f in (
            silent, slow, lambda: hit(lambda: os.urandom(300)), lambda: hit(hello),
            lambda: hit(lambda: b"GET / HTTP/1.0\r\n\r\n"))]
        for th in threads:
            th.start()
        return threads

    def test_message_pair_transfer_amid_strangers_on_both_sides(self):
        # Both sides listen (the jump-host recipe). Strangers of every kind crowd both ports,
        # and a replay of the sender's own HELLO keeps coming, while a transfer runs through
        # cuts of both hops: byte-exact, both peers and the bridge exit 0.
        src = self.path("in")
        dltest.make_random_file(src, 24 * MiB)
        out = self.path("out")
        pa, pb = self.path("pa"), self.path("pb")
        br = self.bridge("listen:127.0.0.1:0", "listen:127.0.0.1:0", "--port-file-a", pa, "--port-file-b", pb,
                         "--fault", "cut=5M", "--fault", "rate=100M", "-v")
        porta, portb = wait_port_file(pa, br), wait_port_file(pb, br)
        relay = FaultRelay(target=("127.0.0.1", porta))
        self.addCleanup(relay.close)
        recv = self.dlrecv("127.0.0.1:%d" % portb, "-o", out, "-v", "--reconnect", "30s")
        send = self.dlsend("127.0.0.1:%d" % relay.port, "-v", "--reconnect", "30s", stdin=subprocess.PIPE)
        dltest.wait_until(lambda: len(relay.captured.get(0, b"")) >= 104, 20, "the sender's HELLO")
        hello = lambda: bytes(relay.captured[0])[:104]  # noqa: E731
        stop = threading.Event()
        threads = self.strangers(porta, hello, stop) + self.strangers(portb, hello, stop)
        try:
            dltest.wait_until(lambda: br.stderr().count("rejected") >= 20, 20, "strangers at work\n" + br.stderr()[-2000:])
            with open(src, "rb") as f:
                self.feed(send.popen.stdin, iter(lambda: f.read(MiB), b""), close=True, timeout=120)
            self.assertExitCodes(120, (send, 0), (recv, 0), (br, 0))
        finally:
            stop.set()
            for th in threads:
                th.join(10)
        self.assertSameFile(src, out)
        self.assertGreaterEqual(br.stderr().count("fault cut"), 2, br.stderr()[-3000:])
        for p in (send, recv, br):
            self.assertNoCrash(p)

    def test_message_fanout_client_cut_again_and_again_resumes_alone(self):
        # One of three fanout clients loses its connection every 1.5 MiB; each time it resumes
        # into its own session while the others flow on. Everyone gets the stream byte-exact.
        src = self.path("in")
        dltest.make_random_file(src, 16 * MiB)
        pa, pb = self.path("fan-a"), self.path("fan-b")
        br = self.bridge("listen:127.0.0.1:0", "listen:127.0.0.1:0", "--fanout", "--port-file-a", pa,
                         "--port-file-b", pb, "-v")
        porta, portb = wait_port_file(pa, br), wait_port_file(pb, br)
        relay = FaultRelay(target=("127.0.0.1", porta))
        self.addCleanup(relay.close)
        for _ in range(8):
            relay.cut_after(1536 * 1024, direction="down")
        recvs = []
        for i in range(3):
            out = self.path("out%d" % i)
            port = relay.port if i == 0 else porta
            recvs.append((self.dlrecv("127.0.0.1:%d" % port, "-o", out, "-v", "--reconnect", "30s", name="recv%d" % i), out))
        dltest.wait_until(lambda: br.stderr().count(": connected to ") >= 3, 20, "three clients connected")
        send = self.dlsend("127.0.0.1:%d" % portb, "-f", src)
        self.assertExitCodes(120, (send, 0), *[(p, 0) for p, _ in recvs], (br, 0))
        for _, out in recvs:
            self.assertSameFile(src, out)
        self.assertGreaterEqual(relay.cuts, 5)
        self.assertGreaterEqual(recvs[0][0].stderr().count("session resumed"), 5, recvs[0][0].stderr())
        self.assertNoCrash(br)

    # ------------------------------------------------------------------ both ways at once
    def test_classic_both_directions_at_full_speed_through_one_bridge(self):
        # One bridge, a classic peer on each side, each sending 24 MiB at the other as fast as
        # it can while reading what comes: both streams arrive whole and in order.
        pa, pb = self.path("pa"), self.path("pb")
        br = self.bridge("listen:127.0.0.1:0", "listen:127.0.0.1:0", "--proto-a", "classic", "--proto-b", "classic",
                         "--port-file-a", pa, "--port-file-b", pb)
        porta, portb = wait_port_file(pa, br), wait_port_file(pb, br)
        frames = {k: [classic_frame(os.urandom(64 * 1024), float(i)) for i in range(384)] for k in "ab"}
        result = {}
        threads = [threading.Thread(target=classic_peer, args=(port, frames[k], result, k), daemon=True)
                   for k, port in (("a", porta), ("b", portb))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(dltest.t(60))
        self.assertTrue(result.get("a-sent") and result.get("b-sent"), "the peers could not send\n" + self.P.describe())
        want = {k: sum(len(f) for f in frames[k]) for k in "ab"}
        dltest.wait_until(lambda: len(result["a"][2]) >= want["b"] and len(result["b"][2]) >= want["a"], 60,
                          "both streams across\n" + self.P.describe())
        for k, other in (("a", "b"), ("b", "a")):
            got = classic_payloads(result[k][2])
            self.assertEqual(len(got), len(frames[other]), "frames at " + k)
            self.assertTrue(all(g == f[26:-5] for g, f in zip(got, frames[other])), "a frame at %s differs" % k)
        br.signal(signal.SIGINT)
        self.assertExited(br, 10, dltest.EXIT_INTERRUPTED)
        for k in "ab":
            result[k][0].close()
        self.assertNoCrash(br)

    # ------------------------------------------------------------------ idle, signals
    MODES = ([], ["--fanout"], ["--raw"], ["--raw", "--fanout"])

    def bridges_in_every_mode(self, *extra):
        """One bridge per mode, both sides listening; returns [(mode, proc, port a, port b)]."""
        out = []
        for mode in self.MODES:
            n = len(self.P.procs)
            pa, pb = self.path("pa%d" % n), self.path("pb%d" % n)
            p = self.bridge("listen:127.0.0.1:0", "listen:127.0.0.1:0", "--port-file-a", pa, "--port-file-b", pb,
                            *mode, *extra, name="dlbridge%s" % "".join(mode))
            out.append((mode, p, wait_port_file(pa, p), wait_port_file(pb, p)))
        return out

    def test_idle_bridges_use_no_cpu(self):
        # Every mode, with a stranger holding a connection open on each side and a stats timer
        # running: an idle bridge sleeps (utime+stime flat over two seconds).
        bridges = self.bridges_in_every_mode("--stats-interval", "1h")
        held = [socket.create_connection(("127.0.0.1", port)) for _, _, pa, pb in bridges for port in (pa, pb)]
        for h in held:
            self.addCleanup(h.close)
        dltest.wait_until(lambda: all(b[1].running for b in bridges), 5, "bridges up")
        before = [dltest.cpu_seconds(p.pid) for _, p, _, _ in bridges]
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and all(p.running for _, p, _, _ in bridges):
            time.sleep(0.1)   # the measured interval, not synchronisation
        for (mode, p, _, _), was in zip(bridges, before):
            self.assertTrue(p.running, p.describe())
            self.assertLessEqual(dltest.cpu_seconds(p.pid) - was, 0.02, "mode %s used CPU while idle" % mode)

    def test_signals_mid_handshake_exit_130_in_every_mode(self):
        # A stranger stuck half-way through a handshake on each side: SIGINT, SIGTERM and SIGHUP
        # still end every mode at once, with 130.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            for mode, p, pa, pb in self.bridges_in_every_mode():
                with self.subTest(mode=mode, sig=sig):
                    for port in (pa, pb):
                        c = socket.create_connection(("127.0.0.1", port))
                        self.addCleanup(c.close)
                        c.sendall(b"\xd7\x01")
                    dltest.wait_until(lambda: test_signals_routed(p), 10, "signals routed")
                    p.signal(sig)
                    self.assertExited(p, 10, dltest.EXIT_INTERRUPTED)
                    self.assertNoCrash(p)


if __name__ == "__main__":
    dltest.main()
