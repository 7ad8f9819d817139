//! Which committed exchange and binding changes this node applies.
//!
//! A client's change is made on its node at once and reaches the other nodes through the
//! metadata group. Applied in the group's order on every node, the changes leave every
//! node alike, except that a node has already made its own: applying its own older
//! entries again could undo what it did since (a node that deleted an exchange and
//! declared it again would delete it once more on the first entry, and with it the
//! bindings to its classic queues). So a change to one exchange (or one binding) is left
//! out on a node that has a change of its own to it still to come in the log: the log's
//! later entry settles it, and the node has made that one already. Every node thus ends
//! with what the log's last entry for each exchange and binding says.
//!
//! A node brought up to date by a snapshot instead of the entries also removes what the
//! snapshot no longer has (`stale`): the deletions it missed.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::broker::replicated_topology::TopologyChange;

/// This node's changes written to the metadata group and not yet applied back, counted
/// per (vhost, what they change).
#[derive(Default)]
pub(super) struct OwnChanges {
    waiting: Mutex<HashMap<(String, String), u32>>,
}

/// What a change is about: an exchange (declared, deleted), or one binding.
fn subject(change: &TopologyChange) -> String {
    match change {
        TopologyChange::Declared(def) => format!("exchange {}", def.name),
        TopologyChange::Deleted(name) => format!("exchange {name}"),
        TopologyChange::Bound(b) | TopologyChange::Unbound(b) => format!(
            "binding {} {} {} {} {:?}",
            b.source, b.to_exchange, b.destination, b.routing_key, b.arguments
        ),
    }
}

impl OwnChanges {
    /// This node wrote `change`.
    pub(super) fn written(&self, vhost: &str, change: &TopologyChange) {
        let key = (vhost.to_string(), subject(change));
        *self
            .waiting
            .lock()
            .expect("own changes")
            .entry(key)
            .or_insert(0) += 1;
    }

    /// This node's `change` will not come back (its write was given up), or came back.
    pub(super) fn done(&self, vhost: &str, change: &TopologyChange) {
        let key = (vhost.to_string(), subject(change));
        let mut waiting = self.waiting.lock().expect("own changes");
        if let Some(n) = waiting.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                waiting.remove(&key);
            }
        }
    }

    /// Whether to apply a committed `change` written by this node (`own`) or another:
    /// not while a later change of this node's own to the same thing is still to come.
    pub(super) fn applies(&self, own: bool, vhost: &str, change: &TopologyChange) -> bool {
        if own {
            self.done(vhost, change);
        }
        let key = (vhost.to_string(), subject(change));
        !self.waiting.lock().expect("own changes").contains_key(&key)
    }
}

/// What takes away the exchanges and bindings of `here` that `wanted` does not have:
/// unbindings first, then deletions (exchanges compare by name: a node's own exchange of
/// a name another node declared first stays).
pub(super) fn stale(here: Vec<TopologyChange>, wanted: &[TopologyChange]) -> Vec<TopologyChange> {
    let mut exchanges = std::collections::BTreeSet::new();
    let mut bindings = std::collections::BTreeSet::new();
    for w in wanted {
        match w {
            TopologyChange::Declared(d) => exchanges.insert(d.name.as_str()),
            TopologyChange::Bound(b) => bindings.insert(b),
            _ => false,
        };
    }
    let mut unbind = Vec::new();
    let mut delete = Vec::new();
    for change in here {
        match change {
            TopologyChange::Bound(b) if !bindings.contains(&b) => {
                unbind.push(TopologyChange::Unbound(b))
            }
            TopologyChange::Declared(d) if !exchanges.contains(d.name.as_str()) => {
                delete.push(TopologyChange::Deleted(d.name))
            }
            _ => {}
        }
    }
    unbind.extend(delete);
    unbind
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::replicated_topology::{BindingDef, ExchangeDef};

    fn deleted(name: &str) -> TopologyChange {
        TopologyChange::Deleted(name.into())
    }

    fn declared(name: &str) -> TopologyChange {
        TopologyChange::Declared(ExchangeDef {
            name: name.into(),
            kind: "fanout".into(),
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: vec![0, 0, 0, 0],
        })
    }

    fn binding(source: &str, queue: &str) -> BindingDef {
        BindingDef {
            source: source.into(),
            destination: queue.into(),
            to_exchange: false,
            routing_key: String::new(),
            arguments: vec![0, 0, 0, 0],
        }
    }

    #[test]
    fn stale_unbinds_then_deletes_what_the_cluster_does_not_have() {
        let mut other_kind = declared("kept");
        if let TopologyChange::Declared(d) = &mut other_kind {
            d.kind = "direct".into();
        }
        let here = vec![
            declared("gone"),
            other_kind,
            TopologyChange::Bound(binding("kept", "q1")),
            TopologyChange::Bound(binding("kept", "q2")),
        ];
        let wanted = vec![
            declared("kept"),
            TopologyChange::Bound(binding("kept", "q1")),
        ];
        assert_eq!(
            stale(here, &wanted),
            vec![
                TopologyChange::Unbound(binding("kept", "q2")),
                TopologyChange::Deleted("gone".into()),
            ]
        );
    }

    #[test]
    fn a_change_waits_for_this_nodes_later_changes_to_the_same_exchange() {
        let own = OwnChanges::default();
        // Deleted and declared again here: the deletion's entry must not apply.
        own.written("/", &deleted("x"));
        own.written("/", &deleted("x"));
        assert!(!own.applies(true, "/", &deleted("x")));
        assert!(
            !own.applies(false, "/", &deleted("x")),
            "another node's, before ours"
        );
        assert!(own.applies(true, "/", &deleted("x")), "our last one");
        assert!(
            own.applies(false, "/", &deleted("x")),
            "another node's, after ours"
        );
        assert!(own.applies(false, "/", &deleted("y")));
        assert!(own.applies(false, "other", &deleted("x")));
        // A write given up counts no more.
        own.written("/", &deleted("z"));
        own.done("/", &deleted("z"));
        assert!(own.applies(false, "/", &deleted("z")));
    }
}
