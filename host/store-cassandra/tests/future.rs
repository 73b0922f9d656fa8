//! Rows a newer server wrote, by hand in CQL on a real Cassandra node: the store reads them and
//! keeps what it does not know when it writes them back (the shared cases of
//! `omni_store::conformance::future`).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use omni_store::conformance::future::RawRows;
use omni_store::{JobId, Store};
use omni_store_cassandra::CassandraStore;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::value::CqlTimeuuid;
use serde_json::Value;
use uuid::Uuid;

mod common;

/// A session of its own on the keyspace the conformance suite uses.
struct Raw(Session);

async fn store() -> (Arc<dyn Store>, Arc<dyn RawRows>) {
    common::share_the_node();
    let config = common::config(common::KEYSPACE);
    let store = CassandraStore::connect(&config)
        .await
        .expect("connect to the test node");
    let session = SessionBuilder::new()
        .known_node(common::contact_point())
        .build()
        .await
        .expect("a raw session");
    session
        .use_keyspace(common::KEYSPACE, false)
        .await
        .expect("the keyspace");
    (Arc::new(store), Arc::new(Raw(session)))
}

omni_store::future_rows_tests!(store);

impl Raw {
    async fn text(&self, cql: &str, key: impl scylla::serialize::row::SerializeRow) -> String {
        self.0
            .query_unpaged(cql, key)
            .await
            .expect("read")
            .into_rows_result()
            .expect("rows")
            .single_row::<(Option<String>,)>()
            .expect("one row")
            .0
            .expect("a value")
    }

    async fn run(&self, cql: &str, values: impl scylla::serialize::row::SerializeRow) {
        self.0.query_unpaged(cql, values).await.expect(cql);
    }
}

#[async_trait]
impl RawRows for Raw {
    async fn job(&self, id: JobId) -> String {
        self.text(
            "SELECT job FROM jobs_by_id WHERE id = ?",
            (CqlTimeuuid::from(id),),
        )
        .await
    }

    async fn put_job(&self, id: JobId, state: &str, record: &str) {
        self.run(
            "UPDATE jobs_by_id SET state = ?, job = ? WHERE id = ?",
            (state, record, CqlTimeuuid::from(id)),
        )
        .await;
    }

    async fn delivery(&self, id: Uuid) -> String {
        self.text(
            "SELECT delivery FROM webhook_deliveries WHERE webhook_id = ?",
            (id,),
        )
        .await
    }

    async fn put_delivery(&self, id: Uuid, record: &str) {
        self.run(
            "UPDATE webhook_deliveries SET delivery = ? WHERE webhook_id = ?",
            (record, id),
        )
        .await;
    }

    async fn put_log_line(&self, id: JobId, line: &Value) {
        let step = line["step"].as_str().expect("step");
        let time: DateTime<Utc> = serde_json::from_value(line["time"].clone()).expect("time");
        self.run(
            "INSERT INTO job_logs (job_id, step, seq, time, stream, line) VALUES (?, ?, ?, ?, ?, ?)",
            (
                CqlTimeuuid::from(id),
                step,
                line["seq"].as_i64().expect("seq"),
                time,
                line["stream"].as_str().expect("stream"),
                line["line"].as_str().expect("line"),
            ),
        )
        .await;
        self.run(
            "INSERT INTO job_log_steps (job_id, step) VALUES (?, ?)",
            (CqlTimeuuid::from(id), step),
        )
        .await;
    }

    async fn put_event(&self, event: &Value) {
        let id = omni_store::new_job_id();
        let time = omni_store::id_time(id).expect("a time-based id");
        let secs = time.timestamp();
        let hour = DateTime::from_timestamp(secs - secs.rem_euclid(3600), 0).expect("an hour");
        let mut event = event.clone();
        event["id"] = Value::from(id.to_string());
        self.run(
            "INSERT INTO events_by_hour (hour, id, event) VALUES (?, ?, ?)",
            (hour, CqlTimeuuid::from(id), event.to_string()),
        )
        .await;
    }
}
