"""Building scenarios: a list of send/await steps plus the handshake prefixes most use.

Every scenario derives its queue and exchange names from its own name (`Scenario.u`), so
scenarios can run concurrently and in any order against one broker.
"""
import hashlib
import re

import wire


class Scenario:
    def __init__(self, name, doc, auto_close_ok=True):
        self.name, self.doc, self.auto_close_ok = name, doc, auto_close_ok
        self.steps = []
        # A unique, readable resource-name stem: "fid-<group>-<rest>-<hash>" (short enough
        # that suffixes stay far below the 255-byte short-string limit).
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:80]
        self.u = f"fid-{slug}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"

    def send(self, *chunks):
        self.steps.append({"send": b"".join(chunks).hex()})
        return self

    def wait(self, hint=1):
        self.steps.append({"await": hint})
        return self

    def sw(self, *chunks):
        """send, then await: the usual step pair."""
        return self.send(*chunks).wait()

    def q(self, suffix="q"):
        return f"{self.u}.{suffix}"

    def x(self, suffix="x"):
        return f"{self.u}.{suffix}"

    def json(self):
        out = {"name": self.name, "doc": self.doc}
        if not self.auto_close_ok:
            out["auto_close_ok"] = False
        out["steps"] = self.steps
        return out


def connected(name, doc, auto_close_ok=True, caps=wire.CAPABILITIES, channel_max=wire.CHANNEL_MAX,
              frame_max=wire.FRAME_MAX, channels=(1,)):
    """A scenario that starts with the whole handshake and opens `channels`."""
    s = Scenario(name, doc, auto_close_ok)
    s.sw(wire.PROTOCOL_HEADER)
    s.sw(wire.start_ok(caps=caps))
    s.sw(wire.tune_ok(channel_max=channel_max, frame_max=frame_max), wire.conn_open())
    for ch in channels:
        s.sw(wire.channel_open(ch))
    return s


def until_phase(name, doc, phase, auto_close_ok=True):
    """A scenario stopped at a handshake phase: 'start' (header sent, connection.start
    received), 'tune' (start-ok sent, tune received) or 'open' (tune-ok sent, no open yet)."""
    s = Scenario(name, doc, auto_close_ok)
    s.sw(wire.PROTOCOL_HEADER)
    if phase in ("tune", "open"):
        s.sw(wire.start_ok())
    if phase == "open":
        s.sw(wire.tune_ok())  # no answer expected: the await is empty unless it errs
    return s
