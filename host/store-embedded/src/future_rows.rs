//! The conformance cases of rows a newer server wrote ([`omni_store::conformance::future`]), with
//! raw access to the store file's tables.

use std::sync::Arc;

use async_trait::async_trait;
use omni_store::conformance::future::RawRows;
use omni_store::{JobId, Store};
use serde_json::Value;
use uuid::Uuid;

use redb::ReadableTable;

use crate::tables::*;
use crate::{EmbeddedConfig, EmbeddedStore};

struct Raw(EmbeddedStore);

async fn store() -> (Arc<dyn Store>, Arc<dyn RawRows>) {
    // The directory lives as long as the test process; each case gets its own.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let store = EmbeddedStore::open(&dir, EmbeddedConfig::default()).expect("open");
    (Arc::new(store.clone()), Arc::new(Raw(store)))
}

omni_store::future_rows_tests!(store);

#[async_trait]
impl RawRows for Raw {
    async fn job(&self, id: JobId) -> String {
        let bytes = self
            .0
            .read(move |txn| {
                Ok(txn
                    .open_table(JOBS)?
                    .get(id.as_u128())?
                    .map(|v| v.value().to_vec()))
            })
            .await
            .unwrap()
            .expect("the job's record");
        String::from_utf8(bytes).unwrap()
    }

    async fn put_job(&self, id: JobId, state: &str, record: &str) {
        let (state, record) = (state.to_owned(), record.to_owned());
        self.0
            .write(move |txn| {
                let job = decode_job(record.as_bytes())?;
                txn.open_table(JOBS)?
                    .insert(id.as_u128(), record.as_bytes())?;
                // The listing entry as the newer server's would be.
                let summary = summary(&job);
                assert!(summary.ends_with(&format!("\0{state}")), "{summary:?}");
                txn.open_table(JOBS_BY_TIME)?
                    .insert(time_key(&job), summary.as_str())?;
                Ok(())
            })
            .await
            .unwrap();
    }

    async fn delivery(&self, id: Uuid) -> String {
        let bytes = self
            .0
            .read(move |txn| {
                Ok(txn
                    .open_table(DELIVERIES)?
                    .get(id.as_u128())?
                    .map(|v| v.value().to_vec()))
            })
            .await
            .unwrap()
            .expect("the delivery state");
        String::from_utf8(bytes).unwrap()
    }

    async fn put_delivery(&self, id: Uuid, record: &str) {
        let record = record.to_owned();
        self.0
            .write(move |txn| {
                txn.open_table(DELIVERIES)?
                    .insert(id.as_u128(), record.as_bytes())?;
                Ok(())
            })
            .await
            .unwrap();
    }

    async fn put_log_line(&self, id: JobId, line: &Value) {
        let seq = line["seq"].as_u64().expect("seq");
        let text = line.to_string();
        self.0
            .write(move |txn| {
                txn.open_table(LOGS)?
                    .insert((id.as_u128(), seq), text.as_bytes())?;
                Ok(())
            })
            .await
            .unwrap();
    }

    async fn put_event(&self, event: &Value) {
        let mut event = event.clone();
        self.0
            .write(move |txn| {
                let mut meta = txn.open_table(META)?;
                let number = meta.get(EVENT_SEQ)?.map_or(0, |v| v.value()) + 1;
                meta.insert(EVENT_SEQ, number)?;
                event["id"] = Value::from(number.to_string());
                txn.open_table(EVENTS)?
                    .insert(number, event.to_string().as_bytes())?;
                Ok(())
            })
            .await
            .unwrap();
    }
}
