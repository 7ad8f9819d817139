//! The model without sockets: exclusive and auto-delete lifecycles, redeclaration rules
//! and durability across a reopen, as RabbitMQ's queues and exchanges behave.

use crate::model_support;

use model_support::*;
#[test]
fn exclusive_queue_is_locked_to_other_connections() {
    let fx = Fx::new();
    let owner = fx.connect();
    let owner_key = (owner, 1);
    fx.channel(owner_key);
    let spec = QueueSpec {
        exclusive: true,
        ..queue("excl")
    };
    fx.declare_on(owner, &spec).unwrap();
    // The owner may redeclare it.
    fx.declare_on(owner, &spec).unwrap();

    let other = fx.conn;
    let r = fx.declare_on(other, &spec);
    assert!(is_resource_locked(&r), "declare: {r:?}");
    let r = fx.declare_on(
        other,
        &QueueSpec {
            passive: true,
            ..queue("excl")
        },
    );
    assert!(is_resource_locked(&r), "passive declare: {r:?}");
    let r = fx.try_consume(fx.key, &consumer("excl", "c"));
    assert!(is_resource_locked(&r), "consume: {r:?}");
    let r = fx.get_on(fx.key, "excl", false);
    assert!(is_resource_locked(&r), "get: {r:?}");
    let r = fx.vh.try_with(|m| m.queue_purge(other, "excl"));
    assert!(is_resource_locked(&r), "purge: {r:?}");
    let r = fx
        .vh
        .try_with(|m| m.queue_delete(other, "excl", false, false));
    assert!(is_resource_locked(&r), "delete: {r:?}");
    let bind = BindSpec {
        source: "amq.direct",
        routing_key: "k",
        args_raw: &[],
        bind: true,
    };
    let r = fx.vh.try_with(|m| m.queue_bind(other, "excl", &bind));
    assert!(is_resource_locked(&r), "bind: {r:?}");

    // Anyone may publish to it.
    assert!(fx.publish("", "excl", "m"));
    assert_eq!(fx.get_on(owner_key, "excl", true).unwrap().unwrap().2, "m");
    assert_eq!(fx.stats("excl"), Some((0, 0, 0)));
}

#[test]
fn exclusive_queue_is_deleted_when_its_owner_connection_closes() {
    let fx = Fx::new();
    let owner = fx.connect();
    let owner_key = (owner, 1);
    let out = fx.channel(owner_key);
    let spec = QueueSpec {
        exclusive: true,
        ..queue("excl")
    };
    fx.declare_on(owner, &spec).unwrap();
    let bind = BindSpec {
        source: "amq.fanout",
        routing_key: "",
        args_raw: &[],
        bind: true,
    };
    fx.vh
        .try_with(|m| m.queue_bind(owner, "excl", &bind))
        .unwrap();
    fx.publish("", "excl", "m0");
    fx.consume(owner_key, "excl", "c");
    assert_eq!(deliveries(&out).len(), 1);
    fx.publish("", "excl", "m1");

    // Closing another connection does nothing to it.
    let bystander = fx.connect();
    fx.vh.with(|m| m.close_connection(bystander));
    assert!(fx.stats("excl").is_some());

    fx.vh.with(|m| m.close_connection(owner));
    fx.broker.connection_closed();
    assert_eq!(fx.stats("excl"), None);
    assert!(!fx
        .vh
        .with(|m| m.queue_names())
        .iter()
        .any(|n| &**n == "excl"));
    // Its bindings went with it.
    assert!(!fx.publish("amq.fanout", "", "after"));
    // Another connection may now declare the name.
    fx.declare_on(fx.conn, &spec).unwrap();
    assert_eq!(fx.stats("excl"), Some((0, 0, 0)));
}

#[test]
fn exclusive_consumer_refuses_other_consumers() {
    let fx = Fx::new();
    fx.declare("q");
    let a = (fx.conn, 2);
    fx.channel(a);
    fx.try_consume(
        a,
        &ConsumeSpec {
            exclusive: true,
            ..consumer("q", "exclusive")
        },
    )
    .unwrap();
    // Another consumer on the same channel, another channel, or another connection.
    let r = fx.try_consume(a, &consumer("q", "second"));
    assert!(is_access_refused(&r), "{r:?}");
    let other_conn = fx.connect();
    let b = (other_conn, 1);
    fx.channel(b);
    let r = fx.try_consume(b, &consumer("q", "second"));
    assert!(is_access_refused(&r), "{r:?}");
    assert_eq!(fx.stats("q"), Some((0, 0, 1)));
    // Once it is cancelled, others may consume.
    assert!(fx.cancel(a, "exclusive"));
    fx.try_consume(b, &consumer("q", "second")).unwrap();
}

