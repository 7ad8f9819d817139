//! Protocol fidelity: every scenario in `tests/fidelity/scenarios/` replayed against Warren
//! and compared with what RabbitMQ 3.10 answered (`tests/fidelity/golden/`, recorded by
//! `tools/fidelity/record.py`). Deliberate differences are listed, with their reasons, in
//! `tests/fidelity/allow.toml`. See `tests/fidelity/README.md` for the format.
//!
//! `FIDELITY_ONLY=substring` replays a subset; `FIDELITY_SHOW=1` prints every comparison.

use crate::common;
#[path = "fidelity/engine.rs"]
mod engine;
#[path = "fidelity/normalise.rs"]
mod normalise;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use engine::{Outcome, Scenario};
use serde::Deserialize;

/// Scenarios replayed at once (most of a scenario's time is waiting).
const PARALLEL: usize = 16;

#[derive(Deserialize)]
struct Golden {
    recorded_from: String,
    scenarios: BTreeMap<String, Outcome>,
}

#[derive(Deserialize)]
struct AllowList {
    allow: BTreeMap<String, String>,
}

/// What is compared: the normalised frames, whether the socket was closed, the probe's
/// answer on a connection left open, and whether the broker still served a new client.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    frames: Vec<String>,
    closed: bool,
    probe: Option<Vec<String>>,
    healthy: bool,
}

impl Answer {
    fn of(o: &Outcome) -> Answer {
        Answer {
            frames: normalise::frames(&o.awaits),
            closed: o.closed,
            probe: o
                .probe
                .as_ref()
                .map(|p| normalise::frames(std::slice::from_ref(p))),
            healthy: o.healthy,
        }
    }
}

fn load(dir: &Path) -> (Vec<Scenario>, BTreeMap<String, Outcome>, String) {
    let mut scenarios = Vec::new();
    let mut golden = BTreeMap::new();
    let mut versions = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("scenarios"))
        .expect("tests/fidelity/scenarios")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("scenario file");
        let mut list: Vec<Scenario> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        scenarios.append(&mut list);
        let gpath = dir
            .join("golden")
            .join(path.file_name().expect("file name"));
        let gtext = std::fs::read_to_string(&gpath).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (record it: tools/fidelity/record.py)",
                gpath.display()
            )
        });
        let g: Golden =
            serde_json::from_str(&gtext).unwrap_or_else(|e| panic!("{}: {e}", gpath.display()));
        versions.push(g.recorded_from);
        golden.extend(g.scenarios);
    }
    versions.sort();
    versions.dedup();
    (scenarios, golden, versions.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warren_answers_as_rabbitmq_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fidelity");
    let (scenarios, golden, recorded_from) = load(&dir);
    let allow: AllowList =
        toml::from_str(&std::fs::read_to_string(dir.join("allow.toml")).expect("allow.toml"))
            .expect("allow.toml parses");
    let only = std::env::var("FIDELITY_ONLY").unwrap_or_default();
    let show = std::env::var_os("FIDELITY_SHOW").is_some();

    let broker = common::start().await;
    let addr = broker.addr;
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut runs = tokio::task::JoinSet::new();
    for s in scenarios.into_iter().filter(|s| s.name.contains(&only)) {
        let g = golden
            .get(&s.name)
            .unwrap_or_else(|| panic!("{}: no golden answer; record it", s.name))
            .clone();
        let limit = limit.clone();
        runs.spawn(async move {
            let _slot = limit.acquire_owned().await.expect("semaphore open");
            let got = engine::replay(addr, &s, &g).await;
            (s, Answer::of(&g), Answer::of(&got))
        });
    }

    let (mut total, mut differ, mut allowed, mut unhealthy) = (0, Vec::new(), 0, Vec::new());
    let mut allowed_but_equal = Vec::new();
    while let Some(run) = runs.join_next().await {
        let (s, want, got) = run.expect("replay task");
        total += 1;
        if !got.healthy {
            unhealthy.push(s.name.clone());
        }
        let same = want == got;
        if show || !same {
            let tag = if same { "same" } else { "DIFFERS" };
            println!(
                "{tag} {}: {}\n  rabbitmq: {want:?}\n  warren:   {got:?}",
                s.name, s.doc
            );
        }
        match (same, allow.allow.contains_key(&s.name)) {
            (true, true) => allowed_but_equal.push(s.name),
            (false, true) => allowed += 1,
            (false, false) => differ.push(s.name),
            (true, false) => {}
        }
    }
    println!(
        "fidelity: {total} scenarios against golden answers from {recorded_from}: \
         {} differ, {allowed} allowed differences, {} stale allow entries",
        differ.len(),
        allowed_but_equal.len()
    );
    assert!(
        unhealthy.is_empty(),
        "broker stopped serving new clients after: {unhealthy:?}"
    );
    assert!(
        differ.is_empty(),
        "answers differ from RabbitMQ's: {differ:#?}"
    );
    if only.is_empty() {
        assert!(
            allowed_but_equal.is_empty(),
            "allow.toml lists scenarios that now match RabbitMQ (remove them): {allowed_but_equal:?}"
        );
    }
}
