//! [`CassandraConfig`]: where the cluster is, which keyspace, how long things live.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The longest TTL Cassandra accepts (20 years).
const MAX_TTL: Duration = Duration::from_secs(630_720_000);

/// Why a [`CassandraConfig`] cannot be used (checked when connecting: serde checks what it can
/// when the config is parsed, this also covers one built in code).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// No node to connect to.
    #[error("contact_points is empty")]
    NoContactPoints,
    /// A keyspace name that would have to be quoted.
    #[error("bad keyspace name {0:?}: a letter, then letters, digits or '_', at most 48")]
    BadKeyspace(String),
    /// A TTL out of Cassandra's range.
    #[error("{field}: {source}")]
    Ttl {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: TtlError,
    },
    /// `event_settle` is zero.
    #[error("event_settle must be longer than zero")]
    ZeroSettle,
    /// A timeout is zero.
    #[error("timeouts must be longer than zero")]
    ZeroTimeout,
    /// A username without a password, or the other way round.
    #[error("username and password go together")]
    HalfCredentials,
    /// `SimpleStrategy` with no copies.
    #[error("replication_factor must be at least 1")]
    NoReplicas,
    /// `NetworkTopologyStrategy` with no datacenter.
    #[error("NetworkTopologyStrategy needs at least one datacenter")]
    NoDatacenters,
    /// A datacenter name that is empty or has control characters.
    #[error("bad datacenter name {0:?}")]
    BadDatacenter(String),
}

/// A TTL Cassandra does not accept.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TtlError {
    /// Under a second.
    #[error("a TTL must be at least one second")]
    TooShort,
    /// Over Cassandra's limit.
    #[error("a TTL must be at most 20 years (Cassandra's limit)")]
    TooLong,
}

/// How to reach the cluster and how the store uses it.
///
/// In TOML (every key but `contact_points` has a default):
///
/// ```toml
/// contact_points = ["10.0.0.1:9042", "10.0.0.2:9042"]
/// keyspace = "omni"
/// replication = { class = "NetworkTopologyStrategy", datacenters = { dc1 = 3 } }
/// local_datacenter = "dc1"
/// job_ttl = "30d"
/// idempotency_ttl = "24h"
/// event_ttl = "7d"
/// event_settle = "2s"
/// request_timeout = "10s"
/// connect_timeout = "5s"
/// consistency = "local_quorum"
/// serial_consistency = "serial"
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraConfig {
    /// Nodes to connect to first (`host:port`); the driver discovers the rest of the cluster.
    #[serde(deserialize_with = "contact_points")]
    pub contact_points: Vec<String>,
    /// The keyspace holding Omni's tables; created at start if missing.
    #[serde(default = "default_keyspace", deserialize_with = "keyspace")]
    pub keyspace: String,
    /// The replication of the keyspace when the store creates it (an existing keyspace is left
    /// as it is).
    #[serde(default)]
    pub replication: Replication,
    /// The datacenter whose nodes are preferred (set it in multi-datacenter clusters).
    #[serde(default)]
    pub local_datacenter: Option<String>,
    /// User name, for clusters with password authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, with `username`.
    #[serde(default)]
    pub password: Option<String>,
    /// How long a finished job, its history and its logs are kept: every row of a job is written
    /// with this TTL, and rewritten rows get it again, so a job goes this long after its last
    /// change (its end). An unfinished job untouched this long goes too.
    #[serde(default = "default_job_ttl", deserialize_with = "ttl")]
    pub job_ttl: Duration,
    /// How long an idempotency key is remembered (at most `job_ttl`).
    #[serde(default = "default_idempotency_ttl", deserialize_with = "ttl")]
    pub idempotency_ttl: Duration,
    /// How long an event of the event stream is kept.
    #[serde(default = "default_event_ttl", deserialize_with = "ttl")]
    pub event_ttl: Duration,
    /// How far behind now readers of the event stream stay: an event is read only once its
    /// id's time is this old, so that events other replicas are still writing cannot be passed.
    /// A writer whose event took longer than half of this to write writes it again under a new
    /// id, so the clocks of the replicas must agree to within half of it.
    #[serde(default = "default_event_settle", with = "humantime_serde")]
    pub event_settle: Duration,
    /// How long one request may take before the call fails as unavailable.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long opening a connection to a node may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The consistency of plain reads and writes.
    #[serde(default)]
    pub consistency: Consistency,
    /// The consistency of lightweight transactions (idempotency keys, leases, job changes).
    #[serde(default)]
    pub serial_consistency: SerialConsistency,
}

impl CassandraConfig {
    /// A config for `contact_points` with every other setting at its default.
    pub fn new(contact_points: impl IntoIterator<Item = impl Into<String>>) -> Self {
        CassandraConfig {
            contact_points: contact_points.into_iter().map(Into::into).collect(),
            keyspace: default_keyspace(),
            replication: Replication::default(),
            local_datacenter: None,
            username: None,
            password: None,
            job_ttl: default_job_ttl(),
            idempotency_ttl: default_idempotency_ttl(),
            event_ttl: default_event_ttl(),
            event_settle: default_event_settle(),
            request_timeout: default_request_timeout(),
            connect_timeout: default_connect_timeout(),
            consistency: Consistency::default(),
            serial_consistency: SerialConsistency::default(),
        }
    }

