//! The connection-level state machine: start / start-ok (credentials checked by the
//! model's access API), tune / tune-ok, open (the vhost), and close in both directions.

use std::sync::Arc;

use amq_protocol_types::AMQPValue;

use super::{sasl, Conn, Transport};
use crate::broker::access::User;
use crate::broker::admin::ConnectionInfo;
use crate::broker::BrokerError;
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::frame;
use crate::protocol::method::{self, ids, server, Method};
use crate::protocol::table::{self, Value};

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    AwaitStartOk,
    AwaitTuneOk,
    AwaitOpen,
    Open,
    /// connection.close was sent (by us: we wait for close-ok) or answered (we wait for the
    /// client to hang up). Only close and close-ok are read (`frames.rs`).
    Closing,
}

impl Phase {
    pub fn is_open(self) -> bool {
        self == Phase::Open
    }
    pub fn is_closing(self) -> bool {
        self == Phase::Closing
    }
    /// tune-ok has set frame_max and channel_max.
    pub fn is_tuned(self) -> bool {
        matches!(self, Phase::AwaitOpen | Phase::Open | Phase::Closing)
    }
}

/// What the client's start-ok properties tell us.
#[derive(Default)]
struct ClientProperties {
    /// It understands `connection.blocked`.
    blocked: bool,
    /// It wants connection.close(403) rather than a silent hang-up on a refused login.
    auth_failure_close: bool,
    /// It wants basic.cancel when a queue it consumes from goes.
    cancel_notify: bool,
    /// The name it gives the connection (for logs).
    name: Option<String>,
}

fn read_client_properties(raw: &[u8]) -> ClientProperties {
    let Ok(props) = table::decode(raw) else {
        return ClientProperties::default();
    };
    let capability = |name: &str| match props.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(caps)) => {
            matches!(caps.inner().get(name), Some(AMQPValue::Boolean(true)))
        }
        _ => false,
    };
    ClientProperties {
        blocked: capability("connection.blocked"),
        auth_failure_close: capability("authentication_failure_close"),
        cancel_notify: capability("consumer_cancel_notify"),
        name: table::get_str(&props, "connection_name").map(|s| s.chars().take(255).collect()),
    }
}

impl Conn {
    pub(super) fn send_start(&mut self) {
        let tls = matches!(self.transport, Transport::Tls { .. });
        let caps = [
            ("publisher_confirms", Value::Bool(true)),
            ("exchange_exchange_bindings", Value::Bool(true)),
            ("basic.nack", Value::Bool(true)),
            ("consumer_cancel_notify", Value::Bool(true)),
            ("connection.blocked", Value::Bool(true)),
            ("consumer_priorities", Value::Bool(true)),
            ("authentication_failure_close", Value::Bool(true)),
            ("per_consumer_qos", Value::Bool(true)),
            ("direct_reply_to", Value::Bool(true)),
        ];
        let props = [
            ("product", Value::Str("Warren")),
            ("version", Value::Str(env!("CARGO_PKG_VERSION"))),
            ("platform", Value::Str("Rust")),
            (
                "information",
                Value::Str("An AMQP 0-9-1 broker on an append-only segment log"),
            ),
            ("capabilities", Value::Table(&caps)),
        ];
        method::write(&mut self.wbuf, 0, ids::CONNECTION_START, |w| {
            w.u8(0).u8(9);
            table::encode(w.buf, &props);
            w.longstr(sasl::mechanisms(tls)).longstr(b"en_US");
        });
    }

    pub(super) fn connection_method(
        &mut self,
        id: (u16, u16),
        m: Method<'_>,
    ) -> Result<(), AmqpError> {
        match (self.phase, m) {
            (
                Phase::AwaitStartOk,
                Method::StartOk {
                    mechanism,
                    response,
                    client_properties,
                    ..
                },
            ) => self.start_ok(mechanism, response, client_properties),
            (
                Phase::AwaitTuneOk,
                Method::TuneOk {
                    channel_max,
                    frame_max,
                    heartbeat,
                },
            ) => self.tune_ok(channel_max, frame_max, heartbeat),
            (Phase::AwaitOpen, Method::Open { vhost }) => self.open(vhost),
            (Phase::Open, Method::Close { .. }) => {
                // Channels and exclusive queues go now; the client hangs up after close-ok.
                self.enter_closing();
                method::write_empty(&mut self.wbuf, 0, ids::CONNECTION_CLOSE_OK);
                Ok(())
            }
            (Phase::Open, Method::UpdateSecret) => {
                // Passwords do not expire, so a new secret changes nothing (RabbitMQ's
                // internal user database answers the same way).
                tracing::info!(conn = self.id, peer = %self.peer, "secret updated");
                method::write_empty(&mut self.wbuf, 0, ids::CONNECTION_UPDATE_SECRET_OK);
                Ok(())
            }
            (phase, _) => Err(AmqpError::new(
                ReplyCode::ChannelError,
                format!(
                    "unexpected method {}/{} in connection state {phase:?}",
                    id.0, id.1
                ),
            )),
        }
    }

