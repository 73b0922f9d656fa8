"""# The `@TASK@` task type

An Omni plugin: it describes the task, checks a job's params and renders the Kubernetes objects
that run it from `templates/@TASK@/` (`job.yaml`, with the operator's choices in
`settings.yaml`). A `@TASK@` job prints `message` `count` times in one step, `run`.

Change the params, the checks and the templates to make it your own task; the tests in `tests/`
run it natively and, once built, through the real host (see README.md).
"""

from omni_sdk import FieldError, Plugin, Rendered


class @TYPE@(Plugin):
    task = "@TASK@"
    version = "0.1.0"
    description = "Prints a message (a new Omni task type)"
    arches = ["x86_64", "aarch64"]
    steps = ["run"]
    templates = ["job.yaml"]
    # The params' JSON Schema (draft 2020-12), answered by `GET /v1/plugins/@TASK@` and checked
    # in the plugin before `check`; a property's `default` fills it in when a job leaves it out.
    params_schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["message"],
        "properties": {
            "message": {"description": "The line the job prints.",
                        "type": "string", "minLength": 1, "maxLength": 4096},
            "count": {"description": "How many times it prints it (at most the operator's "
                                     "`max_count`).",
                      "type": "integer", "minimum": 1, "default": 1},
        },
    }

    def check(self, params, ctx):
        """Rules beyond the schema: here, the operator's limit."""
        max_count = ctx.settings()["max_count"]
        if params["count"] > max_count:
            return [FieldError("/count", f"must be at most {max_count}")]
        return []

    def serialize(self, job, params, ctx):
        objects = ctx.render("job.yaml", {
            "job": job.as_dict(),
            "params": params,
            "settings": ctx.settings(),
            "node_arch": job.node_arch,
        })
        return Rendered.from_objects(self.task, job, objects)
