#!/usr/bin/python3
"""dlbridge: forwarding through a bridge whose own --fault cuts each hop, protocol translation
(classic on one side, native on the other), end-to-end acknowledgement (a sender's exit 0 means
the final receiver has the data), both directions at once, and usage errors."""

import hashlib
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
from dltest import MiB, wait_port_file  # noqa: E402
from fault_relay import FaultRelay  # noqa: E402

DLBRIDGE = dltest.tool_path("dlbridge")


class BridgeTest(dltest.DlTestCase):

    def bridge(self, *args, **kw):
        return self.P.start([DLBRIDGE] + list(args), name=kw.pop("name", "dlbridge"), **kw)

    def bridge_listening_a(self, b, *args, name="dlbridge"):
        """dlbridge with side a listening on a free port and side b as given; returns (proc, port)."""
        pf = self.path("bridge-port-%d" % len(self.P.procs))
        p = self.bridge("listen:127.0.0.1:0", b, "--port-file-a", pf, *args, name=name)
        return p, wait_port_file(pf, p)

    def test_100mib_through_cuts_on_both_hops(self):
        src = self.path("in")
        dltest.make_random_file(src, 100 * MiB)
        out = self.path("out")
        recv, rport = self.listen("dlrecv", "-v", stdout=out)
        br, bport = self.bridge_listening_a("127.0.0.1:%d" % rport, "--fault", "cut=7M", "-v")
        send = self.dlsend("127.0.0.1:%d" % bport, "-f", src, "-v")
        self.assertExitCodes(120, (send, 0), (recv, 0), (br, 0))
        self.assertSameFile(src, out)
        err = br.stderr()
        # Both hops were cut more than once, and both sides resumed their sessions.
        self.assertGreaterEqual(err.count("a (127.0.0.1:%d): fault cut" % bport), 3, err)
        self.assertGreaterEqual(err.count("b (127.0.0.1:%d): fault cut" % rport), 3, err)
        self.assertIn("session resumed", send.stderr())
        self.assertIn("session resumed", recv.stderr())
        for p in (send, recv, br):
            self.assertNoCrash(p)

    def test_cut_every_interval_with_latency(self):
        lines = b"".join(b"line %d\n" % i for i in range(200000))  # 2.2 MB: ~1 s at 20 Mbit/s
        src = self.path("in")
        with open(src, "wb") as f:
            f.write(lines)
        out = self.path("out")
        recv, rport = self.listen("dlrecv", "--lines", stdout=out)
        br, bport = self.bridge_listening_a("127.0.0.1:%d" % rport, "--fault", "b:cut-every=150ms",
                                            "--fault", "b:latency=1ms", "--fault", "b:rate=20M", "-v")
        send = self.dlsend("127.0.0.1:%d" % bport, "--lines", "-f", src)
        self.assertExitCodes(60, (send, 0), (recv, 0), (br, 0))
        self.assertSameFile(src, out)
        self.assertGreaterEqual(br.stderr().count("fault cut-every"), 2, br.stderr())
        self.assertNotIn("a (127.0.0.1:%d): fault" % bport, br.stderr())

    def test_classic_sender_native_receiver(self):
        # A seed-format (classic) peer on side a is carried over a native, resumable link on b.
        n = 500
        recv, rport = self.listen("dlrecv", "--lines", "--count", str(n), stdout=self.path("out"))
        br, bport = self.bridge_listening_a("127.0.0.1:%d" % rport, "--proto-a", "classic",
                                            "--fault", "b:cut=20K")
        data = b"".join(b"classic %d\n" % i for i in range(n))
        src = self.path("in")
        with open(src, "wb") as f:
            f.write(data)
        send = self.dlsend("--proto", "classic", "--lines", "127.0.0.1:%d" % bport, "-f", src)
        self.assertExited(recv, 60, 0)
        with open(self.path("out"), "rb") as f:
            self.assertEqual(f.read(), data)
        for p in (send, br):
            p.signal(signal.SIGTERM)
            self.assertExited(p, 20)
            self.assertNoCrash(p)

    def test_sender_exit_means_final_receiver_has_it(self):
        # The receiver is stopped: the bridge may take the data, but must not acknowledge it
        # upstream until the receiver has, so the sender cannot finish while it is stopped.
        src = self.path("in")
        dltest.make_random_file(src, 2 * MiB)
        out = self.path("out")
        recv, rport = self.listen("dlrecv", stdout=out)
        br, bport = self.bridge_listening_a("127.0.0.1:%d" % rport)
        dltest.wait_until(lambda: "connected" in br.stderr() or True, 1, "bridge up")
        recv.signal(signal.SIGSTOP)
        try:
            send = self.dlsend("127.0.0.1:%d" % bport, "-f", src, "-t", "60s")
            self.assertIsNone(send.wait(dltest.t(1.5)),
                              "dlsend finished while the final receiver was stopped\n" + self.P.describe())
        finally:
            recv.signal(signal.SIGCONT)
        self.assertExitCodes(60, (send, 0), (recv, 0), (br, 0))
        self.assertSameFile(src, out)

    def test_both_directions_at_once(self):
        # Two flows cross the same bridge in opposite directions: a->b and b->a.
        size = 32 * MiB
        src_ab, src_ba = self.path("ab"), self.path("ba")
        dltest.make_random_file(src_ab, size)
        dltest.make_random_file(src_ba, size)
        out_ab, out_ba = self.path("out_ab"), self.path("out_ba")
        # a->b: dlsend dials bridge side a; bridge side b dials dlrecv.
        recv_b, rport = self.listen("dlrecv", stdout=out_ab)
        br1, p1 = self.bridge_listening_a("127.0.0.1:%d" % rport, name="bridge1")
        send_a = self.dlsend("127.0.0.1:%d" % p1, "-f", src_ab)
        # b->a on a second bridge whose side b listens for the sender.
        recv_a, rport2 = self.listen("dlrecv", stdout=out_ba)
        pf = self.path("bridge2-port")
        br2 = self.bridge("127.0.0.1:%d" % rport2, "listen:127.0.0.1:0", "--port-file-b", pf, name="bridge2")
        send_b = self.dlsend("127.0.0.1:%d" % wait_port_file(pf, br2), "-f", src_ba)
        self.assertExitCodes(120, (send_a, 0), (recv_b, 0), (br1, 0), (send_b, 0), (recv_a, 0), (br2, 0))
        self.assertSameFile(src_ab, out_ab)
        self.assertSameFile(src_ba, out_ba)

    def test_bridge_restart_is_never_silent(self):
        # Killing the bridge loses what it held; the native peers must say so, and the receiver
        # must have a clean prefix of the input (nothing duplicated, nothing foreign).
        src = self.path("in")
        dltest.make_random_file(src, 64 * MiB)
        out = self.path("out")
        recv, rport = self.listen("dlrecv", "--reconnect", "3s", stdout=out)
        br, bport = self.bridge_listening_a("127.0.0.1:%d" % rport, "--fault", "rate=200M")
        send = self.dlsend("127.0.0.1:%d" % bport, "-f", src, "--reconnect", "5s", "-v")
        dltest.wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 4 * MiB, 30, "data flowing")
        br.kill()
        br.wait(5)
        br2 = self.bridge("listen:127.0.0.1:%d" % bport, "127.0.0.1:%d" % rport, name="bridge2")
        self.assertExited(send, 30)
        self.assertNotEqual(send.returncode, 0, "the sender claimed success through a restarted bridge")
        # The sender says how much the receiver acknowledged: where a user would resume.
        self.assertRegex(send.stderr(), r"acknowledged \d+ bytes")
        self.assertExited(recv, 30)
        self.assertNotEqual(recv.returncode, 0)
        with open(src, "rb") as a, open(out, "rb") as b:
            got = b.read()
            self.assertEqual(a.read(len(got)), got, "the receiver's output is not a prefix of the input")
        self.assertLess(len(got), 64 * MiB)
        br2.kill()

    def test_raw_carries_the_native_session_through_a_bridge_restart(self):
        # --raw owns no session: dlsend's session runs end to end with dlrecv, so killing and
        # restarting the bridge is one more connection cut that the native peers heal. The
        # sender replays what the receiver lacks: byte-exact, nothing duplicated, exit 0.
        src = self.path("in")
        dltest.make_random_file(src, 48 * MiB)
        out = self.path("out")
        recv, rport = self.listen("dlrecv", "-v", stdout=out)
        br, bport = self.bridge_listening_a("127.0.0.1:%d" % rport, "--raw", "--fault", "rate=200M")
        send = self.dlsend("127.0.0.1:%d" % bport, "-f", src, "-v", "--reconnect", "30s")
        dltest.wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 4 * MiB, 30, "data flowing")
        br.kill()
        br.wait(5)
        self.assertLess(os.path.getsize(out), 48 * MiB, "the transfer ended before the bridge was killed")
        br2 = self.bridge("listen:127.0.0.1:%d" % bport, "127.0.0.1:%d" % rport, "--raw", name="bridge2")
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertIn("session resumed", send.stderr())
        self.assertIn("session resumed", recv.stderr())
        br2.signal(signal.SIGTERM)
        self.assertExited(br2, 10, 130)
        for p in (send, recv, br, br2):
            self.assertNoCrash(p)

    def test_raw_cuts_on_both_hops_are_healed_end_to_end(self):
        # A raw cut resets both connections of the pair; the native session across it resumes.
        src = self.path("in")
        dltest.make_random_file(src, 40 * MiB)
        out = self.path("out")
        recv, rport = self.listen("dlrecv", "-v", stdout=out)
        br, bport = self.bridge_listening_a("127.0.0.1:%d" % rport, "--raw", "-v",
                                            "--fault", "a:cut=5M", "--fault", "b:cut=7M")
        send = self.dlsend("127.0.0.1:%d" % bport, "-f", src, "-v", "--reconnect", "30s")
        self.assertExitCodes(120, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        err = br.stderr()
        self.assertGreaterEqual(err.count("fault cut"), 4, err)
        self.assertGreaterEqual(send.stderr().count("session resumed"), 3, send.stderr())
        br.signal(signal.SIGTERM)
        self.assertExited(br, 10, 130)
        self.assertNoCrash(br)

    # ------------------------------------------------------------------ raw mode
    def summing_server(self):
        """A TCP server (thread) that reads each connection to EOF, then answers with the
        SHA-256 of what it read and closes: a conversation that needs half-close both ways."""
        srv = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(srv.close)

        def serve(conn):
            with conn:
                h = hashlib.sha256()
                while True:
                    b = conn.recv(65536)
                    if not b:
                        break
                    h.update(b)
                conn.sendall(h.hexdigest().encode())

        def loop():
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return srv.getsockname()[1]

    def converse(self, port, payload, results, key):
        with socket.create_connection(("127.0.0.1", port), timeout=dltest.t(30)) as c:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                b = c.recv(65536)
                if not b:
                    break
                answer += b
        results[key] = answer.decode()

    def test_raw_relays_conversations_with_half_close(self):
        # Both peers on loopback: auto copies (faster there); --splice on forces splice(2).
        for mode, how in (("auto", "(copy)"), ("on", "(splice)"), ("off", "(copy)")):
            with self.subTest(splice=mode):
                sport = self.summing_server()
                br, bport = self.bridge_listening_a("127.0.0.1:%d" % sport, "--raw", "-v", "--splice", mode)
                payloads = [os.urandom(size) for size in (0, 1, 4096, 3 * MiB, 8 * MiB)]
                results = {}
                threads = [threading.Thread(target=self.converse, args=(bport, p, results, i))
                           for i, p in enumerate(payloads)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join(dltest.t(60))
                for i, p in enumerate(payloads):
                    self.assertEqual(results.get(i), hashlib.sha256(p).hexdigest(), "client %d" % i)
                dltest.wait_until(lambda: br.stderr().count("closed ") >= len(payloads), 10, "all pairs closed")
                self.assertIn(how, br.stderr())
                br.signal(signal.SIGTERM)
                self.assertExited(br, 10, 130)
                self.assertNoCrash(br)

    def test_raw_with_latency_and_cuts(self):
        sport = self.summing_server()
        br, bport = self.bridge_listening_a("127.0.0.1:%d" % sport, "--raw", "-v", "--fault", "b:latency=150ms")
        results = {}
        t0 = time.monotonic()
        self.converse(bport, b"x" * 1000, results, 0)
        self.assertGreaterEqual(time.monotonic() - t0, 0.15)
        self.assertEqual(results[0], hashlib.sha256(b"x" * 1000).hexdigest())
        br.signal(signal.SIGTERM)
        self.assertExited(br, 10, 130)
        # A cut resets both connections of the pair: the client sees a reset, not an answer.
        br2, bport2 = self.bridge_listening_a("127.0.0.1:%d" % sport, "--raw", "-v", "--fault", "cut=64K",
                                              name="bridge2")
        with self.assertRaises((ConnectionResetError, BrokenPipeError)):
            self.converse(bport2, os.urandom(4 * MiB), results, 1)
        dltest.wait_until(lambda: "fault cut" in br2.stderr(), 10, "the cut reported")
        br2.signal(signal.SIGTERM)
        self.assertExited(br2, 10, 130)

    def test_raw_both_sides_dial(self):
        # Two listeners that cannot reach each other; the bridge dials both and relays once.
        la = socket.create_server(("127.0.0.1", 0))
        lb = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(la.close)
        self.addCleanup(lb.close)
        br = self.bridge("127.0.0.1:%d" % la.getsockname()[1], "127.0.0.1:%d" % lb.getsockname()[1], "--raw")
        la.settimeout(dltest.t(10))
        lb.settimeout(dltest.t(10))
        ca, _ = la.accept()
        cb, _ = lb.accept()
        data = os.urandom(MiB)
        ca.sendall(data)
        ca.shutdown(socket.SHUT_WR)
        got = b""
        cb.settimeout(dltest.t(10))
        while len(got) < len(data):
            b = cb.recv(65536)
            if not b:
                break
            got += b
        self.assertEqual(got, data)
        self.assertEqual(cb.recv(10), b"")      # the half-close came through
        cb.sendall(b"bye")
        cb.close()
        self.assertEqual(ca.recv(10), b"bye")
        ca.close()
        self.assertExited(br, 20, 0)

    def fanout_bridge(self):
        """dlbridge --raw --fanout with side a listening and side b dialing a source socket of the
        test's own; returns (bridge, side a's port, the source's accepted connection)."""
        src = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(src.close)
        pf = self.path("fan-port")
        br = self.bridge("listen:127.0.0.1:0", "127.0.0.1:%d" % src.getsockname()[1], "--raw", "--fanout",
                         "--port-file-a", pf, "-v")
        port = wait_port_file(pf, br)
        src.settimeout(dltest.t(10))
        up, _ = src.accept()
        return br, port, up

    def test_raw_fanout_to_three_clients(self):
        # Side b is a source that speaks to whoever is there and listens to everyone.
        br, port, up = self.fanout_bridge()
        clients = [socket.create_connection(("127.0.0.1", port), timeout=dltest.t(20)) for _ in range(3)]
        dltest.wait_until(lambda: br.stderr().count("joined") >= 3, 10, "three clients joined")
        data = os.urandom(2 * MiB)
        sender = threading.Thread(target=lambda: (up.sendall(data), up.shutdown(socket.SHUT_WR)), daemon=True)
        sender.start()
        for i, c in enumerate(clients):
            c.sendall(b"hello from %d\n" % i)
        got = [b""] * 3
        for i, c in enumerate(clients):
            while True:
                b = c.recv(65536)
                if not b:
                    break
                got[i] += b
        for i in range(3):
            self.assertEqual(hashlib.sha256(got[i]).hexdigest(), hashlib.sha256(data).hexdigest(), "client %d" % i)
        # What every client sent reached b, each line whole.
        up.settimeout(dltest.t(10))
        received = b""
        while received.count(b"\n") < 3:
            b = up.recv(4096)
            if not b:
                break
            received += b
        self.assertEqual(sorted(received.splitlines()), [b"hello from %d" % i for i in range(3)])
        for c in clients:
            c.close()
        up.close()
        self.assertExited(br, 20, 0)
        self.assertNoCrash(br)

    def test_raw_both_listen_a_probe_is_never_paired(self):
        pa, pb = self.path("pa"), self.path("pb")
        br = self.bridge("listen:127.0.0.1:0", "listen:127.0.0.1:0", "--raw", "-v",
                         "--port-file-a", pa, "--port-file-b", pb)
        porta, portb = wait_port_file(pa, br), wait_port_file(pb, br)
        for _ in range(70):   # more than the 64 that may wait: probes must not pile up
            socket.create_connection(("127.0.0.1", porta)).close()
        dltest.wait_until(lambda: br.stderr().count("left before a partner came") >= 70, 20, "probes noticed")
        a = socket.create_connection(("127.0.0.1", porta), timeout=dltest.t(10))
        b = socket.create_connection(("127.0.0.1", portb), timeout=dltest.t(10))
        a.sendall(b"ping")
        self.assertEqual(b.recv(4), b"ping")
        b.sendall(b"pong")
        self.assertEqual(a.recv(4), b"pong")
        a.close()
        b.close()
        br.signal(signal.SIGTERM)
        self.assertExited(br, 10, 130)

    def test_raw_fanout_clients_that_leave_are_dropped(self):
        br, port, up = self.fanout_bridge()
        for _ in range(50):   # port probes while b is quiet
            socket.create_connection(("127.0.0.1", port)).close()
        dltest.wait_until(lambda: br.stderr().count("left (closed)") >= 50, 20, "probes dropped")
        up.close()            # b ends and nobody is left: the bridge is done
        self.assertExited(br, 20, 0)

    def message_fanout(self, clients, *args, recv_args=()):
        """dlbridge --fanout (message mode): side a listens for `clients` dlrecv dialers, side b
        listens for the sender. Returns (bridge, side b's port, [(dlrecv, output path)]) once every
        client's session is up."""
        pa, pb = self.path("fan-a"), self.path("fan-b")
        br = self.bridge("listen:127.0.0.1:0", "listen:127.0.0.1:0", "--fanout", "--port-file-a", pa,
                         "--port-file-b", pb, "-v", *args)
        porta, portb = wait_port_file(pa, br), wait_port_file(pb, br)
        recvs = []
        for i in range(clients):
            out = self.path("fan-out-%d" % i)
            recvs.append((self.dlrecv("127.0.0.1:%d" % porta, "-o", out, *recv_args, name="dlrecv%d" % i), out))
        dltest.wait_until(lambda: br.stderr().count(": connected to ") >= clients, 20, "%d clients connected" % clients)
        return br, portb, recvs

    def test_message_fanout_to_three_clients_one_killed(self):
        # Four native clients, each its own session on the one listening port. The fourth stops
        # reading, then is killed: until its session expires it holds the others back (the
        # slowest client sets the pace, memory stays bounded), after that the rest finish.
        size = 40 * MiB
        src = self.path("in")
        dltest.make_random_file(src, size)
        br, portb, recvs = self.message_fanout(4, "--reconnect", "1s")
        victim = recvs[3][0]
        victim.signal(signal.SIGSTOP)
        send = self.dlsend("127.0.0.1:%d" % portb, "-f", src)
        size_of = lambda p: os.path.getsize(p) if os.path.exists(p) else 0  # noqa: E731
        dltest.wait_until(lambda: all(size_of(out) >= 2 * MiB for _, out in recvs[:3]), 30, "the others started")
        # Held back: nobody is more than the bridge's buffers ahead of the stopped client.
        self.assertIsNone(send.wait(dltest.t(0.5)), "dlsend finished while a client was stopped\n" + self.P.describe())
        self.assertTrue(all(size_of(out) < size for _, out in recvs[:3]), [size_of(o) for _, o in recvs])
        victim.kill()
        self.assertExitCodes(120, (send, 0), *[(p, 0) for p, _ in recvs[:3]], (br, 0))
        for i, (p, out) in enumerate(recvs[:3]):
            self.assertSameFile(src, out)
            self.assertNoCrash(p)
        err = br.stderr()
        self.assertEqual(err.count("dropped from the fanout"), 1, err)
        self.assertNoCrash(br)

    def test_message_fanout_cut_and_corrupted_client_gets_the_replay_exact(self):
        # b's messages go to the clients from b's ring (no copy each): a client whose connection
        # is cut twice and corrupted once gets the replays from there, byte-exact, and so does
        # the client beside it.
        size = 24 * MiB
        src = self.path("in")
        dltest.make_random_file(src, size)
        pa, pb = self.path("fan-a"), self.path("fan-b")
        br = self.bridge("listen:127.0.0.1:0", "listen:127.0.0.1:0", "--fanout", "--port-file-a", pa,
                         "--port-file-b", pb, "-v")
        porta, portb = wait_port_file(pa, br), wait_port_file(pb, br)
        relay = FaultRelay(target=("127.0.0.1", porta))
        self.addCleanup(relay.close)
        relay.cut_after(3 * MiB, direction="down")
        relay.corrupt_after(4 * MiB, direction="down")
        relay.cut_after(5 * MiB, direction="down")
        outs = [self.path("fan-out-0"), self.path("fan-out-1")]
        recvs = [self.dlrecv("127.0.0.1:%d" % porta, "-o", outs[0], name="direct"),
                 self.dlrecv("127.0.0.1:%d" % relay.port, "-o", outs[1], "-v", name="relayed")]
        dltest.wait_until(lambda: br.stderr().count(": connected to ") >= 2, 20, "two clients connected")
        send = self.dlsend("127.0.0.1:%d" % portb, "-f", src)
        self.assertExitCodes(120, (send, 0), *[(p, 0) for p in recvs], (br, 0))
        for out in outs:
            self.assertSameFile(src, out)
        self.assertEqual(relay.armed, 0, "not every fault fired")
        self.assertGreaterEqual(recvs[1].stderr().count("resumed"), 3, recvs[1].stderr())
        self.assertNoCrash(br)

    def test_message_fanout_clients_send_to_b_and_resume_alone(self):
        # Lines from every client reach b whole and in each client's order. One client's
        # connection is cut by a relay and resumes into its own session while the others flow
        # on; a stranger replaying that client's first HELLO is refused alone.
        pa, pb = self.path("fan-a"), self.path("fan-b")
        br = self.bridge("listen:127.0.0.1:0", "listen:127.0.0.1:0", "--fanout", "--port-file-a", pa,
                         "--port-file-b", pb, "-v")
        porta, portb = wait_port_file(pa, br), wait_port_file(pb, br)
        out_b = self.path("out-b")
        recv_b = self.dlrecv("127.0.0.1:%d" % portb, "--lines", "-o", out_b, name="recv-b")
        relay = FaultRelay(target=("127.0.0.1", porta))
        self.addCleanup(relay.close)
        relay.cut_after(300 * 1024, direction="up")
        # The senders read stdin: every one is connected before any of them ends (b's direction
        # ends once b's has and every client attached has ended its own).
        sends, expected, data = [], [], []
        for i in range(3):
            lines = b"".join(b"client %d line %d %s\n" % (i, n, b"x" * (n % 50)) for n in range(30000))
            data.append(lines)
            expected += lines.splitlines()
            port = relay.port if i == 1 else porta
            sends.append(self.dlsend("127.0.0.1:%d" % port, "--lines", "-v", stdin=subprocess.PIPE, name="send%d" % i))
        dltest.wait_until(lambda: br.stderr().count(": connected to ") >= 4, 20, "three clients and b connected")
        for i in range(3):
            self.feed(sends[i].popen.stdin, [data[i]], close=True)
        dltest.wait_until(lambda: relay.cuts >= 1 and len(relay.captured.get(0, b"")) >= 104, 30, "the cut\n" + self.P.describe())
        hello = bytes(relay.captured[0])[:104]   # header (32) + HELLO (72): the client's first words
        with socket.create_connection(("127.0.0.1", porta), timeout=dltest.t(10)) as s:
            s.sendall(hello)
            s.settimeout(dltest.t(10))
            answer = b""
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    answer += b
            except OSError:
                pass
        self.assertEqual(answer[:1], b"\xd7", answer)       # an ERROR frame, then the close
        self.assertIn(b"stale-hello", answer)
        self.assertExitCodes(120, *[(p, 0) for p in sends])
        dltest.wait_until(lambda: os.path.exists(out_b) and open(out_b, "rb").read().count(b"\n") >= len(expected),
                          30, "all lines at b")
        with open(out_b, "rb") as f:
            got = f.read().splitlines()
        self.assertEqual(len(got), len(expected))
        for i in range(3):
            mine = [ln for ln in got if ln.startswith(b"client %d " % i)]
            self.assertEqual(mine, [ln for ln in expected if ln.startswith(b"client %d " % i)], "client %d" % i)
        err = br.stderr()
        self.assertEqual(err.count("session resumed"), 1, err)
        self.assertIn("rejected connection", err)
        self.assertIn("session resumed", sends[1].stderr())
        # b's stream ended at once (dlrecv sends nothing) and every client ended its own: the
        # bridge ends b's direction too, and all is done.
        self.assertExitCodes(20, (recv_b, 0), (br, 0))
        self.assertNoCrash(br)

    def test_message_fanout_late_client_gets_what_comes_after_it(self):
        br, portb, recvs = self.message_fanout(1, recv_args=("--lines",))
        lines = [b"line %d\n" % n for n in range(40000)]
        first, second = b"".join(lines[:20000]), b"".join(lines[20000:])
        send = self.dlsend("127.0.0.1:%d" % portb, "--lines", stdin=subprocess.PIPE)
        self.feed(send.popen.stdin, [first], close=False)
        out0 = recvs[0][1]
        dltest.wait_until(lambda: os.path.exists(out0) and os.path.getsize(out0) >= len(first), 30,
                          "the first half at the first client\n" + self.P.describe())
        out1 = self.path("late-out")
        late = self.dlrecv("127.0.0.1:%d" % wait_port_file(self.path("fan-a")), "--lines", "-o", out1, name="late")
        dltest.wait_until(lambda: br.stderr().count(": connected to ") >= 3, 20, "the late client and b connected")
        self.feed(send.popen.stdin, [second], close=True)
        self.assertExitCodes(60, (send, 0), (recvs[0][0], 0), (late, 0), (br, 0))
        with open(out0, "rb") as f:
            self.assertEqual(f.read(), first + second)
        with open(out1, "rb") as f:
            got = f.read()
        # Whole messages from the point it joined to the end: never a duplicate, never a gap.
        self.assertTrue((first + second).endswith(got), got[:100])
        self.assertTrue(got.startswith(b"line "), got[:100])
        self.assertGreaterEqual(len(got), len(second))

    def test_message_fanout_stopped_client_holds_the_rest_for_timeout_plus_reconnect(self):
        # dlbridge(1): a client that vanishes (here: stopped, its connection still open) stalls
        # the others, once the buffers are full, for at most its receive timeout plus its
        # reconnect window; then it is dropped and the rest finish.
        size = 24 * MiB
        src = self.path("in")
        dltest.make_random_file(src, size)
        br, portb, recvs = self.message_fanout(3, "--timeout", "1s", "--reconnect", "1s", "--window", "1M")
        victim = recvs[2][0]
        victim.signal(signal.SIGSTOP)
        self.addCleanup(victim.kill)
        send = self.dlsend("127.0.0.1:%d" % portb, "-f", src)
        self.assertExitCodes(30, (send, 0), *[(p, 0) for p, _ in recvs[:2]], (br, 0))
        for _, out in recvs[:2]:
            self.assertSameFile(src, out)
        err = br.stderr()
        self.assertIn("nothing received for 1000 ms", err)
        self.assertEqual(err.count("dropped from the fanout"), 1, err)

    def test_message_fanout_never_acknowledges_what_no_client_has(self):
        # The only client takes the first half, stops (so it settles nothing more), and is
        # killed. What it got but never settled is held for the next client, which starts
        # with it: b's sender must not exit 0 while no receiver has the second half, and the
        # two clients' outputs together are the stream, without a gap or a duplicate.
        br, portb, recvs = self.message_fanout(1, "--reconnect", "1s", recv_args=("--lines",))
        lines = [b"line %d\n" % n for n in range(40000)]
        first, second = b"".join(lines[:20000]), b"".join(lines[20000:])
        send = self.dlsend("127.0.0.1:%d" % portb, "--lines", stdin=subprocess.PIPE)
        self.feed(send.popen.stdin, [first], close=False)
        victim, out0 = recvs[0]
        stats = lambda: br.signal(signal.SIGUSR1) or br.stderr()  # noqa: E731
        dltest.wait_until(lambda: "b->a 20000 msgs, 0 held" in stats(), 30,
                          "the first half settled by the first client\n" + self.P.describe(), interval=0.2)
        victim.signal(signal.SIGSTOP)
        self.feed(send.popen.stdin, [second], close=True)
        dltest.wait_until(lambda: "b->a 40000 msgs" in stats(), 30,
                          "the second half at the bridge\n" + self.P.describe(), interval=0.2)
        victim.kill()
        dltest.wait_until(lambda: "dropped from the fanout" in br.stderr(), 30, "the client dropped")
        self.assertIsNone(send.wait(dltest.t(1)),
                          "dlsend finished though no client has the second half\n" + self.P.describe())
        out1 = self.path("next-out")
        late = self.dlrecv("127.0.0.1:%d" % wait_port_file(self.path("fan-a")), "--lines", "-o", out1, name="next")
        self.assertExitCodes(60, (send, 0), (late, 0), (br, 0))
        with open(out0, "rb") as f:
            got0 = f.read()
        with open(out1, "rb") as f:
            got1 = f.read()
        self.assertEqual(got0 + got1, first + second, (len(got0), len(got1)))
        self.assertNoCrash(br)

    def test_message_fanout_out_of_descriptors_says_so_once_and_serves_on(self):
        # A crowd holds more connections than the bridge has descriptors: the listener pauses
        # accepting (the backlog holds the rest), says so once rather than ten times a second,
        # and serves a real client once the crowd is gone.
        pa, pb = self.path("fan-a"), self.path("fan-b")
        br = self.P.start(["/bin/sh", "-c", 'ulimit -n 40 && exec "$0" "$@"', DLBRIDGE, "listen:127.0.0.1:0",
                           "listen:127.0.0.1:0", "--fanout", "--port-file-a", pa, "--port-file-b", pb, "-v"],
                          name="dlbridge")
        porta, portb = wait_port_file(pa, br), wait_port_file(pb, br)
        crowd = [socket.create_connection(("127.0.0.1", porta), timeout=dltest.t(10)) for _ in range(60)]
        dltest.wait_until(lambda: "Too many open files" in br.stderr(), 10, "descriptors exhausted\n" + self.P.describe())
        self.assertIsNone(br.wait(dltest.t(2)), "the bridge ended while out of descriptors\n" + self.P.describe())
        for s in crowd:
            s.close()
        out = self.path("out")
        recv = self.dlrecv("127.0.0.1:%d" % porta, "--lines", "-o", out, "-w", "20")
        dltest.wait_until(lambda: ": connected to " in br.stderr(), 20, "the client\n" + self.P.describe())
        send = self.dlsend("127.0.0.1:%d" % portb, "--lines", stdin=subprocess.PIPE)
        self.feed(send.popen.stdin, [b"one\ntwo\n"], close=True)
        self.assertExitCodes(30, (send, 0), (recv, 0), (br, 0))
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"one\ntwo\n")
        self.assertLessEqual(br.stderr().count("Too many open files"), 2, br.stderr())

    def test_message_fanout_wait_bounds_the_wait_for_the_first_client(self):
        # -w: "a listening side waits this long for its first peer". b's peer is there; no
        # client ever comes to a: the bridge gives up like any listener (exit 7), one line,
        # and tells b's peer it stopped.
        pa, pb = self.path("fan-a"), self.path("fan-b")
        br = self.bridge("listen:127.0.0.1:0", "listen:127.0.0.1:0", "--fanout", "--port-file-a", pa,
                         "--port-file-b", pb, "-w", "1")
        wait_port_file(pa, br)
        portb = wait_port_file(pb, br)
        send = self.dlsend("127.0.0.1:%d" % portb, "--lines", stdin=subprocess.PIPE)
        send.popen.stdin.write(b"held\n")
        send.popen.stdin.flush()
        self.assertExited(br, 20, dltest.EXIT_TIMEOUT)
        self.assertOneLineError(br, "dlbridge", "no peer connected within 1.")
        self.assertExited(send, 20)
        self.assertNotEqual(send.returncode, 0, send.describe())
        send.popen.stdin.close()

    def test_usage_errors(self):
        for args, needle in ((["listen:0", "127.0.0.1:1", "--fault", "speed=1"], "unknown fault"),
                             (["listen:0", "127.0.0.1:1", "--fault", "cut=0"], "cut"),
                             (["listen:0"], "required"),
                             (["listen:0", "127.0.0.1:1", "--proto-b", "auto"], "side b"),
                             (["listen:0", "127.0.0.1:1", "--splice", "on"], "only with --raw"),
                             (["listen:0", "127.0.0.1:1", "--raw", "--splice", "maybe"], "expected auto, on or off"),
                             (["listen:0", "127.0.0.1:1", "--fanout", "--proto-a", "classic"], "native"),
                             (["listen:0", "127.0.0.1:1", "--fanout", "--fault", "cut=1M"], "--fault"),
                             (["127.0.0.1:1", "listen:0", "--fanout"], "side a must listen")):
            p = self.bridge(*args)
            self.assertExited(p, 10, 2)
            self.assertOneLineError(p, "dlbridge", needle)


if __name__ == "__main__":
    dltest.main()
