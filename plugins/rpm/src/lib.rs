//! # omni-plugin-rpm: the `rpm` task type
//!
//! Builds binary RPMs from one spec file. Params ([`omni_plugin_rpm_common::Params`], shared
//! with `srpm`): the spec inline (`spec`, named after its `Name:` tag or `spec_name`, with
//! optional `sources`: base64 contents, each with an optional mode) or from source control
//! (`scm_url`, `ref`, `spec_path`), optional rpm macro `defines`, the build step's `resources`
//! and `timeout_seconds` (default 3600). Steps, in order: `fetch` puts the spec into
//! `$OMNI_WORK/SPECS` and its sources into `$OMNI_WORK/SOURCES` with their names and modes
//! (copied from the job's ConfigMap, or cloned with git at `ref`); `deps` parses the spec (one
//! rpm cannot parse fails here with rpm's message) and downloads the BuildRequires the build
//! root lacks (`dnf builddep --downloadonly`, from the repositories of the settings' `deps:` or
//! the root's own; nothing for a spec without BuildRequires; a root without dnf builds as
//! `rpmbuild --nodeps` would, saying so, unless `deps.require_dnf`); `build` installs them,
//! runs `rpmbuild -bb` with `_topdir` = `$OMNI_WORK` and copies `RPMS/*/*.rpm` to
//! `$OMNI_OUTPUT`. `deps` and `build` run as root of the job's own root.
//!
//! The Kubernetes objects are `templates/rpm/configmap.yaml` and `job.yaml`; the worker images
//! and the SCM policy are in `templates/rpm/settings.yaml`. This crate names only the task and
//! its steps; everything else is in the common crate and the templates.

use omni_plugin_rpm_common::{self as common, Params};
use omni_sdk::{Context, Error, FieldError, Job, Plugin, Rendered};

/// The `rpm` task type.
#[derive(Debug)]
pub struct Rpm;

impl Plugin for Rpm {
    type Params = Params;

    const TASK: &'static str = "rpm";
    const DESCRIPTION: &'static str = "Builds binary RPMs from a spec file, inline or from git";
    const ARCHES: &'static [&'static str] = &["x86_64", "aarch64"];
    const STEPS: &'static [&'static str] = &["fetch", "deps", "build"];
    const TEMPLATES: &'static [&'static str] = &["configmap.yaml", "job.yaml"];

    fn check(params: &Params, ctx: &Context) -> Vec<FieldError> {
        common::check(params, ctx)
    }

    fn serialize(job: &Job, params: Params, ctx: &Context) -> Result<Rendered, Error> {
        common::render(Self::TASK, job, &params, ctx)
    }
}

omni_sdk::export_plugin!(Rpm);
