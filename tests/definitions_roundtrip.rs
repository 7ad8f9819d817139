//! The RabbitMQ definitions round trip (issue 12): `tools/definitions_roundtrip.py` loads a
//! file exported by RabbitMQ 3.10.8 into this build's broker, checks every user logs in with
//! its original password (SHA-256, SHA-512 and MD5 hashes), imports Warren's offline export
//! into a private RabbitMQ node and compares RabbitMQ's own export with the original files,
//! then feeds `warren definitions import` hostile files that must be refused, naming the
//! place, and change nothing. Needs `python3` with `pika` and Debian's `rabbitmq-server`
//! (3.10; `.ci/run` installs both). The RabbitMQ node uses AMQP port 5703, node
//! `rt@localhost` and distribution port 25703.

use std::process::Command;

#[test]
fn definitions_round_trip_with_rabbitmq() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/tools/definitions_roundtrip.py"))
        .arg("--warren")
        .arg(env!("CARGO_BIN_EXE_warren"))
        .output()
        .expect("python3 is needed for the definitions round trip");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "definitions round trip failed:\n{text}"
    );
}
