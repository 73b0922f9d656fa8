//! Parsing the store's config (no node needed).

use std::time::Duration;

use omni_store_cassandra::{CassandraConfig, Consistency, Replication, SerialConsistency};

fn parse(toml_text: &str) -> Result<CassandraConfig, String> {
    toml::from_str(toml_text).map_err(|e| e.to_string())
}

#[test]
fn defaults() {
    let config = parse(r#"contact_points = ["127.0.0.1:9042"]"#).unwrap();
    assert_eq!(config.keyspace, "omni");
    assert_eq!(
        config.replication,
        Replication::SimpleStrategy {
            replication_factor: 1
        }
    );
    assert_eq!(config.job_ttl, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(config.idempotency_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(config.consistency, Consistency::LocalQuorum);
    assert_eq!(config.serial_consistency, SerialConsistency::Serial);
    assert_eq!(config.local_datacenter, None);
}

#[test]
fn every_key() {
    let config = parse(
        r#"
        contact_points = ["10.0.0.1:9042", "10.0.0.2:9042"]
        keyspace = "omni_prod"
        replication = { class = "NetworkTopologyStrategy", datacenters = { dc1 = 3, dc2 = 2 } }
        local_datacenter = "dc1"
        username = "omni"
        password = "secret"
        job_ttl = "7d"
        idempotency_ttl = "1h"
        request_timeout = "2s"
        connect_timeout = "500ms"
        consistency = "quorum"
        serial_consistency = "local_serial"
        "#,
    )
    .unwrap();
    assert_eq!(config.contact_points.len(), 2);
    assert_eq!(
        config.replication,
        Replication::NetworkTopologyStrategy {
            datacenters: [("dc1".to_owned(), 3), ("dc2".to_owned(), 2)].into()
        }
    );
    assert_eq!(config.job_ttl, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(config.connect_timeout, Duration::from_millis(500));
    assert_eq!(config.serial_consistency, SerialConsistency::LocalSerial);
    assert!(
        !format!("{config:?}").contains("secret"),
        "the password is in the debug output"
    );
}

#[test]
fn bad_configs_say_what_is_wrong() {
    let cases = [
        (
            r#"contact_points = ["a:1"]
            keyspaces = "x""#,
            "unknown field `keyspaces`",
        ),
        (r#"keyspace = "omni""#, "missing field `contact_points`"),
        (r#"contact_points = []"#, "at least one"),
        (
            r#"contact_points = ["a:1"]
            keyspace = "omni; DROP KEYSPACE system""#,
            "bad keyspace name",
        ),
        (
            r#"contact_points = ["a:1"]
            job_ttl = "100ms""#,
            "at least one second",
        ),
        (
            r#"contact_points = ["a:1"]
            idempotency_ttl = "30 years""#,
            "at most 20 years",
        ),
        (
            r#"contact_points = ["a:1"]
            job_ttl = "soon""#,
            "job_ttl",
        ),
        (
            r#"contact_points = ["a:1"]
            replication = { class = "EverywhereStrategy" }"#,
            "EverywhereStrategy",
        ),
        (
            r#"contact_points = ["a:1"]
            replication = { class = "SimpleStrategy", replication_factor = 1, extra = 2 }"#,
            "unknown field `extra`",
        ),
        (
            r#"contact_points = ["a:1"]
            consistency = "three""#,
            "unknown variant `three`",
        ),
    ];
    for (text, expected) in cases {
        let error = parse(text).expect_err(text);
        assert!(error.contains(expected), "{text}: {error}");
    }
}
