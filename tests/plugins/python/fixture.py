"""A Python plugin for the runtime's tests (task `pyfixture`): params it rejects with field
errors (a CPython that handles an exception asks WASI for its preopened directories, which the
sandbox must answer, not trap), and behaviours that try what a plugin cannot do."""

from omni_sdk import FieldError, Plugin, Rendered


class Fixture(Plugin):
    task = "pyfixture"
    version = "0.1.0"
    description = "Test fixture: a Python plugin that rejects params and misbehaves on request"
    arches = ["x86_64", "aarch64"]
    steps = ["main"]
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["behaviour"],
        "properties": {
            "behaviour": {"enum": ["behave", "open", "raise", "environ"]},
            "count": {"type": "integer", "minimum": 1, "default": 1},
        },
    }

    def check(self, params, ctx):
        if params["behaviour"] == "behave" and params["count"] > 10:
            return [FieldError("/count", "at most 10 when behaving")]
        return []

    def serialize(self, job, params, ctx):
        behaviour = params["behaviour"]
        note = "behaved"
        if behaviour == "open":
            # No preopened directory: the open fails as a call, with an OSError.
            try:
                with open("/etc/passwd") as f:
                    note = f"read {len(f.read())} bytes"
            except OSError as e:
                note = f"open failed: {type(e).__name__}"
        elif behaviour == "raise":
            raise ValueError("asked to raise")
        elif behaviour == "environ":
            import os

            note = f"environ has {len(os.environ)} names"
        job_object = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job.name, "annotations": {"note": note}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "busybox", "args": ["true"] * params["count"]},
            ]}}},
        }
        return Rendered.from_objects(self.task, job, [job_object])
