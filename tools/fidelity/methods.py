"""The method catalogue shared by the groups: one ordinary ("benign") instance of every
method a client may send, what it needs set up first to succeed, and what cleans up after
it; and one instance of every method only a server may send.

A group that puts "every client method" somewhere (before the handshake is done, on
channel 0, on an unopened channel, ...) iterates CLIENT / CONNECTION_CLIENT; the names are
the scenario-name suffixes.
"""
from pika import spec

import wire
from wire import method as m


def _decl_q(ch, s):
    return m(ch, spec.Queue.Declare(queue=s.q(), exclusive=True))


def _decl_x(ch, s, suffix="x"):
    return m(ch, spec.Exchange.Declare(exchange=s.x(suffix), type="fanout"))


def _del_x(ch, s, *suffixes):
    return b"".join(m(ch, spec.Exchange.Delete(exchange=s.x(x))) for x in suffixes)


def _with_message(ch, s):
    """An exclusive queue holding one message, fetched unacked: delivery tag 1 exists."""
    return _decl_q(ch, s) + wire.publish(ch, "", s.q()) \
        + m(ch, spec.Basic.Get(queue=s.q(), no_ack=False))


class Method:
    def __init__(self, name, send, setup=None, cleanup=None):
        self.name, self.send, self.setup, self.cleanup = name, send, setup, cleanup


# Every non-connection client method; `send(ch, s)` is its bytes on channel ch for
# scenario s (content-bearing ones include their header and body).
CLIENT = [
    Method("channel.open", lambda ch, s: m(ch, spec.Channel.Open())),
    Method("channel.flow", lambda ch, s: m(ch, spec.Channel.Flow(active=True))),
    Method("channel.close", lambda ch, s: m(ch, spec.Channel.Close(200, "bye", 0, 0))),
    Method("access.request", lambda ch, s: m(ch, spec.Access.Request(realm="/data"))),
    Method("exchange.declare", lambda ch, s: _decl_x(ch, s),
           cleanup=lambda ch, s: _del_x(ch, s, "x")),
    Method("exchange.delete", lambda ch, s: _del_x(ch, s, "x"), setup=_decl_x),
    Method("exchange.bind",
           lambda ch, s: m(ch, spec.Exchange.Bind(destination=s.x("d"), source=s.x("s"))),
           setup=lambda ch, s: _decl_x(ch, s, "d") + _decl_x(ch, s, "s"),
           cleanup=lambda ch, s: _del_x(ch, s, "d", "s")),
    Method("exchange.unbind",
           lambda ch, s: m(ch, spec.Exchange.Unbind(destination=s.x("d"), source=s.x("s"))),
           setup=lambda ch, s: _decl_x(ch, s, "d") + _decl_x(ch, s, "s")
           + m(ch, spec.Exchange.Bind(destination=s.x("d"), source=s.x("s"))),
           cleanup=lambda ch, s: _del_x(ch, s, "d", "s")),
    Method("queue.declare", _decl_q),
    Method("queue.bind",
           lambda ch, s: m(ch, spec.Queue.Bind(queue=s.q(), exchange="amq.direct",
                                               routing_key=s.u)),
           setup=_decl_q),
    Method("queue.purge", lambda ch, s: m(ch, spec.Queue.Purge(queue=s.q())), setup=_decl_q),
    Method("queue.delete", lambda ch, s: m(ch, spec.Queue.Delete(queue=s.q())), setup=_decl_q),
    Method("queue.unbind",
           lambda ch, s: m(ch, spec.Queue.Unbind(queue=s.q(), exchange="amq.direct",
                                                 routing_key=s.u)),
           setup=lambda ch, s: _decl_q(ch, s)
           + m(ch, spec.Queue.Bind(queue=s.q(), exchange="amq.direct", routing_key=s.u))),
    Method("basic.qos", lambda ch, s: m(ch, spec.Basic.Qos(prefetch_count=10))),
    Method("basic.consume",
           lambda ch, s: m(ch, spec.Basic.Consume(queue=s.q(), consumer_tag=s.u)),
           setup=_decl_q),
    Method("basic.cancel", lambda ch, s: m(ch, spec.Basic.Cancel(consumer_tag=s.u)),
           setup=lambda ch, s: _decl_q(ch, s)
           + m(ch, spec.Basic.Consume(queue=s.q(), consumer_tag=s.u))),
    Method("basic.publish", lambda ch, s: wire.publish(ch, "", s.q()), setup=_decl_q),
    Method("basic.get", lambda ch, s: m(ch, spec.Basic.Get(queue=s.q(), no_ack=True)),
           setup=_decl_q),
    Method("basic.ack", lambda ch, s: m(ch, spec.Basic.Ack(delivery_tag=1)),
           setup=_with_message),
    Method("basic.reject", lambda ch, s: m(ch, spec.Basic.Reject(delivery_tag=1, requeue=False)),
           setup=_with_message),
    Method("basic.nack", lambda ch, s: m(ch, spec.Basic.Nack(delivery_tag=1, requeue=False)),
           setup=_with_message),
    Method("basic.recover-async", lambda ch, s: m(ch, spec.Basic.RecoverAsync(requeue=True))),
    Method("basic.recover", lambda ch, s: m(ch, spec.Basic.Recover(requeue=True))),
    Method("confirm.select", lambda ch, s: m(ch, spec.Confirm.Select())),
    Method("tx.select", lambda ch, s: m(ch, spec.Tx.Select())),
    Method("tx.commit", lambda ch, s: m(ch, spec.Tx.Commit()),
           setup=lambda ch, s: m(ch, spec.Tx.Select())),
    Method("tx.rollback", lambda ch, s: m(ch, spec.Tx.Rollback()),
           setup=lambda ch, s: m(ch, spec.Tx.Select())),
]

