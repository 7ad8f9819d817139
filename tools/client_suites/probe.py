#!/usr/bin/env python3
"""Send AMQP 0-9-1 methods one by one and print every frame the broker answers, in order.

For diagnosing where a broker's answers differ from RabbitMQ's: run the same script against both.
Uses pika's codec (pika.spec / pika.frame) only, no client state machine.

  probe.py [--host H] [--port P] [--caps] STEP...

A STEP is `CH Class.Method key=value ...` (values are Python literals where they parse, else
strings; `body=...` on Basic.Publish sends a content body; `props.x=...` sets BasicProperties),
`sleep SECONDS`, or `read SECONDS` (collect frames for that long; after every step frames are
read for --wait seconds, default 0.3). --caps announces the usual client capabilities
(publisher_confirms, consumer_cancel_notify, ...) as pika does. Example:

  probe.py --port 5698 --caps '1 Channel.Open' '1 Queue.Declare queue="q"' \
      '1 Basic.Consume queue="q"' '1 Queue.Delete queue="q"'
"""
import argparse
import ast
import socket
import sys
import time

import pika.frame
import pika.spec as spec


def lit(v):
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v


def describe(f):
    if isinstance(f, pika.frame.Method):
        m = f.method
        args = {k: v for k, v in vars(m).items() if not k.startswith("_")}
        return f"ch{f.channel_number} {m.NAME} {args}"
    if isinstance(f, pika.frame.Header):
        return f"ch{f.channel_number} <content header body_size={f.body_size} props={ {k: v for k, v in vars(f.properties).items() if v is not None} }>"
    if isinstance(f, pika.frame.Body):
        return f"ch{f.channel_number} <body {f.fragment[:60]!r}>"
    if isinstance(f, pika.frame.Heartbeat):
        return "<heartbeat>"
    return repr(f)


class Probe:
    def __init__(self, host, port, caps, frame_max=131072):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buf = b""
        self.t0 = time.monotonic()
        self.closed = False
        self.frame_max = frame_max
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        start = self.expect(spec.Connection.Start)
        props = {"product": "probe.py"}
        if caps:
            props["capabilities"] = {"publisher_confirms": True, "exchange_exchange_bindings": True,
                                     "basic.nack": True, "consumer_cancel_notify": True,
                                     "connection.blocked": True, "authentication_failure_close": True}
        self.send(0, spec.Connection.StartOk(client_properties=props, mechanism="PLAIN",
                                             response="\0guest\0guest", locale="en_US"))
        tune = self.expect(spec.Connection.Tune)
        self.frame_max = tune.frame_max or frame_max
        self.send(0, spec.Connection.TuneOk(channel_max=tune.channel_max, frame_max=self.frame_max,
                                            heartbeat=0))
        self.send(0, spec.Connection.Open(virtual_host="/"))
        self.expect(spec.Connection.OpenOk)
        server = start.server_properties
        print(f"# connected: {server.get('product', b'?')} {server.get('version', b'?')}")

    def send(self, ch, method, body=None, props=None):
        self.sock.sendall(pika.frame.Method(ch, method).marshal())
        if body is not None:
            body = body.encode() if isinstance(body, str) else body
            self.sock.sendall(pika.frame.Header(ch, len(body), props or spec.BasicProperties()).marshal())
            step = self.frame_max - 8
            for i in range(0, len(body), step):
                self.sock.sendall(pika.frame.Body(ch, body[i:i + step]).marshal())

    def frames(self, seconds):
        end = time.monotonic() + seconds
        out = []
        while not self.closed:
            while True:
                n, f = pika.frame.decode_frame(self.buf)
                if not f:
                    break
                self.buf = self.buf[n:]
                out.append(f)
                yield f
            left = end - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return
            except OSError as e:
                print(f"# socket error: {e}")
                self.closed = True
                return
            if not data:
                print(f"# [{time.monotonic() - self.t0:6.3f}s] broker closed the TCP connection")
                self.closed = True
                return
            self.buf += data

    def expect(self, cls):
        for f in self.frames(5):
            if isinstance(f, pika.frame.Method) and isinstance(f.method, cls):
                return f.method
            print("# during handshake:", describe(f))
        sys.exit(f"no {cls.NAME} from the broker")

    def show(self, seconds):
        for f in self.frames(seconds):
            print(f"  [{time.monotonic() - self.t0:6.3f}s] <- {describe(f)}")
            # answer a broker's close so that the close is seen like a client sees it
            if not getattr(self, "auto", True):
                continue
            if isinstance(f, pika.frame.Method) and isinstance(f.method, spec.Channel.Close):
                self.sock.sendall(pika.frame.Method(f.channel_number, spec.Channel.CloseOk()).marshal())
            if isinstance(f, pika.frame.Method) and isinstance(f.method, spec.Connection.Close):
                self.sock.sendall(pika.frame.Method(0, spec.Connection.CloseOk()).marshal())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--caps", action="store_true")
    ap.add_argument("--wait", type=float, default=0.3)
    ap.add_argument("--manual", action="store_true", help="do not answer the broker's channel.close / connection.close")
    ap.add_argument("steps", nargs="+")
    a = ap.parse_args()
    p = Probe(a.host, a.port, a.caps)
    p.auto = not a.manual
    for step in a.steps:
        words = step.split()
        if words[0] in ("sleep", "read"):
            print(f"# {step}")
            if words[0] == "sleep":
                time.sleep(float(words[1]))
            else:
                p.show(float(words[1]))
            continue
        ch, name = int(words[0]), words[1]
        cls_name, meth_name = name.split(".")
        cls = getattr(getattr(spec, cls_name), meth_name)
        kwargs, body, props = {}, None, {}
        for kv in words[2:]:
            k, v = kv.split("=", 1)
            if k == "body":
                body = lit(v)
            elif k.startswith("props."):
                props[k[6:]] = lit(v)
            else:
                kwargs[k] = lit(v)
        if cls in (spec.Channel.Close, spec.Connection.Close):
            kwargs = {"reply_code": 200, "reply_text": "", "class_id": 0, "method_id": 0, **kwargs}
        method = cls(**kwargs)
        print(f"  [{time.monotonic() - p.t0:6.3f}s] -> ch{ch} {method.NAME} {kwargs}" + (f" body={body!r}" if body is not None else ""))
        if p.closed:
            print("# (connection already closed)")
            break
        try:
            p.send(ch, method, body, spec.BasicProperties(**props) if props or body is not None else None)
        except OSError as e:
            print(f"# send failed: {e}")
            break
        p.show(a.wait)


if __name__ == "__main__":
    main()
