#!/usr/bin/python3
"""A listener against a crowd of bad clients while a real transfer goes on: 500 idle
connections, silent ones, a slow one that sends one 0x20 byte a second, garbage, an HTTP
request, and a stranger replaying the real sender's first bytes (its HELLO and data) in the
middle of the transfer. The transfer must arrive byte-exact, strangers must be refused by name
and never reach the output, and the listener's memory and CPU must stay flat."""

import os
import resource
import signal
import subprocess
import socket
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import MiB  # noqa: E402
from fault_relay import FaultRelay  # noqa: E402

IDLE = 500


cpu_seconds = dltest.cpu_seconds


class PeakRss(threading.Thread):
    """Follows a process's VmHWM (its peak RSS so far) until it exits."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.kib = pid, 0

    def run(self):
        while True:
            try:
                with open("/proc/%d/status" % self.pid) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.kib = max(self.kib, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.05)


class Slow(threading.Thread):
    """Sends one 0x20 byte a second (a would-be classic peer that never finishes a frame)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(1.0):
            try:
                self.sock.send(b" ")
            except OSError:
                return


class CrowdTest(dltest.DlTestCase):

    def test_transfer_through_a_crowd_of_strangers(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < IDLE + 100:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        src = self.path("in")
        dltest.make_random_file(src, 64 * MiB)
        out = self.path("out")
        recv, port = self.listen("dlrecv", "-v", stdout=out)
        rss = PeakRss(recv.popen.pid)
        rss.start()

        strangers = []
        self.addCleanup(lambda: [s.close() for s in strangers])
        for _ in range(IDLE):
            strangers.append(socket.create_connection(("127.0.0.1", port)))
        garbage = socket.create_connection(("127.0.0.1", port))
        garbage.sendall(b"\x00garbage" * 4096)
        http = socket.create_connection(("127.0.0.1", port))
        http.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        strangers += [garbage, http]
        slow = Slow(port)
        slow.start()
        self.addCleanup(slow.stop.set)

        # Idle strangers must not make the listener spin.
        c0 = cpu_seconds(recv.popen.pid)
        time.sleep(1.0)   # a measurement window, not synchronisation
        self.assertLess(cpu_seconds(recv.popen.pid) - c0, 0.3, "the listener burns CPU with idle strangers")

        relay = FaultRelay(("127.0.0.1", port))
        self.addCleanup(relay.close)
        send = self.dlsend("127.0.0.1:%d" % relay.port, "-f", src, "-v", "-w", "30")
        # Once the real sender has spoken, replay its first bytes (HELLO and data) as a stranger.
        dltest.wait_until(lambda: len(relay.captured.get(0, b"")) >= 1024, 30, "the sender's first bytes")
        replayed = []
        for _ in range(3):
            r = socket.create_connection(("127.0.0.1", port))
            r.sendall(bytes(relay.captured[0]))
            replayed.append(r)
        strangers += replayed

        self.assertExitCodes(120, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        err = recv.stderr()
        for s, what in ((garbage, "garbage"), (http, "HTTP"), (replayed[0], "replayed HELLO")):
            addr = "127.0.0.1:%d" % s.getsockname()[1]
            self.assertIn(addr, err, "the %s stranger %s was not named in dlrecv's log:\n%s" % (what, addr, err[-3000:]))
        rss.join(5)
        self.assertLess(rss.kib, 96 * 1024, "dlrecv's peak RSS grew with the crowd")
        self.assertNoCrash(recv)
        self.assertNoCrash(send)


class AllowTest(dltest.DlTestCase):
    """--allow: peers outside the list are reset before a byte is read, and named."""

    def test_allowed_sender_gets_through_others_are_named_and_reset(self):
        out = self.path("out")
        recv, port = self.listen("dlrecv", "--allow", "127.0.0.1", "-v", stdout=out)
        stranger = socket.socket()
        stranger.bind(("127.0.0.5", 0))
        stranger.connect(("127.0.0.1", port))
        addr = "127.0.0.5:%d" % stranger.getsockname()[1]
        try:
            stranger.sendall(b"\xd7garbage that must never be read")
        except (ConnectionResetError, BrokenPipeError):
            pass  # the reset can come first: the listener refuses before reading anything
        dltest.wait_until(lambda: addr in recv.stderr(), 10, "the stranger named in dlrecv's log")
        with self.assertRaises((ConnectionResetError, BrokenPipeError)):
            for _ in range(100):
                stranger.sendall(b"x" * 65536)
                time.sleep(0.01)
        stranger.close()
        src = self.path("in")
        dltest.make_random_file(src, MiB)
        send = self.dlsend("127.0.0.1:%d" % port, "-f", src)
        self.assertExitCodes(30, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertIn("not allowed", recv.stderr())

    def test_sender_outside_the_list_is_refused(self):
        recv, port = self.listen("dlrecv", "--allow", "10.0.0.0/8", "-v")
        send = self.dlsend("127.0.0.1:%d" % port, "-w", "1", stdin=subprocess.DEVNULL)
        self.assertExited(send, 20)
        self.assertNotEqual(send.returncode, 0)
        self.assertIn("127.0.0.1", recv.stderr())
        recv.signal(signal.SIGTERM)
        self.assertExited(recv, 10, 130)

    def test_allow_usage(self):
        for args in (["--allow", "10.0.0.0/33", "-l", "0"], ["--allow", "nonsense", "-l", "0"],
                     ["--allow", "10.0.0.1", "127.0.0.1:9"]):
            p = self.dlrecv(*args)
            self.assertExited(p, 10, 2)
            self.assertOneLineError(p, "dlrecv", "--allow")


if __name__ == "__main__":
    dltest.main()
