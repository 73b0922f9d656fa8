"""The `sign` plugin against its `templates/sign/`, each case twice: natively (the SDK's stand-in
for the host import) and, under `make test`, through the real host (`omni plugin render` with the
built component). Both must give the same answer: the golden file's, for rendered jobs
(`tests/golden/*.json`; after a deliberate change, `OMNI_UPDATE_GOLDEN=1 sdk/python/test.sh
plugins/sign` rewrites them natively: review the diff and commit it)."""

import json
import os
from pathlib import Path

import pytest

from omni_sdk import FieldError, Job
from omni_sdk.testing import harnesses
from sign import Sign

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE.parents[2] / "templates"
SHA = "a" * 64
SHA2 = "0123456789abcdef" * 4


@pytest.fixture(params=harnesses(Sign, "sign", TEMPLATES), ids=lambda h: h.name)
def harness(request):
    return request.param


def golden(name, answer, harness):
    path = HERE / "golden" / f"{name}.json"
    text = json.dumps(answer, indent=2, sort_keys=True) + "\n"
    if os.environ.get("OMNI_UPDATE_GOLDEN") == "1" and harness.name == "native":
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs (OMNI_UPDATE_GOLDEN=1 to accept)"


def pod(answer):
    job = next(m for m in answer["manifests"] if m["kind"] == "Job")
    return job["body"]["spec"]["template"]


@pytest.mark.parametrize("arch_name,node_arch", [("x86_64", "amd64"), ("aarch64", "arm64")])
def test_renders_the_input_and_the_job(harness, arch_name, node_arch):
    params = {"rpms": {"hello-1.0-1.x86_64.rpm": {"upload": SHA},
                       "hello-debuginfo-1.0-1.x86_64.rpm": {"upload": SHA2}}}
    answer = harness.serialize(Job.example(arch_name), params)
    golden(f"two-rpms-{arch_name}", answer, harness)
    template = pod(answer)
    assert template["spec"]["nodeSelector"] == {"kubernetes.io/arch": node_arch}
    assert [c["name"] for c in template["spec"]["containers"]] == Sign.steps
    assert template["metadata"]["labels"]["omni.io/task"] == "sign"
    assert template["metadata"]["annotations"] == {"omni.io/read-only-root": "sign"}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["uploads"] == {"name": "uploads", "emptyDir": {}}
    assert volumes["key"]["secret"]["secretName"] == "omni-signing-key"
    mounts = {m["name"]: m for m in template["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["key"]["readOnly"] and mounts["uploads"]["readOnly"]
    config_map = answer["manifests"][0]["body"]
    assert config_map["data"]["rpms"] == (f"{SHA} hello-1.0-1.x86_64.rpm\n"
                                          f"{SHA2} hello-debuginfo-1.0-1.x86_64.rpm\n")


def test_the_key_is_no_param(harness):
    errors = harness.validate({"rpms": {"a.rpm": {"upload": SHA}}, "key": "-----BEGIN PGP"})
    assert errors == [FieldError("/key", "unknown field")]


@pytest.mark.parametrize("rpms,path", [
    ({}, "/rpms"),
    ({"../x.rpm": {"upload": SHA}}, "/rpms"),
    ({"a b.rpm": {"upload": SHA}}, "/rpms"),
    ({"x.tar": {"upload": SHA}}, "/rpms"),
    ({"x.rpm": {"upload": SHA.upper()}}, "/rpms/x.rpm/upload"),
    ({"x.rpm": {"upload": SHA[:63]}}, "/rpms/x.rpm/upload"),
    ({"x.rpm": {"sha256": SHA}}, "/rpms/x.rpm"),
    ({"x.rpm": SHA}, "/rpms/x.rpm"),
])
def test_bad_rpms_are_refused_at_their_field(harness, rpms, path):
    errors = harness.validate({"rpms": rpms})
    assert errors and all(e.path.startswith(path) for e in errors), errors


def test_rpms_are_required(harness):
    assert harness.validate({}) == [FieldError("/rpms", "missing field")]
    assert harness.validate({"rpms": {"a.rpm": {"upload": SHA}}}) == []


def test_describe_names_the_contract():
    described = Sign().describe()
    assert (described["task"], described["steps"]) == ("sign", ["sign"])
    assert described["params_schema"]["required"] == ["rpms"]
