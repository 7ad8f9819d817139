//! What one user may do in one vhost: the configure / write / read regular expressions of
//! its permissions and its topic permissions, compiled once, checked where RabbitMQ's
//! channel checks them (the callers in `declare.rs`, `dispatch.rs` and the connection's
//! publish path decide *when*; this file decides *whether* and words the refusal as
//! RabbitMQ's `rabbit_access_control` does).
//!
//! Semantics copied from RabbitMQ 3.10 (`rabbit_auth_backend_internal`):
//! - a pattern is searched for anywhere in the name (`re:run`, not anchored);
//! - the empty pattern means `^$` (nothing but the empty name);
//! - the default exchange is checked under the name `amq.default`;
//! - a topic permission applies to one exchange; without one for that exchange, every
//!   routing key is allowed. `{username}` and `{vhost}` in its patterns are replaced
//!   (literally, unescaped) by the user's and the vhost's names.

use std::sync::Arc;

use regex::bytes::Regex;

use super::error::BrokerError;

/// Longest permission pattern accepted, and the compiled size limit: user-supplied
/// patterns must not cost unbounded memory (the `regex` crate matches in linear time).
pub const MAX_PATTERN_LEN: usize = 4096;
const COMPILED_SIZE_LIMIT: usize = 1 << 20;

/// The three kinds of access RabbitMQ distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

/// What a permission is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Queue,
    Exchange,
}

impl Resource {
    fn word(self) -> &'static str {
        match self {
            Resource::Queue => "queue",
            Resource::Exchange => "exchange",
        }
    }
}

/// Compiles a permission pattern as RabbitMQ reads it ("" is "^$"). Errors say why.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "pattern is {} bytes long, longer than the {MAX_PATTERN_LEN} allowed",
            pattern.len()
        ));
    }
    let pattern = if pattern.is_empty() {
        "^$".to_owned()
    } else {
        literal_braces(pattern)
    };
    // Bytes without Unicode classes, as Erlang's `re` matches without its `unicode`
    // option (`\w` is ASCII); non-ASCII literals match their UTF-8 bytes.
    regex::bytes::RegexBuilder::new(&pattern)
        .unicode(false)
        .size_limit(COMPILED_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regular expression '{pattern}': {e}"))
}

/// PCRE (RabbitMQ's engine) reads a `{` that does not open a `{n}`, `{n,}` or `{n,m}`
/// quantifier as a literal brace — `^{username}\.` is a valid pattern there — where the
/// `regex` crate refuses it: such braces are escaped.
fn literal_braces(pattern: &str) -> String {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 8);
    let (mut escaped, mut in_class) = (false, false);
    for (i, c) in pattern.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if in_class {
            in_class = c != ']';
        } else if c == '[' {
            in_class = true;
        } else if c == '{' && !is_quantifier(&bytes[i + 1..]) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Does `rest` (what follows a `{`) complete a counted repetition: digits, optionally a
/// comma and more digits, then `}`?
fn is_quantifier(rest: &[u8]) -> bool {
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    let rest = &rest[digits..];
    let rest = match rest.first() {
        Some(b',') => {
            let more = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
            &rest[1 + more..]
        }
        _ => rest,
    };
    rest.first() == Some(&b'}')
}

/// A topic permission, its patterns expanded for the user and vhost and compiled.
#[derive(Debug)]
pub struct TopicGrant {
    pub exchange: String,
    write: Regex,
    read: Regex,
}

/// One user's compiled permissions in one vhost. Shared (`Arc`) by all the user's
/// connections to the vhost.
#[derive(Debug)]
pub struct Grants {
    pub user: Arc<str>,
    pub vhost: Arc<str>,
    configure: Regex,
    write: Regex,
    read: Regex,
    topics: Vec<TopicGrant>,
}