    fn start_ok(
        &mut self,
        mechanism: &str,
        response: &[u8],
        client_properties: &[u8],
    ) -> Result<(), AmqpError> {
        let props = read_client_properties(client_properties);
        self.blocked_capable = props.blocked;
        self.cancel_notify = props.cancel_notify;
        self.client_name = props.name;
        // Kept by name for the management API; only an offered mechanism logs in.
        self.mechanism = match mechanism {
            "PLAIN" => "PLAIN",
            "AMQPLAIN" => "AMQPLAIN",
            "EXTERNAL" => "EXTERNAL",
            _ => "",
        };
        self.client_properties = client_properties.to_vec();
        let (user, result) = self.login(mechanism, response)?;
        let user = match result {
            Ok(user) => user,
            Err(e) => {
                tracing::warn!(conn = self.id, peer = %self.peer, %user, "login refused: {e}");
                if props.auth_failure_close {
                    // The text names the mechanism only; details are in our log. RabbitMQ
                    // names no method (0/0) here.
                    let text = format!(
                        "ACCESS_REFUSED - Login was refused using authentication mechanism \
                         {mechanism}. For details see the broker logfile."
                    );
                    server::connection_close(&mut self.wbuf, 403, &text, (0, 0));
                }
                return Err(AmqpError::new(ReplyCode::AccessRefused, e.text()));
            }
        };
        self.user = Some(user);
        let limits = &self.ctx.limits;
        let (cm, fm, hb) = (limits.channel_max, limits.frame_max, limits.heartbeat);
        method::write(&mut self.wbuf, 0, ids::CONNECTION_TUNE, |w| {
            w.u16(cm).u32(fm).u16(hb);
        });
        self.phase = Phase::AwaitTuneOk;
        Ok(())
    }

    /// Checks start-ok's credentials: (the user name it claims, the model's answer).
    fn login(
        &self,
        mechanism: &str,
        response: &[u8],
    ) -> Result<(String, Result<User, BrokerError>), AmqpError> {
        let peer = self.peer.ip();
        // RabbitMQ's log text for a refused EXTERNAL login (the client only ever hears the
        // generic 403 text).
        let refused =
            |why: &str| BrokerError::AccessRefused(format!("EXTERNAL login refused: {why}"));
        match (&self.transport, mechanism) {
            (Transport::Tls { external, .. }, "EXTERNAL") => Ok(match external {
                // The response (an authorisation identity, if any) is ignored, as
                // RabbitMQ does: the certificate names the user.
                Ok(name) => (
                    name.clone(),
                    self.ctx
                        .broker
                        .authenticate_external(name, peer)
                        .map_err(|e| refused(e.text())),
                ),
                Err(why) => (String::new(), Err(refused(why))),
            }),
            _ => {
                let (user, password) = sasl::credentials(mechanism, response)?;
                let result = self
                    .ctx
                    .broker
                    .authenticate(mechanism, &user, &password, peer);
                Ok((user, result))
            }
        }
    }

    fn tune_ok(
        &mut self,
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    ) -> Result<(), AmqpError> {
        let limits = &self.ctx.limits;
        let refuse = |what: String| Err(AmqpError::new(ReplyCode::NotAllowed, what));
        if frame_max != 0 && frame_max < frame::FRAME_MIN_SIZE {
            return refuse(format!(
                "negotiated frame_max = {frame_max} is lower than the minimum allowed value ({})",
                frame::FRAME_MIN_SIZE
            ));
        }
        // As in RabbitMQ, 0 ("no limit") is above any limit we have.
        if frame_max == 0 || frame_max > limits.frame_max {
            return refuse(format!(
                "negotiated frame_max = {frame_max} is higher than the maximum allowed value ({})",
                limits.frame_max
            ));
        }
        if channel_max == 0 || channel_max > limits.channel_max {
            return refuse(format!(
                "negotiated channel_max = {channel_max} is higher than the maximum allowed value ({})",
                limits.channel_max
            ));
        }
        self.frame_max = frame_max;
        self.channel_max = channel_max;
        self.heartbeat = heartbeat;
        self.phase = Phase::AwaitOpen;
        Ok(())
    }

    /// What the management API will show of this connection once it is open.
    fn connection_info(&mut self, vhost: &str) -> Arc<ConnectionInfo> {
        let user = self.user.as_ref().expect("authenticated before open");
        Arc::new(ConnectionInfo {
            client_properties: std::mem::take(&mut self.client_properties),
            tls: match &self.transport {
                Transport::Tls { session, .. } => Some(session.clone()),
                Transport::Plain => None,
            },
            auth_mechanism: self.mechanism,
            frame_max: self.frame_max,
            channel_max: self.channel_max,
            heartbeat: self.heartbeat,
            ..ConnectionInfo::new(self.id, (self.peer, self.local), &user.name, vhost)
        })
    }

    fn open(&mut self, vhost: &str) -> Result<(), AmqpError> {
        let info = self.connection_info(vhost);
        let user = self.user.as_ref().expect("authenticated before tune");
        let not_allowed =
            |e: crate::broker::BrokerError| AmqpError::new(ReplyCode::NotAllowed, e.text());
        let (id, outbox) = (self.id, self.outbox.clone());
        let (vh, grants, epoch) = self
            .ctx
            .broker
            .open_vhost(user, vhost, outbox, info.clone())
            .map_err(|e| {
                tracing::warn!(conn = self.id, peer = %self.peer, user = %user.name, "connection.open refused: {e}");
                not_allowed(e)
            })?;
        self.grants = Some(grants);
        self.grants_epoch = epoch;
        self.info = Some(info);
        self.attached = true;
        self.counted = true;
        tracing::info!(
            conn = id,
            peer = %self.peer,
            user = %user.name,
            vhost = %vh.name(),
            name = self.client_name.as_deref().unwrap_or(""),
            "connection opened"
        );
        self.vhost = Some(vh);
        method::write(&mut self.wbuf, 0, ids::CONNECTION_OPEN_OK, |w| {
            w.shortstr("");
        });
        self.phase = Phase::Open;
        Ok(())
    }
}
