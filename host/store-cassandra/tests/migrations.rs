//! The migrator against a real node, each test in a keyspace of its own (dropped at the end).

use std::time::Duration;

use chrono::{DateTime, Utc};
use omni_store::{Store, StoreError};
use omni_store_cassandra::migrate::{MIGRATIONS, Migration};
use omni_store_cassandra::{CassandraConfig, CassandraStore};
use scylla::client::session::Session;

mod common;

fn fresh_keyspace(test: &str) -> CassandraConfig {
    common::share_the_node();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    common::config(&format!("omni_mig_{test}_{suffix}"))
}

type Recorded = Vec<(i32, String, String, DateTime<Utc>)>;

async fn recorded(session: &Session) -> Recorded {
    let mut rows: Recorded = session
        .query_unpaged(
            "SELECT version, name, checksum, applied_at FROM schema_migrations",
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(i32, String, String, DateTime<Utc>)>()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.sort();
    rows
}

async fn drop_keyspace(store: &CassandraStore, config: &CassandraConfig) {
    let mut drop =
        scylla::statement::Statement::new(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace));
    drop.set_request_timeout(Some(Duration::from_secs(60)));
    store.session().query_unpaged(drop, ()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_applied_once_and_recorded() {
    let config = fresh_keyspace("once");
    let first = CassandraStore::connect(&config).await.unwrap();
    let after_first = recorded(first.session()).await;
    let expected: Vec<(i32, String, String)> = MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_owned(), m.checksum()))
        .collect();
    assert_eq!(
        after_first
            .iter()
            .map(|(v, n, c, _)| (*v, n.clone(), c.clone()))
            .collect::<Vec<_>>(),
        expected
    );
    first.ping().await.unwrap();

    // A second start applies nothing: the records (with their times) are unchanged.
    let second = CassandraStore::connect(&config).await.unwrap();
    assert_eq!(recorded(second.session()).await, after_first);

    // A new migration is applied on the next start, after the others.
    let mut with_new = MIGRATIONS.to_vec();
    with_new.push(Migration {
        version: 9999,
        name: "9999_test_extra",
        cql: "CREATE TABLE IF NOT EXISTS test_extra (k int PRIMARY KEY);\n",
    });
    let third = CassandraStore::connect_with_migrations(&config, &with_new)
        .await
        .unwrap();
    let after_third = recorded(third.session()).await;
    assert_eq!(after_third.len(), MIGRATIONS.len() + 1);
    assert_eq!(after_third[..MIGRATIONS.len()], after_first[..]);
    third
        .session()
        .query_unpaged("INSERT INTO test_extra (k) VALUES (1)", ())
        .await
        .unwrap();
    drop_keyspace(&third, &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_migrate_once() {
    let config = fresh_keyspace("race");
    let starts = (0..4).map(|_| {
        let config = config.clone();
        tokio::spawn(async move { CassandraStore::connect(&config).await })
    });
    let stores: Vec<CassandraStore> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(recorded(stores[0].session()).await.len(), MIGRATIONS.len());
    for store in &stores {
        store.ping().await.unwrap();
    }
    drop_keyspace(&stores[0], &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_applied_migration_stops_the_start() {
    let config = fresh_keyspace("changed");
    let store = CassandraStore::connect(&config).await.unwrap();
    store
        .session()
        .query_unpaged(
            "UPDATE schema_migrations SET checksum = 'not-the-file' WHERE version = 1",
            (),
        )
        .await
        .unwrap();
    match CassandraStore::connect(&config).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains("0001_init"), "{message}");
            assert!(message.contains("not-the-file"), "{message}");
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    drop_keyspace(&store, &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_unavailable_at_start() {
    let mut config = CassandraConfig::new(["127.0.0.1:1"]);
    config.connect_timeout = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    match CassandraStore::connect(&config).await {
        Err(StoreError::Unavailable { message, .. }) => {
            assert!(
                message.contains("cannot reach Cassandra at 127.0.0.1:1"),
                "{message}"
            );
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}
