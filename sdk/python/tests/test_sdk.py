"""The SDK's own tests, natively: the arch table is the Rust crate's, params errors are field
errors at JSON Pointers, templates render as the Rust SDK's do (strict, unescaped, YAML
documents), and rendered objects are labelled."""

import re
from pathlib import Path

import pytest

from omni_sdk import (Context, FieldError, InvalidParams, Job, Plugin, Rendered, TemplateError,
                      arch, k8s, schema_errors)

ROOT = Path(__file__).resolve().parents[3]


def test_the_arch_table_is_the_rust_crates():
    rust = (ROOT / "sdk/arch/src/lib.rs").read_text()
    table = re.search(r"pub const ARCHES: &\[\(&str, &str\)\] = &\[(.*?)\];", rust, re.S).group(1)
    assert tuple(re.findall(r'\("([^"]+)", "([^"]+)"\)', table)) == arch.ARCHES
    assert arch.to_kubernetes("aarch64") == "arm64"
    assert arch.from_kubernetes("amd64") == "x86_64"
    assert not arch.is_known("amd64")


SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "packages"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "packages": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}},
        "opts": {"type": "object", "properties": {"a/b": {"type": "integer"}},
                 "additionalProperties": False},
        "count": {"type": "integer", "default": 2},
    },
}


def test_schema_errors_are_field_errors_at_json_pointers():
    assert schema_errors(SCHEMA, {"name": "x", "packages": []}) == []
    errors = schema_errors(SCHEMA, {"name": "", "packages": ["ok", "NO"], "extra": 1,
                                    "opts": {"a/b": "x", "c~d": 1}})
    assert [e.path for e in errors] == ["/extra", "/name", "/opts/a~1b", "/opts/c~0d",
                                        "/packages/1"]
    assert errors[0].message == "unknown field"
    missing = schema_errors(SCHEMA, {})
    assert missing == [FieldError("/name", "missing field"), FieldError("/packages", "missing field")]


class Echo(Plugin):
    task = "echo"
    arches = ["x86_64"]
    steps = ["echo"]
    params_schema = SCHEMA

    def check(self, params, ctx):
        return [FieldError("/count", "too many")] if params["count"] > 5 else []

    def serialize(self, job, params, ctx):
        return Rendered.from_objects(self.task, job, ctx.render("job.yaml", {"job": job.as_dict(), "params": params}))


def context(files):
    return Context(files.get, lambda level, message: None)


JOB = """apiVersion: batch/v1
kind: Job
metadata:
  name: {{ job.name | tojson }}
spec:
  template:
    spec:
      containers:
      - name: echo
        args: {{ params.packages | tojson }}
        env: [{"name": "NAME", "value": {{ params.name | tojson }}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm, labels: {mine: "yes"}}
---
"""


def test_params_fill_defaults_then_check_then_render_labelled_objects():
    plugin, ctx, job = Echo(), context({"job.yaml": JOB}), Job.example("x86_64")
    rendered = plugin.render_job(job, '{"name": "a\\n\\"b: c", "packages": ["x"]}', ctx)
    assert rendered.primary == job.name
    body = rendered.manifests[0].body
    assert body["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == 'a\n"b: c'
    assert body["metadata"]["namespace"] == "omni-jobs"
    assert body["spec"]["template"]["metadata"]["labels"] == k8s.labels("echo", job.id)
    assert rendered.manifests[1].body["metadata"]["labels"]["mine"] == "yes"
    with pytest.raises(InvalidParams) as e:
        plugin.render_job(job, '{"name": "a", "packages": [], "count": 6}', ctx)
    assert e.value.errors == [FieldError("/count", "too many")]
    for text, message in [("[", "params are not JSON"), ("[]", "params must be a JSON object")]:
        with pytest.raises(InvalidParams) as e:
            plugin.parse_params(text, ctx)
        assert e.value.errors[0].path == "" and e.value.errors[0].message.startswith(message)
    with pytest.raises(Exception, match="does not build for arch 'aarch64'"):
        plugin.render_job(Job.example("aarch64"), '{"name": "a", "packages": []}', ctx)


def test_template_errors_name_the_template():
    job = Job.example()
    for files, message in [
        ({}, "job.yaml: no such template"),
        ({"job.yaml": "{{ nope }}"}, "job.yaml: 'nope' is undefined"),
        ({"job.yaml": "{% if %}"}, "job.yaml: "),
        ({"job.yaml": "- a list"}, "job.yaml: a document is a list, not an object"),
        ({"job.yaml": "a: [b"}, "job.yaml did not render to YAML"),
    ]:
        with pytest.raises(TemplateError, match=re.escape(message)):
            Echo().render_job(job, '{"name": "a", "packages": []}', context(files))
    with pytest.raises(TemplateError, match="no batch/v1 Job"):
        Echo().render_job(job, '{"name": "a", "packages": []}',
                          context({"job.yaml": "{kind: ConfigMap, apiVersion: v1, metadata: {name: x}}"}))
    with pytest.raises(TemplateError, match="settings.yaml is missing"):
        context({}).settings()


def test_step_conventions():
    assert k8s.step_env() == [{"name": "OMNI_INPUT", "value": "/input"},
                              {"name": "OMNI_WORK", "value": "/work"},
                              {"name": "OMNI_OUTPUT", "value": "/output"}]
    assert k8s.volume_mounts()[0] == {"name": "input", "mountPath": "/input", "readOnly": True}
    assert k8s.volumes("cm", "50Gi")[1] == {"name": "work", "emptyDir": {"sizeLimit": "50Gi"}}
    assert k8s.resources("1", "1Gi")["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert k8s.is_dns_label("omni-3f1e") and not k8s.is_dns_label("-a")
    assert k8s.is_config_map_key("ks.cfg") and not k8s.is_config_map_key("..data")
    assert re.match(k8s.QUANTITY, "500m") and not re.match(k8s.QUANTITY, "two")
