"""# The `sign` task type, in Python

Signs RPMs with the operator's key: `rpmsign --addsign` with gpg, in one step, `sign`. The
RPMs are uploads of the job's domain, named in the params by their sha256:

    {"rpms": {"hello-1.0-1.x86_64.rpm": {"upload": "<sha256>"}}}

The host checks that each `{"upload": ...}` names an upload of the job's domain, and the engine
fills the pod's `uploads` volume with each one as a file named by its sha256 before the first
step. The step copies each to its RPM's name, signs it and writes it to `$OMNI_OUTPUT`: the
signed RPMs are the job's artifacts.

The key is never a param: it is the operator's, a Kubernetes Secret (`key.secret` in
`templates/sign/settings.yaml`) mounted read-only at `/key`, holding the armored secret key in
`key.asc` (the local engine binds a directory the operator configured for that Secret's name).
The step imports it into a keyring in the job's `work` volume, prints only the key's
fingerprint, and writes nothing of it to the output.
"""

from omni_sdk import FieldError, Plugin, Rendered, TemplateError, k8s

#: An RPM file name the step may write: rpm's name-version-release.arch.rpm characters, no path.
RPM_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+~^-]{0,250}\.rpm$"
#: The sha256 of an upload: 64 lowercase hex digits.
SHA256 = r"^[0-9a-f]{64}$"


class Sign(Plugin):
    task = "sign"
    version = "0.1.0"
    description = "Signs RPMs with the operator's key (rpmsign --addsign)"
    arches = ["x86_64", "aarch64"]
    steps = ["sign"]
    templates = ["job.yaml", "configmap.yaml"]
    params_schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Params",
        "description": "Params of a `sign` job.",
        "type": "object",
        "additionalProperties": False,
        "required": ["rpms"],
        "properties": {
            "rpms": {
                "description": "The RPMs to sign, by the file name each signed RPM gets: "
                               "an upload of the job's domain, by its sha256.",
                "type": "object",
                "minProperties": 1,
                "maxProperties": 256,
                "propertyNames": {"pattern": RPM_NAME},
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["upload"],
                    "properties": {
                        "upload": {"description": "The upload's sha256 (lowercase hex).",
                                   "type": "string", "pattern": SHA256},
                    },
                },
            },
            "timeout_seconds": {
                "description": "Seconds the job may run.",
                "type": "integer", "minimum": 1, "maximum": 86400, "default": 3600,
            },
        },
    }

    def check(self, params, ctx):
        errors = []
        for name in params["rpms"]:
            # The pattern allows dots; `..` alone cannot match it, but a name of dots can.
            if set(name[: -len(".rpm")]) <= {"."}:
                errors.append(FieldError(f"/rpms/{name}", "is not an RPM file name"))
        return errors

    def serialize(self, job, params, ctx):
        settings = ctx.settings()
        secret = settings["key"]["secret"]
        if not k8s.is_dns_label(secret.replace(".", "-")):
            raise TemplateError(f"settings.yaml: key.secret {secret!r} is not a Secret name")
        # One line per RPM, "<sha256> <name>": both of characters the schema allows, no spaces.
        listing = "".join(f"{ref['upload']} {name}\n" for name, ref in sorted(params["rpms"].items()))
        data = {
            "job": job.as_dict(),
            "params": params,
            "settings": settings,
            "node_arch": job.node_arch,
            "listing": listing,
            "mounts": {**k8s.MOUNTS, "uploads": "/uploads", "key": "/key"},
        }
        objects = ctx.render("configmap.yaml", data) + ctx.render("job.yaml", data)
        return Rendered.from_objects(self.task, job, objects)

