//! The model without sockets: routing through every exchange type, as RabbitMQ routes.

use crate::model_support;

use model_support::*;
#[test]
fn default_exchange_routes_by_queue_name() {
    let fx = Fx::new();
    fx.declare("q1");
    fx.declare("q2");
    assert!(fx.publish("", "q1", "a"));
    assert!(fx.publish("", "q2", "b"));
    assert!(fx.publish("", "q1", "c"));
    assert!(!fx.publish("", "no-such-queue", "d"));
    assert_eq!(fx.take_all("q1"), ["a", "c"]);
    assert_eq!(fx.take_all("q2"), ["b"]);
}

#[test]
fn binding_to_or_from_the_default_exchange_is_access_refused() {
    let fx = Fx::new();
    fx.declare("q");
    fx.declare_exchange("x", "fanout");
    let spec = BindSpec {
        source: "",
        routing_key: "q",
        args_raw: &[],
        bind: true,
    };
    let r = fx.vh.try_with(|m| m.queue_bind(fx.conn, "q", &spec));
    assert!(is_access_refused(&r), "{r:?}");
    let r = fx.vh.try_with(|m| m.exchange_bind(fx.conn, "x", &spec));
    assert!(is_access_refused(&r), "{r:?}");
    let to_default = BindSpec {
        source: "x",
        ..spec
    };
    let r = fx
        .vh
        .try_with(|m| m.exchange_bind(fx.conn, "", &to_default));
    assert!(is_access_refused(&r), "{r:?}");
}

#[test]
fn direct_exchange_routes_by_exact_routing_key() {
    let fx = Fx::new();
    fx.declare_exchange("d", "direct");
    for q in ["q1", "q2", "q3"] {
        fx.declare(q);
    }
    fx.bind("q1", "d", "k1");
    fx.bind("q2", "d", "k2");
    fx.bind("q3", "d", "k1");
    // The same queue bound twice with two keys gets one copy per message.
    fx.bind("q3", "d", "k3");
    assert!(fx.publish("d", "k1", "m1"));
    assert!(fx.publish("d", "k2", "m2"));
    assert!(fx.publish("d", "k3", "m3"));
    assert!(!fx.publish("d", "K1", "case-sensitive"));
    assert!(!fx.publish("d", "k", "prefix"));
    assert_eq!(fx.take_all("q1"), ["m1"]);
    assert_eq!(fx.take_all("q2"), ["m2"]);
    assert_eq!(fx.take_all("q3"), ["m1", "m3"]);
    // The predeclared amq.direct routes the same way.
    fx.bind("q2", "amq.direct", "rk");
    assert!(fx.publish("amq.direct", "rk", "m4"));
    assert_eq!(fx.take_all("q2"), ["m4"]);
}

#[test]
fn fanout_exchange_routes_to_every_bound_queue_ignoring_the_key() {
    let fx = Fx::new();
    fx.declare_exchange("f", "fanout");
    for (q, k) in [("q1", ""), ("q2", "x"), ("q3", "y")] {
        fx.declare(q);
        fx.bind(q, "f", k);
    }
    fx.declare("unbound");
    assert!(fx.publish("f", "anything", "m1"));
    assert!(fx.publish("f", "", "m2"));
    for q in ["q1", "q2", "q3"] {
        assert_eq!(fx.take_all(q), ["m1", "m2"], "queue {q}");
    }
    assert!(fx.take_all("unbound").is_empty());
}

#[test]
fn topic_exchange_star_matches_one_word_and_hash_zero_or_more() {
    let fx = Fx::new();
    fx.declare_exchange("t", "topic");
    let bindings = [
        ("star_middle", "a.*.c"),
        ("a_hash", "a.#"),
        ("star_b", "*.b"),
        ("hash_c", "#.c"),
        ("exact", "a.b.c"),
    ];
    for (q, k) in bindings {
        fx.declare(q);
        fx.bind(q, "t", k);
    }
    let cases: [(&str, &[&str]); 10] = [
        ("a.b.c", &["star_middle", "a_hash", "hash_c", "exact"]),
        ("a.x.c", &["star_middle", "a_hash", "hash_c"]),
        ("a", &["a_hash"]),
        ("a.b", &["a_hash", "star_b"]),
        ("x.b", &["star_b"]),
        ("c", &["hash_c"]),
        ("x.y.z.c", &["hash_c"]),
        ("a.b.c.d", &["a_hash"]),
        ("b", &[]),
        ("x.a.b", &[]),
    ];
    for (key, expected) in cases {
        let routed = fx.publish("t", key, key);
        assert_eq!(routed, !expected.is_empty(), "routing key {key}");
        for (q, _) in bindings {
            let got = fx.take_all(q);
            let want: Vec<String> = if expected.contains(&q) {
                vec![key.to_string()]
            } else {
                vec![]
            };
            assert_eq!(got, want, "routing key {key}, queue {q}");
        }
    }
    // `#` alone matches everything, including the empty key.
    fx.declare("all");
    fx.bind("all", "t", "#");
    assert!(fx.publish("t", "", "empty"));
    assert!(fx.publish("t", "x.y", "xy"));
    assert_eq!(fx.take_all("all"), ["empty", "xy"]);
}

