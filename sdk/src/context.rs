//! What a plugin may use while it runs: its task's templates, the operator's settings and a log.

use std::sync::{Arc, OnceLock};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;

/// Reads one file of the task's templates directory; `None` when it does not exist.
pub(crate) type TemplateSource = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;
/// Receives the plugin's log lines.
pub(crate) type LogSink = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// Severity of a plugin's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Detail for plugin authors.
    Debug,
    /// Normal operation.
    Info,
    /// Something the operator should look at.
    Warn,
    /// Something failed.
    Error,
}

/// The file of a task's templates directory that holds the operator's settings (worker images,
/// supported releases, defaults), read by [`Context::settings`].
pub const SETTINGS: &str = "settings.yaml";

/// What a plugin may use while it runs.
///
/// In a component it reads templates through the host's `template` import; in the native
/// [`testing`](crate::testing) harness, from a directory.
pub struct Context {
    source: TemplateSource,
    log: LogSink,
    env: OnceLock<Environment<'static>>,
    settings: OnceLock<Result<Value, Error>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(source: TemplateSource, log: LogSink) -> Self {
        Self {
            source,
            log,
            env: OnceLock::new(),
            settings: OnceLock::new(),
        }
    }

    /// The text of a file of the task's templates directory, or `None`.
    pub fn template(&self, name: &str) -> Option<String> {
        (self.source)(name)
    }

    /// The operator's settings: [`SETTINGS`] parsed as YAML into `T`.
    ///
    /// # Errors
    /// [`Error::Template`] when the file is missing or does not match `T`.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let value = self.settings_value().as_ref().map_err(Clone::clone)?;
        T::deserialize(value).map_err(|e| Error::Template(format!("{SETTINGS}: {e}")))
    }

    /// [`SETTINGS`] parsed once per context (checking and rendering both read it): YAML parsing
    /// is a large part of a call's cost.
    fn settings_value(&self) -> &Result<Value, Error> {
        self.settings.get_or_init(|| {
            let text = self
                .template(SETTINGS)
                .ok_or_else(|| Error::Template(format!("{SETTINGS} is missing")))?;
            serde_norway::from_str(&text).map_err(|e| Error::Template(format!("{SETTINGS}: {e}")))
        })
    }

    fn environment(&self) -> &Environment<'static> {
        self.env.get_or_init(|| {
            let source = Arc::clone(&self.source);
            let mut env = Environment::new();
            env.set_undefined_behavior(UndefinedBehavior::Strict);
            env.set_auto_escape_callback(|_| AutoEscape::None);
            env.set_loader(move |name| Ok(source(name)));
            env
        })
    }

    /// Writes a line to the host's log, tagged with the plugin's task and version.
    pub fn log(&self, level: Level, message: &str) {
        (self.log)(level, message);
    }

    /// Parses the settings and compiles `templates` ahead of the calls that use them.
    ///
    /// # Errors
    /// The first file that is missing or does not parse; every call that needs it reports it
    /// again.
    pub(crate) fn prepare(&self, templates: &[&str]) -> Result<(), Error> {
        let settings = self
            .settings_value()
            .as_ref()
            .map(drop)
            .map_err(Clone::clone);
        let env = self.environment();
        let mut first = settings.err();
        for name in templates {
            if let Err(e) = env.get_template(name) {
                first.get_or_insert(Error::Template(describe_template_error(name, &e)));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Renders the template `name` with `data` and parses the result as YAML documents, one
    /// object each (empty documents are skipped).
    ///
    /// Templates are minijinja (Jinja2) without auto-escaping; undefined variables are errors, so
    /// a typo in a template fails loudly instead of rendering an empty string. `{{ x | tojson }}`
    /// quotes any text safely for YAML. `{% include %}` and `{% import %}` read other files of
    /// the same directory.
    ///
    /// # Errors
    /// [`Error::Template`] naming the template when it is missing, fails to render or is not
    /// YAML.
    pub fn render(&self, name: &str, data: &impl Serialize) -> Result<Vec<Value>, Error> {
        let text = self
            .environment()
            .get_template(name)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(data))))
            .map_err(|e| Error::Template(describe_template_error(name, &e)))?;
        parse_documents(name, &text)
    }
}

fn describe_template_error(name: &str, e: &minijinja::Error) -> String {
    let mut message = match e.kind() {
        minijinja::ErrorKind::TemplateNotFound => format!("{name}: no such template"),
        _ => format!("{name}: {e}"),
    };
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    message
}

fn parse_documents(name: &str, text: &str) -> Result<Vec<Value>, Error> {
    let mut objects = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(document)
            .map_err(|e| Error::Template(format!("{name} did not render to YAML: {e}")))?;
        match value {
            Value::Null => {}
            Value::Object(_) => objects.push(value),
            other => {
                return Err(Error::Template(format!(
                    "{name}: a document is {}, not an object",
                    kind_of(&other)
                )));
            }
        }
    }
    Ok(objects)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn context(files: &[(&str, &str)]) -> Context {
        let files: HashMap<String, String> = files
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Context::new(
            Arc::new(move |name| files.get(name).cloned()),
            Arc::new(|_, _| {}),
        )
    }

    #[test]
    fn renders_several_documents_and_skips_empty_ones() {
        let ctx = context(&[("a.yaml", "---\nkind: A\n---\n---\nkind: {{ k }}\n")]);
        let objects = ctx
            .render("a.yaml", &serde_json::json!({"k": "B"}))
            .unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1]["kind"], "B");
    }

    #[test]
    fn includes_files_of_the_same_directory() {
        let ctx = context(&[
            ("a.yaml", "{% include 'b.yaml' %}"),
            ("b.yaml", "kind: B\n"),
        ]);
        assert_eq!(ctx.render("a.yaml", &()).unwrap()[0]["kind"], "B");
    }

    #[test]
    fn errors_name_the_template_and_what_went_wrong() {
        let ctx = context(&[
            ("undefined.yaml", "kind: {{ nope.field }}"),
            ("list.yaml", "- 1\n"),
        ]);
        let Error::Template(m) = ctx.render("missing.yaml", &()).unwrap_err() else {
            panic!()
        };
        assert_eq!(m, "missing.yaml: no such template");
        let Error::Template(m) = ctx.render("undefined.yaml", &()).unwrap_err() else {
            panic!()
        };
        assert!(m.starts_with("undefined.yaml: "), "{m}");
        assert!(m.contains("undefined"), "{m}");
        let Error::Template(m) = ctx.render("list.yaml", &()).unwrap_err() else {
            panic!()
        };
        assert_eq!(m, "list.yaml: a document is a list, not an object");
    }

    #[test]
    fn tojson_quotes_hostile_text_for_yaml() {
        let ctx = context(&[("a.yaml", "kind: x\nscript: {{ s | tojson }}\n")]);
        let s = "line1\n  - key: \"value\" # not a comment\n{{ not a template }}";
        let objects = ctx.render("a.yaml", &serde_json::json!({"s": s})).unwrap();
        assert_eq!(objects[0]["script"], s);
    }

    #[test]
    fn settings_are_parsed_from_settings_yaml() {
        #[derive(serde::Deserialize)]
        struct S {
            image: String,
        }
        let ctx = context(&[(SETTINGS, "image: busybox:1\n")]);
        assert_eq!(ctx.settings::<S>().unwrap().image, "busybox:1");
        let Error::Template(m) = context(&[]).settings::<S>().err().unwrap() else {
            panic!()
        };
        assert_eq!(m, "settings.yaml is missing");
    }
}
