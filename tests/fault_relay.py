#!/usr/bin/python3
"""A fault-injecting TCP relay on loopback, driven from the test's own process.

    relay = FaultRelay(target=("127.0.0.1", port))   # listens on 127.0.0.1:0
    relay.port
    relay.cut_after(nbytes, direction="up")      # RST both sockets after nbytes more forwarded bytes
    relay.cut_all()                              # RST every live connection pair now
    relay.corrupt_after(nbytes, direction="up")  # xor 0xFF the byte after nbytes more forwarded bytes
    relay.pause(True / False)                    # stop / resume accepting and forwarding
    relay.handshake_faults(n, corrupt_at=K, delay=S, direction="up")
                                                 # the next n connections: flip byte K of the
                                                 # direction's stream and/or hold its first
                                                 # bytes S seconds (faults in the handshake)
    relay.connections, relay.bytes_up, relay.bytes_down, relay.cuts, relay.corruptions
    relay.close()

"up" is client -> target, "down" is target -> client. Faults are counted in bytes (not time),
across whichever connection carries that direction next, so they are deterministic with respect
to the byte stream. A cut forwards exactly the bytes before the cut point, then resets both sides
(SO_LINGER 0 => RST). Nothing is lost, duplicated or reordered otherwise.

Implementation: one thread running a selectors loop over non-blocking sockets; control methods
post commands to that thread through a socketpair and (where useful) wait for them to be applied.

Run as a script for manual use:  fault_relay.py [--listen PORT] TARGET_HOST:TARGET_PORT
then type commands on stdin: "cut N [up|down]", "corrupt N [up|down]", "cutall", "pause",
"resume", "stats", "quit".
"""

import collections
import errno
import os
import selectors
import socket
import struct
import sys
import threading
import time

BUF = 256 * 1024
CAPTURE = 4096   # how much of each connection's first client bytes .captured keeps (replay tests)
_DIRS = ("up", "down")


