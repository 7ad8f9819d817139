//! SASL responses from connection.start-ok: PLAIN and AMQPLAIN decoded into a user name
//! and password. Whether they are good is the model's call (`broker::access`).

use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::table;

/// The mechanisms offered in connection.start.
pub const MECHANISMS: &[u8] = b"PLAIN AMQPLAIN";

/// Decodes a start-ok's response for `mechanism` into (user, password). An unknown
/// mechanism is ACCESS_REFUSED.
pub fn credentials(mechanism: &str, response: &[u8]) -> Result<(String, String), AmqpError> {
    match mechanism {
        "PLAIN" => {
            // authzid NUL authcid NUL password
            let mut parts = response.split(|&b| b == 0);
            let _authzid = parts.next();
            let user = parts.next().unwrap_or_default();
            let pass = parts.next().unwrap_or_default();
            Ok((
                String::from_utf8_lossy(user).into(),
                String::from_utf8_lossy(pass).into(),
            ))
        }
        "AMQPLAIN" => {
            // A field table without its length prefix: LOGIN and PASSWORD.
            table::validate(response, 0)?;
            let mut raw = Vec::with_capacity(response.len() + 4);
            raw.extend_from_slice(&(response.len() as u32).to_be_bytes());
            raw.extend_from_slice(response);
            let t = table::decode(&raw)?;
            Ok((
                table::get_str(&t, "LOGIN").unwrap_or_default().into(),
                table::get_str(&t, "PASSWORD").unwrap_or_default().into(),
            ))
        }
        other => Err(AmqpError::connection(
            ReplyCode::AccessRefused,
            format!("unsupported authentication mechanism '{other}'"),
        )),
    }
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
        assert_eq!(e.code, ReplyCode::AccessRefused);
        assert!(credentials("AMQPLAIN", b"\x05LOGIN").is_err());
    }
}