#[test]
fn headers_exchange_x_match_all_and_any() {
    let fx = Fx::new();
    fx.declare_exchange("h", "headers");
    fx.declare("all");
    fx.declare("any");
    fx.declare("default_all");
    fx.bind_args(
        "all",
        "h",
        "",
        &table(&[("x-match", V::S("all")), ("a", V::S("1")), ("b", V::S("2"))]),
    );
    fx.bind_args(
        "any",
        "h",
        "",
        &table(&[("x-match", V::S("any")), ("a", V::S("1")), ("b", V::S("2"))]),
    );
    // No x-match: "all" is the default.
    fx.bind_args(
        "default_all",
        "h",
        "",
        &table(&[("a", V::S("1")), ("n", V::I(7))]),
    );

    assert!(fx.publish_with_headers(
        "h",
        "ab",
        &table(&[("a", V::S("1")), ("b", V::S("2")), ("extra", V::S("z"))])
    ));
    assert!(fx.publish_with_headers("h", "a-only", &table(&[("a", V::S("1"))])));
    assert!(fx.publish_with_headers(
        "h",
        "a-and-wrong-b",
        &table(&[("a", V::S("1")), ("b", V::S("3"))])
    ));
    assert!(fx.publish_with_headers("h", "a-and-n", &table(&[("a", V::S("1")), ("n", V::I(7))])));
    assert!(!fx.publish_with_headers("h", "none", &table(&[("c", V::S("1"))])));
    assert!(!fx.publish_with_headers("h", "wrong", &table(&[("a", V::S("2"))])));
    // A message without headers matches nothing here.
    assert!(!fx.publish("h", "", "no-headers"));
    // The routing key plays no part.
    assert!(
        fx.publish_full(
            "h",
            "whatever",
            "rk",
            false,
            Some(&table(&[("b", V::S("2"))]))
        )
        .unwrap()
        .routed
    );

    assert_eq!(fx.take_all("all"), ["ab"]);
    assert_eq!(
        fx.take_all("any"),
        ["ab", "a-only", "a-and-wrong-b", "a-and-n", "rk"]
    );
    assert_eq!(fx.take_all("default_all"), ["a-and-n"]);
}

#[test]
fn exchange_to_exchange_binding_routes_through_without_duplicates_or_loops() {
    let fx = Fx::new();
    fx.declare_exchange("src", "direct");
    fx.declare_exchange("mid", "fanout");
    fx.declare_exchange("leaf", "topic");
    fx.declare("q_mid");
    fx.declare("q_leaf");
    fx.declare("q_both");
    fx.bind_exchange("mid", "src", "k");
    fx.bind_exchange("leaf", "mid", "");
    fx.bind("q_mid", "mid", "");
    fx.bind("q_leaf", "leaf", "k");
    // Reached twice (src -> mid and src -> mid -> leaf): one copy.
    fx.bind("q_both", "mid", "");
    fx.bind("q_both", "leaf", "#");
    // A cycle back to the source must not loop.
    fx.bind_exchange("src", "leaf", "#");

    assert!(fx.publish("src", "k", "m1"));
    assert!(!fx.publish("src", "other", "m2"));
    assert_eq!(fx.take_all("q_mid"), ["m1"]);
    assert_eq!(fx.take_all("q_leaf"), ["m1"]);
    assert_eq!(fx.take_all("q_both"), ["m1"]);

    // Publishing into the middle follows only the downstream bindings (and the cycle).
    assert!(fx.publish("mid", "x", "m3"));
    assert_eq!(fx.take_all("q_mid"), ["m3"]);
    assert!(fx.take_all("q_leaf").is_empty());
    assert_eq!(fx.take_all("q_both"), ["m3"]);

    // Unbinding the exchange-to-exchange binding cuts the path.
    let unbind = BindSpec {
        source: "src",
        routing_key: "k",
        args_raw: &[],
        bind: false,
    };
    fx.vh
        .try_with(|m| m.exchange_bind(fx.conn, "mid", &unbind))
        .unwrap();
    assert!(!fx.publish("src", "k", "m4"));
}

#[test]
fn unroutable_message_reports_routed_false_and_is_dropped() {
    let fx = Fx::new();
    fx.declare_exchange("d", "direct");
    fx.declare("q");
    fx.bind("q", "d", "yes");
    let p = fx.try_publish("d", "no", "lost").unwrap();
    assert!(!p.routed);
    assert!(!p.failed);
    assert_eq!(fx.stats("q"), Some((0, 0, 0)));
    // An exchange with no bindings at all.
    fx.declare_exchange("empty", "fanout");
    assert!(!fx.try_publish("empty", "", "lost").unwrap().routed);
    assert_eq!(fx.stats("q"), Some((0, 0, 0)));
}

#[test]
fn publishing_to_a_missing_exchange_is_not_found() {
    let fx = Fx::new();
    fx.declare("q");
    let r = fx.try_publish("nope", "q", "m");
    assert!(is_not_found(&r), "{r:?}");
    assert_eq!(fx.stats("q"), Some((0, 0, 0)));
}

#[test]
fn publishing_to_an_internal_exchange_is_access_refused_but_it_routes_from_other_exchanges() {
    let fx = Fx::new();
    fx.exchange(&ExchangeSpec {
        internal: true,
        ..exchange("internal", "fanout")
    })
    .unwrap();
    fx.declare_exchange("public", "fanout");
    fx.declare("q");
    fx.bind("q", "internal", "");
    fx.bind_exchange("internal", "public", "");
    let r = fx.try_publish("internal", "", "m");
    assert!(is_access_refused(&r), "{r:?}");
    assert_eq!(fx.stats("q"), Some((0, 0, 0)));
    assert!(fx.publish("public", "", "via-public"));
    assert_eq!(fx.take_all("q"), ["via-public"]);
}

// ===== 2. qos ==========================================================================
