"""Helpers for the Kubernetes objects every task renders, as the Rust SDK's ``omni_sdk::k8s``
has them, and the conventions every task's steps share.

Templates stay the place where objects are written; these are the pieces of data that every
task's template needs the same way.

The step conventions: a job's pod has three volumes, ``input`` (what the plugin wrote for the
job, read-only), ``work`` (scratch shared by the steps) and ``output`` (what the job made: its
artifacts); each step mounts them and finds their paths in ``OMNI_INPUT``, ``OMNI_WORK`` and
``OMNI_OUTPUT``, so an engine may mount them elsewhere. Two pod annotations tell the local engine
what Kubernetes does not need to know: ``omni.io/network`` (the steps, comma-separated, that
need network; the others get none) and ``omni.io/read-only-root`` (the steps that install
nothing, for which it prepares no writable root)."""

import re
from typing import Dict, List, Optional

#: Labels every object of a job carries, so engines and operators can find them.
MANAGED_BY = ("app.kubernetes.io/managed-by", "omni")
#: The label holding the Omni job id.
JOB_ID_LABEL = "omni.io/job-id"
#: The label holding the task name.
TASK_LABEL = "omni.io/task"

#: The pod annotation naming the steps that need network.
NETWORK_ANNOTATION = "omni.io/network"
#: The pod annotation naming the steps whose root stays read-only.
READ_ONLY_ROOT_ANNOTATION = "omni.io/read-only-root"

#: Where the shared volumes are mounted, by volume name.
MOUNTS = {"input": "/input", "work": "/work", "output": "/output"}

#: A Kubernetes resource quantity as written in manifests (``500m``, ``2``, ``4Gi``).
QUANTITY = r"^([0-9]+(\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"

#: The largest total size of a ConfigMap's data that etcd accepts, less room for metadata.
CONFIG_MAP_DATA_LIMIT = 1024 * 1024 - 16 * 1024

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_CONFIG_MAP_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


def labels(task: str, job_id: str) -> Dict[str, str]:
    """The labels of every object of a job (``Rendered.from_objects`` stamps them)."""
    return {MANAGED_BY[0]: MANAGED_BY[1], JOB_ID_LABEL: job_id, TASK_LABEL: task}


def step_env(mounts: Optional[Dict[str, str]] = None) -> List[dict]:
    """``OMNI_INPUT``, ``OMNI_WORK`` and ``OMNI_OUTPUT`` for a step's ``env``."""
    mounts = mounts or MOUNTS
    return [{"name": f"OMNI_{name.upper()}", "value": path} for name, path in mounts.items()]


def volume_mounts(mounts: Optional[Dict[str, str]] = None) -> List[dict]:
    """A step's ``volumeMounts`` of the shared volumes (``input`` read-only)."""
    mounts = mounts or MOUNTS
    out = []
    for name, path in mounts.items():
        mount = {"name": name, "mountPath": path}
        if name == "input":
            mount["readOnly"] = True
        out.append(mount)
    return out


def volumes(input_config_map: Optional[str] = None, work_size_limit: Optional[str] = None) -> List[dict]:
    """The pod's shared volumes: ``input`` from the ConfigMap ``input_config_map`` (an emptyDir
    without one), ``work`` (with ``sizeLimit`` ``work_size_limit``) and ``output``."""
    if input_config_map is None:
        input_volume = {"name": "input", "emptyDir": {}}
    else:
        input_volume = {"name": "input", "configMap": {"name": input_config_map}}
    work = {"name": "work", "emptyDir": {}}
    if work_size_limit is not None:
        work["emptyDir"]["sizeLimit"] = work_size_limit
    return [input_volume, work, {"name": "output", "emptyDir": {}}]


def resources(cpu: str = "2", memory: str = "4Gi") -> dict:
    """A container's ``resources``: requests equal limits, so a step gets what it asked for and
    cannot take a node's memory from other jobs."""
    amounts = {"cpu": cpu, "memory": memory}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def is_dns_label(name: str) -> bool:
    """Whether ``name`` is a DNS-1123 label (what Kubernetes accepts as most object names)."""
    return bool(_DNS_LABEL.match(name))


def is_config_map_key(key: str) -> bool:
    """Whether ``key`` is a valid ConfigMap data key (not ``.``, not starting with ``..``)."""
    return bool(_CONFIG_MAP_KEY.match(key)) and key != "." and not key.startswith("..")
