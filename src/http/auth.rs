//! Who is asking: HTTP basic auth against Warren's users, and what their tags let them do,
//! as RabbitMQ's management decides it (`rabbit_mgmt_util:is_authorized*`).
//!
//! A request without credentials gets a bare 401 with the challenge; wrong credentials
//! 401 `not_authorized` "Login failed"; a loopback-only user (`guest`) from elsewhere
//! "User can only log in via localhost"; a user with none of the management tags "Not
//! management user". Then each endpoint asks for what it needs: an administrator, a
//! policymaker with permissions in the vhost, or a user who may see the vhost.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;

use super::error::ApiError;
use super::ApiState;

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub tags: Vec<String>,
}

impl Caller {
    fn tagged(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub fn is_admin(&self) -> bool {
        self.tagged("administrator")
    }

    pub fn is_monitor(&self) -> bool {
        self.is_admin() || self.tagged("monitoring")
    }

    pub fn is_policymaker(&self) -> bool {
        self.is_admin() || self.tagged("policymaker")
    }

    /// Any tag that opens the management API at all.
    fn is_management(&self) -> bool {
        self.is_monitor() || self.is_policymaker() || self.tagged("management")
    }

    /// Endpoints for monitoring users and administrators (`is_authorized_monitor`).
    pub fn monitor(&self) -> Result<(), ApiError> {
        if self.is_monitor() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not monitor user"))
        }
    }

    /// Endpoints for administrators only.
    pub fn admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not administrator user"))
        }
    }

    /// May this user see `vhost` (RabbitMQ: administrators, and users with permissions
    /// there)? A vhost that does not exist is let through, to be answered with 404.
    pub fn may_see_vhost(&self, state: &ApiState, vhost: &str) -> bool {
        self.is_admin()
            || state.broker.read_access(|db| {
                db.vhost(vhost).is_none() || db.grants(&self.name, vhost).is_some()
            })
    }

    /// `is_authorized_vhost`: the vhost in the path must be one the user may see.
    pub fn vhost_access(&self, state: &ApiState, vhost: &str) -> Result<(), ApiError> {
        if self.may_see_vhost(state, vhost) {
            Ok(())
        } else {
            Err(ApiError::not_authorised(
                "User not authorised to access virtual host",
            ))
        }
    }

    /// `is_authorized_policies`: administrators, or policymakers who may see the vhost.
    pub fn policies(&self, state: &ApiState, vhost: &str) -> Result<(), ApiError> {
        if self.is_admin() || (self.is_policymaker() && self.may_see_vhost(state, vhost)) {
            Ok(())
        } else {
            Err(ApiError::not_authorised(
                "User not authorised to access object",
            ))
        }
    }
}

/// `user:password` from a basic `Authorization` header.
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        // A script (the web console) asks for 401s without the challenge; tools and
        // RabbitMQ's clients do not send this header and get RabbitMQ's answer.
        let scripted = parts.headers.contains_key("x-requested-with");
        let unchallenged = |e: ApiError| {
            if scripted {
                e.without_challenge()
            } else {
                e
            }
        };
        let Some((user, password)) = basic_credentials(parts) else {
            return Err(unchallenged(ApiError::no_credentials()));
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let broker = &state.broker;
        let authenticated = match broker.authenticate("PLAIN", &user, &password, peer) {
            Ok(u) => u,
            Err(_) => {
                // The same credentials from loopback: then only the address was wrong.
                let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
                if !peer.to_canonical().is_loopback()
                    && broker
                        .authenticate("PLAIN", &user, &password, local)
                        .is_ok()
                {
                    tracing::warn!(%peer, %user, "HTTP access denied: loopback-only user");
                    return Err(ApiError::not_authorised(
                        "User can only log in via localhost",
                    ));
                }
                tracing::warn!(%peer, %user, "HTTP access denied: login failed");
                return Err(unchallenged(ApiError::login_failed()));
            }
        };
        let caller = Caller {
            name: authenticated.name,
            tags: authenticated.tags,
        };
        if !caller.is_management() {
            tracing::warn!(%peer, %user, "HTTP access denied: not a management user");
            return Err(ApiError::not_authorised("Not management user"));
        }
        Ok(caller)
    }
}
