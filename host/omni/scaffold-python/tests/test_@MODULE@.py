"""The `@TASK@` plugin against its `templates/@TASK@/`: natively (the SDK's stand-in for the host
import) and, with OMNI_BIN and OMNI_PLUGIN_WASM_DIR set, through the real host as well
(`omni plugin render` with the built component): the same cases, the same answers."""

from pathlib import Path

import pytest

from omni_sdk import FieldError, Job
from omni_sdk.testing import harnesses
from @MODULE@ import @TYPE@

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
PARAMS = {"message": "hello", "count": 3}


@pytest.fixture(params=harnesses(@TYPE@, "@TASK@", TEMPLATES), ids=lambda h: h.name)
def harness(request):
    return request.param


def test_describe_names_the_contract():
    described = @TYPE@().describe()
    assert (described["task"], described["steps"]) == ("@TASK@", ["run"])
    assert described["params_schema"]["required"] == ["message"]


@pytest.mark.parametrize("arch,node_arch", [("x86_64", "amd64"), ("aarch64", "arm64")])
def test_renders_one_job_per_arch(harness, arch, node_arch):
    job = Job.example(arch)
    answer = harness.serialize(job, PARAMS)
    assert answer["primary"] == job.name
    [manifest] = answer["manifests"]
    pod = manifest["body"]["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/arch": node_arch}
    assert [c["name"] for c in pod["spec"]["containers"]] == ["run"]
    env = pod["spec"]["containers"][0]["env"]
    assert env == [{"name": "MESSAGE", "value": "hello"}, {"name": "COUNT", "value": "3"}]
    # The SDK labels every object (and the pod) with the job and the task.
    assert pod["metadata"]["labels"]["omni.io/task"] == "@TASK@"


def test_count_defaults_to_one(harness):
    answer = harness.serialize(Job.example(), {"message": "hi"})
    env = answer["manifests"][0]["body"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[1] == {"name": "COUNT", "value": "1"}


@pytest.mark.parametrize("params,error", [
    ({}, FieldError("/message", "missing field")),
    ({"message": "hi", "colour": "red"}, FieldError("/colour", "unknown field")),
    ({"message": "hi", "count": 11}, FieldError("/count", "must be at most 10")),
    ({"message": "hi", "count": 0}, FieldError("/count", "0 is less than the minimum of 1")),
])
def test_bad_params_name_their_field(harness, params, error):
    assert harness.validate(params) == [error]