    /// Checks what serde cannot when the config is built in code.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.contact_points.is_empty() {
            return Err(ConfigError::NoContactPoints);
        }
        check_identifier(&self.keyspace)?;
        for (field, ttl) in [
            ("job_ttl", self.job_ttl),
            ("idempotency_ttl", self.idempotency_ttl),
            ("event_ttl", self.event_ttl),
        ] {
            check_ttl(ttl).map_err(|source| ConfigError::Ttl { field, source })?;
        }
        if self.event_settle.is_zero() {
            return Err(ConfigError::ZeroSettle);
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(ConfigError::HalfCredentials);
        }
        self.replication.to_cql().map(|_| ())
    }
}

impl std::fmt::Debug for CassandraConfig {
    // By hand: the password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraConfig")
            .field("contact_points", &self.contact_points)
            .field("keyspace", &self.keyspace)
            .field("replication", &self.replication)
            .field("local_datacenter", &self.local_datacenter)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("job_ttl", &self.job_ttl)
            .field("idempotency_ttl", &self.idempotency_ttl)
            .field("event_ttl", &self.event_ttl)
            .field("event_settle", &self.event_settle)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("consistency", &self.consistency)
            .field("serial_consistency", &self.serial_consistency)
            .finish()
    }
}

/// The keyspace's replication strategy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "class", deny_unknown_fields)]
pub enum Replication {
    /// One datacenter (or a test node): `replication_factor` copies.
    SimpleStrategy {
        /// How many copies of each row.
        replication_factor: u32,
    },
    /// Copies per datacenter, by datacenter name.
    NetworkTopologyStrategy {
        /// Datacenter name -> copies there.
        datacenters: BTreeMap<String, u32>,
    },
}

impl Default for Replication {
    fn default() -> Self {
        Replication::SimpleStrategy {
            replication_factor: 1,
        }
    }
}

impl Replication {
    /// The CQL map literal. Datacenter names are quoted as CQL strings (quotes doubled), so no
    /// name can change the statement.
    pub(crate) fn to_cql(&self) -> Result<String, ConfigError> {
        match self {
            Replication::SimpleStrategy { replication_factor } => {
                if *replication_factor == 0 {
                    return Err(ConfigError::NoReplicas);
                }
                Ok(format!(
                    "{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
                ))
            }
            Replication::NetworkTopologyStrategy { datacenters } => {
                if datacenters.is_empty() {
                    return Err(ConfigError::NoDatacenters);
                }
                let mut cql = String::from("{'class': 'NetworkTopologyStrategy'");
                for (dc, copies) in datacenters {
                    if dc.is_empty() || dc.chars().any(char::is_control) {
                        return Err(ConfigError::BadDatacenter(dc.clone()));
                    }
                    let _ = write!(cql, ", '{}': {copies}", dc.replace('\'', "''"));
                }
                cql.push('}');
                Ok(cql)
            }
        }
    }
}

/// The consistency level of plain reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// One replica.
    One,
    /// One replica in the local datacenter.
    LocalOne,
    /// A majority of all replicas.
    Quorum,
    /// A majority of the local datacenter's replicas (the default).
    #[default]
    LocalQuorum,
    /// A majority in every datacenter.
    EachQuorum,
    /// Every replica.
    All,
}

impl From<Consistency> for scylla::statement::Consistency {
    fn from(c: Consistency) -> Self {
        use scylla::statement::Consistency as C;
        match c {
            Consistency::One => C::One,
            Consistency::LocalOne => C::LocalOne,
            Consistency::Quorum => C::Quorum,
            Consistency::LocalQuorum => C::LocalQuorum,
            Consistency::EachQuorum => C::EachQuorum,
            Consistency::All => C::All,
        }
    }
}

/// The consistency of the Paxos phase of lightweight transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialConsistency {
    /// Linearizable across the whole cluster (the default): a lease is held once, world-wide.
    #[default]
    Serial,
    /// Linearizable within the local datacenter only.
    LocalSerial,
}

impl From<SerialConsistency> for scylla::statement::SerialConsistency {
    fn from(c: SerialConsistency) -> Self {
        match c {
            SerialConsistency::Serial => scylla::statement::SerialConsistency::Serial,
            SerialConsistency::LocalSerial => scylla::statement::SerialConsistency::LocalSerial,
        }
    }
}

fn default_keyspace() -> String {
    "omni".into()
}

fn default_job_ttl() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_idempotency_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_event_ttl() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_event_settle() -> Duration {
    Duration::from_secs(2)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A keyspace name Cassandra accepts unquoted: it is put into DDL as it is.
fn check_identifier(name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 48;
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadKeyspace(name.to_owned()))
    }
}

fn check_ttl(ttl: Duration) -> Result<(), TtlError> {
    if ttl < Duration::from_secs(1) {
        Err(TtlError::TooShort)
    } else if ttl > MAX_TTL {
        Err(TtlError::TooLong)
    } else {
        Ok(())
    }
}

fn keyspace<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    check_identifier(&name).map_err(serde::de::Error::custom)?;
    Ok(name)
}

fn contact_points<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let points = Vec::<String>::deserialize(d)?;
    if points.is_empty() {
        return Err(serde::de::Error::custom(
            "contact_points needs at least one host:port",
        ));
    }
    Ok(points)
}

fn ttl<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let ttl = humantime_serde::deserialize(d)?;
    check_ttl(ttl).map_err(serde::de::Error::custom)?;
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_topology_names_are_quoted() {
        let replication = Replication::NetworkTopologyStrategy {
            datacenters: [("dc'1".to_owned(), 3)].into(),
        };
        assert_eq!(
            replication.to_cql().unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'dc''1': 3}"
        );
    }

    #[test]
    fn identifiers() {
        assert!(check_identifier("omni_test").is_ok());
        for bad in ["", "1omni", "omni;DROP", "omni-x", &"a".repeat(49)] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }
}
