//! The connection-level state machine: start / start-ok (credentials checked by the
//! model's access API), tune / tune-ok, open (the vhost), and close in both directions.

use amq_protocol_types::AMQPValue;

use super::{sasl, Conn};
use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::frame;
use crate::protocol::method::{self, ids, Method};
use crate::protocol::table::{self, Value};

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    AwaitStartOk,
    AwaitTuneOk,
    AwaitOpen,
    Open,
    /// We sent connection.close and wait for close-ok.
    Closing,
}

impl Phase {
    pub fn is_open(self) -> bool {
        self == Phase::Open
    }
    pub fn is_closing(self) -> bool {
        self == Phase::Closing
    }
}

/// What the client's start-ok properties tell us: whether it understands
/// `connection.blocked`, and the name it gives the connection (for logs).
fn read_client_properties(raw: &[u8]) -> (bool, Option<String>) {
    let Ok(props) = table::decode(raw) else {
        return (false, None);
    };
    let blocked = match props.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(caps)) => matches!(
            caps.inner().get("connection.blocked"),
            Some(AMQPValue::Boolean(true))
        ),
        _ => false,
    };
    let name = table::get_str(&props, "connection_name").map(|s| s.chars().take(255).collect());
    (blocked, name)
}

impl Conn {
    pub(super) fn send_start(&mut self) {
        let caps = [
            ("publisher_confirms", Value::Bool(true)),
            ("exchange_exchange_bindings", Value::Bool(true)),
            ("basic.nack", Value::Bool(true)),
            ("consumer_cancel_notify", Value::Bool(true)),
            ("connection.blocked", Value::Bool(true)),
            ("authentication_failure_close", Value::Bool(true)),
            ("per_consumer_qos", Value::Bool(true)),
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
            w.longstr(sasl::MECHANISMS).longstr(b"en_US");
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
            (_, Method::Close { .. }) => {
                method::write_empty(&mut self.wbuf, 0, ids::CONNECTION_CLOSE_OK);
                self.close_after_flush = true;
                Ok(())
            }
            (Phase::Open, Method::CloseOk) => Ok(()),
            (Phase::Open, Method::UpdateSecret) => Err(AmqpError::connection(
                ReplyCode::NotImplemented,
                "connection.update-secret is not supported",
            )),
            _ => Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                format!("unexpected method {}/{} on channel 0", id.0, id.1),
            )),
        }
    }

    fn start_ok(
        &mut self,
        mechanism: &str,
        response: &[u8],
        client_properties: &[u8],
    ) -> Result<(), AmqpError> {
        let (user, password) = sasl::credentials(mechanism, response)?;
        let user = self
            .ctx
            .broker
            .authenticate(mechanism, &user, &password, self.peer.ip())
            .map_err(|e| {
                tracing::warn!(conn = self.id, peer = %self.peer, %user, "login refused: {e}");
                AmqpError::connection(ReplyCode::AccessRefused, e.text())
            })?;
        self.user = Some(user);
        (self.blocked_capable, self.client_name) = read_client_properties(client_properties);
        let limits = &self.ctx.limits;
        let (cm, fm, hb) = (limits.channel_max, limits.frame_max, limits.heartbeat);
        method::write(&mut self.wbuf, 0, ids::CONNECTION_TUNE, |w| {
            w.u16(cm).u32(fm).u16(hb);
        });
        self.phase = Phase::AwaitTuneOk;
        Ok(())
    }

    fn tune_ok(
        &mut self,
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    ) -> Result<(), AmqpError> {
        let limits = &self.ctx.limits;
        let refuse = |what: String| Err(AmqpError::connection(ReplyCode::NotAllowed, what));
        if frame_max != 0 && frame_max < frame::FRAME_MIN_SIZE {
            return refuse(format!(
                "frame_max {frame_max} is below the minimum {}",
                frame::FRAME_MIN_SIZE
            ));
        }
        if frame_max > limits.frame_max {
            return refuse(format!(
                "frame_max {frame_max} is above the maximum {}",
                limits.frame_max
            ));
        }
        if channel_max > limits.channel_max {
            return refuse(format!(
                "channel_max {channel_max} is above the maximum {}",
                limits.channel_max
            ));
        }
        self.frame_max = if frame_max == 0 {
            limits.frame_max
        } else {
            frame_max
        };
        self.channel_max = if channel_max == 0 {
            limits.channel_max
        } else {
            channel_max
        };
        self.heartbeat = heartbeat;
        self.phase = Phase::AwaitOpen;
        Ok(())
    }

    fn open(&mut self, vhost: &str) -> Result<(), AmqpError> {
        let user = self.user.as_ref().expect("authenticated before tune");
        let vh = self
            .ctx
            .broker
            .open_vhost(user, vhost)
            .map_err(|e| AmqpError::connection(ReplyCode::NotAllowed, e.text()))?;
        let id = self.id;
        vh.with(|m| m.attach_connection(id));
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
