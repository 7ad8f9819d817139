//! Who may connect, and to what: the access API the handshake calls with the credentials
//! it decoded, over the user database (`access_db.rs`).
//!
//! As in RabbitMQ: a user in `loopback_users` (by default `guest`) may only log in from a
//! loopback address — judged by the peer's address, not the listener's; connection.open
//! to a vhost needs the vhost to exist and the user to hold permissions there; limits on
//! connections and channels are counted per vhost (under its lock) and per user (here).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::access_db::{limit_value, AccessDb};
use super::error::BrokerError;
use super::grants::Grants;

/// Settings of authentication and of a first start.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// Users that may only connect from a loopback address.
    pub loopback_users: Vec<String>,
    /// The user, password and vhost a first start creates (RabbitMQ's default_user,
    /// default_pass, default_vhost).
    pub default_user: String,
    pub default_pass: String,
    pub default_vhost: String,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            loopback_users: vec!["guest".into()],
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_vhost: "/".into(),
        }
    }
}

/// An authenticated user, and the counters its limits are checked against (shared by
/// all its connections).
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub tags: Vec<String>,
    /// Tagged `impersonator`: may publish with any `user_id` property.
    pub impersonator: bool,
    pub usage: Arc<UserUsage>,
}

impl PartialEq for User {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// How many connections and channels a user has open (all vhosts).
#[derive(Debug, Default)]
pub struct UserUsage {
    connections: AtomicU64,
    channels: AtomicU64,
}

/// Takes one unit of `counter` unless that would pass `limit`.
fn take_one(counter: &AtomicU64, limit: Option<u64>) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match limit {
            Some(max) if n >= max => None,
            _ => Some(n + 1),
        })
        .is_ok()
}