#[test]
fn exclusive_consume_on_a_queue_that_has_consumers_is_access_refused() {
    let fx = Fx::new();
    fx.declare("q");
    let a = (fx.conn, 2);
    fx.channel(a);
    fx.consume(a, "q", "first");
    let r = fx.try_consume(
        a,
        &ConsumeSpec {
            exclusive: true,
            ..consumer("q", "exclusive")
        },
    );
    assert!(is_access_refused(&r), "{r:?}");
    assert_eq!(fx.stats("q"), Some((0, 0, 1)));
}

#[test]
fn redeclaring_a_queue_with_a_different_exclusive_flag_is_resource_locked() {
    let fx = Fx::new();
    let owner = fx.connect();
    fx.declare_on(
        owner,
        &QueueSpec {
            exclusive: true,
            ..queue("excl")
        },
    )
    .unwrap();
    let r = fx.declare_on(owner, &queue("excl"));
    assert!(is_resource_locked(&r), "{r:?}");
    fx.declare("shared");
    let r = fx.declare_on(
        fx.conn,
        &QueueSpec {
            exclusive: true,
            ..queue("shared")
        },
    );
    assert!(is_resource_locked(&r), "{r:?}");
}

// ===== 8. auto-delete =================================================================

#[test]
fn auto_delete_queue_is_deleted_when_its_last_consumer_cancels_not_before() {
    let fx = Fx::new();
    let spec = QueueSpec {
        auto_delete: true,
        ..queue("ad")
    };
    fx.declare_on(fx.conn, &spec).unwrap();
    fx.bind("ad", "amq.fanout", "");
    // No consumer yet: it stays, through publishes and gets.
    fx.publish("", "ad", "m0");
    assert_eq!(fx.get("ad", true).unwrap().2, "m0");
    assert_eq!(fx.stats("ad"), Some((0, 0, 0)));

    let key = (fx.conn, 2);
    fx.channel(key);
    fx.consume(key, "ad", "c1");
    fx.consume(key, "ad", "c2");
    assert!(fx.cancel(key, "c1"));
    assert_eq!(fx.stats("ad"), Some((0, 0, 1)));
    assert!(fx.cancel(key, "c2"));
    assert_eq!(fx.stats("ad"), None);
    // Its bindings went with it.
    assert!(!fx.publish("amq.fanout", "", "after"));
    // The name is free: a new declaration is a new, empty queue.
    fx.declare_on(fx.conn, &spec).unwrap();
    assert_eq!(fx.stats("ad"), Some((0, 0, 0)));
}

#[test]
fn auto_delete_queue_is_deleted_when_its_last_consumers_channel_closes() {
    let fx = Fx::new();
    let spec = QueueSpec {
        auto_delete: true,
        ..queue("ad")
    };
    fx.declare_on(fx.conn, &spec).unwrap();
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.consume(key, "ad", "c");
    fx.publish("", "ad", "m0");
    assert_eq!(deliveries(&out).len(), 1);
    fx.vh.with(|m| m.close_channel(key));
    assert_eq!(fx.stats("ad"), None);

    // Likewise when its consumer's connection closes.
    fx.declare_on(fx.conn, &spec).unwrap();
    let conn = fx.connect();
    fx.channel((conn, 1));
    fx.consume((conn, 1), "ad", "c");
    fx.vh.with(|m| m.close_connection(conn));
    assert_eq!(fx.stats("ad"), None);
}

