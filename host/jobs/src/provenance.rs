//! A job's provenance: what went in (its params, the uploads they name, the plugin version and
//! template set that rendered it, each object rendered and the images its steps run) and what
//! came out (its artifacts), as an in-toto statement (v1) with a SLSA provenance predicate (v1).
//!
//! What was rendered is recorded when the job is assigned its engine ([`rendering`], kept in the
//! job's record as [`Rendering`]): the sha256 of each object as it went to the engine. A
//! re-render by the recorded versions ([`JobService::rerender`]) gives the same bytes, which is
//! what makes the record checkable.

use omni_core::{Manifest, Rendered};
use omni_store::{ArtifactQuery, Job, JobId, ManifestDigest, Rendering};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::{JobError, JobService};

/// The statement's type (in-toto Statement v1).
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate's type (SLSA Provenance v1).
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What an Omni job is as a SLSA build type: the fields of `externalParameters` and
/// `internalParameters` below.
pub const BUILD_TYPE: &str = "https://omni.build/provenance/job/v1";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `value` with every object's keys sorted (arrays keep their order): two JSON texts that mean
/// the same become the same bytes.
pub fn canonical_json(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical_json(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical_json).collect()),
        other => other.clone(),
    }
}

/// The bytes an object's digest is of: its body as compact JSON, in the order the plugin
/// rendered its keys.
pub fn manifest_bytes(manifest: &Manifest) -> Vec<u8> {
    serde_json::to_vec(&manifest.body).unwrap_or_default()
}

/// The record of `rendered` for `namespace`: each object's sha256, and the images of the
/// primary Job's steps (init containers, then containers), each once.
pub fn rendering(rendered: &Rendered, namespace: &str) -> Rendering {
    let manifests = rendered
        .manifests
        .iter()
        .map(|m| ManifestDigest {
            api_version: m.api_version.clone(),
            kind: m.kind.clone(),
            name: m.name.clone(),
            sha256: sha256_hex(&manifest_bytes(m)),
        })
        .collect();
    let mut images: Vec<String> = Vec::new();
    if let Some(job) = rendered
        .manifests
        .iter()
        .find(|m| m.kind == "Job" && m.name == rendered.primary)
    {
        let spec = &job.body["spec"]["template"]["spec"];
        for list in ["initContainers", "containers"] {
            for container in spec[list].as_array().into_iter().flatten() {
                if let Some(image) = container["image"].as_str()
                    && !images.iter().any(|i| i == image)
                {
                    images.push(image.to_owned());
                }
            }
        }
    }
    Rendering {
        namespace: namespace.to_owned(),
        manifests,
        images,
    }
}

/// An image as a resolved dependency: its reference, and its digest when it is pinned by one
/// (`name@sha256:...`).
fn image_dependency(image: &str) -> Value {
    let mut dependency = json!({"name": format!("image/{image}"), "uri": image});
    if let Some((_, digest)) = image.split_once("@sha256:") {
        dependency["digest"] = json!({"sha256": digest});
    }
    dependency
}

impl JobService {
    /// Renders a job again by the plugin version and template set it records, for the
    /// namespace it was rendered for (`namespace` when it has not been rendered yet): the same
    /// objects, byte for byte, as its engine was given.
    ///
    /// # Errors
    /// As [`JobService::render`].
    pub async fn rerender(&self, job: &Job, namespace: &str) -> Result<Rendered, JobError> {
        let namespace = job
            .rendering
            .as_ref()
            .map_or(namespace, |r| r.namespace.as_str());
        self.render(job, namespace).await
    }

