//! SASL PLAIN and AMQPLAIN against the one built-in user, `guest`/`guest`, which (as in
//! RabbitMQ) may only log in from a loopback address — judged by the peer's address, not
//! the listener's.

use std::net::IpAddr;

use crate::protocol::error::{AmqpError, ReplyCode};
use crate::protocol::table;

/// Checks a connection.start-ok's credentials. Every refusal is ACCESS_REFUSED (403),
/// sent as connection.close (authentication_failure_close).
pub fn authenticate(mechanism: &str, response: &[u8], peer: IpAddr) -> Result<(), AmqpError> {
    let (user, pass): (String, String) = match mechanism {
        "PLAIN" => {
            // authzid NUL authcid NUL password
            let mut parts = response.split(|&b| b == 0);
            let _authzid = parts.next();
            let user = parts.next().unwrap_or_default();
            let pass = parts.next().unwrap_or_default();
            (
                String::from_utf8_lossy(user).into(),
                String::from_utf8_lossy(pass).into(),
            )
        }
        "AMQPLAIN" => {
            // A field table without its length prefix: LOGIN and PASSWORD.
            table::validate(response, 0)?;
            let mut raw = Vec::with_capacity(response.len() + 4);
            raw.extend_from_slice(&(response.len() as u32).to_be_bytes());
            raw.extend_from_slice(response);
            let t = table::decode(&raw)?;
            (
                table::get_str(&t, "LOGIN").unwrap_or_default().into(),
                table::get_str(&t, "PASSWORD").unwrap_or_default().into(),
            )
        }
        other => {
            return Err(AmqpError::connection(
                ReplyCode::AccessRefused,
                format!("unsupported authentication mechanism '{other}'"),
            ))
        }
    };
    if user != "guest" || pass != "guest" {
        return Err(AmqpError::connection(
            ReplyCode::AccessRefused,
            format!("Login was refused using authentication mechanism {mechanism}"),
        ));
    }
    if !peer.to_canonical().is_loopback() {
        return Err(AmqpError::connection(
            ReplyCode::AccessRefused,
            "user 'guest' can only connect via localhost",
        ));
    }
    Ok(())
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
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(authenticate("PLAIN", b"\0guest\0guest", lo).is_ok());
        assert!(authenticate("AMQPLAIN", &amqplain("guest", "guest"), lo).is_ok());
        let e = authenticate("PLAIN", b"\0guest\0nope", lo).unwrap_err();
        assert_eq!(e.code, ReplyCode::AccessRefused);
        let e = authenticate("AMQPLAIN", &amqplain("bob", "guest"), lo).unwrap_err();
        assert_eq!(e.code, ReplyCode::AccessRefused);
        let e = authenticate("EXTERNAL", b"", lo).unwrap_err();
        assert_eq!(e.code, ReplyCode::AccessRefused);
    }

    #[test]
    fn guest_is_refused_from_a_non_loopback_peer() {
        for peer in ["10.1.2.3", "192.0.2.7", "2001:db8::1"] {
            let e = authenticate("PLAIN", b"\0guest\0guest", peer.parse().unwrap()).unwrap_err();
            assert_eq!(e.code, ReplyCode::AccessRefused, "{peer}");
            assert!(e.text.contains("localhost"));
        }
        assert!(authenticate("PLAIN", b"\0guest\0guest", "::1".parse().unwrap()).is_ok());
        assert!(authenticate(
            "PLAIN",
            b"\0guest\0guest",
            "::ffff:127.0.0.1".parse().unwrap()
        )
        .is_ok());
    }
}