#[test]
fn consumer_gets_basic_cancel_when_its_queue_is_deleted() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.consume(key, "q", "c");
    fx.publish("", "q", "m0");
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["m0"]);
    let n = fx
        .vh
        .try_with(|m| m.queue_delete(fx.conn, "q", false, false))
        .unwrap();
    assert_eq!(n, 0);
    let items = drain(&out);
    assert_eq!(items.len(), 1, "{items:?}");
    match &items[0] {
        Outgoing::Cancel {
            channel,
            consumer_tag,
        } => {
            assert_eq!(*channel, 2);
            assert_eq!(&**consumer_tag, "c");
        }
        other => panic!("expected basic.cancel, got {other:?}"),
    }
    // The tag is free again on the channel, and the old delivery's tag is still settleable.
    fx.declare("q2");
    fx.consume(key, "q2", "c");
    fx.ack(key, d[0].delivery_tag);
    assert_eq!(
        fx.vh.with(|m| m.consumer_queue(key, "c")).as_deref(),
        Some("q2")
    );

    // Deleting an auto-delete queue with consumers also cancels them.
    fx.declare_on(
        fx.conn,
        &QueueSpec {
            auto_delete: true,
            ..queue("ad")
        },
    )
    .unwrap();
    fx.consume(key, "ad", "c-ad");
    let r = fx
        .vh
        .try_with(|m| m.queue_delete(fx.conn, "ad", true, false));
    assert!(
        is_precondition_failed(&r),
        "if-unused with a consumer: {r:?}"
    );
    fx.vh
        .try_with(|m| m.queue_delete(fx.conn, "ad", false, false))
        .unwrap();
    assert!(matches!(
        &drain(&out)[..],
        [Outgoing::Cancel { consumer_tag, .. }] if &**consumer_tag == "c-ad"
    ));
}

#[test]
fn auto_delete_exchange_is_deleted_when_its_last_binding_goes() {
    let fx = Fx::new();
    fx.exchange(&ExchangeSpec {
        auto_delete: true,
        ..exchange("adx", "fanout")
    })
    .unwrap();
    fx.declare("q1");
    fx.declare("q2");
    fx.bind("q1", "adx", "");
    fx.bind("q2", "adx", "");
    let unbind = BindSpec {
        source: "adx",
        routing_key: "",
        args_raw: &[],
        bind: false,
    };
    fx.vh
        .try_with(|m| m.queue_bind(fx.conn, "q1", &unbind))
        .unwrap();
    assert!(fx.try_publish("adx", "", "m").is_ok());
    // Deleting the last bound queue removes the last binding.
    fx.vh
        .try_with(|m| m.queue_delete(fx.conn, "q2", false, false))
        .unwrap();
    let r = fx.try_publish("adx", "", "m");
    assert!(is_not_found(&r), "{r:?}");
}

// ===== 9. redeclaration ===============================================================

#[test]
fn redeclaring_a_queue_with_the_same_properties_is_ok_and_reports_counts() {
    let fx = Fx::new();
    let args = table(&[("x-max-length", V::I(10))]);
    let spec = QueueSpec {
        durable: true,
        args_raw: &args,
        ..queue("q")
    };
    let info = fx.declare_on(fx.conn, &spec).unwrap();
    assert_eq!(
        (info.name.as_str(), info.messages, info.consumers),
        ("q", 0, 0)
    );
    fx.publish("", "q", "m0");
    fx.publish("", "q", "m1");
    let key = (fx.conn, 2);
    fx.channel(key);
    fx.qos(key, 1, false);
    fx.consume(key, "q", "c");
    let info = fx.declare_on(fx.conn, &spec).unwrap();
    // message_count counts ready messages only.
    assert_eq!((info.messages, info.consumers), (1, 1));
    let passive = fx
        .declare_on(
            fx.conn,
            &QueueSpec {
                passive: true,
                durable: false,
                ..queue("q")
            },
        )
        .unwrap();
    assert_eq!((passive.messages, passive.consumers), (1, 1));

    // Exchanges likewise.
    let x = ExchangeSpec {
        durable: true,
        ..exchange("x", "topic")
    };
    fx.exchange(&x).unwrap();
    fx.exchange(&x).unwrap();
    fx.exchange(&ExchangeSpec {
        passive: true,
        kind: "",
        ..exchange("x", "")
    })
    .unwrap();
    // A predeclared exchange redeclared as it is.
    fx.exchange(&ExchangeSpec {
        durable: true,
        ..exchange("amq.direct", "direct")
    })
    .unwrap();
}

