//! Names of enum values a newer server wrote (a job state, a step state, a log stream), kept
//! once for the process so that the enums holding them stay `Copy`.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::name::Name;

/// The most distinct unknown names one process keeps (each is kept for the process's life):
/// far more than server versions will ever add.
const MAX_NAMES: usize = 256;

/// The unknown value `name` of the kind `what` (e.g. "a job in state"), kept once for the
/// process: the first time, with the one log line that says this server met it. `None` when it
/// is not a [`Name`] at all (damaged data) or too many were kept.
pub(crate) fn intern(what: &'static str, name: &str) -> Option<&'static str> {
    static NAMES: Mutex<BTreeSet<(&'static str, &'static str)>> = Mutex::new(BTreeSet::new());
    if !Name::is_valid(name) {
        return None;
    }
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, known)) = names
        .iter()
        .find(|(kind, known)| *kind == what && *known == name)
    {
        return Some(known);
    }
    if names.len() >= MAX_NAMES {
        return None;
    }
    let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert((what, kept));
    tracing::warn!(
        value = kept,
        "found {what} {kept:?}, which this server does not know (written by a newer server): it \
         is shown as it is and left alone"
    );
    Some(kept)
}
