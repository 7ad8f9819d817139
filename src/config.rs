//! Broker configuration: defaults, then a TOML file (`--config`), then `WARREN_*`
//! environment variables, then command-line flags; later sources win. Every default and
//! limit is written once, in `defaults` (the flags' help texts are checked against it by
//! a test).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use warren_storage::FsyncPolicy;

use crate::broker::access::AccessConfig;

/// Every default and built-in limit, in one place.
pub mod defaults {
    use std::time::Duration;

    pub const LISTEN: &str = "0.0.0.0:5672";
    /// The AMQPS listener when a certificate is configured and `--listen-tls` is not.
    pub const LISTEN_TLS: &str = "0.0.0.0:5671";
    pub const TLS_VERIFY: &str = "none";
    pub const TLS_LOGIN_FROM: &str = "common_name";
    pub const HTTP: &str = "127.0.0.1:15672";
    /// Prometheus metrics (RabbitMQ's `rabbitmq_prometheus` port).
    pub const PROMETHEUS: &str = "127.0.0.1:15692";
    pub const DATA_DIR: &str = "./warren-data";
    pub const SEGMENT_SIZE: usize = 8 << 20;
    pub const MAX_MESSAGE_SIZE: u64 = 16 << 20;
    pub const FRAME_MAX: u32 = 131_072;
    pub const CHANNEL_MAX: u16 = 2047;
    pub const HEARTBEAT: u16 = 60;
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const MEMORY_HIGH_WATERMARK: f64 = 0.4;
    pub const DISK_FREE_LIMIT: u64 = 50_000_000;
    pub const LOG_LEVEL: &str = "info";
    /// Most deliveries waiting in one connection's outbox.
    pub const OUTBOX_LIMIT: usize = 1024;
    /// Most bytes of uncommitted publishes one transaction holds (raised to the largest
    /// message if that is larger); beyond it the publish is refused with 406.
    pub const TX_MAX_BYTES: u64 = 128 << 20;
    /// The user, password and vhost a first start creates (RabbitMQ's defaults).
    pub const DEFAULT_USER: &str = "guest";
    pub const DEFAULT_PASS: &str = "guest";
    pub const DEFAULT_VHOST: &str = "/";
    /// Users that may only log in from a loopback address (comma-separated).
    pub const LOOPBACK_USERS: &str = "guest";
    /// Smallest `--segment-size` and `--frame-max` accepted.
    pub const SEGMENT_SIZE_MIN: usize = 4096;
    pub const FRAME_MAX_MIN: u32 = 4096;
}

/// Limits and settings every connection shares.
#[derive(Debug, Clone)]
pub struct Limits {
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub max_message_size: u64,
    pub handshake_timeout: Duration,
    pub outbox_limit: usize,
    /// Most bytes of uncommitted publishes a transaction holds.
    pub tx_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&Config::default())
    }
}

impl From<&Config> for Limits {
    fn from(c: &Config) -> Self {
        Limits {
            frame_max: c.frame_max,
            channel_max: c.channel_max,
            heartbeat: c.heartbeat,
            max_message_size: c.max_message_size,
            handshake_timeout: c.handshake_timeout,
            outbox_limit: defaults::OUTBOX_LIMIT,
            tx_max_bytes: c.tx_max_bytes.max(c.max_message_size),
        }
    }
}

/// Whether AMQPS clients are asked for a certificate, and what happens without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVerify {
    /// No client certificate is asked for.
    #[default]
    None,
    /// One is asked for and verified against `--tls-ca` if given; clients without one are
    /// let in (RabbitMQ's `verify_peer` with `fail_if_no_peer_cert = false`).
    Peer,
    /// A client certificate verified against `--tls-ca` is required.
    Required,
}

impl std::str::FromStr for TlsVerify {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(TlsVerify::None),
            "peer" => Ok(TlsVerify::Peer),
            "required" => Ok(TlsVerify::Required),
            _ => Err(format!("'{s}': expected none, peer or required")),
        }
    }
}

/// Which part of a client certificate is the user name for SASL EXTERNAL (RabbitMQ's
/// `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoginFrom {
    /// The subject's common name (several are joined with ",").
    #[default]
    CommonName,
    /// The whole subject DN in RabbitMQ's RFC 4514-ish form (`CN=guest,O=Example`).
    DistinguishedName,
}

