"""Harnesses for a plugin's tests (pytest), the same cases two ways:

- :class:`Harness` runs the plugin natively in this CPython, with a stand-in for the host's
  ``template`` import that reads the task's templates directory: fast, for logic and golden
  files.
- :class:`HostHarness` renders through the real host: ``omni plugin render`` loads the built
  component in the sandbox and calls it, with the same templates. Its answers are made
  comparable with the native ones by giving the job the id of :meth:`Job.example`.

:func:`harnesses` gives both when the environment names the ``omni`` binary (``OMNI_BIN``) and
the directory of built components (``OMNI_PLUGIN_WASM_DIR``), as ``make test`` does, and the
native one alone otherwise."""

import json
import os
import subprocess
from pathlib import Path
from typing import Any, List, Optional, Tuple

from . import Context, FieldError, InvalidParams, Job, Plugin, Rendered


class Harness:
    """A plugin called natively, its templates read from ``templates_dir`` (the task's own
    directory, ``templates/<task>``)."""

    name = "native"

    def __init__(self, plugin_class: type, templates_dir):
        self.plugin: Plugin = plugin_class()
        self.templates_dir = Path(templates_dir)
        self.logged: List[Tuple[str, str]] = []

    def context(self) -> Context:
        def source(name: str) -> Optional[str]:
            # As the host answers: a file of the directory itself, nothing outside it.
            if "/" in name or name in ("", ".", ".."):
                return None
            path = self.templates_dir / name
            return path.read_text() if path.is_file() else None

        return Context(source, lambda level, message: self.logged.append((level, message)))

    def describe(self) -> dict:
        return self.plugin.describe()

    def validate(self, params: Any) -> List[FieldError]:
        """The field errors of ``params`` (a value, or JSON text); empty when they are valid."""
        try:
            self.plugin.parse_params(_text(params), self.context())
        except InvalidParams as e:
            return e.errors
        return []

    def serialize(self, job: Job, params: Any) -> dict:
        """The rendered answer as ``omni plugin render -o json`` prints it. Raises what the
        plugin raises (:class:`InvalidParams`, ``TemplateError``, ``InternalError``)."""
        rendered: Rendered = self.plugin.render_job(job, _text(params), self.context())
        return json.loads(json.dumps(rendered.as_dict()))


class HostError(Exception):
    """``omni plugin render`` failed: its exit code and standard error."""

    def __init__(self, code: int, stderr: str):
        super().__init__(f"omni plugin render exited {code}: {stderr}")
        self.code = code
        self.stderr = stderr


class HostHarness:
    """The built component called by the real host (``omni plugin render``)."""

    name = "host"

    def __init__(self, omni: str, component, templates_root):
        self.omni = omni
        self.component = Path(component)
        self.templates_root = Path(templates_root)

    def _render(self, job: Job, params: Any) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.omni, "plugin", "render", str(self.component), "--params", "-",
             "--template-dir", str(self.templates_root), "--arch", job.arch,
             "--domain", job.domain, "--namespace", job.namespace, "-o", "json"],
            input=_text(params), capture_output=True, text=True, check=False)

    def validate(self, params: Any) -> List[FieldError]:
        """The field errors the host printed (exit 2), parsed from its lines ``  path: message``."""
        done = self._render(Job.example(), params)
        if done.returncode == 0:
            return []
        if done.returncode != 2:
            raise HostError(done.returncode, done.stderr)
        errors = []
        for line in done.stderr.splitlines()[1:]:
            path, _, message = line.strip().partition(": ")
            errors.append(FieldError("" if path == "/" else path, message))
        return errors

    def serialize(self, job: Job, params: Any) -> dict:
        done = self._render(job, params)
        if done.returncode != 0:
            raise HostError(done.returncode, done.stderr)
        answer = json.loads(done.stdout)
        # The CLI makes up a job id (and the name from it); use the example's.
        host_id = answer["primary"][len("omni-"):]
        text = json.dumps(answer).replace(host_id, job.id)
        answer = json.loads(text)
        for manifest in answer["manifests"]:
            if isinstance(manifest["body"], str):
                manifest["body"] = json.loads(manifest["body"])
        return answer


def harnesses(plugin_class: type, task: str, templates_root, component_name: Optional[str] = None):
    """The native harness, and the host harness when ``OMNI_BIN`` and the built component
    (``$OMNI_PLUGIN_WASM_DIR/omni_plugin_<task, - as _>.wasm``) are there. With ``OMNI_REQUIRE_HOST=1``
    (set by ``make test``'s runner), a missing component is an error instead of a skip."""
    templates_root = Path(templates_root)
    found = [Harness(plugin_class, templates_root / task)]
    omni, wasm_dir = os.environ.get("OMNI_BIN"), os.environ.get("OMNI_PLUGIN_WASM_DIR")
    name = component_name or task.replace("-", "_")
    component = Path(wasm_dir or ".") / f"omni_plugin_{name}.wasm"
    if omni and wasm_dir and component.is_file():
        found.append(HostHarness(omni, component, templates_root))
    elif os.environ.get("OMNI_REQUIRE_HOST") == "1":
        raise RuntimeError(f"{component}: missing, or OMNI_BIN unset; build with `make plugins`")
    return found


def _text(params: Any) -> str:
    return params if isinstance(params, str) else json.dumps(params)
