//! One broker per fuzzing thread, reused across inputs and put back into its starting
//! state after each one, for the fuzz targets that drive a real broker (`connection`,
//! `connection_model`, `stream_session`, `http_request`, `definitions_json`).
//!
//! Opening a broker per input (directories, the access database written and fsynced, the
//! default vhost, then removing it all) was about a third of those targets' time and
//! held them at 100–500 inputs a second. Reuse is only sound if no input can see what an
//! earlier one left behind, or a crash would depend on the inputs before it and not
//! reproduce. So after each input the broker is reset, and then *checked*: its
//! fingerprint (every vhost's queues and exchanges, the full definitions export and the
//! access database) must equal the one taken when it was fresh. Anything the reset does
//! not undo fails that check, and the broker is then thrown away and opened afresh, as
//! before: the fast path is an optimisation, never a change in what an input sees.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(test)]
use std::sync::Arc;

use super::access_db::AccessDb;
use super::definitions_import::export_json;
use super::exchange::Dest;
use super::{BindSpec, BrokerHandle, VHost};

/// The connection id the reset acts as: 0 is attached to no vhost, so nothing is refused
/// (the management API uses it the same way).
const RESET_CONNECTION: u64 = 0;

/// What a target's brokers hold before each input: a function that brings a fresh broker
/// there (and can be run again on a reset one: it must be idempotent).
pub type Seed = fn(&BrokerHandle);

/// A broker reused across inputs.
struct Reused {
    /// What a target builds on the broker once and keeps with it (the HTTP target's
    /// router and runtime); dropped before the broker.
    extra: Option<Box<dyn Any>>,
    /// How many handles to the broker exist between inputs: this one and the extra's.
    handles_at_rest: usize,
    dir: PathBuf,
    broker: BrokerHandle,
    seed: Seed,
    access: AccessDb,
    /// `access` rendered, to see whether an input changed the database.
    access_rendered: Option<String>,
    fingerprint: String,
}

impl Reused {
    fn open(kind: &str, seed: Seed) -> Option<Reused> {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "warren-fuzz-{kind}-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let Ok(broker) = BrokerHandle::open_ephemeral(&dir) else {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        };
        seed(&broker);
        let access = broker.read_access(AccessDb::clone);
        let access_rendered = access.render().ok();
        let fingerprint = fingerprint(&broker);
        Some(Reused {
            extra: None,
            handles_at_rest: 1,
            dir,
            broker,
            seed,
            access,
            access_rendered,
            fingerprint,
        })
    }

    /// Undoes what an input did; false if the broker is not as it was (then it must go).
    fn reset(&self) -> bool {
        let broker = &self.broker;
        let fresh_vhosts: Vec<&str> = self.access.vhosts().map(|v| v.name.as_str()).collect();
        for name in broker.vhost_names() {
            if !fresh_vhosts.contains(&&*name) && broker.delete_vhost(&name).is_err() {
                return false;
            }
        }
        for name in broker.vhost_names() {
            let Some(vh) = broker.vhost(&name) else {
                return false;
            };
            let emptied = vh.with(|m| {
                for q in m.queue_names() {
                    if m.queue_delete(RESET_CONNECTION, &q, false, false).is_err() {
                        return false;
                    }
                }
                let (_, exchanges) = m.queue_and_exchange_names();
                let deleted = exchanges
                    .keys()
                    .filter(|x| !x.is_empty() && !x.starts_with("amq."))
                    .all(|x| m.exchange_delete(RESET_CONNECTION, x, false).is_ok());
                deleted && unbind_exchanges(m)
            });
            if !emptied {
                return false;
            }
        }
        let access_changed = broker.read_access(|db| db.render().ok() != self.access_rendered);
        if access_changed
            && broker
                .update_access(|db| {
                    *db = self.access.clone();
                    Ok(())
                })
                .is_err()
        {
            return false;
        }
        (self.seed)(broker);
        fingerprint(broker) == self.fingerprint
    }
}

/// Removes the bindings between the exchanges that stay (`amq.*` can be bound to each
/// other).
fn unbind_exchanges(m: &mut VHost) -> bool {
    let mut between = Vec::new();
    for x in m.exchanges.values() {
        for b in &x.bindings {
            if let Dest::Exchange(dest) = &b.dest {
                let key = (x.name.clone(), dest.clone());
                between.push((key, b.routing_key.clone(), b.args_raw.clone()));
            }
        }
    }
    between
        .iter()
        .all(|((source, dest), routing_key, args_raw)| {
            let spec = BindSpec {
                source,
                routing_key,
                args_raw,
                bind: false,
            };
            m.exchange_bind(RESET_CONNECTION, dest, &spec).is_ok()
        })
}