impl std::str::FromStr for LoginFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "common_name" => Ok(LoginFrom::CommonName),
            "distinguished_name" => Ok(LoginFrom::DistinguishedName),
            _ => Err(format!("'{s}': expected common_name or distinguished_name")),
        }
    }
}

/// AMQPS settings: present when a certificate and key are configured.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, RSA or EC).
    pub key: PathBuf,
    /// CA certificates that client certificates are verified against (PEM).
    pub ca: Option<PathBuf>,
    pub verify: TlsVerify,
    pub login_from: LoginFrom,
}

/// The broker's settings after merging every source.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The AMQPS listener, if TLS is configured.
    pub tls: Option<TlsConfig>,
    /// The management HTTP API's address; `None` (`--http off`) serves none.
    pub http: Option<SocketAddr>,
    /// The management API over TLS (with the AMQPS certificate), if asked for.
    pub https: Option<SocketAddr>,
    /// Prometheus metrics' address; `None` (`--prometheus off`) serves none.
    pub prometheus: Option<SocketAddr>,
    /// The RabbitMQ Stream protocol's listener (conventionally port 5552), if asked for.
    pub listen_stream: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub segment_size: usize,
    pub max_message_size: u64,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub handshake_timeout: Duration,
    /// Resident memory above which publishers are blocked: a fraction of RAM if at most
    /// 1.0, else bytes.
    pub memory_high_watermark: f64,
    /// Free disk space (bytes) under which publishers are blocked.
    pub disk_free_limit: u64,
    /// Log filter: a level (`info`) or `RUST_LOG`-style directives (`warren=debug`).
    pub log_level: String,
    /// Most bytes of uncommitted publishes one transaction holds (no flag; at least
    /// `max_message_size`).
    pub tx_max_bytes: u64,
    /// Loopback-only users and what a first start creates.
    pub access: AccessConfig,
    /// A RabbitMQ definitions file imported at start (RabbitMQ's `load_definitions`).
    pub load_definitions: Option<PathBuf>,
    /// This node's place in a cluster (`--node-id` and the cluster flags).
    pub cluster: Option<crate::cluster::settings::ClusterConfig>,
}

