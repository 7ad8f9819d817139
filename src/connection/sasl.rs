//! SASL responses from connection.start-ok: PLAIN and AMQPLAIN decoded into a user name
//! and password; EXTERNAL (TLS only) takes the name from the client certificate
//! (`Transport::Tls`) and ignores the response. Whether they are good is the model's call
//! (`broker::access`).

use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::table;

/// The mechanisms offered in connection.start. EXTERNAL is offered on every TLS
/// connection, certificate or not, as RabbitMQ's `rabbit_auth_mechanism_ssl:should_offer`
/// does (a client without one then hears "no certificate" rather than failing to agree on
/// a mechanism), and never on plain TCP. It comes last: RabbitMQ 3.10 lists mechanisms in
/// its registry's (ETS hash) order, which is PLAIN, AMQPLAIN, EXTERNAL whatever order
/// `auth_mechanisms` is configured in.
pub fn mechanisms(tls: bool) -> &'static [u8] {
    if tls {
        b"PLAIN AMQPLAIN EXTERNAL"
    } else {
        b"PLAIN AMQPLAIN"
    }
}

/// EXTERNAL's refusal when the client certificate names no user, in RabbitMQ's words.
pub const EXTERNAL_NO_NAME: &str = "no name found";
/// EXTERNAL's refusal when the client presented no certificate.
pub const EXTERNAL_NO_CERT: &str = "connection peer presented no TLS (x.509) certificate";

/// Decodes a start-ok's response for `mechanism` into (user, password). A response
/// that does not parse, or an unknown mechanism, is an error that is never answered with
/// a frame (RabbitMQ hangs up silently; only a refused login may get a 403).
pub fn credentials(mechanism: &str, response: &[u8]) -> Result<(String, String), AmqpError> {
    match mechanism {
        "PLAIN" => plain(response).ok_or_else(|| {
            AmqpError::new(
                ReplyCode::SyntaxError,
                "PLAIN response is not NUL user NUL password",
            )
        }),
        "AMQPLAIN" => {
            // A field table without its length prefix: LOGIN and PASSWORD, long strings.
            table::validate(response, 0)?;
            let mut raw = Vec::with_capacity(response.len() + 4);
            raw.extend_from_slice(&(response.len() as u32).to_be_bytes());
            raw.extend_from_slice(response);
            let t = table::decode(&raw)?;
            match (table::get_str(&t, "LOGIN"), table::get_str(&t, "PASSWORD")) {
                (Some(user), Some(pass)) => Ok((user.into(), pass.into())),
                _ => Err(AmqpError::new(
                    ReplyCode::SyntaxError,
                    "AMQPLAIN response is missing LOGIN or PASSWORD",
                )),
            }
        }
        other => Err(AmqpError::new(
            ReplyCode::CommandInvalid,
            format!("unknown authentication mechanism '{other}'"),
        )),
    }
}

/// PLAIN as RabbitMQ reads it: exactly NUL user NUL password (no authorisation id).
fn plain(response: &[u8]) -> Option<(String, String)> {
    let rest = response.strip_prefix(&[0])?;
    let nul = rest.iter().position(|&b| b == 0)?;
    let (user, pass) = (&rest[..nul], &rest[nul + 1..]);
    if pass.contains(&0) {
        return None;
    }
    Some((
        String::from_utf8_lossy(user).into(),
        String::from_utf8_lossy(pass).into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amqplain(login: &str, password: &str) -> Vec<u8> {
        let mut t = Vec::new();
        for (k, v) in [("LOGIN", login), ("PASSWORD", password)] {
            t.push(k.len() as u8);
            t.extend_from_slice(k.as_bytes());
            t.push(b'S');
            t.extend_from_slice(&(v.len() as u32).to_be_bytes());
            t.extend_from_slice(v.as_bytes());
        }
        t
    }

    #[test]
    fn plain_and_amqplain() {
        let guest = ("guest".to_string(), "guest".to_string());
        assert_eq!(credentials("PLAIN", b"\0guest\0guest").unwrap(), guest);
        assert_eq!(
            credentials("AMQPLAIN", &amqplain("guest", "guest")).unwrap(),
            guest
        );
        let e = credentials("EXTERNAL", b"").unwrap_err();
        assert_eq!(e.code, ReplyCode::CommandInvalid);
        assert!(credentials("AMQPLAIN", b"\x05LOGIN").is_err());
        for bad in [
            &b""[..],
            b"guest\0guest",
            b"\0guest",
            b"admin\0guest\0guest",
            b"\0a\0b\0c",
        ] {
            assert!(credentials("PLAIN", bad).is_err(), "{bad:?}");
        }
    }
}