#[test]
fn redeclaring_a_queue_with_different_durable_auto_delete_or_args_is_precondition_failed() {
    let fx = Fx::new();
    let ttl = table(&[("x-message-ttl", V::I(1000))]);
    let ttl2 = table(&[("x-message-ttl", V::I(2000))]);
    let spec = QueueSpec {
        args_raw: &ttl,
        ..queue("q")
    };
    fx.declare_on(fx.conn, &spec).unwrap();
    let variants = [
        QueueSpec {
            durable: true,
            ..spec
        },
        QueueSpec {
            auto_delete: true,
            ..spec
        },
        QueueSpec {
            args_raw: &ttl2,
            ..spec
        },
        QueueSpec {
            args_raw: &[],
            ..spec
        },
    ];
    for v in &variants {
        let r = fx.declare_on(fx.conn, v);
        assert!(is_precondition_failed(&r), "{v:?}: {r:?}");
    }
    // The queue is unchanged.
    fx.declare_on(fx.conn, &spec).unwrap();
}

#[test]
fn redeclaring_an_exchange_with_different_properties_is_precondition_failed() {
    let fx = Fx::new();
    let spec = exchange("x", "direct");
    fx.exchange(&spec).unwrap();
    let variants = [
        ExchangeSpec {
            kind: "fanout",
            ..spec
        },
        ExchangeSpec {
            durable: true,
            ..spec
        },
        ExchangeSpec {
            auto_delete: true,
            ..spec
        },
        ExchangeSpec {
            internal: true,
            ..spec
        },
    ];
    for v in &variants {
        let r = fx.exchange(v);
        assert!(is_precondition_failed(&r), "{v:?}: {r:?}");
    }
    fx.exchange(&spec).unwrap();
}

#[test]
fn redeclaring_a_predeclared_exchange_inequivalently_is_precondition_failed() {
    let fx = Fx::new();
    let r = fx.exchange(&ExchangeSpec {
        durable: true,
        ..exchange("amq.direct", "fanout")
    });
    assert!(is_precondition_failed(&r), "other type: {r:?}");
    let r = fx.exchange(&exchange("amq.topic", "topic"));
    assert!(is_precondition_failed(&r), "durable=false: {r:?}");
}

#[test]
fn declaring_the_default_exchange_is_access_refused() {
    let fx = Fx::new();
    let r = fx.exchange(&exchange("", "direct"));
    assert!(is_access_refused(&r), "{r:?}");
    let r = fx.exchange(&ExchangeSpec {
        passive: true,
        ..exchange("", "direct")
    });
    assert!(is_access_refused(&r), "passive: {r:?}");
}

#[test]
fn reserved_amq_names_are_access_refused() {
    let fx = Fx::new();
    let r = fx.declare_on(fx.conn, &queue("amq.mine"));
    assert!(is_access_refused(&r), "{r:?}");
    let r = fx.exchange(&exchange("amq.mine", "direct"));
    assert!(is_access_refused(&r), "{r:?}");
    // Predeclared exchanges and the default exchange cannot be deleted.
    let r = fx
        .vh
        .try_with(|m| m.exchange_delete(fx.conn, "amq.direct", false));
    assert!(is_access_refused(&r), "{r:?}");
    let r = fx.vh.try_with(|m| m.exchange_delete(fx.conn, "", false));
    assert!(is_access_refused(&r), "{r:?}");
    // A server-named queue gets an amq.gen- name.
    let info = fx.declare_on(fx.conn, &queue("")).unwrap();
    assert!(info.name.starts_with("amq.gen-"), "{}", info.name);
    assert!(fx.publish("", &info.name, "m"));
    // Redeclaring it by that name is refused too (the name check comes first); a passive
    // declare finds it.
    let r = fx.declare_on(fx.conn, &queue(&info.name));
    assert!(is_access_refused(&r), "{r:?}");
    fx.declare_on(
        fx.conn,
        &QueueSpec {
            passive: true,
            ..queue(&info.name)
        },
    )
    .unwrap();
}