impl Config {
    /// The memory limit in bytes.
    pub fn memory_limit_bytes(&self) -> u64 {
        if self.memory_high_watermark <= 1.0 {
            let total = crate::alarms::total_memory().unwrap_or(u64::MAX);
            (total as f64 * self.memory_high_watermark) as u64
        } else {
            self.memory_high_watermark as u64
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        use defaults as d;
        Config {
            listen: d::LISTEN.parse().expect("literal"),
            tls: None,
            http: Some(d::HTTP.parse().expect("literal")),
            https: None,
            prometheus: Some(d::PROMETHEUS.parse().expect("literal")),
            listen_stream: None,
            data_dir: PathBuf::from(d::DATA_DIR),
            fsync: FsyncPolicy::Always,
            segment_size: d::SEGMENT_SIZE,
            max_message_size: d::MAX_MESSAGE_SIZE,
            frame_max: d::FRAME_MAX,
            channel_max: d::CHANNEL_MAX,
            heartbeat: d::HEARTBEAT,
            handshake_timeout: d::HANDSHAKE_TIMEOUT,
            memory_high_watermark: d::MEMORY_HIGH_WATERMARK,
            disk_free_limit: d::DISK_FREE_LIMIT,
            log_level: d::LOG_LEVEL.into(),
            tx_max_bytes: d::TX_MAX_BYTES,
            access: AccessConfig {
                loopback_users: split_users(d::LOOPBACK_USERS),
                default_user: d::DEFAULT_USER.into(),
                default_pass: d::DEFAULT_PASS.into(),
                default_vhost: d::DEFAULT_VHOST.into(),
            },
            load_definitions: None,
            cluster: None,
        }
    }
}

/// A comma-separated list of user names ("" is none).
fn split_users(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// Command-line flags (each also readable from a `WARREN_*` environment variable).
#[derive(Debug, Parser, Default)]
#[command(
    name = "warren",
    version,
    about = "An AMQP 0-9-1 message broker on an append-only segment log"
)]
pub struct Cli {
    /// AMQP listen address [default: 0.0.0.0:5672]
    #[arg(long, env = "WARREN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// AMQPS listen address, served when --tls-cert and --tls-key are given [default: 0.0.0.0:5671]
    #[arg(long, env = "WARREN_LISTEN_TLS")]
    pub listen_tls: Option<SocketAddr>,
    /// The AMQPS server certificate chain (PEM)
    #[arg(long, env = "WARREN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The AMQPS server private key (PEM: PKCS#8, RSA or EC)
    #[arg(long, env = "WARREN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates are verified against
    #[arg(long, env = "WARREN_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificates: none (not asked) | peer (verified if given) | required [default: none]
    #[arg(long, env = "WARREN_TLS_VERIFY")]
    pub tls_verify: Option<TlsVerify>,
    /// SASL EXTERNAL user name from the client certificate: common_name | distinguished_name [default: common_name]
    #[arg(long, env = "WARREN_TLS_LOGIN_FROM")]
    pub tls_login_from: Option<LoginFrom>,
    /// Management HTTP API address, or `off` [default: 127.0.0.1:15672]
    #[arg(long, env = "WARREN_HTTP", value_parser = parse_http)]
    pub http: Option<HttpListen>,
    /// Management HTTP API over TLS, with the --tls-cert/--tls-key/--tls-ca/--tls-verify settings (RabbitMQ's port is 15671)
    #[arg(long, env = "WARREN_HTTPS")]
    pub https: Option<SocketAddr>,
    /// Prometheus metrics address (/metrics, /metrics/per-object), or `off` [default: 127.0.0.1:15692]
    #[arg(long, env = "WARREN_PROMETHEUS", value_parser = parse_prometheus)]
    pub prometheus: Option<HttpListen>,
    /// RabbitMQ Stream protocol listen address (RabbitMQ's port is 5552) [default: none]
    #[arg(long, env = "WARREN_LISTEN_STREAM")]
    pub listen_stream: Option<SocketAddr>,
    /// Data directory [default: ./warren-data]
    #[arg(long, env = "WARREN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// When confirmed messages are durable: always | interval:MS | never [default: always]
    #[arg(long, env = "WARREN_FSYNC")]
    pub fsync: Option<FsyncPolicy>,
    /// Size of a new segment file in bytes [default: 8388608]
    #[arg(long, env = "WARREN_SEGMENT_SIZE")]
    pub segment_size: Option<usize>,
    /// Largest message body accepted, in bytes [default: 16777216]
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<u64>,
    /// Largest frame offered in connection.tune [default: 131072]
    #[arg(long, env = "WARREN_FRAME_MAX")]
    pub frame_max: Option<u32>,
    /// Most channels per connection [default: 2047]
    #[arg(long, env = "WARREN_CHANNEL_MAX")]
    pub channel_max: Option<u16>,
    /// Heartbeat interval offered, in seconds (0 disables) [default: 60]
    #[arg(long, env = "WARREN_HEARTBEAT")]
    pub heartbeat: Option<u16>,
    /// Block publishers above this resident memory: a fraction of RAM (<= 1.0) or bytes [default: 0.4]
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK")]
    pub memory_high_watermark: Option<f64>,
    /// Block publishers when the data dir's file system has less free space, in bytes [default: 50000000]
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT")]
    pub disk_free_limit: Option<u64>,
    /// Log level (error, warn, info, debug, trace) or RUST_LOG-style directives [default: info]
    #[arg(long, env = "WARREN_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// TOML configuration file (same keys as the flags, with underscores)
    #[arg(long, env = "WARREN_CONFIG")]
    pub config: Option<PathBuf>,
    /// User created at the first start, an administrator with full permissions on the default vhost [default: guest]
    #[arg(long, env = "WARREN_DEFAULT_USER")]
    pub default_user: Option<String>,
    /// Password of the user created at the first start [default: guest]
    #[arg(long, env = "WARREN_DEFAULT_PASS", hide_env_values = true)]
    pub default_pass: Option<String>,
    /// Vhost created at the first start [default: /]
    #[arg(long, env = "WARREN_DEFAULT_VHOST")]
    pub default_vhost: Option<String>,
    /// Users that may only log in from a loopback address, comma-separated ("" for none) [default: guest]
    #[arg(long, env = "WARREN_LOOPBACK_USERS")]
    pub loopback_users: Option<String>,
    /// RabbitMQ definitions file (JSON) to import at start, as RabbitMQ's load_definitions
    #[arg(long, env = "WARREN_LOAD_DEFINITIONS")]
    pub load_definitions: Option<PathBuf>,
    /// This node's id in a cluster (turns clustering on; needs --cluster-listen)
    #[arg(long, env = "WARREN_NODE_ID")]
    pub node_id: Option<u64>,
    /// The cluster port: Raft traffic between nodes and `warren cluster` commands (no authentication yet: a private network only)
    #[arg(long, env = "WARREN_CLUSTER_LISTEN")]
    pub cluster_listen: Option<SocketAddr>,
    /// The other nodes: ID=HOST:PORT,ID=HOST:PORT,... (their cluster ports)
    #[arg(long, env = "WARREN_CLUSTER_PEERS")]
    pub cluster_peers: Option<String>,
    /// Bytes a quorum queue's Raft log grows by between snapshots (at least 4096) [default: 67108864]
    #[arg(long, env = "WARREN_CLUSTER_SNAPSHOT_EVERY")]
    pub cluster_snapshot_every: Option<u64>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands other than running the broker.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// RabbitMQ definitions (JSON) of the data dir, with the broker stopped
    Definitions {
        #[command(subcommand)]
        action: DefinitionsAction,
    },
    /// The cluster this node (--cluster-listen) belongs to
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterAction {
    /// Members, leaders, terms and lag of every Raft group, and the node table
    Status {
        /// Print the node's answer as JSON
        #[arg(long)]
        json: bool,
    },
    /// Add this node (--node-id, reached at --cluster-listen) to the cluster of the node at ADDR
    Join { addr: String },
    /// Remove this node (--node-id) from its cluster
    Leave,
    /// Move quorum queues' leaders until each node leads about as many as the others
    Rebalance {
        /// Print the node's answer as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DefinitionsAction {
    /// Write users, vhosts, permissions, policies, queues, exchanges and bindings to FILE ("-" for stdout)
    Export {
        file: PathBuf,
        #[command(flatten)]
        api: ApiLogin,
    },
    /// Apply a RabbitMQ definitions file: all of it, or (if anything in it is wrong) none
    Import {
        file: PathBuf,
        #[command(flatten)]
        api: ApiLogin,
    },
}

/// With the broker running, the definitions commands go through its management API
/// (`--http`) as this administrator.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiLogin {
    /// Management API user, when the broker is running
    #[arg(long, env = "WARREN_API_USER", default_value = "guest")]
    pub api_user: String,
    /// Management API password, when the broker is running
    #[arg(
        long,
        env = "WARREN_API_PASS",
        default_value = "guest",
        hide_env_values = true
    )]
    pub api_pass: String,
}

