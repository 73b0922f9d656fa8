//! Versioned CQL migrations: the files in `migrations/`, embedded in the binary, applied in order
//! at start and recorded in `schema_migrations` (what golang-migrate does for omni-orchestrator).
//!
//! Several replicas may start at once. They take turns through a lock row (`schema_lock`, an
//! `INSERT ... IF NOT EXISTS` with a TTL, so a replica that dies holding it blocks the others for
//! at most two minutes); every DDL statement is `IF NOT EXISTS` as well, and a migration is
//! recorded with `INSERT ... IF NOT EXISTS`, so even a lapsed lock cannot apply one twice. A
//! migration whose file changed after it was applied is an error at start: the schema in the
//! cluster is not the one the file describes.

use std::time::{Duration, Instant};

use scylla::client::session::Session;
use scylla::statement::{Consistency, Statement};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use omni_store::StoreError;

use crate::cql::{LwtAnswer, unavailable};

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number, from the file name; applied in this order.
    pub version: i32,
    /// The file name without `.cql`.
    pub name: &'static str,
    /// The file.
    pub cql: &'static str,
}

impl Migration {
    /// sha256 of the file, hex: what `schema_migrations` records.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.cql.as_bytes()))
    }

    /// The file's statements: `--` comments dropped, split at the `;` that ends a line.
    pub fn statements(&self) -> Vec<String> {
        let mut statements = Vec::new();
        let mut current = String::new();
        for line in self.cql.lines() {
            let line = line.split("--").next().unwrap_or_default().trim_end();
            if line.trim().is_empty() {
                continue;
            }
            if let Some(last) = line.strip_suffix(';') {
                current.push_str(last);
                statements.push(std::mem::take(&mut current).trim().to_owned());
            } else {
                current.push_str(line);
                current.push('\n');
            }
        }
        if !current.trim().is_empty() {
            statements.push(current.trim().to_owned());
        }
        statements
    }
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        cql: include_str!("../migrations/0001_init.cql"),
    },
    Migration {
        version: 2,
        name: "0002_events",
        cql: include_str!("../migrations/0002_events.cql"),
    },
    Migration {
        version: 3,
        name: "0003_webhook_count",
        cql: include_str!("../migrations/0003_webhook_count.cql"),
    },
    Migration {
        version: 4,
        name: "0004_artifacts",
        cql: include_str!("../migrations/0004_artifacts.cql"),
    },
    Migration {
        version: 5,
        name: "0005_uploads",
        cql: include_str!("../migrations/0005_uploads.cql"),
    },
];

/// How long a migration lock holds without its holder.
const LOCK_TTL: Duration = Duration::from_secs(120);
/// How long a replica waits for another one's migrations.
const LOCK_WAIT: Duration = Duration::from_secs(300);
/// DDL waits for every node to agree on the schema: longer than a request.
const DDL_TIMEOUT: Duration = Duration::from_secs(60);

const BOOTSTRAP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version int PRIMARY KEY, name text, checksum text, applied_at timestamp)",
    "CREATE TABLE IF NOT EXISTS schema_lock (name text PRIMARY KEY, holder uuid, since timestamp)",
];

/// Applies the migrations the keyspace (the session's) lacks. Returns the versions it applied.
pub(crate) async fn migrate(
    session: &Session,
    migrations: &[Migration],
) -> Result<Vec<i32>, StoreError> {
    for cql in BOOTSTRAP {
        ddl(session, cql).await?;
    }
    if pending(session, migrations).await?.is_empty() {
        return Ok(Vec::new());
    }
    let holder = Uuid::new_v4();
    lock(session, holder).await?;
    let result = apply(session, migrations).await;
    if let Err(e) = unlock(session, holder).await {
        // The TTL frees it.
        tracing::warn!(error = %e, "could not release the migration lock");
    }
    result
}

async fn apply(session: &Session, migrations: &[Migration]) -> Result<Vec<i32>, StoreError> {
    let mut applied = Vec::new();
    // Again under the lock: another replica may have applied them meanwhile.
    for migration in pending(session, migrations).await? {
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applying migration"
        );
        for statement in migration.statements() {
            ddl(session, &statement).await?;
        }
        let mut record = Statement::new(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
             VALUES (?, ?, ?, ?) IF NOT EXISTS",
        );
        record.set_consistency(Consistency::Quorum);
        session
            .query_unpaged(
                record,
                (
                    migration.version,
                    migration.name,
                    migration.checksum(),
                    omni_store::now(),
                ),
            )
            .await
            .map_err(|e| unavailable("recording a migration", e))?;
        applied.push(migration.version);
    }
    Ok(applied)
}

