"""datalink: Python binding (ctypes) of the Datalink library, with the seed binding's shape.

    from datalink import Datalink, Databridge

    server = Datalink(listen="127.0.0.1:0")           # or Datalink(port=9000): all addresses
    client = Datalink("127.0.0.1", server.port)
    client.write(b"bytes")                            # timestamp: time.time()
    client.write("text, UTF-8 (any characters)")
    client.write(numpy_array, timestamp=12.5)         # raw C-order bytes, no copy when contiguous
    payload, size, ts = server.read(timeout=1.0)      # or None
    array, ts = server.read_np((1000, 1000, 3), numpy.float32)

Units: the constructor's ``timeout`` is the link's receive timeout in MILLISECONDS, as in the
seed (<= 0 disables it); the ``timeout`` of read()/read_np()/flush() is in SECONDS (None:
wait forever), as elsewhere in Python.

The shared library is found through $DATALINK_LIB, next to this module, in ../lib/api/ (Bazel
runfiles) or in ../bazel-bin/lib/api/ (a built source tree). All blocking calls release the GIL
(ctypes) and wait in slices of 200 ms, so Ctrl-C works.

Differences from the seed binding (all deliberate): a str is sent as its UTF-8 bytes (whole,
whatever the characters); the default timestamp is time.time() (the seed's -1 made seed
receivers drop the message); an explicit timestamp is honoured for numpy arrays too; a
Databridge stays alive until close() even when unreferenced; read() returns None at the end of
the peer's input (native protocol) instead of blocking forever.
"""

import ctypes
import math
import os
import threading
import time

__all__ = ["Datalink", "Databridge", "DatalinkError", "load_library"]

_SLICE_MS = 200
_RAISE = object()


class DatalinkError(OSError):
    """A link could not be created, or failed, or refused a message (too large, closed)."""


class _Options(ctypes.Structure):
    _fields_ = [
        ("timeout_ms", ctypes.c_int),
        ("keepalive_ms", ctypes.c_int),
        ("max_message", ctypes.c_uint),
        ("drop_negative_ts", ctypes.c_int),
        ("reconnect_s", ctypes.c_double),
        ("window", ctypes.c_size_t),
        ("close_timeout_ms", ctypes.c_int),
        ("proto", ctypes.c_char_p),
    ]


_lib = None
_lib_lock = threading.Lock()


def _candidates():
    env = os.environ.get("DATALINK_LIB")
    if env:
        yield env
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libdatalink.so")
    yield os.path.join(here, "..", "lib", "api", "libdatalink.so")
    yield os.path.join(here, "..", "bazel-bin", "lib", "api", "libdatalink.so")
    real = os.path.dirname(os.path.realpath(__file__))
    if real != here:
        yield os.path.join(real, "..", "bazel-bin", "lib", "api", "libdatalink.so")


