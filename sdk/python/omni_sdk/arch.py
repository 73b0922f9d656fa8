"""CPU architectures: Omni's API names (``x86_64``) and Kubernetes' ``kubernetes.io/arch`` values
(``amd64``). The same table as the Rust crate ``omni-arch`` (sdk/arch/src/lib.rs); a test checks
that the two agree."""

from typing import Optional

#: ``(API name, kubernetes.io/arch)`` for every arch Omni knows.
ARCHES = (
    ("x86_64", "amd64"),
    ("aarch64", "arm64"),
    ("riscv64", "riscv64"),
    ("loongarch64", "loong64"),
    ("ppc64le", "ppc64le"),
    ("s390x", "s390x"),
)


def to_kubernetes(arch: str) -> Optional[str]:
    """The ``kubernetes.io/arch`` value of an API arch name, or None for one Omni does not know."""
    return next((kube for api, kube in ARCHES if api == arch), None)


def from_kubernetes(kube: str) -> Optional[str]:
    """The API arch name of a ``kubernetes.io/arch`` value, or None."""
    return next((api for api, k in ARCHES if k == kube), None)


def is_known(arch: str) -> bool:
    """Whether ``arch`` is an API arch name Omni knows."""
    return to_kubernetes(arch) is not None