/// The migrations not applied yet, after checking that the applied ones are unchanged.
async fn pending(
    session: &Session,
    migrations: &[Migration],
) -> Result<Vec<Migration>, StoreError> {
    let mut read = Statement::new("SELECT name, checksum FROM schema_migrations WHERE version = ?");
    // A serial read: sees a record another replica is writing right now.
    read.set_consistency(Consistency::Serial);
    let mut pending = Vec::new();
    for migration in migrations {
        let rows = session
            .query_unpaged(read.clone(), (migration.version,))
            .await
            .map_err(|e| unavailable("reading schema_migrations", e))?
            .into_rows_result()
            .map_err(|e| unavailable("reading schema_migrations", e))?;
        let row: Option<(Option<String>, Option<String>)> = rows
            .maybe_first_row()
            .map_err(|e| StoreError::Corrupt(format!("schema_migrations: {e}")))?;
        match row {
            None => pending.push(*migration),
            Some((_, checksum)) if checksum.as_deref() == Some(migration.checksum().as_str()) => {}
            Some((name, checksum)) => {
                return Err(StoreError::Corrupt(format!(
                    "migration {} ({}) was applied with checksum {}, but the file now has {}: \
                     an applied migration must never change; add a new one instead",
                    migration.version,
                    name.as_deref().unwrap_or(migration.name),
                    checksum.as_deref().unwrap_or("none"),
                    migration.checksum(),
                )));
            }
        }
    }
    Ok(pending)
}

async fn ddl(session: &Session, cql: &str) -> Result<(), StoreError> {
    let mut statement = Statement::new(cql);
    statement.set_request_timeout(Some(DDL_TIMEOUT));
    session
        .query_unpaged(statement, ())
        .await
        .map_err(|e| unavailable(&format!("schema change {:?}", first_line(cql)), e))?;
    session
        .await_schema_agreement()
        .await
        .map_err(|e| unavailable("waiting for schema agreement", e))?;
    Ok(())
}

fn first_line(cql: &str) -> &str {
    cql.lines().next().unwrap_or_default()
}

async fn lock(session: &Session, holder: Uuid) -> Result<(), StoreError> {
    let mut take = Statement::new(
        "INSERT INTO schema_lock (name, holder, since) VALUES ('migrations', ?, ?) \
         IF NOT EXISTS USING TTL ?",
    );
    take.set_consistency(Consistency::Quorum);
    let ttl = i32::try_from(LOCK_TTL.as_secs()).unwrap_or(i32::MAX);
    let started = Instant::now();
    loop {
        let result = session
            .query_unpaged(take.clone(), (holder, omni_store::now(), ttl))
            .await
            .map_err(|e| unavailable("taking the migration lock", e))?;
        let answer = LwtAnswer::parse(result, false)?;
        let (applied, current) = (answer.applied, answer.timeuuid("holder"));
        if applied || current == Some(holder) {
            return Ok(());
        }
        if started.elapsed() > LOCK_WAIT {
            return Err(StoreError::Unavailable {
                message: format!(
                    "cassandra: the migration lock is held by {} for longer than {LOCK_WAIT:?}",
                    current.map_or_else(|| "someone".to_owned(), |h| h.to_string())
                ),
                source: None,
            });
        }
        tracing::info!("another replica is migrating the schema; waiting");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn unlock(session: &Session, holder: Uuid) -> Result<(), StoreError> {
    let mut release =
        Statement::new("DELETE FROM schema_lock WHERE name = 'migrations' IF holder = ?");
    release.set_consistency(Consistency::Quorum);
    session
        .query_unpaged(release, (holder,))
        .await
        .map_err(|e| unavailable("releasing the migration lock", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_names_match_files() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        for migration in MIGRATIONS {
            assert!(
                migration
                    .name
                    .starts_with(&format!("{:04}_", migration.version))
            );
        }
    }

    #[test]
    fn statements_split_at_line_ends_without_comments() {
        let migration = Migration {
            version: 9,
            name: "0009_x",
            cql: "-- a comment; with a semicolon\nCREATE TABLE a (\n  x int PRIMARY KEY -- key\n);\n\nCREATE TABLE b (y int PRIMARY KEY);\n",
        };
        assert_eq!(
            migration.statements(),
            vec![
                "CREATE TABLE a (\n  x int PRIMARY KEY\n)".to_owned(),
                "CREATE TABLE b (y int PRIMARY KEY)".to_owned()
            ]
        );
        assert_eq!(MIGRATIONS[0].statements().len(), 8);
    }
}