def _rst_close(sock):
    """Close sock abruptly: SO_LINGER {1, 0} makes close() send RST and drop queued data."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Half:
    """One direction of a pair: bytes read from src, waiting to be written to dst."""

    __slots__ = ("name", "src", "dst", "buf", "eof", "shut", "cut_pending", "hold_until",
                 "corrupt_at", "seen")

    def __init__(self, name, src, dst):
        self.name = name          # "up" or "down"
        self.src = src
        self.dst = dst
        self.buf = bytearray()
        self.eof = False          # src said EOF
        self.shut = False         # we propagated the EOF (shutdown(SHUT_WR) on dst)
        self.cut_pending = False  # RST the pair once buf is drained
        self.hold_until = 0.0     # forward nothing before this time (monotonic)
        self.corrupt_at = None    # flip this byte of the direction's stream
        self.seen = 0             # bytes read from src so far


class _Pair:
    __slots__ = ("id", "client", "server", "up", "down", "closed")

    def __init__(self, pid, client, server):
        self.id = pid
        self.client = client
        self.server = server
        self.up = _Half("up", client, server)
        self.down = _Half("down", server, client)
        self.closed = False


class FaultRelay:
    def __init__(self, target, listen=("127.0.0.1", 0), connect_timeout=5.0):
        self.target = tuple(target)
        self.connect_timeout = connect_timeout
        fam = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self._lsock = socket.socket(fam, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(listen)
        self._lsock.listen(64)
        self._lsock.setblocking(False)
        self.port = self._lsock.getsockname()[1]

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        # Armed faults per direction: FIFO of [kind, remaining] ; kind in {"cut", "corrupt"}.
        self._faults = {d: collections.deque() for d in _DIRS}
        self._paused = False
        self._closing = False
        self._hs_faults = None      # [count, corrupt_at, delay, direction]
        self.connections = 0        # accepted client connections so far
        self.failed_connects = 0    # accepted clients whose target connect failed
        self.bytes_up = 0           # bytes written to the target
        self.bytes_down = 0         # bytes written to the client
        self.cuts = 0               # cuts performed (cut_after fired, or pairs reset by cut_all)
        self.corruptions = 0        # bytes flipped
        self.log = []               # (time, event) for debugging
        self.captured = {}          # pair id -> the first CAPTURE bytes the client sent

        self._pairs = {}
        self._next_id = 0
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._cmds = collections.deque()
        self._thread = threading.Thread(target=self._run, name="FaultRelay:%d" % self.port,
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public control API
    def cut_after(self, nbytes, direction="up"):
        self._arm("cut", nbytes, direction)

    def corrupt_after(self, nbytes, direction="up"):
        self._arm("corrupt", nbytes, direction)

    def handshake_faults(self, count, corrupt_at=None, delay=0.0, direction="up"):
        """For the next `count` accepted connections: flip the byte at offset corrupt_at of
        `direction`'s stream (None: none) and forward nothing of it before `delay` seconds."""
        if direction not in _DIRS:
            raise ValueError("direction must be 'up' or 'down'")
        with self._lock:
            self._hs_faults = [int(count), corrupt_at, float(delay), direction]

    def cut_all(self, timeout=5.0):
        self._call("cut_all", timeout)

    def pause(self, paused=True, timeout=5.0):
        self._call(("pause", bool(paused)), timeout)

    def disarm(self):
        with self._lock:
            for d in _DIRS:
                self._faults[d].clear()

    @property
    def armed(self):
        """Number of faults armed and not yet fired."""
        with self._lock:
            return sum(len(q) for q in self._faults.values())

    @property
    def live(self):
        with self._lock:
            return len(self._pairs)

    def wait_for(self, predicate, timeout, what="condition"):
        """Wait (bounded) until predicate(self) is true; state changes notify, no fixed sleeps."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("FaultRelay: timed out after %.1fs waiting for %s "
                                       "(connections=%d cuts=%d up=%d down=%d)"
                                       % (timeout, what, self.connections, self.cuts,
                                          self.bytes_up, self.bytes_down))
                self._cond.wait(min(left, 0.5))

    def wait_connections(self, n, timeout=30.0):
        self.wait_for(lambda r: r.connections >= n, timeout, "connections >= %d" % n)

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._post(("close",))
        self._thread.join(10)
        for s in (self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ internals
    def _arm(self, kind, nbytes, direction):
        if direction not in _DIRS:
            raise ValueError("direction must be 'up' or 'down'")
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        with self._lock:
            self._faults[direction].append([kind, int(nbytes)])

    def _post(self, cmd):
        self._cmds.append(cmd)
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass

    def _call(self, what, timeout):
        done = threading.Event()
        if isinstance(what, tuple):
            self._post(what + (done,))
        else:
            self._post((what, done))
        if threading.current_thread() is not self._thread:
            if not done.wait(timeout):
                raise TimeoutError("FaultRelay: command %r not applied" % (what,))

    def _note(self, event):
        self.log.append((time.monotonic(), event))

    def _notify(self):
        with self._cond:
            self._cond.notify_all()

    def _run(self):
        sel = self._sel
        sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        sel.register(self._lsock, selectors.EVENT_READ, ("accept", None))
        try:
            while True:
                holding = any(h.hold_until and h.buf for p in self._pairs.values()
                              for h in (p.up, p.down))
                for key, mask in sel.select(0.01 if holding else 1.0):
                    kind, obj = key.data
                    if kind == "wake":
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
                    elif kind == "accept":
                        self._accept()
                    else:  # ("sock", (pair, sock))
                        pair, sock = obj
                        if pair.closed:
                            continue
                        self._service(pair, sock, mask)
                if holding:
                    for pair in list(self._pairs.values()):
                        for h in (pair.up, pair.down):
                            if h.hold_until and h.buf and time.monotonic() >= h.hold_until:
                                h.hold_until = 0.0
                                self._flush(pair, h)
                        if not pair.closed:
                            self._after_io(pair)
                while self._cmds:
                    cmd = self._cmds.popleft()
                    if cmd[0] == "close":
                        return
                    self._command(cmd)
        finally:
            for pair in list(self._pairs.values()):
                self._close_pair(pair, rst=True, count_cut=False)
            try:
                sel.close()
            except Exception:
                pass
            try:
                self._lsock.close()
            except OSError:
                pass
            self._notify()

    def _command(self, cmd):
        name, done = cmd[0], cmd[-1]
        if name == "cut_all":
            for pair in list(self._pairs.values()):
                self._note("cut_all pair %d" % pair.id)
                self._close_pair(pair, rst=True, count_cut=True)
        elif name == "pause":
            self._paused = cmd[1]
            self._note("pause %s" % self._paused)
            try:
                if self._paused:
                    self._sel.unregister(self._lsock)
                else:
                    self._sel.register(self._lsock, selectors.EVENT_READ, ("accept", None))
            except (KeyError, ValueError):
                pass
            for pair in list(self._pairs.values()):
                self._update(pair)
        done.set()
        self._notify()

    def _accept(self):
        while not self._paused:
            try:
                client, _ = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            with self._lock:
                # Claim this connection's handshake faults in the same step that counts it: a
                # test that waits for connection n and then arms faults for the next ones must
                # never see them land on connection n itself.
                self.connections += 1
                hs = None
                if self._hs_faults and self._hs_faults[0] > 0:
                    self._hs_faults[0] -= 1
                    hs = list(self._hs_faults)
            self._note("accept #%d" % self.connections)
            try:
                fam = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
                server = socket.socket(fam, socket.SOCK_STREAM)
                server.settimeout(self.connect_timeout)
                server.connect(self.target)
            except OSError as e:
                self._note("target connect failed: %s" % e)
                with self._lock:
                    self.failed_connects += 1
                try:
                    server.close()
                except Exception:
                    pass
                _rst_close(client)
                self._notify()
                continue
            for s in (client, server):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(self._next_id, client, server)
            self._next_id += 1
            if hs:
                h = pair.up if hs[3] == "up" else pair.down
                h.corrupt_at = hs[1]
                if hs[2] > 0:
                    h.hold_until = time.monotonic() + hs[2]
            with self._lock:
                self._pairs[pair.id] = pair
            self._sel.register(client, selectors.EVENT_READ, ("sock", (pair, client)))
            self._sel.register(server, selectors.EVENT_READ, ("sock", (pair, server)))
            self._update(pair)
            self._notify()

    def _update(self, pair):
        """Recompute selector interest for both sockets of pair."""
        if pair.closed:
            return
        for sock in (pair.client, pair.server):
            ev = 0
            if not self._paused:
                for h in (pair.up, pair.down):
                    if h.src is sock and not h.eof and not h.cut_pending and len(h.buf) < BUF:
                        ev |= selectors.EVENT_READ
                    if h.dst is sock and h.buf and not h.hold_until:
                        ev |= selectors.EVENT_WRITE
            try:
                if ev:
                    self._sel.modify(sock, ev, ("sock", (pair, sock)))
                else:
                    # Keep it registered for nothing: selectors needs a mask, so unregister.
                    self._sel.unregister(sock)
            except KeyError:
                if ev:
                    self._sel.register(sock, ev, ("sock", (pair, sock)))
            except ValueError:
                pass

    def _service(self, pair, sock, mask):
        try:
            if mask & selectors.EVENT_WRITE:
                for h in (pair.up, pair.down):
                    if h.dst is sock and h.buf:
                        self._flush(pair, h)
                        if pair.closed:
                            return
            if mask & selectors.EVENT_READ:
                for h in (pair.up, pair.down):
                    if h.src is sock and not h.eof and not h.cut_pending:
                        self._fill(pair, h)
                        if pair.closed:
                            return
                        if h.buf:
                            self._flush(pair, h)  # opportunistic write
                            if pair.closed:
                                return
        except OSError as e:
            # A peer reset (or other hard error): propagate abruptly to the other side.
            self._note("pair %d error: %s" % (pair.id, e))
            self._close_pair(pair, rst=True, count_cut=False)
            return
        self._after_io(pair)

    def _fill(self, pair, h):
        room = BUF - len(h.buf)
        if room <= 0:
            return
        try:
            data = h.src.recv(room)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            h.eof = True
            self._note("pair %d %s EOF" % (pair.id, h.name))
            return
        if h.name == "up":
            cap = self.captured.setdefault(pair.id, bytearray())
            if len(cap) < CAPTURE:
                cap += data[:CAPTURE - len(cap)]
        data = self._apply_faults(pair, h, data)
        if h.corrupt_at is not None and h.seen <= h.corrupt_at < h.seen + len(data):
            b = bytearray(data)
            b[h.corrupt_at - h.seen] ^= 0xFF
            data = bytes(b)
            h.corrupt_at = None
            with self._lock:
                self.corruptions += 1
            self._note("pair %d %s handshake corrupt" % (pair.id, h.name))
        h.seen += len(data)
        h.buf += data

    def _apply_faults(self, pair, h, data):
        """Apply armed faults of this direction to data (the next len(data) stream bytes)."""
        with self._lock:
            q = self._faults[h.name]
            if not q:
                return data
            out = bytearray(data)
            pos = 0  # bytes of data already accounted for against the queue head
            while q:
                kind, remaining = q[0]
                left = len(out) - pos
                if remaining >= left and not (kind == "cut" and remaining == left):
                    q[0][1] = remaining - left
                    break
                at = pos + remaining
                q.popleft()
                if kind == "corrupt":
                    out[at] ^= 0xFF
                    self.corruptions += 1
                    self._note("pair %d %s corrupt at +%d" % (pair.id, h.name, at))
                    pos = at + 1
                    # later faults count from the byte after the flipped one
                else:
                    del out[at:]
                    h.cut_pending = True
                    self._note("pair %d %s cut armed at +%d" % (pair.id, h.name, at))
                    break
            return bytes(out)

    def _flush(self, pair, h):
        if self._paused or not h.buf:
            return
        if h.hold_until:
            if time.monotonic() < h.hold_until:
                return
            h.hold_until = 0.0
        try:
            n = h.dst.send(h.buf)
        except (BlockingIOError, InterruptedError):
            return
        del h.buf[:n]
        with self._lock:
            if h.name == "up":
                self.bytes_up += n
            else:
                self.bytes_down += n

    def _after_io(self, pair):
        for h in (pair.up, pair.down):
            if h.cut_pending and not h.buf:
                self._note("pair %d cut (%s)" % (pair.id, h.name))
                self._close_pair(pair, rst=True, count_cut=True)
                return
            if h.eof and not h.buf and not h.shut:
                h.shut = True
                try:
                    h.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        if pair.up.shut and pair.down.shut:
            self._close_pair(pair, rst=False, count_cut=False)
            return
        self._update(pair)
        self._notify()

    def _close_pair(self, pair, rst, count_cut):
        if pair.closed:
            return
        pair.closed = True
        with self._lock:  # account first: observers may react to the RST immediately
            self._pairs.pop(pair.id, None)
            if count_cut:
                self.cuts += 1
        for s in (pair.client, pair.server):
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            if rst:
                _rst_close(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass
        self._notify()


def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="fault-injecting TCP relay (manual use)")
    ap.add_argument("--listen", type=int, default=0, help="local port (default: pick one)")
    ap.add_argument("target", help="HOST:PORT to forward to")
    a = ap.parse_args(argv)
    host, _, port = a.target.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    relay = FaultRelay((host, int(port)), listen=("127.0.0.1", a.listen))
    print("relay listening on 127.0.0.1:%d -> %s:%s" % (relay.port, host, port), flush=True)
    print("commands: cut N [up|down] | corrupt N [up|down] | cutall | pause | resume | stats | quit",
          flush=True)
    try:
        for line in sys.stdin:
            w = line.split()
            if not w:
                continue
            try:
                if w[0] == "cut":
                    relay.cut_after(int(w[1]), w[2] if len(w) > 2 else "up")
                elif w[0] == "corrupt":
                    relay.corrupt_after(int(w[1]), w[2] if len(w) > 2 else "up")
                elif w[0] == "cutall":
                    relay.cut_all()
                elif w[0] == "pause":
                    relay.pause(True)
                elif w[0] == "resume":
                    relay.pause(False)
                elif w[0] == "quit":
                    break
                elif w[0] != "stats":
                    print("unknown command", flush=True)
                    continue
            except (IndexError, ValueError) as e:
                print("bad command: %s" % e, flush=True)
                continue
            print("connections=%d live=%d up=%d down=%d cuts=%d corruptions=%d armed=%d"
                  % (relay.connections, relay.live, relay.bytes_up, relay.bytes_down,
                     relay.cuts, relay.corruptions, relay.armed), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        relay.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
