//! Metadata under faults (issue 16): a randomized storm of declarations and deletions
//! (exchanges, exchange and queue bindings, quorum queues, users, vhosts, permissions)
//! made through every node at once, while a nemesis isolates a node, cuts a link, slows a
//! node's links, kills a node in the middle of the storm, or kills a node that was cut off
//! with its changes still waiting for the cluster, and restarts it. Once every fault is
//! healed every node must list the same definitions, and go on listing them, before the
//! next round begins.
//!
//! A few names of each kind, so that operations from different nodes meet on the same
//! exchange, queue, user or vhost. What one operation answers is not checked (a change
//! through a node in a minority may fail, a binding to a queue deleted meanwhile fails):
//! only that the nodes end each round alike (every fault healed, every node up). Knobs:
//! `WARREN_STORM_ROUNDS` (6) and
//! `WARREN_STORM_SEED` (from the clock; printed, so a failing storm can be run again).

use crate::cluster_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster_support::quorum::{agreed, durable, quorum, runtime, wait_for, Definitions, ELECTION};
use cluster_support::{env_or, http_call, Cluster, Rng};
use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, ExchangeUnbindOptions,
    QueueBindOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ExchangeKind};
use serde_json::{json, Value};

const NODES: [u64; 3] = [1, 2, 3];
/// Names of each kind: few, so that operations collide.
const NAMES: u64 = 4;
/// Operations each node is given in a round.
const OPS_PER_ROUND: usize = 30;
/// How long a round's storm may last: a node cut off takes seconds to fail each change
/// of users, vhosts and permissions (they wait for the group), and the rest of its
/// operations are then left out.
const ROUND_FOR: Duration = Duration::from_secs(15);
const GUEST: &str = "guest:guest";

#[derive(Debug, Clone, Copy)]
enum Fault {
    Nothing,
    Isolate(u64),
    CutLink(u64, u64),
    Slow(u64, Duration),
    /// Killed while the storm goes on, after this long.
    KillMidway(u64, Duration),
    /// Cut off for the storm, then killed before the cut is healed: what it changed
    /// meanwhile had not reached the cluster.
    IsolateThenKill(u64),
}

#[derive(Debug, Clone)]
enum Op {
    DeclareExchange(u64),
    DeleteExchange(u64),
    DeclareQueue(u64),
    DeleteQueue(u64),
    BindQueue(u64, u64),
    UnbindQueue(u64, u64),
    BindExchange(u64, u64),
    UnbindExchange(u64, u64),
    PutUser(u64),
    DeleteUser(u64),
    PutVhost(u64),
    DeleteVhost(u64),
    PutPermission(u64, u64),
}

fn random_op(rng: &mut Rng) -> Op {
    // Made more often than taken away, so that the storm leaves something to compare.
    let (a, b) = (rng.below(NAMES), rng.below(NAMES));
    match rng.below(16) {
        0 | 1 => Op::DeclareExchange(a),
        2 => Op::DeleteExchange(a),
        3 | 4 => Op::DeclareQueue(a),
        5 => Op::DeleteQueue(a),
        6 | 7 => Op::BindQueue(a, b),
        8 => Op::UnbindQueue(a, b),
        9 | 10 => Op::BindExchange(a, b),
        11 => Op::UnbindExchange(a, b),
        12 => match rng.below(3) {
            0 => Op::DeleteUser(a),
            _ => Op::PutUser(a),
        },
        13 => match rng.below(3) {
            0 => Op::DeleteVhost(a),
            _ => Op::PutVhost(a),
        },
        _ => Op::PutPermission(a, b),
    }
}

/// Exchange `i`: fanout or topic by its number, so that two declarations of one name
/// always agree (an inequivalent declaration is refused, not a disagreement to settle).
fn exchange(i: u64) -> (String, ExchangeKind) {
    let kind = match i % 2 {
        0 => ExchangeKind::Fanout,
        _ => ExchangeKind::Topic,
    };
    (format!("storm-x{i}"), kind)
}

fn queue(i: u64) -> String {
    format!("storm-q{i}")
}

/// One node's client for the storm: its AMQP channel, opened again after any error.
struct Client {
    amqp: u16,
    http: u16,
    conn: Option<(Connection, Channel)>,
}