/// The TOML file's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub listen_tls: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_verify: Option<String>,
    pub tls_login_from: Option<String>,
    pub http: Option<String>,
    pub https: Option<SocketAddr>,
    pub prometheus: Option<String>,
    pub listen_stream: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub fsync: Option<String>,
    pub segment_size: Option<usize>,
    pub max_message_size: Option<u64>,
    pub frame_max: Option<u32>,
    pub channel_max: Option<u16>,
    pub heartbeat: Option<u16>,
    pub memory_high_watermark: Option<f64>,
    pub disk_free_limit: Option<u64>,
    pub log_level: Option<String>,
    pub default_user: Option<String>,
    pub default_pass: Option<String>,
    pub default_vhost: Option<String>,
    pub loopback_users: Option<String>,
    pub load_definitions: Option<PathBuf>,
    pub node_id: Option<u64>,
    pub cluster_listen: Option<SocketAddr>,
    pub cluster_peers: Option<String>,
    pub cluster_snapshot_every: Option<u64>,
}

impl Config {
    /// Merges defaults, the config file (if any), and the flags/environment.
    pub fn from_cli(cli: Cli) -> Result<Config, String> {
        let file: FileConfig = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let d = Config::default();
        let file_fsync = file.fsync.as_deref().map(str::parse).transpose()?;
        let tls = tls_config(&cli, &file)?;
        let https = cli.https.or(file.https);
        if https.is_some() && tls.is_none() {
            return Err("--https needs --tls-cert and --tls-key".into());
        }
        let config = Config {
            https,
            listen: cli.listen.or(file.listen).unwrap_or(d.listen),
            tls,
            http: match cli.http {
                Some(h) => h.0,
                None => match file.http.as_deref() {
                    Some(text) => parse_http(text)?.0,
                    None => d.http,
                },
            },
            prometheus: match cli.prometheus {
                Some(p) => p.0,
                None => match file.prometheus.as_deref() {
                    Some(text) => parse_prometheus(text)?.0,
                    None => d.prometheus,
                },
            },
            listen_stream: cli.listen_stream.or(file.listen_stream),
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            fsync: cli.fsync.or(file_fsync).unwrap_or(d.fsync),
            segment_size: cli
                .segment_size
                .or(file.segment_size)
                .unwrap_or(d.segment_size),
            max_message_size: cli
                .max_message_size
                .or(file.max_message_size)
                .unwrap_or(d.max_message_size),
            frame_max: cli.frame_max.or(file.frame_max).unwrap_or(d.frame_max),
            channel_max: cli
                .channel_max
                .or(file.channel_max)
                .unwrap_or(d.channel_max),
            heartbeat: cli.heartbeat.or(file.heartbeat).unwrap_or(d.heartbeat),
            handshake_timeout: d.handshake_timeout,
            memory_high_watermark: cli
                .memory_high_watermark
                .or(file.memory_high_watermark)
                .unwrap_or(d.memory_high_watermark),
            disk_free_limit: cli
                .disk_free_limit
                .or(file.disk_free_limit)
                .unwrap_or(d.disk_free_limit),
            log_level: cli.log_level.or(file.log_level).unwrap_or(d.log_level),
            tx_max_bytes: d.tx_max_bytes,
            access: AccessConfig {
                loopback_users: cli
                    .loopback_users
                    .or(file.loopback_users)
                    .map_or(d.access.loopback_users, |l| split_users(&l)),
                default_user: cli
                    .default_user
                    .or(file.default_user)
                    .unwrap_or(d.access.default_user),
                default_pass: cli
                    .default_pass
                    .or(file.default_pass)
                    .unwrap_or(d.access.default_pass),
                default_vhost: cli
                    .default_vhost
                    .or(file.default_vhost)
                    .unwrap_or(d.access.default_vhost),
            },
            load_definitions: cli.load_definitions.or(file.load_definitions),
            cluster: crate::cluster::settings::resolve(
                cli.node_id.or(file.node_id),
                cli.cluster_listen.or(file.cluster_listen),
                cli.cluster_peers
                    .as_deref()
                    .or(file.cluster_peers.as_deref()),
                cli.cluster_snapshot_every.or(file.cluster_snapshot_every),
            )?,
        };
        if config.access.default_user.is_empty() || config.access.default_vhost.is_empty() {
            return Err("--default-user and --default-vhost must not be empty".into());
        }
        if config.memory_high_watermark.is_nan() || config.memory_high_watermark <= 0.0 {
            return Err("--memory-high-watermark must be positive".into());
        }
        if config.segment_size < defaults::SEGMENT_SIZE_MIN {
            return Err(format!(
                "--segment-size must be at least {}",
                defaults::SEGMENT_SIZE_MIN
            ));
        }
        if config.frame_max < defaults::FRAME_MAX_MIN {
            return Err(format!(
                "--frame-max must be at least {}",
                defaults::FRAME_MAX_MIN
            ));
        }
        Ok(config)
    }
}

