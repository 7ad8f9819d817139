//! Vhosts, users, permissions and policies in a cluster (issue 16): three `warren`
//! processes on loopback (a fault-injecting proxy on every link, `cluster_support`), the
//! management API and lapin. What is made through one node's API is on every node: a
//! user created on node 1 logs in on node 3 into a vhost created on node 1, and a policy
//! set there applies to a queue declared on node 3; a user deleted on node 2 loses its
//! connection on node 3. A node cut off from the others changes nothing; a node that was
//! away (cut off, or down) catches up, deleted vhosts included.

use crate::cluster_support;

use std::time::Duration;

use cluster_support::quorum::*;
use cluster_support::{Cluster, Node};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{json, Value};

const GUEST: &str = "guest:guest";

/// `method` on `path` of node `node` as guest: the status code.
fn call(node: &Node, method: &str, path: &str, body: Option<Value>) -> u16 {
    match node.api_call(method, path, body.as_ref(), GUEST) {
        Some((status, _)) => status,
        None => panic!("{method} {path} on node {}: no answer", node.id),
    }
}

/// Whether `path` answers 200 on node `id`.
fn exists(c: &Cluster, id: u64, path: &str) -> bool {
    c.node(id).api_status(path).map(|(s, _)| s) == Some(200)
}

fn wait_exists(c: &Cluster, ids: &[u64], path: &str, want: bool) {
    for &id in ids {
        let what = format!("{path} {} on node {id}", if want { "made" } else { "gone" });
        wait_for(&what, c, Duration::from_secs(20), || {
            (exists(c, id, path) == want).then_some(())
        });
    }
}

async fn login(port: u16, user: &str, vhost: &str) -> lapin::Result<Connection> {
    let url = format!("amqp://{user}:pw-{user}@127.0.0.1:{port}/{vhost}");
    Connection::connect(&url, ConnectionProperties::default()).await
}

fn make_user(c: &Cluster, via: u64, user: &str) -> u16 {
    let body = json!({"password": format!("pw-{user}"), "tags": ""});
    call(
        c.node(via),
        "PUT",
        &format!("/api/users/{user}"),
        Some(body),
    )
}

#[test]
fn users_vhosts_permissions_and_policies_made_on_one_node_hold_on_every_node() {
    let c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();

    // Made through node 1.
    assert_eq!(call(c.node(1), "PUT", "/api/vhosts/shop", None), 201);
    assert_eq!(make_user(&c, 1, "alice"), 201);
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(
        call(c.node(1), "PUT", "/api/permissions/shop/alice", Some(all)),
        201
    );
    let policy = json!({"pattern": "^orders", "apply-to": "queues",
        "definition": {"message-ttl": 60000}, "priority": 1});
    assert_eq!(
        call(c.node(1), "PUT", "/api/policies/shop/ttl", Some(policy)),
        201
    );
    // Node 1 answered once it had made them itself.
    for path in [
        "/api/users/alice",
        "/api/vhosts/shop",
        "/api/permissions/shop/alice",
    ] {
        assert!(exists(&c, 1, path), "{path} on node 1 right after the PUT");
    }
    wait_exists(&c, &[2, 3], "/api/users/alice", true);
    wait_exists(&c, &[2, 3], "/api/policies/shop/ttl", true);
    wait_exists(&c, &[2, 3], "/api/permissions/shop/alice", true);

    // Alice logs in on node 3, into the vhost made on node 1, and the policy set on node 1
    // applies to the queue she declares there.
    let conn = rt.block_on(async {
        let conn = login(c.node(3).amqp, "alice", "shop").await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            "orders".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        conn
    });
    let q = c.node(3).api_get("/api/queues/shop/orders").unwrap();
    assert_eq!(q["policy"], "ttl", "{q}");
    assert_eq!(q["effective_policy_definition"]["message-ttl"], 60000);

    // Deleted through node 2: gone everywhere, and her connection on node 3 is closed.
    assert_eq!(call(c.node(2), "DELETE", "/api/users/alice", None), 204);
    wait_exists(&c, &[1, 2, 3], "/api/users/alice", false);
    wait_exists(&c, &[1, 2, 3], "/api/permissions/shop/alice", false);
    wait_for("alice's connection on node 3 closed", &c, ELECTION, || {
        (!conn.status().connected()).then_some(())
    });
    let refused = rt.block_on(login(c.node(1).amqp, "alice", "shop"));
    assert!(refused.is_err(), "a deleted user logged in on node 1");

    // A change the cluster refuses (a permission for a vhost that does not exist) is
    // refused on the node it came through, and nothing changes anywhere.
    assert_eq!(make_user(&c, 3, "bob"), 201);
    let none = json!({"configure": "", "write": "", "read": ""});
    assert!(call(c.node(3), "PUT", "/api/permissions/nowhere/bob", Some(none)) >= 400);
    wait_exists(&c, &[1, 2], "/api/users/bob", true);
}