def load_library():
    """Loads libdatalink.so once (see the module doc for where it is looked for)."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        tried = []
        for path in _candidates():
            if os.path.exists(path):
                lib = ctypes.CDLL(os.path.abspath(path))
                break
            tried.append(path)
        else:
            raise DatalinkError("libdatalink.so not found (set DATALINK_LIB); tried: " + ", ".join(tried))
        h, vp, sz, i, d = ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_double
        cp = ctypes.c_char_p
        sigs = {
            "dl_options_init": (None, [ctypes.POINTER(_Options)]),
            "dl_server_opts": (h, [cp, ctypes.POINTER(_Options), cp, sz]),
            "dl_client_opts": (h, [cp, i, ctypes.POINTER(_Options), cp, sz]),
            "dl_server_psk": (h, [cp, ctypes.POINTER(_Options), cp, cp, sz]),
            "dl_client_psk": (h, [cp, i, ctypes.POINTER(_Options), cp, cp, sz]),
            "dl_port": (i, [h]),
            "dl_is_ready": (i, [h]),
            "dl_write": (i, [h, vp, sz, d, i]),
            "dl_has_data": (i, [h]),
            "dl_next_size": (ctypes.c_longlong, [h, i]),
            "dl_read_into": (i, [h, vp, sz, ctypes.POINTER(sz), ctypes.POINTER(d)]),
            "dl_read_exact": (i, [h, vp, sz, ctypes.POINTER(d)]),
            "dl_write_keepalive": (i, [h]),
            "dl_flush": (i, [h, i]),
            "dl_peer_finished": (i, [h]),
            "dl_close": (None, [h]),
            "dl_last_error": (i, [h, cp, sz]),
            "dl_failed": (i, [h]),
            "dl_bridge_open": (h, [h, h]),
            "dl_bridge_close": (None, [h]),
            "dl_bridge_forwarded": (ctypes.c_ulonglong, [h]),
            "dl_version": (cp, []),
        }
        for name, (res, args) in sigs.items():
            f = getattr(lib, name)
            f.restype = res
            f.argtypes = args
        _lib = lib
        return lib


# A fresh bytes object of n bytes to read into: the message is copied once, from the link's
# receive buffer straight into the object returned.
_new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
_new_bytes.restype = ctypes.py_object
_new_bytes.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
_bytes_data = ctypes.pythonapi.PyBytes_AsString
_bytes_data.restype = ctypes.c_void_p
_bytes_data.argtypes = [ctypes.py_object]


def _numpy():
    try:
        import numpy
        return numpy
    except ImportError:
        return None


def _slices(timeout):
    """Yields the milliseconds to wait next, in slices, until `timeout` seconds (None: forever)."""
    if timeout is None:
        while True:
            yield _SLICE_MS
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            yield 0
            return
        yield min(_SLICE_MS, max(1, int(math.ceil(left * 1000))))


def _check_int(name, value, lo, hi):
    if not lo <= int(value) <= hi:
        raise ValueError("%s out of range [%d, %d]: %r" % (name, lo, hi, value))


class Datalink:
    """One message link. No host: a server (listens); a host: a client (dials).

    Datalink(host=None, port=0, timeout=10000, proto="native", *, listen=None, keepalive=0,
             max_message=16 MiB, drop_negative_ts=False, reconnect=-1, window=8 MiB,
             close_timeout=5.0, psk=None)

    proto: "native" (default; exactly-once across reconnects), "classic" (the seed's wire
    format), "auto" (servers: serve native and classic peers, told apart by their first byte; a
    seed client that never speaks first needs "classic"). listen: a listen endpoint such as
    "127.0.0.1:0" (overrides port). reconnect: seconds to keep trying after a drop (< 0:
    forever, like the seed). psk: a pre-shared key file (one line "[IDENTITY ]KEY", mode 0600,
    the same on both sides): the link runs inside TLS 1.3 (dl-security(7)); a wrong key fails
    the link for good.
    """

    def __init__(self, host=None, port=0, timeout=10000, proto="native", *, listen=None, keepalive=0,
                 max_message=None, drop_negative_ts=False, reconnect=-1.0, window=None, close_timeout=5.0,
                 psk=None):
        self._lib = load_library()
        self._h = None
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._busy = 0
        _check_int("port", port, 0, 65535)
        _check_int("timeout", timeout, -(2**31), 2**31 - 1)
        _check_int("keepalive", keepalive, 0, 2**31 - 1)
        if not 0 <= float(close_timeout) <= 2**31 / 1000:
            raise ValueError("close_timeout out of range: %r" % (close_timeout,))
        for name, text in (("host", host), ("listen", listen), ("proto", proto), ("psk", psk)):
            if isinstance(text, str) and "\0" in text:
                raise ValueError("%s contains a NUL character" % name)
        opts = _Options()
        self._lib.dl_options_init(ctypes.byref(opts))
        opts.timeout_ms = int(timeout)
        opts.keepalive_ms = int(keepalive)
        if max_message:
            opts.max_message = int(max_message)
        opts.drop_negative_ts = 1 if drop_negative_ts else 0
        opts.reconnect_s = float(reconnect)
        if window:
            opts.window = int(window)
        opts.close_timeout_ms = int(close_timeout * 1000)
        opts.proto = (proto or "native").encode()
        err = ctypes.create_string_buffer(512)
        key = os.fsencode(psk) if psk else None
        if host is None or listen is not None:
            endpoint = listen if listen is not None else str(int(port))
            h = self._lib.dl_server_psk(endpoint.encode(), ctypes.byref(opts), key, err, len(err))
        else:
            h = self._lib.dl_client_psk(host.encode(), int(port), ctypes.byref(opts), key, err, len(err))
        if not h:
            raise DatalinkError(err.value.decode(errors="replace"))
        self._h = h
        self.server = host is None or listen is not None

    # ------------------------------------------------------------------ state
    def _handle(self):
        h = self._h
        if h is None:
            raise DatalinkError("link is closed")
        return h

    def _call(self, fn, *args, closed=_RAISE):
        """Calls fn(handle, *args), counted as in flight so that close() from another thread
        waits for it instead of freeing the handle under it. Every blocking call waits in
        slices, so a close() is noticed within one slice."""
        with self._cv:
            h = self._h
            if h is None:
                if closed is _RAISE:
                    raise DatalinkError("link is closed")
                return closed
            self._busy += 1
        try:
            return fn(h, *args)
        finally:
            with self._cv:
                self._busy -= 1
                self._cv.notify_all()

    @property
    def port(self):
        """The listening port (server; the real one when 0 was asked) or the dialled port."""
        return self._call(self._lib.dl_port)

    def is_ready(self):
        return self._call(self._lib.dl_is_ready, closed=0) == 1

    isReady = is_ready

    def has_data(self):
        return self._call(self._lib.dl_has_data, closed=0) == 1

    hasData = has_data

    def peer_finished(self):
        """True once the peer ended its direction (native) and every message was read."""
        return self._call(self._lib.dl_peer_finished, closed=0) == 1

    def last_error(self):
        buf = ctypes.create_string_buffer(1024)
        if not self._call(self._lib.dl_last_error, buf, len(buf), closed=0):
            return None
        return buf.value.decode(errors="replace")

    def failed(self):
        return self._call(self._lib.dl_failed, closed=0) == 1

    # ------------------------------------------------------------------ sending
    def write(self, data, timestamp=None):
        """Sends one message: bytes-like, str (UTF-8) or a numpy array (its raw C-order bytes).

        Blocks while the link's window is full (backpressure). The timestamp defaults to
        time.time(). Raises DatalinkError when the link is closed or failed, or the message is
        too large.
        """
        h = self._handle()
        ts = time.time() if timestamp is None else float(timestamp)
        keep = data  # keeps the memory alive during the call
        if isinstance(data, str):
            keep = data.encode("utf-8")
            ptr, size = keep, len(keep)
        elif isinstance(data, bytes):
            ptr, size = data, len(data)
        else:
            np = _numpy()
            if np is not None and isinstance(data, np.ndarray):
                if data.dtype.hasobject:
                    raise TypeError("cannot send an array of Python objects (dtype %s)" % data.dtype)
                if not data.dtype.isnative:
                    # Only the bytes travel: send them in this machine's order, as read_np expects.
                    keep = data = data.astype(data.dtype.newbyteorder("="))
                if not data.flags.c_contiguous:
                    keep = np.ascontiguousarray(data)
                ptr, size = keep.ctypes.data, keep.nbytes
            else:
                mv = memoryview(data)
                if not mv.contiguous or not mv.c_contiguous:
                    keep = mv.tobytes()
                    ptr, size = keep, len(keep)
                elif not mv.readonly:
                    keep = mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv
                    size = keep.nbytes
                    ptr = ctypes.addressof((ctypes.c_char * size).from_buffer(keep)) if size else None
                elif np is not None:
                    keep = np.frombuffer(mv, dtype=np.uint8)
                    ptr, size = keep.ctypes.data, keep.nbytes
                else:
                    keep = mv.tobytes()
                    ptr, size = keep, len(keep)
        for ms in _slices(None):
            r = self._call(self._lib.dl_write, ptr, size, ts, ms)
            if r == 1:
                return True
            if r < 0:
                raise DatalinkError(self.last_error() or "write failed")

    def write_keep_alive(self):
        """Sends an empty keepalive now; False when not connected."""
        return self._call(self._lib.dl_write_keepalive, closed=0) == 1

    writeKeepAlive = write_keep_alive

    def flush(self, timeout=None):
        """Waits until everything written was acknowledged (classic: written). True if so."""
        h = self._handle()
        for ms in _slices(timeout):
            if self._call(self._lib.dl_flush, ms, closed=0) == 1:
                return True
            if ms == 0 or self.failed():
                return False

    # ------------------------------------------------------------------ receiving
    def _next_size(self, timeout):
        h = self._handle()
        for ms in _slices(timeout):
            n = self._call(self._lib.dl_next_size, ms, closed=None)
            if n is None:
                return None  # closed meanwhile (from another thread)
            if n >= 0:
                return n
            if ms == 0 or self.peer_finished() or self.failed():
                return None

    def read(self, timeout=None):
        """The next message as (payload bytes, size, timestamp), or None on timeout (seconds)
        or at the end of the peer's input."""
        while True:
            n = self._next_size(timeout)
            if n is None:
                return None
            payload = _new_bytes(None, n)
            size = ctypes.c_size_t()
            ts = ctypes.c_double()
            r = self._call(self._lib.dl_read_into, _bytes_data(payload) if n else None, n,
                           ctypes.byref(size), ctypes.byref(ts), closed=None)
            if r is None:
                return None
            if r == 1:
                # Another reader may have taken the n-byte message and left us a shorter one.
                return (payload if size.value == n else payload[:size.value]), size.value, ts.value
            # Another thread took it meanwhile: wait for the next one.

    def read_into(self, buffer, timeout=None):
        """Reads the next message into a writable buffer: (size, timestamp), or None. Raises
        ValueError (message kept) when it does not fit."""
        mv = memoryview(buffer).cast("B")
        cap = mv.nbytes
        ptr = ctypes.addressof((ctypes.c_char * cap).from_buffer(mv)) if cap else None
        while True:
            n = self._next_size(timeout)
            if n is None:
                return None
            if n > cap:
                raise ValueError("message of %d bytes does not fit in %d bytes" % (n, cap))
            size = ctypes.c_size_t()
            ts = ctypes.c_double()
            r = self._call(self._lib.dl_read_into, ptr, cap, ctypes.byref(size), ctypes.byref(ts), closed=None)
            if r is None:
                return None
            if r == 1:
                return size.value, ts.value

    def read_np(self, shape, dtype, timeout=None):
        """The next message as a fresh numpy array of shape/dtype (copied once, straight from the
        link's buffer), and its timestamp: (array, timestamp), or None. Raises ValueError (the
        message stays) when its size does not match."""
        np = _numpy()
        if np is None:
            raise DatalinkError("numpy is not available")
        dtype = np.dtype(dtype)
        if dtype.hasobject:
            raise TypeError("cannot read into an array of Python objects (dtype %s)" % dtype)
        shape = tuple(shape) if not isinstance(shape, int) else (shape,)
        want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        while True:
            n = self._next_size(timeout)
            if n is None:
                return None
            if n != want:
                raise ValueError("message of %d bytes does not match shape %s of %s (%d bytes)"
                                 % (n, shape, dtype, want))
            arr = np.empty(shape, dtype=dtype)
            size = ctypes.c_size_t()
            ts = ctypes.c_double()
            r = self._call(self._lib.dl_read_exact, arr.ctypes.data if want else None, want,
                           ctypes.byref(ts), closed=None)
            if r is None:
                return None
            if r == 1:
                return arr, ts.value
            # r == 0: another reader took it; r == -2: the next one has another size (loop checks)

    # ------------------------------------------------------------------ lifetime
    def close(self):
        """Ends our direction, waits (bounded) until the peer acknowledged what we wrote, then
        closes. Bridges using this link are closed first. Idempotent."""
        with self._cv:
            h, self._h = self._h, None
            if h is None:
                return
            # Calls in flight on other threads end within one slice (they see the link closed).
            while self._busy:
                self._cv.wait(1.0)
        for b in list(Databridge._registry):
            if b._left is self or b._right is self:
                b.close()
        self._lib.dl_close(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Databridge:
    """Forwards every message both ways between two links until close() (or either link is
    closed). It keeps itself alive until then, referenced or not."""

    _registry = set()
    _registry_lock = threading.Lock()

    def __init__(self, left, right):
        self._lib = load_library()
        self._left, self._right = left, right
        b = self._lib.dl_bridge_open(left._handle(), right._handle())
        if not b:
            raise DatalinkError("could not open the bridge")
        self._b = b
        with Databridge._registry_lock:
            Databridge._registry.add(self)

    def forwarded(self):
        return self._lib.dl_bridge_forwarded(self._b) if self._b else 0

    def close(self):
        with Databridge._registry_lock:
            b, self._b = self._b, None
            Databridge._registry.discard(self)
        if b:
            self._lib.dl_bridge_close(b)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