    /// Job `id`'s provenance: an in-toto statement whose subjects are its artifacts and whose
    /// predicate (SLSA provenance v1) says what went in: the params (whole, and their sha256
    /// with keys sorted), the uploads they name, the plugin's version and digest, the template
    /// set's digest, each rendered object's sha256 and the images, as recorded when the job was
    /// given its engine; and how it ran: the engine, the times, the state.
    ///
    /// # Errors
    /// [`JobError::NotFound`]; [`JobError::Store`].
    pub async fn provenance(&self, id: JobId) -> Result<Value, JobError> {
        let job = self.get(id).await?;
        let mut subject = Vec::new();
        let mut query = ArtifactQuery {
            after: None,
            limit: 1000,
        };
        loop {
            let page = self.list_artifacts(id, &query).await?;
            subject.extend(
                page.items
                    .iter()
                    .map(|a| json!({"name": a.name, "digest": {"sha256": a.sha256}})),
            );
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        let plugin = &job.plugin;
        let mut dependencies = vec![json!({
            "name": format!("plugin/{}@{}", plugin.task, plugin.version),
            "digest": {"sha256": plugin.digest},
        })];
        if let Some(templates) = &plugin.templates {
            dependencies.push(json!({
                "name": format!("templates/{}", plugin.task),
                "digest": {"sha256": templates},
            }));
        }
        let (refs, _) = crate::upload_refs(&job.params);
        let mut seen = std::collections::BTreeSet::new();
        for reference in refs {
            if seen.insert(reference.sha256.clone()) {
                dependencies.push(json!({
                    "name": format!("upload/{}", reference.sha256),
                    "digest": {"sha256": reference.sha256},
                    "annotations": {"params": reference.path},
                }));
            }
        }
        if let Some(rendering) = &job.rendering {
            for manifest in &rendering.manifests {
                dependencies.push(json!({
                    "name": format!("manifest/{}/{}", manifest.kind, manifest.name),
                    "digest": {"sha256": manifest.sha256},
                    "annotations": {"apiVersion": manifest.api_version},
                }));
            }
            dependencies.extend(rendering.images.iter().map(|i| image_dependency(i)));
        }
        let params_sha256 = sha256_hex(canonical_json(&job.params).to_string().as_bytes());
        Ok(json!({
            "_type": STATEMENT_TYPE,
            "subject": subject,
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": {
                        "service": job.service,
                        "task": job.task,
                        "domain": job.domain,
                        "arch": job.arch,
                        "params": job.params,
                        "params_sha256": params_sha256,
                    },
                    "internalParameters": {
                        "engine": job.engine,
                        "namespace": job.rendering.as_ref().map(|r| r.namespace.clone()),
                    },
                    "resolvedDependencies": dependencies,
                },
                "runDetails": {
                    "builder": {
                        "id": format!("https://omni.build/engine/{}", job.engine.as_deref().unwrap_or("none")),
                    },
                    "metadata": {
                        "invocationId": job.id.to_string(),
                        "startedOn": job.started_at,
                        "finishedOn": job.finished_at,
                    },
                    "byproducts": [{
                        "name": "state",
                        "content": job.state.to_string(),
                        "annotations": {"message": job.message},
                    }],
                },
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_depth_and_arrays_keep_their_order() {
        let value = json!({"b": [{"z": 1, "a": 2}, 3], "a": {"y": null, "x": true}});
        assert_eq!(
            canonical_json(&value).to_string(),
            r#"{"a":{"x":true,"y":null},"b":[{"a":2,"z":1},3]}"#
        );
    }

    #[test]
    fn images_are_the_primary_jobs_in_step_order_once() {
        let job = Manifest {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "j".into(),
            body: json!({"spec": {"template": {"spec": {
                "initContainers": [{"image": "fetch:1"}, {"image": "tools@sha256:ab"}],
                "containers": [{"image": "fetch:1"}, {"image": "builder:2"}],
            }}}}),
        };
        let rendered = Rendered {
            manifests: vec![job],
            primary: "j".into(),
        };
        let record = rendering(&rendered, "ns");
        assert_eq!(record.images, ["fetch:1", "tools@sha256:ab", "builder:2"]);
        assert_eq!(record.manifests.len(), 1);
        assert_eq!(
            record.manifests[0].sha256,
            sha256_hex(&manifest_bytes(&rendered.manifests[0]))
        );
        assert_eq!(
            image_dependency("tools@sha256:ab")["digest"]["sha256"],
            "ab"
        );
    }
}