#[test]
fn a_node_cut_off_changes_nothing_and_a_node_away_catches_up_deletions_included() {
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    assert_eq!(call(c.node(1), "PUT", "/api/vhosts/old", None), 201);
    wait_exists(&c, &[1, 2, 3], "/api/vhosts/old", true);
    // The creator's permissions are a second change after the vhost (as in RabbitMQ's
    // API), so a node can have the vhost a moment before guest may use it.
    wait_exists(&c, &[3], "/api/permissions/old/guest", true);
    // A classic queue with a message in the vhost on node 3: deleting the vhost while
    // node 3 is away must take it, and its files, there too.
    rt.block_on(async {
        let url = format!("amqp://guest:guest@127.0.0.1:{}/old", c.node(3).amqp);
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare("kept".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        conn.close(200, "bye".into()).await.unwrap();
    });
    let old_dir = c.node(3).data.join("vhosts").join("old");
    assert!(old_dir.exists(), "{}", old_dir.display());

    // Node 3 cut off: what is made through it fails, and is nowhere.
    c.isolate(3);
    let status = make_user(&c, 3, "lonely");
    assert!(status >= 500, "a user made in a minority answered {status}");
    // The majority goes on: a user made, the vhost deleted.
    assert_eq!(make_user(&c, 1, "carol"), 201);
    assert_eq!(call(c.node(2), "DELETE", "/api/vhosts/old", None), 204);
    assert!(!exists(&c, 1, "/api/users/lonely"));
    assert!(exists(&c, 3, "/api/vhosts/old"), "node 3 cannot know yet");

    c.heal_all();
    wait_exists(&c, &[3], "/api/users/carol", true);
    wait_exists(&c, &[3], "/api/vhosts/old", false);
    assert!(
        !old_dir.exists(),
        "the deleted vhost's files stay on node 3"
    );
    for id in [1, 2, 3] {
        assert!(!exists(&c, id, "/api/users/lonely"), "node {id}");
    }

    // Node 2 down while a user is made: it has the user when it is back.
    c.node_mut(2).kill();
    assert_eq!(make_user(&c, 1, "dave"), 201);
    c.node_mut(2).start();
    wait_exists(&c, &[2], "/api/users/dave", true);
    rt.block_on(async {
        let conn = login(c.node(2).amqp, "dave", "%2f").await;
        assert!(conn.is_err(), "dave has no permission on / yet: refused");
    });
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(
        call(c.node(2), "PUT", "/api/permissions/%2F/dave", Some(all)),
        201
    );
    rt.block_on(async {
        for id in [1, 3] {
            wait_for("dave's permission", &c, Duration::from_secs(20), || {
                exists(&c, id, "/api/permissions/%2F/dave").then_some(())
            });
            let conn = login(c.node(id).amqp, "dave", "%2f").await.unwrap();
            conn.close(200, "bye".into()).await.unwrap();
        }
    });
}
