"""The step engine of tests/fidelity/README.md: plays one scenario's bytes against a broker
and records what came back (awaits, closed, probe, healthy).

It is deliberately dumb: it never interprets the server's answers beyond what the contract
names (connection.open-ok makes the connection "open"; connection.close / channel.close are
answered with close-ok when auto_close_ok is set), so that a recording says what the broker
did, not what the engine expected.
"""
import select
import socket
import struct
import time

import wire

QUIET = 0.4          # an await ends after this long without a byte from the server ...
AWAIT_MAX = 5.0      # ... or after this long in all
EOF_WAIT = 3.0       # a never-opened connection gets this long more to be closed
PROBE_CHANNEL = 1000

CONNECTION_CLOSE, CONNECTION_OPEN_OK = (10, 50), (10, 41)
CHANNEL_CLOSE, CHANNEL_OPEN_OK = (20, 40), (20, 11)


class Conn:
    def __init__(self, host, port, auto_close_ok=True):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.auto_close_ok = auto_close_ok
        self.buf = b""
        self.closed = False
        self.opened = False
        self.send_failures = 0
        self.answered = set()  # "connection" and channel numbers whose close was answered

    def send(self, data):
        """One write. A failure (the server already closed) is noted, not raised."""
        if self.closed:
            self.send_failures += 1
            return
        try:
            self.sock.sendall(data)
        except socket.timeout:  # the server stopped reading; it has not closed (yet)
            self.send_failures += 1
        except OSError:  # EPIPE / ECONNRESET: it has
            self.send_failures += 1
            self.closed = True

    def await_frames(self, quiet=QUIET, total=AWAIT_MAX, until=None):
        """Reads until `quiet` seconds pass without data, EOF/reset, or `total` seconds (or,
        for the health check, a method frame with id `until` arrived)."""
        frames = []
        start = last = time.monotonic()
        while not self.closed:
            now = time.monotonic()
            timeout = min(last + quiet, start + total) - now
            if timeout <= 0:
                break
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                break
            try:
                data = self.sock.recv(1 << 20)
            except OSError:  # reset
                data = b""
            if not data:
                self.closed = True
                break
            last = time.monotonic()
            self.buf += data
            self._take(frames, final=False)
            if until and any(wire.method_id(bytes.fromhex(f)) == until
                             for f in frames if not f.startswith("raw:")):
                break
        if self.closed:
            self._take(frames, final=True)
        return frames

    def _take(self, frames, final):
        entries, self.buf = wire.split_frames(self.buf, final=final)
        for e in entries:
            if isinstance(e, tuple):
                frames.append("raw:" + e[1].hex())
                continue
            frames.append(e.hex())
            self._react(e)

    def _react(self, f):
        """The only things the engine does on its own: note open-ok, answer closes.

        Like a real client it answers connection.close once (after close-ok it has nothing
        more to say) and channel.close once per channel lifetime (until the next
        channel.open-ok on that number). Answering every close would let a server that
        misreads the close-ok and closes again ping-pong with the engine for the whole
        await (old Warren builds did, after a bad frame-end)."""
        mid = wire.method_id(f)
        ch = struct.unpack_from(">H", f, 1)[0]
        if mid == CONNECTION_OPEN_OK:
            self.opened = True
        elif mid == CHANNEL_OPEN_OK:
            self.answered.discard(ch)
        if not self.auto_close_ok:
            return
        if mid == CONNECTION_CLOSE and ch == 0 and "connection" not in self.answered:
            self.answered.add("connection")
            self.send(wire.raw_method(0, 10, 51))
        elif mid == CHANNEL_CLOSE and ch not in self.answered:
            self.answered.add(ch)
            self.send(wire.raw_method(ch, 20, 41))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def run(host, port, scenario):
    """Plays one scenario and returns its outcome (the README's format)."""
    try:
        conn = Conn(host, port, scenario.get("auto_close_ok", True))
    except OSError:  # nothing listens (the broker died): every await saw nothing
        return {"awaits": [[] for s in scenario["steps"] if "await" in s], "closed": True,
                "probe": None, "healthy": healthy(host, port)}
    awaits = []
    try:
        for step in scenario["steps"]:
            if "send" in step:
                conn.send(bytes.fromhex(step["send"]))
            else:
                awaits.append(conn.await_frames())
        if not conn.closed and not conn.opened:
            # RabbitMQ closes a failed handshake only after a delay (SILENT_CLOSE_DELAY).
            extra = conn.await_frames(quiet=EOF_WAIT, total=EOF_WAIT)
            if awaits:
                awaits[-1].extend(extra)
            else:
                awaits.append(extra)
        closed = conn.closed
        probe = None
        if conn.opened and not conn.closed:
            conn.send(wire.channel_open(PROBE_CHANNEL))
            probe = conn.await_frames()
    finally:
        conn.close()
    return {"awaits": awaits, "closed": closed, "probe": probe, "healthy": healthy(host, port)}


def healthy(host, port, timeout=10.0):
    """A fresh connection can still do a handshake, open a channel, declare an exclusive
    server-named queue and close cleanly."""
    try:
        conn = Conn(host, port)
    except OSError:
        return False
    try:
        want = [(wire.PROTOCOL_HEADER, (10, 10)),
                (wire.start_ok(), (10, 30)),
                (wire.tune_ok() + wire.conn_open(), (10, 41)),
                (wire.channel_open(1), (20, 11)),
                (wire.method(1, wire.spec.Queue.Declare(queue="", exclusive=True)), (50, 11)),
                (wire.method(0, wire.spec.Connection.Close(reply_code=200, reply_text="bye",
                                                            class_id=0, method_id=0)),
                 (10, 51))]
        for data, reply in want:
            conn.send(data)
            got = conn.await_frames(quiet=timeout, total=timeout, until=reply)
            if not any(wire.method_id(bytes.fromhex(f)) == reply
                       for f in got if not f.startswith("raw:")):
                return False
        return True
    finally:
        conn.close()