impl Drop for Reused {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything an input could have changed that a later input could notice.
fn fingerprint(broker: &BrokerHandle) -> String {
    let mut names = broker.vhost_names();
    names.sort();
    let mut out = String::new();
    for name in names {
        let Some(vh) = broker.vhost(&name) else {
            continue;
        };
        let (queues, exchanges) = vh.with(|m| m.queue_and_exchange_names());
        let mut queues: Vec<String> = queues.into_iter().collect();
        queues.sort();
        let mut exchanges: Vec<(String, String)> = exchanges.into_iter().collect();
        exchanges.sort();
        out.push_str(&format!("{name}: {queues:?} {exchanges:?}\n"));
    }
    out.push_str(&export_json(broker));
    out.push_str(&broker.read_access(|db| db.render().unwrap_or_default()));
    out
}

thread_local! {
    static BROKERS: RefCell<HashMap<&'static str, Reused>> = RefCell::new(HashMap::new());
}

/// Runs `f` on this thread's broker for `kind`, in the state `seed` puts a fresh broker
/// in, with the broker's data dir; resets it afterwards (or drops it if it cannot be
/// reset). `None` if no broker could be opened.
pub fn with_broker<R>(
    kind: &'static str,
    seed: Seed,
    f: impl FnOnce(&BrokerHandle, &Path) -> R,
) -> Option<R> {
    with_broker_and(kind, seed, |_, _| (), |broker, dir, _| f(broker, dir))
}

/// [`with_broker`], with `extra` built by `make` the first time a broker is used and
/// kept with it (it may hold handles to the broker).
pub fn with_broker_and<E: 'static, R>(
    kind: &'static str,
    seed: Seed,
    make: fn(&BrokerHandle, &Path) -> E,
    f: impl FnOnce(&BrokerHandle, &Path, &E) -> R,
) -> Option<R> {
    let reused = BROKERS.with(|b| b.borrow_mut().remove(kind));
    let mut reused = match reused {
        Some(r) => r,
        None => Reused::open(kind, seed)?,
    };
    if reused.extra.is_none() {
        reused.extra = Some(Box::new(make(&reused.broker, &reused.dir)));
        reused.handles_at_rest = reused.broker.handle_count();
    }
    let extra = reused
        .extra
        .as_ref()
        .and_then(|e| e.downcast_ref::<E>())
        .expect("one extra type per kind");
    let answer = f(&reused.broker, &reused.dir, extra);
    // Keep it only if no handle made during the input outlived it (a task of `f` that
    // did would see the next input's broker) and the reset brings it back.
    if reused.broker.handle_count() == reused.handles_at_rest && reused.reset() {
        BROKERS.with(|b| b.borrow_mut().insert(kind, reused));
    }
    Some(answer)
}

/// A seed for targets that start from a fresh broker.
pub fn fresh(_: &BrokerHandle) {}

#[cfg(test)]
mod tests {
    use super::super::definitions_import::import_json;
    use super::*;

    /// Vhosts, users, permissions, policies, queues with messages, exchanges and bindings
    /// that one input makes are gone for the next, which gets the same broker back.
    #[test]
    fn what_an_input_leaves_is_gone_for_the_next() {
        let made = r#"{
          "users": [{"name": "u", "password_hash": "", "tags": ["administrator"]}],
          "vhosts": [{"name": "v"}],
          "permissions": [{"user": "u", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
          "policies": [{"vhost": "/", "name": "p", "pattern": ".*", "apply-to": "queues",
                        "definition": {"max-length": 1}, "priority": 0}],
          "queues": [{"name": "q", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}},
                     {"name": "q2", "vhost": "v", "durable": true, "auto_delete": false, "arguments": {}}],
          "exchanges": [{"name": "x", "vhost": "/", "type": "fanout", "durable": true,
                         "auto_delete": false, "internal": false, "arguments": {}}],
          "bindings": [{"source": "amq.direct", "vhost": "/", "destination": "amq.fanout",
                        "destination_type": "exchange", "routing_key": "k", "arguments": {}}]
        }"#;
        let (first_dir, fresh_export) = with_broker("test-reset", fresh, |b, dir| {
            let fresh_export = export_json(b);
            import_json(b, made.as_bytes()).expect("imports");
            assert_ne!(export_json(b), fresh_export);
            (dir.to_path_buf(), fresh_export)
        })
        .expect("a broker");
        let second_dir = with_broker("test-reset", fresh, |b, dir| {
            assert_eq!(export_json(b), fresh_export);
            assert_eq!(b.vhost_names().len(), 1);
            let vh = b.vhost("/").expect("/");
            assert!(vh.with(|m| m.queue_names()).is_empty());
            dir.to_path_buf()
        })
        .expect("a broker");
        assert_eq!(first_dir, second_dir, "the broker was reused");
    }

    /// A broker someone still holds after the input is not handed to the next one.
    #[test]
    fn a_broker_still_held_is_not_reused() {
        let mut held = None;
        let first = with_broker("test-held", fresh, |b, dir| {
            held = Some(b.clone());
            dir.to_path_buf()
        });
        let second = with_broker("test-held", fresh, |_, dir| dir.to_path_buf());
        assert_ne!(first, second);
        assert!(held.is_some());
    }

    /// A seeded broker comes back seeded.
    #[test]
    fn a_seeded_broker_is_seeded_again_after_a_reset() {
        fn seed(b: &BrokerHandle) {
            let q = r#"{"queues": [{"name": "s", "vhost": "/", "durable": true,
                        "auto_delete": false, "arguments": {}}]}"#;
            import_json(b, q.as_bytes()).expect("the seed imports");
        }
        for _ in 0..2 {
            with_broker("test-seeded", seed, |b, _| {
                let vh = b.vhost("/").expect("/");
                assert_eq!(vh.with(|m| m.queue_names()), [Arc::<str>::from("s")]);
                vh.with(|m| m.queue_delete(RESET_CONNECTION, "s", false, false))
                    .expect("deleted");
            })
            .expect("a broker");
        }
    }
}