/// The AMQPS settings from the flags and the file: none unless a certificate and key are
/// given; the flags that need them (or each other) are refused alone.
/// `--http` and `--prometheus`: an address, or `off` for no listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

fn parse_http(text: &str) -> Result<HttpListen, String> {
    parse_listen("--http", defaults::HTTP, text)
}

fn parse_prometheus(text: &str) -> Result<HttpListen, String> {
    parse_listen("--prometheus", defaults::PROMETHEUS, text)
}

fn parse_listen(flag: &str, example: &str, text: &str) -> Result<HttpListen, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(HttpListen(None));
    }
    text.parse()
        .map(|a| HttpListen(Some(a)))
        .map_err(|e| format!("{flag} '{text}': {e} (an address such as {example}, or off)"))
}

fn tls_config(cli: &Cli, file: &FileConfig) -> Result<Option<TlsConfig>, String> {
    let listen = cli.listen_tls.or(file.listen_tls);
    let cert = cli.tls_cert.clone().or(file.tls_cert.clone());
    let key = cli.tls_key.clone().or(file.tls_key.clone());
    let ca = cli.tls_ca.clone().or(file.tls_ca.clone());
    let file_verify = file.tls_verify.as_deref().map(str::parse).transpose()?;
    let verify = cli.tls_verify.or(file_verify).unwrap_or_default();
    let file_login = file.tls_login_from.as_deref().map(str::parse).transpose()?;
    let login_from = cli.tls_login_from.or(file_login).unwrap_or_default();
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => {
            if listen.is_some() || ca.is_some() || verify != TlsVerify::None {
                return Err(
                    "--listen-tls, --tls-ca and --tls-verify need --tls-cert and --tls-key".into(),
                );
            }
            return Ok(None);
        }
        (Some(_), None) => return Err("--tls-cert needs --tls-key".into()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert".into()),
    };
    if verify != TlsVerify::None && ca.is_none() {
        return Err("--tls-verify peer|required needs --tls-ca (the CA bundle client certificates are verified against)".into());
    }
    Ok(Some(TlsConfig {
        listen: listen.unwrap_or_else(|| defaults::LISTEN_TLS.parse().expect("literal")),
        cert,
        key,
        ca,
        verify,
        login_from,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn cli(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["warren"];
        argv.extend_from_slice(args);
        Config::from_cli(Cli::try_parse_from(argv).map_err(|e| e.to_string())?)
    }

    #[test]
    fn tls_flags() {
        assert!(cli(&[]).unwrap().tls.is_none());
        let c = cli(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.listen.to_string(), defaults::LISTEN_TLS);
        assert_eq!(t.verify, TlsVerify::None);
        assert_eq!(t.login_from, LoginFrom::CommonName);
        let t = cli(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-ca",
            "ca.pem",
            "--tls-verify",
            "required",
            "--listen-tls",
            "127.0.0.1:5999",
            "--tls-login-from",
            "distinguished_name",
        ])
        .unwrap()
        .tls
        .unwrap();
        assert_eq!(t.listen.to_string(), "127.0.0.1:5999");
        assert_eq!(t.verify, TlsVerify::Required);
        assert_eq!(t.login_from, LoginFrom::DistinguishedName);
        for bad in [
            &["--listen-tls", "127.0.0.1:5671"][..],
            &["--tls-cert", "c.pem"],
            &["--tls-key", "k.pem"],
            &[
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
                "--tls-verify",
                "peer",
            ],
            &["--tls-verify", "sometimes"],
        ] {
            assert!(cli(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            defaults::TLS_VERIFY.parse::<TlsVerify>(),
            Ok(TlsVerify::default())
        );
        assert_eq!(
            defaults::TLS_LOGIN_FROM.parse::<LoginFrom>(),
            Ok(LoginFrom::default())
        );
    }

    #[test]
    fn prometheus_flag() {
        assert_eq!(
            cli(&[]).unwrap().prometheus.unwrap().to_string(),
            defaults::PROMETHEUS
        );
        assert_eq!(cli(&["--prometheus", "off"]).unwrap().prometheus, None);
        assert_eq!(
            cli(&["--prometheus", "127.0.0.1:9419"])
                .unwrap()
                .prometheus
                .unwrap()
                .port(),
            9419
        );
        let e = cli(&["--prometheus", "nine"]).unwrap_err();
        assert!(e.contains("--prometheus 'nine'"), "{e}");
    }

    /// The flags' help texts state their defaults; they must be the ones `defaults` holds.
    #[test]
    fn help_texts_state_the_real_defaults() {
        let c = Config::default();
        let expect = [
            ("listen", c.listen.to_string()),
            ("listen_tls", defaults::LISTEN_TLS.to_string()),
            ("tls_verify", defaults::TLS_VERIFY.to_string()),
            ("tls_login_from", defaults::TLS_LOGIN_FROM.to_string()),
            ("http", defaults::HTTP.to_string()),
            ("prometheus", defaults::PROMETHEUS.to_string()),
            ("data_dir", defaults::DATA_DIR.to_string()),
            ("fsync", "always".to_string()),
            ("segment_size", c.segment_size.to_string()),
            ("max_message_size", c.max_message_size.to_string()),
            ("frame_max", c.frame_max.to_string()),
            ("channel_max", c.channel_max.to_string()),
            ("heartbeat", c.heartbeat.to_string()),
            ("memory_high_watermark", c.memory_high_watermark.to_string()),
            ("disk_free_limit", c.disk_free_limit.to_string()),
            ("log_level", c.log_level.clone()),
            ("default_user", defaults::DEFAULT_USER.to_string()),
            ("default_pass", defaults::DEFAULT_PASS.to_string()),
            ("default_vhost", defaults::DEFAULT_VHOST.to_string()),
            ("loopback_users", defaults::LOOPBACK_USERS.to_string()),
        ];
        let cmd = Cli::command();
        for (id, value) in expect {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("no flag {id}"));
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                help.contains(&format!("[default: {value}]")),
                "--{id}: help '{help}' does not state the default {value}"
            );
        }
    }
}