/// How long one AMQP operation may take (a node cut off or killed answers nothing).
const OP_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    async fn channel(&mut self) -> Option<Channel> {
        if let Some((conn, ch)) = &self.conn {
            if conn.status().connected() && ch.status().connected() {
                return Some(ch.clone());
            }
        }
        self.conn = None;
        let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp);
        let props = lapin::ConnectionProperties::default();
        let conn = tokio::time::timeout(OP_TIMEOUT, Connection::connect(&url, props))
            .await
            .ok()?
            .ok()?;
        let ch = tokio::time::timeout(OP_TIMEOUT, conn.create_channel())
            .await
            .ok()?
            .ok()?;
        self.conn = Some((conn, ch.clone()));
        Some(ch)
    }

    /// Runs `op` through this node; whether it succeeded.
    async fn run(&mut self, op: &Op) -> bool {
        let port = self.http;
        match op {
            Op::PutUser(u) => {
                let body = json!({"password": "storm", "tags": ""});
                return http(port, "PUT", format!("/api/users/storm-u{u}"), Some(body)).await;
            }
            Op::DeleteUser(u) => {
                return http(port, "DELETE", format!("/api/users/storm-u{u}"), None).await
            }
            Op::PutVhost(v) => {
                return http(port, "PUT", format!("/api/vhosts/storm-v{v}"), None).await
            }
            Op::DeleteVhost(v) => {
                return http(port, "DELETE", format!("/api/vhosts/storm-v{v}"), None).await
            }
            Op::PutPermission(v, u) => {
                let body = json!({"configure": ".*", "write": ".*", "read": "^storm"});
                let path = format!("/api/permissions/storm-v{v}/storm-u{u}");
                return http(port, "PUT", path, Some(body)).await;
            }
            _ => {}
        }
        let Some(ch) = self.channel().await else {
            return false;
        };
        let none = FieldTable::default;
        let done = tokio::time::timeout(OP_TIMEOUT, async {
            match op {
                Op::DeclareExchange(x) => {
                    let (name, kind) = exchange(*x);
                    let options = ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    };
                    ch.exchange_declare(name.into(), kind, options, none())
                        .await
                }
                Op::DeleteExchange(x) => {
                    let options = ExchangeDeleteOptions::default();
                    ch.exchange_delete(exchange(*x).0.into(), options).await
                }
                Op::DeclareQueue(q) => ch
                    .queue_declare(queue(*q).into(), durable(), quorum())
                    .await
                    .map(drop),
                Op::DeleteQueue(q) => ch
                    .queue_delete(queue(*q).into(), QueueDeleteOptions::default())
                    .await
                    .map(drop),
                Op::BindQueue(x, q) | Op::UnbindQueue(x, q) => {
                    let (q, x, key) = (queue(*q).into(), exchange(*x).0.into(), "k".into());
                    match op {
                        Op::BindQueue(..) => {
                            ch.queue_bind(q, x, key, QueueBindOptions::default(), none())
                                .await
                        }
                        _ => ch.queue_unbind(q, x, key, none()).await,
                    }
                }
                Op::BindExchange(s, d) | Op::UnbindExchange(s, d) => {
                    let (s, d) = (exchange(*s).0, exchange(*d).0);
                    let key = "k".into();
                    match op {
                        Op::BindExchange(..) => {
                            let options = ExchangeBindOptions::default();
                            ch.exchange_bind(d.into(), s.into(), key, options, none())
                                .await
                        }
                        _ => {
                            let options = ExchangeUnbindOptions::default();
                            ch.exchange_unbind(d.into(), s.into(), key, options, none())
                                .await
                        }
                    }
                }
                _ => unreachable!("HTTP operations are made above"),
            }
        })
        .await;
        matches!(done, Ok(Ok(())))
    }
}

/// `method` on `path` of the management API on `port`: whether it answered 2xx.
async fn http(port: u16, method: &'static str, path: String, body: Option<Value>) -> bool {
    let call = move || http_call(port, method, &path, body.as_ref(), GUEST);
    let answer = tokio::task::spawn_blocking(call).await.ok().flatten();
    answer.is_some_and(|(status, _)| (200..300).contains(&status))
}