#[test]
fn passive_declare_of_a_missing_queue_or_exchange_is_not_found() {
    let fx = Fx::new();
    let r = fx.declare_on(
        fx.conn,
        &QueueSpec {
            passive: true,
            ..queue("missing")
        },
    );
    assert!(is_not_found(&r), "{r:?}");
    assert_eq!(fx.stats("missing"), None);
    let r = fx.exchange(&ExchangeSpec {
        passive: true,
        ..exchange("missing", "direct")
    });
    assert!(is_not_found(&r), "{r:?}");
    // Binding to or from something missing is NotFound too.
    fx.declare("q");
    let spec = BindSpec {
        source: "missing",
        routing_key: "",
        args_raw: &[],
        bind: true,
    };
    let r = fx.vh.try_with(|m| m.queue_bind(fx.conn, "q", &spec));
    assert!(is_not_found(&r), "{r:?}");
    let amq = BindSpec {
        source: "amq.direct",
        ..spec
    };
    let r = fx.vh.try_with(|m| m.queue_bind(fx.conn, "missing", &amq));
    assert!(is_not_found(&r), "{r:?}");
    let r = fx
        .vh
        .try_with(|m| m.exchange_bind(fx.conn, "missing", &amq));
    assert!(is_not_found(&r), "{r:?}");
    // Consuming from or getting from a missing queue.
    let r = fx.try_consume(fx.key, &consumer("missing", "c"));
    assert!(is_not_found(&r), "{r:?}");
    let r = fx.get_on(fx.key, "missing", false);
    assert!(is_not_found(&r), "{r:?}");
}

#[test]
fn unknown_exchange_type_is_command_invalid() {
    let fx = Fx::new();
    for kind in ["x-unknown", "", "Direct"] {
        let r = fx.exchange(&exchange("x", kind));
        assert!(
            matches!(r, Err(BrokerError::CommandInvalid(_))),
            "{kind:?}: {r:?}"
        );
    }
    let r = fx.exchange(&ExchangeSpec {
        passive: true,
        ..exchange("x", "direct")
    });
    assert!(is_not_found(&r), "nothing was declared: {r:?}");
}

#[test]
fn x_queue_type_classic_is_accepted_and_any_other_is_precondition_failed() {
    let fx = Fx::new();
    let classic = table(&[("x-queue-type", V::S("classic"))]);
    fx.declare_on(
        fx.conn,
        &QueueSpec {
            args_raw: &classic,
            ..queue("c")
        },
    )
    .unwrap();
    fx.declare_on(
        fx.conn,
        &QueueSpec {
            args_raw: &classic,
            ..queue("c")
        },
    )
    .unwrap();
    for kind in ["quorum", "stream", "bogus"] {
        let args = table(&[("x-queue-type", V::S(kind))]);
        let name = format!("q-{kind}");
        let r = fx.declare_on(
            fx.conn,
            &QueueSpec {
                args_raw: &args,
                ..queue(&name)
            },
        );
        assert!(is_precondition_failed(&r), "{kind}: {r:?}");
        assert_eq!(fx.stats(&name), None);
    }
    let not_a_string = table(&[("x-queue-type", V::I(1))]);
    let r = fx.declare_on(
        fx.conn,
        &QueueSpec {
            args_raw: &not_a_string,
            ..queue("q-int")
        },
    );
    assert!(is_precondition_failed(&r), "{r:?}");
}

#[test]
fn redeclaring_a_queue_differing_only_in_an_unknown_argument_is_ok() {
    let fx = Fx::new();
    let a = table(&[("x-custom", V::S("a"))]);
    let b = table(&[("x-custom", V::S("b"))]);
    fx.declare_on(
        fx.conn,
        &QueueSpec {
            args_raw: &a,
            ..queue("q")
        },
    )
    .unwrap();
    fx.declare_on(
        fx.conn,
        &QueueSpec {
            args_raw: &b,
            ..queue("q")
        },
    )
    .unwrap();
    fx.declare_on(fx.conn, &queue("q")).unwrap();
}

// ===== 10. durability across reopen ===================================================

