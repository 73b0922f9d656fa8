//! Page tokens: where the next page of a listing starts, opaque to clients.
//!
//! A token is base64url of a version byte, the id of the last job of the page, and a fingerprint
//! of the listing's filters: a token that was not made here, or that is used with other filters
//! than the listing that made it, is rejected instead of silently paging something else.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::JobId;
use crate::model::JobQuery;

const VERSION: u8 = 1;
const FINGERPRINT_LEN: usize = 8;
const TOKEN_LEN: usize = 1 + 16 + FINGERPRINT_LEN;

/// A page token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadToken {
    /// Not one this server makes.
    #[error("the page token is not valid")]
    Malformed,
    /// Made for a listing with other filters.
    #[error("the page token belongs to a listing with other filters")]
    OtherListing,
}

/// The token for the page after `last` in the listing `query`.
pub fn encode(query: &JobQuery, last: JobId) -> String {
    let mut bytes = Vec::with_capacity(TOKEN_LEN);
    bytes.push(VERSION);
    bytes.extend_from_slice(last.as_bytes());
    bytes.extend_from_slice(&fingerprint(query));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The job a token continues after, if it was made for a listing with `query`'s filters.
///
/// # Errors
/// [`BadToken`] when it was not made here or not for these filters.
pub fn decode(query: &JobQuery, token: &str) -> Result<JobId, BadToken> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| BadToken::Malformed)?;
    if bytes.len() != TOKEN_LEN || bytes[0] != VERSION {
        return Err(BadToken::Malformed);
    }
    let id = JobId::from_slice(&bytes[1..17]).map_err(|_| BadToken::Malformed)?;
    if id.get_version_num() != 1 {
        return Err(BadToken::Malformed);
    }
    if bytes[17..] != fingerprint(query) {
        return Err(BadToken::OtherListing);
    }
    Ok(id)
}

fn fingerprint(query: &JobQuery) -> [u8; FINGERPRINT_LEN] {
    let mut hash = Sha256::new();
    for field in [&query.service, &query.task, &query.domain] {
        hash.update(field.as_deref().unwrap_or("\u{0}"));
        hash.update([0xff]);
    }
    hash.update(query.state.map_or("\u{0}", |s| s.as_str()));
    hash.update([0xff]);
    for time in [query.since, query.until] {
        hash.update(
            time.map_or(i64::MIN, |t| t.timestamp_micros())
                .to_be_bytes(),
        );
    }
    let digest = hash.finalize();
    let mut out = [0; FINGERPRINT_LEN];
    out.copy_from_slice(&digest[..FINGERPRINT_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_job_id;

    #[test]
    fn a_token_reads_back_only_for_its_own_filters() {
        let query = JobQuery {
            service: Some("obs".into()),
            ..JobQuery::default()
        };
        let id = new_job_id();
        let token = encode(&query, id);
        // The page size may change between pages; the filters may not.
        let bigger = JobQuery {
            limit: 7,
            ..query.clone()
        };
        assert_eq!(decode(&bigger, &token), Ok(id));
        let other = JobQuery {
            service: Some("koji".into()),
            ..query.clone()
        };
        assert_eq!(decode(&other, &token), Err(BadToken::OtherListing));
    }

    #[test]
    fn forged_tokens_are_rejected() {
        let query = JobQuery::default();
        let good = encode(&query, new_job_id());
        let mut truncated = good.clone();
        truncated.pop();
        for forged in [
            "",
            "not base64!",
            "AAAA",
            truncated.as_str(),
            &URL_SAFE_NO_PAD.encode([2u8; TOKEN_LEN]),
            // A v4 id where a time-based one must be.
            &encode(&query, uuid::Uuid::new_v4()),
        ] {
            assert!(decode(&query, forged).is_err(), "{forged:?}");
        }
    }
}
