"""Scenario groups about channels and method ids: `channel-state`, `server-methods`."""
from pika import spec

import methods
import wire
from scenario import connected
from wire import method as m


def _missing_passive(ch, s):
    """A passive declare of a queue that does not exist: the usual way to make RabbitMQ
    close a channel (404) without touching anything."""
    return m(ch, spec.Queue.Declare(queue=s.q("missing"), passive=True))


def channel_state_group():
    out = []

    def c(name, doc, **kw):
        s = connected("channel-state/" + name, doc, **kw)
        out.append(s)
        return s

    for meth in methods.CLIENT:
        s = c(f"unopened/{meth.name}", f"{meth.name} on channel 2, which was never opened")
        s.sw(meth.send(2, s))
    for meth in methods.CLIENT:
        s = c(f"above-channel-max-2048/{meth.name}", f"{meth.name} on channel 2048 (channel_max "
              "is 2047)")
        s.sw(meth.send(2048, s))
    for meth in methods.CLIENT:
        if meth.name in ("channel.open", "channel.close", "basic.qos", "queue.declare",
                         "basic.publish"):
            s = c(f"above-channel-max-65535/{meth.name}", f"{meth.name} on channel 65535")
            s.sw(meth.send(65535, s))
    for meth in methods.CLIENT:
        s = c(f"open/{meth.name}", f"{meth.name} on open channel 1, after what it needs to "
              "succeed (cleaned up afterwards)")
        if meth.setup:
            s.sw(meth.setup(1, s))
        s.sw(meth.send(1, s))
        if meth.cleanup:
            s.sw(meth.cleanup(1, s))
    for meth in methods.CLIENT:
        s = c(f"closing/{meth.name}", f"{meth.name} on channel 1 after the server closed it "
              "(404) and before the client's close-ok; then the close-ok and channel.open",
              auto_close_ok=False)
        s.sw(_missing_passive(1, s))
        s.sw(meth.send(1, s))
        s.sw(m(1, spec.Channel.CloseOk()))
        s.sw(wire.channel_open(1))

    s = c("close-then-method", "channel.close and basic.qos in one write, before the "
          "close-ok arrives")
    s.sw(m(1, spec.Channel.Close(200, "bye", 0, 0)) + m(1, spec.Basic.Qos(prefetch_count=1)))
    s = c("close-then-reopen-same-write", "channel.close and channel.open of the same channel "
          "in one write")
    s.sw(m(1, spec.Channel.Close(200, "bye", 0, 0)) + wire.channel_open(1))
    s = c("close-then-reopen", "channel.close, close-ok received, channel.open of the same "
          "channel")
    s.sw(m(1, spec.Channel.Close(200, "bye", 0, 0))).sw(wire.channel_open(1))
    s = c("close-during-close", "two channel.close on channel 1 in one write")
    s.sw(m(1, spec.Channel.Close(200, "bye", 0, 0)) * 2)
    for auto in (True, False):
        s = c(f"crossed-close{'' if auto else '-no-close-ok'}", "a method that makes the server "
              "close channel 1 (404) and a client channel.close in the same write"
              + ("" if auto else "; the client never sends close-ok"), auto_close_ok=auto)
        s.sw(_missing_passive(1, s) + m(1, spec.Channel.Close(200, "bye", 0, 0)))
    s = c("server-close-then-close-ok-twice", "the server closes channel 1 (404); the client "
          "answers with two close-oks", auto_close_ok=False)
    s.sw(_missing_passive(1, s)).sw(m(1, spec.Channel.CloseOk()) * 2)
    s = c("reopen-after-error", "the server closes channel 1 (404, close-ok sent), then "
          "channel 1 is opened again and used")
    s.sw(_missing_passive(1, s)).sw(wire.channel_open(1)) \
        .sw(m(1, spec.Basic.Qos(prefetch_count=1)))
    s = c("error-then-method-same-write", "a 404-provoking method and basic.qos in one write "
          "(the qos arrives on a closing channel)")
    s.sw(_missing_passive(1, s) + m(1, spec.Basic.Qos(prefetch_count=1)))
    for active in (True, False):
        c(f"flow-active-{str(active).lower()}", f"channel.flow active={active}") \
            .sw(m(1, spec.Channel.Flow(active=active)))
    c("close-ok-unsolicited", "channel.close-ok on open channel 1 that nobody asked for") \
        .sw(m(1, spec.Channel.CloseOk()))
    c("close-ok-unsolicited-unopened", "channel.close-ok on channel 3, never opened") \
        .sw(m(3, spec.Channel.CloseOk()))
    c("close-ok-on-channel-0", "channel.close-ok on channel 0").sw(m(0, spec.Channel.CloseOk()))
    for code, cls, meth in ((0, 0, 0), (404, 50, 10), (999, 65535, 65535)):
        c(f"client-close-code-{code}-{cls}-{meth}", f"client channel.close with reply code "
          f"{code}, class {cls}, method {meth}").sw(m(1, spec.Channel.Close(code, "x", cls, meth)))
    c("open-with-out-of-band", "channel.open whose reserved short string is not empty") \
        .sw(wire.raw_method(2, 20, 10, wire.shortstr("oob")))
    # (No "many channel.opens in one write": RabbitMQ's channels answer independently, so
    # the order of their open-oks is not fixed.)
    c("open-channel-2047", "channel.open of 2047, the highest allowed").sw(wire.channel_open(2047))
    s = c("method-on-other-channel-while-closing", "channel 1 closed by the server (404, no "
          "close-ok yet) while channel 2 keeps working", auto_close_ok=False, channels=(1, 2))
    s.sw(_missing_passive(1, s)).sw(m(2, spec.Basic.Qos(prefetch_count=1)))
    return out


UNKNOWN_CLASSES = (0, 1, 11, 15, 70, 80, 100, 255, 65535)
CLASSES = (10, 20, 30, 40, 50, 60, 85, 90)


def server_methods_group():
    out = []

    def c(name, doc, **kw):
        s = connected("server-methods/" + name, doc, **kw)
        out.append(s)
        return s

    for meth in methods.SERVER:
        ch = 0 if meth.name.startswith("connection.") else 1
        s = c(meth.name, f"{meth.name} (a server-only method) sent by the client on channel {ch}")
        s.sw(meth.send(ch, s))
    for meth in methods.SERVER:
        if meth.name.startswith(("channel.", "basic.consume-ok", "basic.deliver",
                                 "queue.declare-ok")):
            s = c(f"unopened/{meth.name}", f"{meth.name} sent by the client on unopened "
                  "channel 2")
            s.sw(meth.send(2, s))
    for cls in CLASSES:
        ch = 0 if cls == 10 else 1
        for mid in (0, 99, 65535):
            c(f"unknown-method-{cls}-{mid}", f"method id {mid} of known class {cls} on channel "
              f"{ch}").sw(wire.raw_method(ch, cls, mid))
    for cls in UNKNOWN_CLASSES:
        c(f"unknown-class-{cls}", f"method 10 of unknown class {cls} on channel 1") \
            .sw(wire.raw_method(1, cls, 10))
    for cls in (0, 70, 65535):
        c(f"unknown-class-{cls}-on-channel-0", f"method 10 of unknown class {cls} on channel 0") \
            .sw(wire.raw_method(0, cls, 10))
    c("unknown-class-with-arguments", "an unknown class 70 method carrying 20 bytes of "
      "arguments").sw(wire.raw_method(1, 70, 10, b"\x01" * 20))
    c("unknown-method-unopened-channel", "an unknown method 60.99 on never-opened channel 4") \
        .sw(wire.raw_method(4, 60, 99))
    return out