/// Waits until every node lists the same definitions, and still does 3 s later; those.
fn settle(c: &Cluster, seed: u64, after: &str) -> Definitions {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let why = match agreed(c, &NODES) {
            Ok(defs) => {
                std::thread::sleep(Duration::from_secs(3));
                match agreed(c, &NODES) {
                    Ok(again) if again == defs => return defs,
                    Ok(_) => "they agreed, and then on something else".to_string(),
                    Err(why) => why,
                }
            }
            Err(why) => why,
        };
        assert!(
            Instant::now() < until,
            "the nodes do not agree 90 s after {after} (seed {seed}): {why}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Round `round`'s fault: the kinds in turn (every one in six rounds), the nodes and
/// times at random.
fn fault(round: u64, rng: &mut Rng) -> Fault {
    let node = NODES[rng.below(3) as usize];
    let other = NODES[(node as usize + rng.below(2) as usize) % 3];
    match round % 6 {
        0 => Fault::Nothing,
        1 => Fault::Isolate(node),
        2 => Fault::CutLink(node, other),
        3 => Fault::Slow(node, Duration::from_millis(rng.between(50, 400))),
        // A round's storm lasts about a quarter of a second when no node is cut off.
        4 => Fault::KillMidway(node, Duration::from_millis(rng.between(10, 120))),
        _ => Fault::IsolateThenKill(node),
    }
}

#[test]
fn a_declare_and_delete_storm_under_faults_ends_with_every_node_agreeing() {
    let rounds = env_or("WARREN_STORM_ROUNDS", 6);
    let seed = Rng::seed("WARREN_STORM_SEED");
    println!("storm: seed {seed}, {rounds} rounds");
    let mut rng = Rng(seed);
    let mut c = Cluster::new(3, 0);
    c.agreed_leader(&NODES, None, ELECTION);
    let rt = runtime();
    let mut clients: BTreeMap<u64, Client> = NODES
        .iter()
        .map(|id| {
            let node = c.node(*id);
            let client = Client {
                amqp: node.amqp,
                http: node.http,
                conn: None,
            };
            (*id, client)
        })
        .collect();

    let (mut tried, mut succeeded) = (0, 0);
    for round in 1..=rounds {
        let fault = fault(round, &mut rng);
        let plans: BTreeMap<u64, Vec<Op>> = NODES
            .iter()
            .map(|id| {
                (
                    *id,
                    (0..OPS_PER_ROUND).map(|_| random_op(&mut rng)).collect(),
                )
            })
            .collect();
        println!("storm: round {round}: {fault:?}");
        match fault {
            Fault::Isolate(n) | Fault::IsolateThenKill(n) => c.isolate(n),
            Fault::CutLink(a, b) => {
                c.links[&(a, b)].cut();
                c.links[&(b, a)].cut();
            }
            Fault::Slow(n, by) => c.slow(n, by),
            Fault::Nothing | Fault::KillMidway(..) => {}
        }
        let began = Instant::now();
        let stop = began + ROUND_FOR;
        let runs: Vec<_> = std::mem::take(&mut clients)
            .into_iter()
            .map(|(id, mut client)| {
                let plan = plans[&id].clone();
                rt.spawn(async move {
                    let mut ok = 0;
                    for op in &plan {
                        if Instant::now() > stop {
                            break;
                        }
                        ok += client.run(op).await as usize;
                    }
                    (id, client, ok)
                })
            })
            .collect();
        if let Fault::KillMidway(n, after) = fault {
            std::thread::sleep(after);
            c.node_mut(n).kill();
        }
        let mut ok = 0;
        for run in runs {
            let (id, client, n) = rt.block_on(run).unwrap();
            clients.insert(id, client);
            ok += n;
        }
        tried += OPS_PER_ROUND * NODES.len();
        succeeded += ok;
        println!(
            "storm: round {round}: {ok} of {} operations succeeded in {:?}",
            OPS_PER_ROUND * NODES.len(),
            began.elapsed()
        );
        if let Fault::IsolateThenKill(n) = fault {
            c.node_mut(n).kill();
        }
        c.heal_all();
        for id in NODES {
            if c.node(id).child.is_none() {
                c.node_mut(id).start();
            }
        }
        // Every node agrees before the next round.
        let defs = settle(&c, seed, &format!("round {round}"));
        let sizes: BTreeMap<_, _> = defs.iter().map(|(k, v)| (*k, v.len())).collect();
        println!("storm: round {round}: every node lists {sizes:?}");
    }
    println!("storm: {succeeded} of {tried} operations succeeded");

    let settled = settle(&c, seed, "the storm");
    // Every quorum queue listed is served: each node names a leader for it.
    for q in &settled["queues"] {
        let mut parts = q.split(' ');
        let (vhost, name) = (parts.next().unwrap(), parts.next().unwrap());
        let path = format!("/api/queues/{}/{name}", vhost.replace('/', "%2F"));
        wait_for("a leader for every queue", &c, ELECTION, || {
            NODES
                .iter()
                .all(|id| {
                    c.node(*id)
                        .api_get(&path)
                        .is_some_and(|v| v["leader"].is_string())
                })
                .then_some(())
        });
    }
}
