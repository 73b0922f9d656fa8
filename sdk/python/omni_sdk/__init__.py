"""# omni_sdk: Omni task types in Python

An Omni plugin is a WebAssembly component implementing the WIT world ``job-handler``
(``omni:plugin@0.1.0``, the repository's ``wit/``). This package hides the component model, as
the Rust SDK (``sdk/``) does: a plugin is a subclass of :class:`Plugin`, its params are checked
against the JSON Schema it declares (draft 2020-12, by jsonschema in the plugin), its Kubernetes
objects are rendered from the task's templates with Jinja2, and ``omni_sdk.component.export``
turns it into the component's exports (componentize-py builds the component; see
``sdk/python/build.sh``).

What it owns: the guest side of the contract and the helpers plugins share. What it must not
know about: the host's engines, store or HTTP API.

Layout:
- :class:`Plugin`, :class:`Job`, :class:`FieldError`, :class:`Manifest`, :class:`Rendered` and
  the errors :class:`TemplateError`, :class:`InvalidParams`, :class:`InternalError`: the
  contract in Python types.
- :class:`Context`: what a plugin may use while it runs (templates, settings, the host's log).
- ``omni_sdk.k8s``: labels, the shared step conventions, names; ``omni_sdk.arch``: arch names.
- ``omni_sdk.testing``: a native harness (a stand-in for the host import) and one that renders
  through the real host (``omni plugin render``), for the same tests.
- ``omni_sdk.component``: the component's exports (imports the bindings componentize-py
  generates at build time; never imported natively).
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import jinja2
import jinja2.debug  # imported by Jinja2 when a template raises; see _warm_up
import jsonschema
from ruamel.yaml import YAML

from . import arch, k8s

__all__ = [
    "Context",
    "FieldError",
    "InternalError",
    "InvalidParams",
    "Job",
    "Manifest",
    "Plugin",
    "Rendered",
    "SETTINGS",
    "TemplateError",
    "arch",
    "json_pointer_escape",
    "k8s",
    "schema_errors",
]

#: The file of a task's templates directory that holds the operator's settings.
SETTINGS = "settings.yaml"

# A component starts from the state its modules reached when componentize-py imported them at
# build time, and has no files at run time: what jsonschema reads from its package's files on
# first use (the vocabularies of draft 2020-12) is read now.
jsonschema.validators._store_schema_list()


@dataclass(frozen=True)
class FieldError:
    """One thing wrong in the params: a JSON Pointer into them (``/packages/0``; empty for the
    params as a whole) and what is wrong, for the person who submitted the job."""

    path: str
    message: str


@dataclass(frozen=True)
class Job:
    """The job a plugin renders objects for, as the host passes it."""

    id: str
    service: str
    domain: str
    namespace: str
    name: str
    arch: str

    @property
    def node_arch(self) -> str:
        """The ``kubernetes.io/arch`` value of the job's arch (empty for an unknown one)."""
        return arch.to_kubernetes(self.arch) or ""

    @classmethod
    def example(cls, arch_name: str = "x86_64") -> "Job":
        """A job as the host would pass it, for tests: fixed id, ``omni-jobs`` namespace (the
        Rust SDK's ``Job::example``)."""
        id = "3f1e2d4c-8a7b-11f0-9c5d-0242ac120002"
        return cls(id=id, service="test", domain="default", namespace="omni-jobs",
                   name=f"omni-{id}", arch=arch_name)

    def as_dict(self) -> Dict[str, str]:
        """The job as template data (``job.name``, ``job.id``, ...)."""
        return {"id": self.id, "service": self.service, "domain": self.domain,
                "namespace": self.namespace, "name": self.name, "arch": self.arch}


class TemplateError(Exception):
    """A template is missing or does not render: the operator's templates are wrong."""


class InternalError(Exception):
    """Anything else a plugin can name."""


class InvalidParams(Exception):
    """The params are not valid: the field errors."""

    def __init__(self, errors: List[FieldError]):
        super().__init__("; ".join(f"{e.path or '/'}: {e.message}" for e in errors))
        self.errors = errors


@dataclass
class Manifest:
    """One rendered Kubernetes object."""

    api_version: str
    kind: str
    name: str
    body: Dict[str, Any]


