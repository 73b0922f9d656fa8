"""Harnesses for a plugin's tests (pytest), the same cases two ways:

- :class:`Harness` runs the plugin natively in this CPython, with a stand-in for the host's
  ``template`` import that reads the task's templates directory: fast, for logic and golden
  files.
- :class:`HostHarness` renders through the real host: a running ``omni serve`` that loaded the
  built component, with the same templates, answers its dry run. Its answers are made
  comparable with the native ones by giving the job the id of :meth:`Job.example`.

:func:`harnesses` gives both when ``OMNI_URL`` names such a server, as ``make test`` does
(``host/omni/tests/python.rs``), and the native one alone otherwise. One server serves every
case: a plugin is compiled once, not once per case."""

import json
import os
import urllib.error
import urllib.request
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
    """The host answered something other than objects or field errors."""

    def __init__(self, status: int, body: str):
        super().__init__(f"the host answered {status}: {body}")
        self.status = status
        self.body = body


class HostHarness:
    """The built component called by the real host: a running ``omni serve`` (``url``) that
    loaded it from its plugins directory and serves the same templates, through its dry run
    (``POST /v1/plugins/<task>/render``)."""

    name = "host"

    def __init__(self, url: str, task: str):
        self.url = url.rstrip("/")
        self.task = task

    def _render(self, job: Job, params: Any) -> Tuple[int, Any]:
        value = json.loads(params) if isinstance(params, str) else params
        body = json.dumps({"params": value, "arch": job.arch, "domain": job.domain}).encode()
        request = urllib.request.Request(
            f"{self.url}/v1/plugins/{self.task}/render", data=body, method="POST",
            headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text

    def validate(self, params: Any) -> List[FieldError]:
        """The field errors of a 422 (their paths under ``/params`` made the params' own)."""
        status, answer = self._render(Job.example(), params)
        if status == 200:
            return []
        if status != 422 or not isinstance(answer, dict):
            raise HostError(status, json.dumps(answer))
        return [FieldError(e["path"][len("/params"):], e["message"]) for e in answer["errors"]]

    def serialize(self, job: Job, params: Any) -> dict:
        """The objects, in the shape of :meth:`Harness.serialize` (the host made up the job's id,
        and the name from it: they are the example's here)."""
        status, answer = self._render(job, params)
        if status != 200:
            raise HostError(status, json.dumps(answer))
        host_id = answer["primary"][len("omni-"):]
        answer = json.loads(json.dumps(answer).replace(host_id, job.id))
        return {
            "manifests": [
                {"api_version": m["apiVersion"], "kind": m["kind"], "name": m["name"],
                 "body": m["body"]}
                for m in answer["manifests"]
            ],
            "primary": answer["primary"],
        }


def harnesses(plugin_class: type, task: str, templates_root) -> list:
    """The native harness, and the host harness when ``OMNI_URL`` names a running ``omni serve``
    that serves the plugin (``host/omni/tests/python.rs`` starts one for ``make test``). With
    ``OMNI_REQUIRE_HOST=1``, no such server is an error instead of a skip."""
    found = [Harness(plugin_class, Path(templates_root) / task)]
    url = os.environ.get("OMNI_URL")
    if url:
        found.append(HostHarness(url, task))
    elif os.environ.get("OMNI_REQUIRE_HOST") == "1":
        raise RuntimeError("OMNI_REQUIRE_HOST=1 but OMNI_URL is not set")
    return found


def _text(params: Any) -> str:
    return params if isinstance(params, str) else json.dumps(params)
