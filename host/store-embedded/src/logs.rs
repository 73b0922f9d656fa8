//! [`LogStore`] on redb: a job's lines keyed by (job, seq), so a line written again replaces
//! itself and a page is one range read.

use async_trait::async_trait;
use omni_store::{JobId, LogLine, LogPage, LogQuery, LogStore, Result};

use crate::EmbeddedStore;
use crate::tables::*;

#[async_trait]
impl LogStore for EmbeddedStore {
    async fn append_logs(&self, id: JobId, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let encoded: Vec<(u64, Vec<u8>)> = lines
            .iter()
            .map(|line| Ok((line.seq, encode(line)?)))
            .collect::<Result<_, OpError>>()
            .map_err(OpError::into_store)?;
        self.write(move |txn| {
            let key = id.as_u128();
            let mut logs = txn.open_table(LOGS)?;
            for (seq, line) in &encoded {
                logs.insert((key, *seq), line.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    async fn read_logs(&self, id: JobId, query: &LogQuery) -> Result<LogPage> {
        let query = query.clone();
        self.read(move |txn| {
            let key = id.as_u128();
            let first = query.after.map_or(0, |after| after.saturating_add(1));
            let mut items = Vec::new();
            if query.after == Some(u64::MAX) || query.limit == 0 {
                return Ok(LogPage { items, next: None });
            }
            for entry in txn
                .open_table(LOGS)?
                .range((key, first)..=(key, u64::MAX))?
            {
                let line: LogLine = decode(entry?.1.value())?;
                if query.step.as_ref().is_none_or(|step| *step == line.step) {
                    items.push(line);
                    if items.len() == query.limit {
                        break;
                    }
                }
            }
            let next = (items.len() == query.limit)
                .then(|| items.last().map(|l| l.seq))
                .flatten();
            Ok(LogPage { items, next })
        })
        .await
    }
}
