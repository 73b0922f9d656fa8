//! CPU architectures: the one place where Omni's API names (`x86_64`, `aarch64`, ...) meet
//! Kubernetes' `kubernetes.io/arch` label values (`amd64`, `arm64`, ...).
//!
//! The API speaks the names distributions use (RPM's `%_arch`, `uname -m`); nodes are labelled
//! with Go's `GOARCH` names. Plugins (through `omni-sdk`), the scheduler and the engines all map
//! through this table, so a new arch is added here once. It knows nothing else.

/// `(API name, kubernetes.io/arch)` for every arch Omni knows.
pub const ARCHES: &[(&str, &str)] = &[
    ("x86_64", "amd64"),
    ("aarch64", "arm64"),
    ("riscv64", "riscv64"),
    ("loongarch64", "loong64"),
    ("ppc64le", "ppc64le"),
    ("s390x", "s390x"),
];

/// The `kubernetes.io/arch` value for an API arch name, or `None` for an arch Omni does not know.
///
/// ```
/// assert_eq!(omni_arch::to_kubernetes("aarch64"), Some("arm64"));
/// assert_eq!(omni_arch::to_kubernetes("arm64"), None);
/// ```
#[must_use]
pub fn to_kubernetes(arch: &str) -> Option<&'static str> {
    ARCHES
        .iter()
        .find(|(api, _)| *api == arch)
        .map(|(_, kube)| *kube)
}

/// The API arch name for a `kubernetes.io/arch` value, or `None`.
#[must_use]
pub fn from_kubernetes(kube: &str) -> Option<&'static str> {
    ARCHES.iter().find(|(_, k)| *k == kube).map(|(api, _)| *api)
}

/// Whether `arch` is an API arch name Omni knows.
#[must_use]
pub fn is_known(arch: &str) -> bool {
    to_kubernetes(arch).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_arch() {
        for (api, kube) in ARCHES {
            assert_eq!(to_kubernetes(api), Some(*kube));
            assert_eq!(from_kubernetes(kube), Some(*api));
        }
    }

    #[test]
    fn rejects_kubernetes_names_as_api_names() {
        assert!(!is_known("amd64"));
        assert!(!is_known("X86_64"));
        assert!(!is_known(""));
    }
}