impl UserUsage {
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    pub fn channels(&self) -> u64 {
        self.channels.load(Ordering::Acquire)
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn channels_closed(&self, n: u64) {
        if n > 0 {
            self.channels.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// Checks a user's password and where it connects from. `mechanism` only names the SASL
/// mechanism in the refusal text, as RabbitMQ's does; the text never holds the password.
pub fn authenticate(
    db: &AccessDb,
    config: &AccessConfig,
    mechanism: &str,
    user: &str,
    password: &str,
    peer: IpAddr,
) -> Result<(), BrokerError> {
    let refused = || {
        BrokerError::AccessRefused(format!(
            "Login was refused using authentication mechanism {mechanism}"
        ))
    };
    let entry = db.user(user).ok_or_else(refused)?;
    if !entry.hash.verify(password) {
        return Err(refused());
    }
    check_loopback(config, user, peer)
}

/// A user named by a verified certificate (SASL EXTERNAL): it must exist; its password
/// is not asked.
pub fn authenticate_external(
    db: &AccessDb,
    config: &AccessConfig,
    user: &str,
    peer: IpAddr,
) -> Result<(), BrokerError> {
    if db.user(user).is_none() {
        return Err(BrokerError::AccessRefused(format!(
            "user '{user}' - invalid credentials"
        )));
    }
    check_loopback(config, user, peer)
}

fn check_loopback(config: &AccessConfig, user: &str, peer: IpAddr) -> Result<(), BrokerError> {
    if config.loopback_users.iter().any(|u| u == user) && !peer.to_canonical().is_loopback() {
        return Err(BrokerError::AccessRefused(format!(
            "user '{user}' can only connect via localhost"
        )));
    }
    Ok(())
}

/// May `user` open a connection to `vhost`, which has `connections` open now? Checks in
/// RabbitMQ's order — the vhost (exists, connection limit), the user's connection limit,
/// the user's permissions there — and returns the permissions. The connection counts
/// against the user's limit until `UserUsage::connection_closed`.
pub fn open_vhost(
    db: &AccessDb,
    user: &User,
    vhost: &str,
    connections: Option<usize>,
) -> Result<Arc<Grants>, BrokerError> {
    let (Some(def), Some(connections)) = (db.vhost(vhost), connections) else {
        return Err(BrokerError::NotAllowed(format!("vhost {vhost} not found")));
    };
    if let Some(max) = limit_value(def.limits.max_connections) {
        if connections as u64 >= max {
            return Err(BrokerError::NotAllowed(format!(
                "access to vhost '{vhost}' refused for user '{}': connection limit ({max}) is \
                 reached",
                user.name
            )));
        }
    }
    let limit = db
        .user(&user.name)
        .and_then(|u| limit_value(u.def.limits.max_connections));
    if !take_one(&user.usage.connections, limit) {
        return Err(BrokerError::NotAllowed(format!(
            "connection refused for user '{}': user connection limit ({}) is reached",
            user.name,
            limit.unwrap_or(0)
        )));
    }
    let Some(grants) = db.grants(&user.name, vhost) else {
        user.usage.connection_closed();
        return Err(BrokerError::NotAllowed(format!(
            "access to vhost '{vhost}' refused for user '{}'",
            user.name
        )));
    };
    Ok(grants)
}

/// May `user` open one more channel? Counts it (`UserUsage::channels_closed` gives it
/// back).
pub fn open_channel(db: &AccessDb, user: &User) -> Result<(), BrokerError> {
    let limit = db
        .user(&user.name)
        .and_then(|u| limit_value(u.def.limits.max_channels));
    if !take_one(&user.usage.channels, limit) {
        return Err(BrokerError::NotAllowed(format!(
            "number of channels opened for user '{}' has reached the maximum allowed user \
             limit of ({})",
            user.name,
            limit.unwrap_or(0)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_needs_its_password_and_loopback() {
        let db = AccessDb::first_start("guest", "guest", "/");
        let c = AccessConfig::default();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(authenticate(&db, &c, "PLAIN", "guest", "guest", lo).is_ok());
        assert!(matches!(
            authenticate(&db, &c, "PLAIN", "guest", "nope", lo),
            Err(BrokerError::AccessRefused(_))
        ));
        assert!(authenticate(&db, &c, "PLAIN", "bob", "guest", lo).is_err());
        for peer in ["10.1.2.3", "192.0.2.7", "2001:db8::1"] {
            let e = authenticate(&db, &c, "PLAIN", "guest", "guest", peer.parse().unwrap())
                .unwrap_err();
            assert!(e.text().contains("localhost"), "{peer}");
        }
        for peer in ["::1", "::ffff:127.0.0.1"] {
            assert!(
                authenticate(&db, &c, "PLAIN", "guest", "guest", peer.parse().unwrap()).is_ok()
            );
        }
        // With an empty loopback list, guest may connect from anywhere.
        let open = AccessConfig {
            loopback_users: vec![],
            ..AccessConfig::default()
        };
        assert!(authenticate(
            &db,
            &open,
            "PLAIN",
            "guest",
            "guest",
            "10.1.2.3".parse().unwrap()
        )
        .is_ok());
    }

    #[test]
    fn user_connection_limit_counts_and_gives_back() {
        let mut db = AccessDb::first_start("u", "p", "/");
        db.set_user_limits(
            "u",
            super::super::access_db::UserLimits {
                max_connections: Some(1),
                max_channels: Some(0),
            },
        )
        .unwrap();
        let user = User {
            name: "u".into(),
            tags: vec![],
            impersonator: false,
            usage: Arc::default(),
        };
        assert!(open_vhost(&db, &user, "/", Some(0)).is_ok());
        let e = open_vhost(&db, &user, "/", Some(1)).unwrap_err();
        assert!(e.text().contains("user connection limit (1)"), "{e}");
        user.usage.connection_closed();
        assert!(open_vhost(&db, &user, "/", Some(0)).is_ok());
        assert!(open_channel(&db, &user).is_err());
        // RabbitMQ names a missing vhost without quotes, before any limit.
        let e = open_vhost(&db, &user, "nope", None).unwrap_err();
        assert_eq!(e.text(), "vhost nope not found");
    }

    #[test]
    fn external_needs_an_existing_user_and_loopback_for_guest() {
        let db = AccessDb::first_start("guest", "guest", "/");
        let c = AccessConfig::default();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(authenticate_external(&db, &c, "guest", lo).is_ok());
        let e = authenticate_external(&db, &c, "CN=guest", lo).unwrap_err();
        assert_eq!(e.text(), "user 'CN=guest' - invalid credentials");
        let far = "10.1.2.3".parse().unwrap();
        let e = authenticate_external(&db, &c, "guest", far).unwrap_err();
        assert!(e.text().contains("localhost"));
    }
}