@dataclass
class Rendered:
    """The objects that run a job, and the name of the batch/v1 Job among them."""

    manifests: List[Manifest]
    primary: str

    @classmethod
    def from_objects(cls, task: str, job: Job, objects: List[dict]) -> "Rendered":
        """Turns rendered objects into the answer of ``serialize``: each must have
        ``apiVersion``, ``kind`` and ``metadata.name``; each gets the job's namespace and the
        labels of ``k8s.labels`` (a Job's pod template too); exactly one is a batch/v1 Job, the
        primary. Raises :class:`TemplateError` otherwise."""
        manifests = []
        primary = None
        for index, body in enumerate(objects):
            def text(*keys):
                value = body
                for key in keys:
                    value = value.get(key) if isinstance(value, dict) else None
                if not isinstance(value, str):
                    raise TemplateError(f"object {index} has no string at /{'/'.join(keys)}")
                return value

            api_version, kind = text("apiVersion"), text("kind")
            name = text("metadata", "name")
            _stamp(body, ("metadata",), task, job, namespace=True)
            if api_version == "batch/v1" and kind == "Job":
                _stamp(body, ("spec", "template", "metadata"), task, job, namespace=False)
                if primary is not None:
                    raise TemplateError("more than one batch/v1 Job rendered")
                primary = name
            manifests.append(Manifest(api_version, kind, name, body))
        if primary is None:
            raise TemplateError("no batch/v1 Job among the rendered objects")
        return cls(manifests, primary)

    def as_dict(self) -> dict:
        """The answer as ``omni plugin render -o json`` prints it."""
        return {
            "manifests": [
                {"api_version": m.api_version, "kind": m.kind, "name": m.name, "body": m.body}
                for m in self.manifests
            ],
            "primary": self.primary,
        }


def _stamp(body: dict, path, task: str, job: Job, namespace: bool) -> None:
    node = body
    for key in path:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    if namespace:
        node["namespace"] = job.namespace
    labels = node.get("labels")
    if not isinstance(labels, dict):
        labels = {}
        node["labels"] = labels
    labels.update(k8s.labels(task, job.id))


def json_pointer_escape(segment: str) -> str:
    """One JSON Pointer segment (``~`` as ``~0``, ``/`` as ``~1``)."""
    return segment.replace("~", "~0").replace("/", "~1")


class Context:
    """What a plugin may use while it runs: its task's templates (through the host's
    ``template`` import, or a stand-in in tests), the operator's settings and the host's log."""

    def __init__(self, source: Callable[[str], Optional[str]],
                 log: Callable[[str, str], None]):
        self._source = source
        self._log = log
        self._settings = None
        self._env = None

    def template(self, name: str) -> Optional[str]:
        """The text of a file of the task's templates directory, or None."""
        return self._source(name)

    def settings(self) -> Any:
        """The operator's settings: ``settings.yaml`` parsed once per context. Raises
        :class:`TemplateError` when it is missing or not YAML."""
        if self._settings is None:
            text = self.template(SETTINGS)
            if text is None:
                raise TemplateError(f"{SETTINGS} is missing")
            try:
                self._settings = _yaml().load(text)
            except Exception as e:
                raise TemplateError(f"{SETTINGS}: {e}") from None
        return self._settings

    def log(self, level: str, message: str) -> None:
        """A line for the host's log (``debug``, ``info``, ``warn`` or ``error``)."""
        self._log(level, message)

    def _environment(self) -> jinja2.Environment:
        if self._env is None:
            # Undefined names are errors (a typo in a template fails loudly), nothing is
            # escaped, `tojson` keeps the data's key order (as minijinja does in Rust plugins).
            env = jinja2.Environment(
                loader=jinja2.FunctionLoader(self._source),
                undefined=jinja2.StrictUndefined,
                autoescape=False,
                keep_trailing_newline=True,
            )
            env.policies["json.dumps_kwargs"] = {"sort_keys": False}
            self._env = env
        return self._env

    def prepare(self, templates: List[str]) -> None:
        """Parses the settings and compiles ``templates`` ahead of the calls that use them."""
        self.settings()
        for name in templates:
            self._get(name)

    def _get(self, name: str) -> jinja2.Template:
        try:
            return self._environment().get_template(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"{name}: no such template") from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"{name}: {_describe(e)}") from None

    def render(self, name: str, data: dict) -> List[dict]:
        """Renders the template ``name`` with ``data`` and parses the result as YAML documents,
        one object each (empty documents skipped). Jinja2 without auto-escaping; undefined names
        are errors; ``{{ x | tojson }}`` quotes any text safely for YAML; ``{% include %}`` reads
        other files of the same directory. Raises :class:`TemplateError` naming the template."""
        template = self._get(name)
        try:
            text = template.render(data)
        except jinja2.TemplateError as e:
            raise TemplateError(f"{name}: {_describe(e)}") from None
        try:
            documents = list(_yaml().load_all(text))
        except Exception as e:
            raise TemplateError(f"{name} did not render to YAML: {e}") from None
        objects = []
        for document in documents:
            if document is None:
                continue
            if not isinstance(document, dict):
                raise TemplateError(f"{name}: a document is {_kind(document)}, not an object")
            # Plain JSON values: what crosses the boundary is JSON text.
            objects.append(json.loads(json.dumps(document, default=str)))
        return objects


def _describe(e: jinja2.TemplateError) -> str:
    line = getattr(e, "lineno", None)
    return f"{e.message} (line {line})" if line else str(e.message)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _yaml() -> YAML:
    # The safe loader, in ruamel.yaml's own Python (no C extension in a component).
    return YAML(typ="safe", pure=True)


