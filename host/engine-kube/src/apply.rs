//! What `submit` sends: the rendered objects made ready to apply in the engine's namespace, with
//! Omni's labels, and owned by the job's Job. Pure functions over JSON; no I/O.

use omni_engine::EngineJob;
use serde_json::{Map, Value, json};

/// Label on every object the engine applies, and the watcher's selector.
pub(crate) const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "omni");
/// Label naming the job an object belongs to.
pub(crate) const JOB_ID: &str = "omni.io/job-id";
/// The watcher's label selector.
pub(crate) const SELECTOR: &str = "app.kubernetes.io/managed-by=omni";

/// Why the rendered objects cannot be applied as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unfit(pub String);

/// One object to apply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Object {
    /// `group` (empty for the core group), `version` and `kind`.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    /// The whole object, as sent.
    pub body: Value,
}

fn split_api_version(api_version: &str) -> (String, String) {
    match api_version.split_once('/') {
        Some((group, version)) => (group.to_owned(), version.to_owned()),
        None => (String::new(), api_version.to_owned()),
    }
}

fn labels_of(object: &mut Map<String, Value>) -> Result<&mut Map<String, Value>, Unfit> {
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| Unfit("metadata is not an object".into()))?;
    metadata
        .entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| Unfit("metadata.labels is not an object".into()))
}

fn label(object: &mut Map<String, Value>, id: &str) -> Result<(), Unfit> {
    let labels = labels_of(object)?;
    labels.insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.into());
    labels.insert(JOB_ID.to_owned(), id.into());
    Ok(())
}

/// The job's objects, the primary Job first, each in `namespace` and labelled; the others are
/// left for [`owned_by`] once the Job's uid is known.
///
/// # Errors
/// [`Unfit`] when the primary Job is missing or an object is not a JSON object.
pub(crate) fn prepare(job: &EngineJob, namespace: &str) -> Result<Vec<Object>, Unfit> {
    let id = job.id.to_string();
    let mut primary = None;
    let mut others = Vec::new();
    for manifest in &job.rendered.manifests {
        let mut body = manifest.body.clone();
        let object = body.as_object_mut().ok_or_else(|| {
            Unfit(format!(
                "{} {:?} is not an object",
                manifest.kind, manifest.name
            ))
        })?;
        object.insert("apiVersion".into(), manifest.api_version.clone().into());
        object.insert("kind".into(), manifest.kind.clone().into());
        let metadata = object
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| {
                Unfit(format!(
                    "{} {:?}: metadata is not an object",
                    manifest.kind, manifest.name
                ))
            })?;
        metadata.insert("name".into(), manifest.name.clone().into());
        metadata.insert("namespace".into(), namespace.into());
        // Server-side apply refuses objects that carry what the server owns.
        for owned in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            metadata.remove(owned);
        }
        object.remove("status");
        label(object, &id)?;
        let is_primary = manifest.api_version == "batch/v1"
            && manifest.kind == "Job"
            && manifest.name == job.rendered.primary;
        if is_primary {
            // The pods carry the labels too: the watcher selects them by it.
            let template = object
                .get_mut("spec")
                .and_then(|s| s.get_mut("template"))
                .and_then(Value::as_object_mut);
            if let Some(template) = template {
                label(template, &id)?;
            }
        }
        let (group, version) = split_api_version(&manifest.api_version);
        let prepared = Object {
            group,
            version,
            kind: manifest.kind.clone(),
            name: manifest.name.clone(),
            body,
        };
        if is_primary && primary.is_none() {
            primary = Some(prepared);
        } else {
            others.push(prepared);
        }
    }
    let primary = primary.ok_or_else(|| {
        Unfit(format!(
            "the rendered objects hold no batch/v1 Job {:?}",
            job.rendered.primary
        ))
    })?;
    let mut all = vec![primary];
    all.extend(others);
    Ok(all)
}

/// `object` owned by the Job `name` with `uid`: deleting the Job deletes it.
pub(crate) fn owned_by(object: &mut Object, name: &str, uid: &str) {
    let Some(metadata) = object
        .body
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    metadata.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": name,
            "uid": uid,
            "blockOwnerDeletion": true,
        }]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_engine::Rendered;

    fn manifest(body: Value) -> omni_engine::Manifest {
        omni_engine::Manifest {
            api_version: body["apiVersion"].as_str().unwrap().to_owned(),
            kind: body["kind"].as_str().unwrap().to_owned(),
            name: body["metadata"]["name"].as_str().unwrap().to_owned(),
            body,
        }
    }

    fn job(manifests: Value) -> EngineJob {
        let manifests = serde_json::from_value::<Vec<Value>>(manifests)
            .unwrap()
            .into_iter()
            .map(manifest)
            .collect();
        EngineJob {
            inputs: Default::default(),
            id: "3f1e2d4c-8a7b-11f0-9c5d-0242ac120002".parse().unwrap(),
            name: "omni-x".into(),
            namespace: "rendered-ns".into(),
            task: "rpm".into(),
            arch: "x86_64".into(),
            rendered: Rendered {
                manifests,
                primary: "omni-x".into(),
            },
        }
    }

    #[test]
    fn the_job_comes_first_labelled_in_the_engines_namespace() {
        let job = job(json!([
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "omni-x-input", "namespace": "rendered-ns"}, "data": {"a": "b"}},
            {"apiVersion": "batch/v1", "kind": "Job",
             "metadata": {"name": "omni-x", "labels": {"team": "os"}},
             "spec": {"template": {"spec": {"containers": []}}}}
        ]));
        let objects = prepare(&job, "omni-jobs").unwrap();
        assert_eq!(
            objects
                .iter()
                .map(|o| (o.group.as_str(), o.version.as_str(), o.kind.as_str()))
                .collect::<Vec<_>>(),
            [("batch", "v1", "Job"), ("", "v1", "ConfigMap")]
        );
        let labels = json!({
            "app.kubernetes.io/managed-by": "omni",
            "omni.io/job-id": "3f1e2d4c-8a7b-11f0-9c5d-0242ac120002",
        });
        assert_eq!(objects[0].body["metadata"]["namespace"], "omni-jobs");
        assert_eq!(objects[0].body["metadata"]["labels"]["team"], "os");
        assert_eq!(
            objects[0].body["spec"]["template"]["metadata"]["labels"],
            labels
        );
        assert_eq!(objects[1].body["metadata"]["namespace"], "omni-jobs");
        assert_eq!(objects[1].body["metadata"]["labels"], labels);
    }

    #[test]
    fn others_get_an_owner_reference() {
        let job = job(json!([
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "omni-x"}, "spec": {}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "omni-x-input"}}
        ]));
        let mut objects = prepare(&job, "omni-jobs").unwrap();
        owned_by(&mut objects[1], "omni-x", "1234");
        assert_eq!(
            objects[1].body["metadata"]["ownerReferences"],
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "omni-x", "uid": "1234",
                    "blockOwnerDeletion": true}])
        );
    }

    #[test]
    fn no_primary_job_is_unfit() {
        let job = job(json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "omni-x"}}
        ]));
        assert!(prepare(&job, "omni-jobs").is_err());
    }
}