# The connection-class methods a client may send (always on channel 0 unless a scenario
# says otherwise).
CONNECTION_CLIENT = [
    Method("connection.start-ok", lambda ch, s: wire.start_ok(channel=ch)),
    Method("connection.secure-ok",
           lambda ch, s: m(ch, spec.Connection.SecureOk(response=b"\x00guest\x00guest"))),
    Method("connection.tune-ok", lambda ch, s: m(ch, spec.Connection.TuneOk(
        channel_max=wire.CHANNEL_MAX, frame_max=wire.FRAME_MAX, heartbeat=0))),
    Method("connection.open", lambda ch, s: m(ch, spec.Connection.Open(virtual_host="/"))),
    Method("connection.close",
           lambda ch, s: m(ch, spec.Connection.Close(200, "bye", 0, 0))),
    Method("connection.close-ok", lambda ch, s: m(ch, spec.Connection.CloseOk())),
    Method("connection.blocked", lambda ch, s: m(ch, spec.Connection.Blocked(reason="low"))),
    Method("connection.unblocked", lambda ch, s: m(ch, spec.Connection.Unblocked())),
    Method("connection.update-secret", lambda ch, s: m(ch, spec.Connection.UpdateSecret(
        new_secret=b"guest", reason="refresh"))),
]

_PROPS = spec.BasicProperties(content_type="text/plain")


def _content(ch, meth):
    return m(ch, meth) + wire.header(ch, 5, _PROPS) + wire.body(ch, b"hello")


# Methods only a server sends, as a client would (wrongly) send them on channel ch.
SERVER = [
    Method("connection.start", lambda ch, s: m(ch, spec.Connection.Start(
        server_properties={"product": "x"}, mechanisms="PLAIN", locales="en_US"))),
    Method("connection.secure", lambda ch, s: m(ch, spec.Connection.Secure(challenge=b"?"))),
    Method("connection.tune", lambda ch, s: m(ch, spec.Connection.Tune(
        channel_max=2047, frame_max=131072, heartbeat=60))),
    Method("connection.open-ok", lambda ch, s: m(ch, spec.Connection.OpenOk())),
    Method("connection.close-ok", lambda ch, s: m(ch, spec.Connection.CloseOk())),
    Method("connection.update-secret-ok", lambda ch, s: m(ch, spec.Connection.UpdateSecretOk())),
    Method("channel.open-ok", lambda ch, s: m(ch, spec.Channel.OpenOk())),
    Method("channel.close-ok", lambda ch, s: m(ch, spec.Channel.CloseOk())),
    Method("channel.flow-ok", lambda ch, s: m(ch, spec.Channel.FlowOk(active=True))),
    Method("access.request-ok", lambda ch, s: m(ch, spec.Access.RequestOk(ticket=1))),
    Method("exchange.declare-ok", lambda ch, s: m(ch, spec.Exchange.DeclareOk())),
    Method("exchange.delete-ok", lambda ch, s: m(ch, spec.Exchange.DeleteOk())),
    Method("exchange.bind-ok", lambda ch, s: m(ch, spec.Exchange.BindOk())),
    Method("exchange.unbind-ok", lambda ch, s: m(ch, spec.Exchange.UnbindOk())),
    Method("queue.declare-ok", lambda ch, s: m(ch, spec.Queue.DeclareOk(
        queue=s.q(), message_count=0, consumer_count=0))),
    Method("queue.bind-ok", lambda ch, s: m(ch, spec.Queue.BindOk())),
    Method("queue.purge-ok", lambda ch, s: m(ch, spec.Queue.PurgeOk(message_count=0))),
    Method("queue.delete-ok", lambda ch, s: m(ch, spec.Queue.DeleteOk(message_count=0))),
    Method("queue.unbind-ok", lambda ch, s: m(ch, spec.Queue.UnbindOk())),
    Method("basic.qos-ok", lambda ch, s: m(ch, spec.Basic.QosOk())),
    Method("basic.consume-ok", lambda ch, s: m(ch, spec.Basic.ConsumeOk(consumer_tag=s.u))),
    Method("basic.cancel-ok", lambda ch, s: m(ch, spec.Basic.CancelOk(consumer_tag=s.u))),
    Method("basic.return", lambda ch, s: _content(ch, spec.Basic.Return(
        reply_code=312, reply_text="NO_ROUTE", exchange="", routing_key=s.q()))),
    Method("basic.return-without-content", lambda ch, s: m(ch, spec.Basic.Return(
        reply_code=312, reply_text="NO_ROUTE", exchange="", routing_key=s.q()))),
    Method("basic.deliver", lambda ch, s: _content(ch, spec.Basic.Deliver(
        consumer_tag=s.u, delivery_tag=1, exchange="", routing_key=s.q()))),
    Method("basic.get-ok", lambda ch, s: _content(ch, spec.Basic.GetOk(
        delivery_tag=1, exchange="", routing_key=s.q(), message_count=0))),
    Method("basic.get-empty", lambda ch, s: m(ch, spec.Basic.GetEmpty())),
    Method("basic.recover-ok", lambda ch, s: m(ch, spec.Basic.RecoverOk())),
    Method("confirm.select-ok", lambda ch, s: m(ch, spec.Confirm.SelectOk())),
    Method("tx.select-ok", lambda ch, s: m(ch, spec.Tx.SelectOk())),
    Method("tx.commit-ok", lambda ch, s: m(ch, spec.Tx.CommitOk())),
    Method("tx.rollback-ok", lambda ch, s: m(ch, spec.Tx.RollbackOk())),
]
