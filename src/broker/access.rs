//! Who may connect: the access API the handshake calls with the credentials it decoded.
//!
//! Today there is one built-in user, `guest`/`guest`, which (as in RabbitMQ) may only log
//! in from a loopback address — judged by the peer's address, not the listener's. Users,
//! password hashes, tags and permissions (the next issue) live here.

use std::net::IpAddr;

use super::error::BrokerError;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
}

/// Checks a user's password and where it connects from. `mechanism` only names the SASL
/// mechanism in the refusal text, as RabbitMQ's does.
pub fn authenticate(
    mechanism: &str,
    user: &str,
    password: &str,
    peer: IpAddr,
) -> Result<User, BrokerError> {
    if user != "guest" || password != "guest" {
        return Err(BrokerError::AccessRefused(format!(
            "Login was refused using authentication mechanism {mechanism}"
        )));
    }
    if !peer.to_canonical().is_loopback() {
        return Err(BrokerError::AccessRefused(
            "user 'guest' can only connect via localhost".into(),
        ));
    }
    Ok(User { name: user.into() })
}

/// Looks up a user without a password (SASL EXTERNAL: a verified client certificate names
/// them): any user that exists, from where it may connect. Refusals in RabbitMQ's words
/// (`rabbit_auth_backend_internal`, `rabbit_reader`'s loopback check).
pub fn authenticate_external(user: &str, peer: IpAddr) -> Result<User, BrokerError> {
    if user != "guest" {
        return Err(BrokerError::AccessRefused(format!(
            "user '{user}' - invalid credentials"
        )));
    }
    if !peer.to_canonical().is_loopback() {
        return Err(BrokerError::AccessRefused(
            "user 'guest' can only connect via localhost".into(),
        ));
    }
    Ok(User { name: user.into() })
}

/// May `user` use `vhost`? Only `/` exists until vhosts and permissions arrive.
pub fn check_vhost(_user: &User, vhost: &str, exists: bool) -> Result<(), BrokerError> {
    if !exists {
        return Err(BrokerError::NotAllowed(format!(
            "vhost '{vhost}' not found"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_needs_its_password_and_loopback() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(authenticate("PLAIN", "guest", "guest", lo).is_ok());
        assert!(matches!(
            authenticate("PLAIN", "guest", "nope", lo),
            Err(BrokerError::AccessRefused(_))
        ));
        assert!(authenticate("PLAIN", "bob", "guest", lo).is_err());
        for peer in ["10.1.2.3", "192.0.2.7", "2001:db8::1"] {
            let e = authenticate("PLAIN", "guest", "guest", peer.parse().unwrap()).unwrap_err();
            assert!(e.text().contains("localhost"), "{peer}");
        }
        for peer in ["::1", "::ffff:127.0.0.1"] {
            assert!(authenticate("PLAIN", "guest", "guest", peer.parse().unwrap()).is_ok());
        }
    }

    #[test]
    fn external_needs_an_existing_user_and_loopback_for_guest() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(authenticate_external("guest", lo).unwrap().name, "guest");
        let e = authenticate_external("CN=guest", lo).unwrap_err();
        assert_eq!(e.text(), "user 'CN=guest' - invalid credentials");
        let e = authenticate_external("guest", "10.1.2.3".parse().unwrap()).unwrap_err();
        assert!(e.text().contains("localhost"));
    }
}