#[test]
fn durable_definitions_and_persistent_messages_survive_reopen() {
    let fx = Fx::new();
    fx.exchange(&ExchangeSpec {
        durable: true,
        ..exchange("dx", "direct")
    })
    .unwrap();
    fx.declare_exchange("tx", "fanout");
    let durable_q = QueueSpec {
        durable: true,
        ..queue("dq")
    };
    fx.declare_on(fx.conn, &durable_q).unwrap();
    fx.declare("tq");
    fx.bind("dq", "dx", "k");
    fx.bind("dq", "amq.topic", "a.#");
    fx.bind("tq", "dx", "k");
    fx.bind("dq", "tx", "");

    let persistent = |body: &str| {
        let p = fx.publish_full("dx", "k", body, true, None).unwrap();
        assert!(p.routed && !p.failed);
    };
    persistent("p-acked");
    assert!(fx.publish("dx", "k", "transient"));
    persistent("p-delivered");
    persistent("p-ready");
    assert_eq!(fx.stats("dq"), Some((4, 0, 0)));
    assert_eq!(fx.stats("tq"), Some((4, 0, 0)));
    let (t, _, b) = fx.get("dq", false).unwrap();
    assert_eq!(b, "p-acked");
    fx.ack(fx.key, t);
    assert_eq!(fx.get("dq", false).unwrap().2, "transient");
    assert_eq!(fx.get("dq", false).unwrap().2, "p-delivered");
    assert_eq!(fx.stats("dq"), Some((1, 2, 0)));

    let fx = fx.reopen();

    // Definitions: durable ones back, transient ones gone.
    assert_eq!(fx.stats("tq"), None);
    fx.exchange(&ExchangeSpec {
        passive: true,
        ..exchange("dx", "")
    })
    .unwrap();
    let r = fx.exchange(&ExchangeSpec {
        passive: true,
        ..exchange("tx", "")
    });
    assert!(is_not_found(&r), "{r:?}");
    // The queue keeps its properties: durable=false is inequivalent.
    let info = fx.declare_on(fx.conn, &durable_q).unwrap();
    assert_eq!(info.messages, 2);
    let r = fx.declare_on(fx.conn, &queue("dq"));
    assert!(is_precondition_failed(&r), "{r:?}");
    let r = fx.exchange(&exchange("dx", "direct"));
    assert!(is_precondition_failed(&r), "{r:?}");

    // Messages: the acked one and the transient one are gone; the one delivered before the
    // reopen comes back flagged redelivered, before the one never delivered.
    assert_eq!(fx.stats("dq"), Some((2, 0, 0)));
    let (_, redelivered, body) = fx.get("dq", true).unwrap();
    assert_eq!((redelivered, body.as_str()), (true, "p-delivered"));
    let (_, redelivered, body) = fx.get("dq", true).unwrap();
    assert_eq!((redelivered, body.as_str()), (false, "p-ready"));
    assert!(fx.get("dq", true).is_none());

    // Bindings: both durable ones route; the transient queue's binding is gone.
    let p = fx.publish_full("dx", "k", "after-1", true, None).unwrap();
    assert!(p.routed);
    let p = fx
        .publish_full("amq.topic", "a.b", "after-2", true, None)
        .unwrap();
    assert!(p.routed);
    assert!(!fx.publish("amq.topic", "b", "unrouted"));
    assert_eq!(fx.take_all("dq"), ["after-1", "after-2"]);

    // A queue declared after the reopen does not collide with the recovered one.
    fx.declare_on(
        fx.conn,
        &QueueSpec {
            durable: true,
            ..queue("dq2")
        },
    )
    .unwrap();
    fx.publish_full("", "dq2", "x", true, None).unwrap();
    assert!(
        fx.publish_full("dx", "k", "again", true, None)
            .unwrap()
            .routed
    );
    let fx = fx.reopen();
    assert_eq!(fx.take_all("dq2"), ["x"]);
    assert_eq!(fx.take_all("dq"), ["again"]);
}

#[test]
fn transient_queue_and_exchange_do_not_survive_reopen() {
    let fx = Fx::new();
    fx.declare_exchange("tx", "fanout");
    fx.declare("tq");
    fx.bind("tq", "tx", "");
    fx.bind("tq", "amq.fanout", "");
    let p = fx.publish_full("tx", "", "persistent", true, None).unwrap();
    assert!(p.routed);
    assert_eq!(fx.stats("tq"), Some((1, 0, 0)));
    // Persistent messages in a non-durable queue are not kept either.
    let fx = fx.reopen();
    assert_eq!(fx.stats("tq"), None);
    assert!(fx.vh.with(|m| m.queue_names()).is_empty());
    let r = fx.try_publish("tx", "", "m");
    assert!(is_not_found(&r), "{r:?}");
    assert!(!fx.publish("amq.fanout", "", "m"));
    // Declaring it again gives an empty queue.
    fx.declare("tq");
    assert_eq!(fx.stats("tq"), Some((0, 0, 0)));
    // Nothing of the old queue's files is left behind.
    let leftover = std::fs::read_dir(fx.dir.path().join("queues"))
        .unwrap()
        .count();
    assert_eq!(leftover, 1, "only the new queue's directory");
}