class Plugin:
    """A task type. Subclass it, set the class attributes, implement :meth:`serialize` (and
    :meth:`check` for rules a schema cannot say), and export the class in the component's
    ``app.py`` with ``WitWorld = omni_sdk.component.export(MyPlugin)``."""

    #: The task name jobs ask for: lowercase letters, digits and ``-``, 1 to 63 long.
    task: str = ""
    #: The plugin's version, semver.
    version: str = "0.1.0"
    #: One line for humans.
    description: str = ""
    #: The API arches the task can build for.
    arches: List[str] = []
    #: The names of the job's steps, in the order they run.
    steps: List[str] = []
    #: The template files the plugin renders or includes.
    templates: List[str] = []
    #: JSON Schema (draft 2020-12) of the job's params; checked before :meth:`check`. A
    #: property's ``default`` fills it in when the params leave it out.
    params_schema: Dict[str, Any] = {"type": "object"}

    def check(self, params: dict, ctx: Context) -> List[FieldError]:
        """Rules that need more than one field or the operator's settings; runs after the
        params passed their schema. The default accepts everything."""
        return []

    def serialize(self, job: Job, params: dict, ctx: Context) -> Rendered:
        """Renders the Kubernetes objects that run ``job``. Raises :class:`TemplateError`,
        :class:`InvalidParams` or :class:`InternalError`."""
        raise NotImplementedError

    # What the component's exports (and the native harness) call.

    def describe(self) -> dict:
        """What ``describe`` answers, as plain data (``params_schema`` as an object)."""
        return {"task": self.task, "version": self.version, "description": self.description,
                "arches": list(self.arches), "params_schema": self.params_schema,
                "steps": list(self.steps)}

    def parse_params(self, text: str, ctx: Context) -> dict:
        """The params checked (JSON, an object, the schema, :meth:`check`), with the schema's
        defaults filled in. Raises :class:`InvalidParams`."""
        try:
            params = json.loads(text)
        except ValueError as e:
            raise InvalidParams([FieldError("", f"params are not JSON: {e}")]) from None
        if not isinstance(params, dict):
            raise InvalidParams([FieldError("", "params must be a JSON object")])
        errors = schema_errors(self.params_schema, params)
        if errors:
            raise InvalidParams(errors)
        params = _with_defaults(self.params_schema, params)
        errors = list(self.check(params, ctx))
        if errors:
            raise InvalidParams(errors)
        return params

    def render_job(self, job: Job, text: str, ctx: Context) -> Rendered:
        """``serialize`` as the host calls it: the arch checked, the params parsed."""
        if not arch.is_known(job.arch) or job.arch not in self.arches:
            raise InternalError(f"task {self.task} does not build for arch {job.arch!r} "
                                f"(it builds for {', '.join(self.arches)})")
        return self.serialize(job, self.parse_params(text, ctx), ctx)


_validators: Dict[int, Any] = {}


def schema_errors(schema: dict, instance: Any) -> List[FieldError]:
    """Every place where ``instance`` breaks ``schema``, as field errors at JSON Pointers
    (a missing or unknown property at its own path), sorted by path."""
    validator = _validators.get(id(schema))
    if validator is None:
        validator = jsonschema.Draft202012Validator(schema)
        _validators[id(schema)] = validator
    errors = []
    for error in validator.iter_errors(instance):
        base = "".join(f"/{json_pointer_escape(str(p))}" for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            for key in error.validator_value:
                if key not in error.instance and error.message == f"{key!r} is a required property":
                    errors.append(FieldError(f"{base}/{json_pointer_escape(key)}", "missing field"))
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            patterns = list(error.schema.get("patternProperties", {}))
            for key in error.instance:
                if key not in known and not any(re.search(p, key) for p in patterns):
                    errors.append(FieldError(f"{base}/{json_pointer_escape(key)}", "unknown field"))
            continue
        errors.append(FieldError(base, error.message))
    return sorted(set(errors), key=lambda e: (e.path, e.message))


def _with_defaults(schema: dict, value: Any) -> Any:
    if not isinstance(value, dict) or not isinstance(schema, dict):
        return value
    out = dict(value)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and isinstance(sub, dict) and "default" in sub:
            out[key] = json.loads(json.dumps(sub["default"]))
        if key in out:
            out[key] = _with_defaults(sub, out[key])
    return out


def _warm_up() -> None:
    """Runs the SDK's paths once, at import: a component starts from the state its modules
    reached when componentize-py imported them at build time and can import nothing later (it
    has no files), so what the libraries import or load on first use happens here."""
    files = {
        SETTINGS: "a: [1, 2]\nb: {c: d}\n",
        # A string literal: Jinja2 decodes it with the `unicode-escape` codec, found on first use.
        "t.yaml": "{% for x in settings.a %}\n---\nkind: {{ (x | string ~ '-\\n') | tojson }}\n"
                  "v: {{ settings.b | tojson }}\n{% endfor %}",
        "bad.yaml": "{{ nope }}",
    }
    ctx = Context(files.get, lambda level, message: None)
    ctx.render("t.yaml", {"settings": ctx.settings()})
    try:
        ctx.render("bad.yaml", {})
    except TemplateError:
        pass
    schema_errors({"type": "object", "required": ["a"], "additionalProperties": False,
                   "properties": {"b": {"type": "string", "pattern": "^x$", "minLength": 2}}},
                  {"b": "y", "c": 1})


_warm_up()
