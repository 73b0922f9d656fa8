//! Job ids and the store's clock.

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

/// A job's id: a time-based UUID (v1), as Cassandra's `timeuuid`.
pub type JobId = Uuid;

/// A new job id, time-based, unique in this process and (by its random node id) across
/// replicas.
pub fn new_job_id() -> JobId {
    static NODE: std::sync::OnceLock<[u8; 6]> = std::sync::OnceLock::new();
    let node = NODE.get_or_init(|| {
        let random = Uuid::new_v4();
        let mut node = [0; 6];
        node.copy_from_slice(&random.as_bytes()[..6]);
        // The multicast bit marks a node id that is not a MAC address (RFC 9562, 6.10).
        node[0] |= 0x01;
        node
    });
    Uuid::now_v1(node)
}

/// The time a v1 id was made, if it is one.
pub fn id_time(id: JobId) -> Option<DateTime<Utc>> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

/// Now, to the millisecond: every time the store keeps has that precision (Cassandra's
/// `timestamp`), so a job reads back exactly as it was written on every backend.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_based_and_ordered_by_time() {
        let a = new_job_id();
        let b = new_job_id();
        assert_ne!(a, b);
        let (ta, tb) = (id_time(a).unwrap(), id_time(b).unwrap());
        assert!(ta <= tb);
        assert!((Utc::now() - ta).num_seconds().abs() < 60);
        assert_eq!(id_time(Uuid::new_v4()), None);
    }
}
