#!/usr/bin/python3
"""dlbridge against a hostile user and a hostile network, with real processes on loopback: peers
that trickle a byte per segment, strangers on the listening sides, peers killed, stopped and
restarted mid-stream, signals at every phase, fault options at their extremes. Memory is watched
with VmRSS and idle CPU with utime+stime."""

import os
import signal
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


if __name__ == "__main__":
    dltest.main()
