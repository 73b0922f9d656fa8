"""The component's exports: ``export(MyPlugin)`` is the ``WitWorld`` class componentize-py
looks for in the app module. It imports the bindings componentize-py generates from ``wit/`` at
build time (``wit_world``, of the world ``job-handler-preinit``), so it is only imported inside a
component, never natively.

Two pre-initializations: componentize-py's, at build time (the modules imported, the SDK warmed
up: no call imports anything), and the host's, which calls ``wizer-initialize`` once and
snapshots the instance: the context it prepares (``settings.yaml`` parsed, the plugin's
``templates`` compiled) serves every call that starts from the snapshot, which the host uses only
while the files it read are unchanged."""

import json
from typing import List

from componentize_py_types import Err
from wit_world.imports import host, types as wit

from . import (Context, FieldError, InternalError, InvalidParams, Job, Plugin, TemplateError,
               schema_errors)

_LEVELS = {
    "debug": host.Level.DEBUG,
    "info": host.Level.INFO,
    "warn": host.Level.WARN,
    "error": host.Level.ERROR,
}


def _log(level: str, message: str) -> None:
    host.log(_LEVELS.get(level, host.Level.INFO), message)


#: The context ``wizer-initialize`` prepared, in the host's snapshot; None in a plain instance.
_prepared = None


def _context() -> Context:
    return _prepared if _prepared is not None else Context(host.template, _log)


def _field_errors(errors: List[FieldError]) -> List[wit.FieldError]:
    return [wit.FieldError(path=e.path, message=e.message) for e in errors]


def export(plugin_class: type) -> type:
    """The ``WitWorld`` class of a component serving ``plugin_class`` (a :class:`Plugin`).

    Every failure the plugin can name is a value (a field error or a ``serialize-error``), and
    so is any other exception a call raises (``internal``, with its type and message): a plugin
    never traps on a Python error."""
    plugin: Plugin = plugin_class()
    # At build time (componentize-py imports the app module then): the params' validator is made
    # and used once, so no call makes it again or finds something it would load from a file.
    schema_errors(plugin.params_schema, {})

    class WitWorld:
        def wizer_initialize(self) -> None:
            global _prepared
            ctx = Context(host.template, _log)
            try:
                ctx.prepare(list(plugin.templates))
            except Exception:  # noqa: BLE001 - every call that needs the file reports it
                return
            _prepared = ctx

        def describe(self) -> wit.PluginInfo:
            info = plugin.describe()
            return wit.PluginInfo(
                task=info["task"], version=info["version"], description=info["description"],
                arches=info["arches"], params_schema=json.dumps(info["params_schema"]),
                steps=info["steps"])

        def validate(self, params: str) -> None:
            try:
                plugin.parse_params(params, _context())
            except InvalidParams as e:
                raise Err(_field_errors(e.errors))
            except (TemplateError, InternalError) as e:
                raise Err([wit.FieldError(path="", message=str(e))])
            except Exception as e:  # noqa: BLE001 - a Python error is the plugin's, not a trap
                raise Err([wit.FieldError(path="", message=f"{type(e).__name__}: {e}")])

        def serialize(self, job: wit.JobContext, params: str) -> wit.Rendered:
            ours = Job(id=job.job_id, service=job.service, domain=job.domain,
                       namespace=job.namespace, name=job.name, arch=job.arch)
            try:
                rendered = plugin.render_job(ours, params, _context())
            except InvalidParams as e:
                raise Err(wit.SerializeError_InvalidParams(_field_errors(e.errors)))
            except TemplateError as e:
                raise Err(wit.SerializeError_Template(str(e)))
            except InternalError as e:
                raise Err(wit.SerializeError_Internal(str(e)))
            except Exception as e:  # noqa: BLE001
                raise Err(wit.SerializeError_Internal(f"{type(e).__name__}: {e}"))
            return wit.Rendered(
                manifests=[
                    wit.Manifest(api_version=m.api_version, kind=m.kind, name=m.name,
                                 body=json.dumps(m.body))
                    for m in rendered.manifests
                ],
                primary=rendered.primary)

    return WitWorld