impl Grants {
    /// Compiles a user's permissions; `topics` are (exchange, write, read) patterns.
    pub fn new(
        user: &str,
        vhost: &str,
        (configure, write, read): (&str, &str, &str),
        topics: &[(&str, &str, &str)],
    ) -> Result<Grants, String> {
        let expand = |p: &str| p.replace("{username}", user).replace("{vhost}", vhost);
        let topics = topics
            .iter()
            .map(|(exchange, w, r)| {
                Ok(TopicGrant {
                    exchange: (*exchange).to_owned(),
                    write: compile(&expand(w))?,
                    read: compile(&expand(r))?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Grants {
            user: user.into(),
            vhost: vhost.into(),
            configure: compile(configure)?,
            write: compile(write)?,
            read: compile(read)?,
            topics,
        })
    }

    /// Everything allowed: for work the broker does on its own behalf (definitions
    /// import, tests of the model).
    pub fn everything(user: &str, vhost: &str) -> Grants {
        Grants::new(user, vhost, (".*", ".*", ".*"), &[]).expect("literal patterns")
    }

    /// Nothing allowed: a connection whose user lost its permissions while connected.
    pub fn nothing(user: &str, vhost: &str) -> Grants {
        Grants::new(user, vhost, ("", "", ""), &[]).expect("literal patterns")
    }

    /// May the user do `perm` on the queue or exchange `name`?
    pub fn check(&self, perm: Perm, resource: Resource, name: &str) -> Result<(), BrokerError> {
        let name = match (resource, name) {
            (Resource::Exchange, "") => "amq.default",
            _ => name,
        };
        let pattern = match perm {
            Perm::Configure => &self.configure,
            Perm::Write => &self.write,
            Perm::Read => &self.read,
        };
        if pattern.is_match(name.as_bytes()) {
            return Ok(());
        }
        Err(BrokerError::AccessRefused(format!(
            "access to {} '{name}' in vhost '{}' refused for user '{}'",
            resource.word(),
            self.vhost,
            self.user
        )))
    }

    /// True if the user has topic permissions in this vhost (publishes to topic exchanges
    /// then need a routing-key check).
    pub fn has_topic_permissions(&self) -> bool {
        !self.topics.is_empty()
    }

    /// May the user publish (`Write`) or bind (`Read`) with `routing_key` on the topic
    /// exchange `exchange`?
    pub fn check_topic(
        &self,
        perm: Perm,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), BrokerError> {
        let Some(t) = self.topics.iter().find(|t| t.exchange == exchange) else {
            return Ok(());
        };
        let pattern = if perm == Perm::Write {
            &t.write
        } else {
            &t.read
        };
        if pattern.is_match(routing_key.as_bytes()) {
            return Ok(());
        }
        Err(BrokerError::AccessRefused(format!(
            "access to topic '{routing_key}' in exchange '{exchange}' in vhost '{}' refused \
             for user '{}'",
            self.vhost, self.user
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_search_and_empty_means_nothing() {
        let g = Grants::new("alice", "/", ("^alice-", "", "x"), &[]).unwrap();
        assert!(g.check(Perm::Configure, Resource::Queue, "alice-q").is_ok());
        let e = g
            .check(Perm::Configure, Resource::Queue, "bob-q")
            .unwrap_err();
        assert_eq!(
            e.text(),
            "access to queue 'bob-q' in vhost '/' refused for user 'alice'"
        );
        assert!(g
            .check(Perm::Write, Resource::Exchange, "anything")
            .is_err());
        // Unanchored: "x" matches anywhere in the name.
        assert!(g.check(Perm::Read, Resource::Queue, "boxes").is_ok());
        // The default exchange is checked as amq.default.
        let e = g.check(Perm::Write, Resource::Exchange, "").unwrap_err();
        assert!(e.text().contains("exchange 'amq.default'"), "{e}");
    }

    #[test]
    fn topic_patterns_expand_variables() {
        let g = Grants::new(
            "tu",
            "/",
            (".*", ".*", ".*"),
            &[("amq.topic", "^{username}\\.", "^{vhost}")],
        )
        .unwrap();
        assert!(g.check_topic(Perm::Write, "amq.topic", "tu.a").is_ok());
        let e = g
            .check_topic(Perm::Write, "amq.topic", "other.a")
            .unwrap_err();
        assert_eq!(
            e.text(),
            "access to topic 'other.a' in exchange 'amq.topic' in vhost '/' refused for user 'tu'"
        );
        assert!(g.check_topic(Perm::Read, "amq.topic", "/x").is_ok());
        // No topic permission for this exchange: everything goes.
        assert!(g.check_topic(Perm::Write, "other", "whatever").is_ok());
    }

    #[test]
    fn braces_that_quantify_nothing_are_literal_as_in_pcre() {
        let r = compile("^{username}\\.x{2}[{]").unwrap();
        assert!(r.is_match(b"{username}.xx{"));
        assert!(!r.is_match(b"{username}.x{"));
        assert!(compile("a{2,}b{1,3}").unwrap().is_match(b"aabbb"));
        // Non-ASCII names match literally; \w is ASCII only, as in Erlang's re.
        assert!(compile("^caf\u{e9}")
            .unwrap()
            .is_match("caf\u{e9}-q".as_bytes()));
        assert!(!compile("^\\w+$").unwrap().is_match("\u{e9}".as_bytes()));
    }

    #[test]
    fn hostile_patterns_are_refused_not_compiled() {
        assert!(compile(&"a".repeat(MAX_PATTERN_LEN + 1)).is_err());
        assert!(compile("(unclosed").is_err());
        assert!(compile("a{1000}{1000}").is_err());
    }
}
