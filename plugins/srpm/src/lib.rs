//! # omni-plugin-srpm: the `srpm` task type
//!
//! Builds a source RPM from one spec file. Params ([`omni_plugin_rpm_common::Params`], shared
//! with `rpm`): the spec inline (`spec`, named after its `Name:` tag or `spec_name`, with
//! optional `sources`: base64 contents, each with an optional mode) or from source control
//! (`scm_url`, `ref`, `spec_path`), optional rpm macro `defines`, the build step's `resources`
//! and `timeout_seconds` (default 3600). Steps, in order: `fetch` puts the spec into
//! `$OMNI_WORK/SPECS` and its sources into `$OMNI_WORK/SOURCES` with their names and modes
//! (copied from the job's ConfigMap, or cloned with git at `ref`); `build` runs `rpmbuild -bs` with `_topdir` = `$OMNI_WORK` and
//! copies `SRPMS/*.src.rpm` to `$OMNI_OUTPUT`. Packing sources needs no build dependencies, so
//! there is no `deps` step.
//!
//! The Kubernetes objects are `templates/srpm/configmap.yaml` and `job.yaml`; the worker images
//! and the SCM policy are in `templates/srpm/settings.yaml`. This crate names only the task and
//! its steps; everything else is in the common crate and the templates.

use omni_plugin_rpm_common::{self as common, Params};
use omni_sdk::{Context, Error, FieldError, Job, Plugin, Rendered};

/// The `srpm` task type.
#[derive(Debug)]
pub struct Srpm;

impl Plugin for Srpm {
    type Params = Params;

    const TASK: &'static str = "srpm";
    const DESCRIPTION: &'static str = "Builds a source RPM from a spec file, inline or from git";
    const ARCHES: &'static [&'static str] = &["x86_64", "aarch64"];
    const STEPS: &'static [&'static str] = &["fetch", "build"];
    const TEMPLATES: &'static [&'static str] = &["configmap.yaml", "job.yaml"];

    fn check(params: &Params, ctx: &Context) -> Vec<FieldError> {
        common::check(params, ctx)
    }

    fn serialize(job: &Job, params: Params, ctx: &Context) -> Result<Rendered, Error> {
        common::render(Self::TASK, job, &params, ctx)
    }
}

omni_sdk::export_plugin!(Srpm);
