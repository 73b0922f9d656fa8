//! `omni plugin new NAME`: a new plugin crate on the SDK, from the files of `host/omni/scaffold/`
//! (compiled into the binary), with `@PLACEHOLDER@`s filled in; `--lang python`: a Python plugin
//! on the Python SDK (`sdk/python`), from `host/omni/scaffold-python/`. Plain substitution, not
//! minijinja: the scaffold's own templates are minijinja and must come out as they are.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

/// Flags of `omni plugin new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The task name: lowercase letters, digits and '-', 1 to 63 long.
    name: String,
    /// Where to write the crate: DIR/NAME (which must not exist yet).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The SDK (`sdk/` of an Omni checkout) [default: the one this omni was built from, if it is
    /// still there].
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
    /// The plugin's language: a Rust crate, or a Python package built with componentize-py.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
}

/// The languages a plugin can be written in with an SDK of this checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lang {
    /// A crate on `omni-sdk` (`sdk/`).
    Rust,
    /// A Python module on `omni_sdk` (`sdk/python`).
    Python,
}

/// The scaffold: a path in the new crate (`@TASK@` is the task's name) and its text.
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../scaffold/Cargo.toml")),
    (".gitignore", include_str!("../scaffold/.gitignore")),
    ("README.md", include_str!("../scaffold/README.md")),
    ("src/lib.rs", include_str!("../scaffold/src/lib.rs")),
    (
        "tests/plugin.rs",
        include_str!("../scaffold/tests/plugin.rs"),
    ),
    (
        "templates/@TASK@/job.yaml",
        include_str!("../scaffold/templates/job.yaml"),
    ),
    (
        "templates/@TASK@/settings.yaml",
        include_str!("../scaffold/templates/settings.yaml"),
    ),
];

/// The Python scaffold, as [`FILES`] (`@MODULE@` is the task as a Python module name).
const PYTHON_FILES: &[(&str, &str)] = &[
    (".gitignore", include_str!("../scaffold-python/.gitignore")),
    ("README.md", include_str!("../scaffold-python/README.md")),
    ("app.py", include_str!("../scaffold-python/app.py")),
    (
        "@MODULE@.py",
        include_str!("../scaffold-python/@MODULE@.py"),
    ),
    (
        "conftest.py",
        include_str!("../scaffold-python/conftest.py"),
    ),
    (
        "tests/test_@MODULE@.py",
        include_str!("../scaffold-python/tests/test_@MODULE@.py"),
    ),
    (
        "templates/@TASK@/job.yaml",
        include_str!("../scaffold-python/templates/job.yaml"),
    ),
    (
        "templates/@TASK@/settings.yaml",
        include_str!("../scaffold-python/templates/settings.yaml"),
    ),
];

/// The SDK of the checkout this binary was built from.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

pub fn run(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    if !omni_core::Name::is_valid(name) {
        eprintln!(
            "omni: {name:?} is not a task name: lowercase letters, digits and '-', 1 to 63 long, \
             not starting or ending with '-'"
        );
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    let sdk = match sdk(args.sdk.as_deref(), args.lang) {
        Ok(sdk) => sdk,
        Err(e) => {
            eprintln!("omni: {e:#}");
            return Ok(ExitCode::from(crate::EXIT_USAGE));
        }
    };
    let root = args.dir.join(name);
    if root.exists() {
        eprintln!(
            "omni: {} already exists; not overwriting it",
            root.display()
        );
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    let sdk_text = sdk
        .to_str()
        .with_context(|| format!("the SDK's path {} is not UTF-8", sdk.display()))?;
    let values = Values::new(name, sdk_text);
    // Written beside the target, then renamed: a failure leaves no half-made crate behind.
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let staging = staging_dir(&args.dir, name)?;
    let written = match args.lang {
        Lang::Rust => {
            write_files(&staging, &values, FILES).and_then(|()| copy_lock(&staging, &sdk))
        }
        Lang::Python => write_files(&staging, &values, PYTHON_FILES),
    };
    let result = written.and_then(|()| {
        std::fs::rename(&staging, &root)
            .with_context(|| format!("cannot create {}", root.display()))
    });
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if args.lang == Lang::Python {
        println!(
            "wrote {} (Python), on the SDK at {}/python",
            root.display(),
            sdk.display()
        );
        println!("  cd {}", root.display());
        println!("  {}/python/test.sh .", sdk.display());
        println!("  {}/python/build.sh . plugins/{name}.wasm", sdk.display());
        println!("then see README.md: its tests through a server, and installing it");
        return Ok(ExitCode::SUCCESS);
    }
    let wasm = format!("target/wasm32-wasip2/plugin/{}.wasm", values.crate_ident);
    println!(
        "wrote {} (crate {}), on the SDK at {}",
        root.display(),
        values.krate,
        sdk.display()
    );
    println!("  cd {}", root.display());
    println!("  cargo test");
    println!("  cargo build --target wasm32-wasip2 --profile plugin   # -> {wasm}");
    println!("then copy templates/{name}/ into the server's template directory and the .wasm into");
    println!("its plugins directory as {name}.wasm (see the README)");
    Ok(ExitCode::SUCCESS)
}

/// The SDK to build on: `--sdk`, or the one this binary was built from; a directory whose
/// Cargo.toml is the `omni-sdk` package (and, for Python, with the Python SDK in `python/`).
fn sdk(given: Option<&Path>, lang: Lang) -> anyhow::Result<PathBuf> {
    let (dir, whence) = match given {
        Some(dir) => (dir.to_path_buf(), "--sdk"),
        None => (
            PathBuf::from(BUILT_FROM),
            "the SDK this omni was built from",
        ),
    };
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok();
    let is_sdk = manifest.is_some_and(|m| m.lines().any(|l| l.trim() == r#"name = "omni-sdk""#))
        && (lang == Lang::Rust || dir.join("python/omni_sdk/__init__.py").is_file());
    if !is_sdk {
        match given {
            Some(_) => bail!(
                "{} ({whence}) is not the SDK: no omni-sdk Cargo.toml there",
                dir.display()
            ),
            None => bail!(
                "{} ({whence}) is not there any more; pass --sdk DIR (the sdk/ directory of an Omni checkout)",
                dir.display()
            ),
        }
    }
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

/// What the placeholders stand for.
struct Values {
    task: String,
    /// The plugin type: the task in CamelCase.
    ty: String,
    /// The package: `omni-plugin-<task>`.
    krate: String,
    /// The package as a Rust identifier (and the .wasm file's name).
    crate_ident: String,
    /// The task as a Python module name (`-` as `_`, `task_` before a leading digit).
    module: String,
    sdk: String,
}

impl Values {
    fn new(task: &str, sdk: &str) -> Self {
        let mut ty: String = task
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        if ty.starts_with(|c: char| c.is_ascii_digit()) {
            ty.insert_str(0, "Task");
        }
        let krate = format!("omni-plugin-{task}");
        let mut module = task.replace('-', "_");
        if module.starts_with(|c: char| c.is_ascii_digit()) {
            module.insert_str(0, "task_");
        }
        Values {
            task: task.to_owned(),
            ty,
            crate_ident: krate.replace('-', "_"),
            module,
            krate,
            sdk: sdk.to_owned(),
        }
    }

    fn fill(&self, text: &str) -> String {
        text.replace("@TASK@", &self.task)
            .replace("@TYPE@", &self.ty)
            .replace("@CRATE_IDENT@", &self.crate_ident)
            .replace("@CRATE@", &self.krate)
            .replace("@MODULE@", &self.module)
            .replace("@SDK@", &toml_escape(&self.sdk))
            .replace("@OMNI_VERSION@", env!("CARGO_PKG_VERSION"))
    }
}

/// `text` inside a TOML basic string.
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn write_files(root: &Path, values: &Values, files: &[(&str, &str)]) -> anyhow::Result<()> {
    for (path, text) in files {
        let path = root.join(values.fill(path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, values.fill(text))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The checkout's lock: the new crate resolves to the versions Omni builds and tests with (its
/// first build drops what it does not use). Without one, cargo picks the newest.
fn copy_lock(root: &Path, sdk: &Path) -> anyhow::Result<()> {
    if let Some(lock) = sdk.parent().map(|checkout| checkout.join("Cargo.lock"))
        && lock.is_file()
    {
        std::fs::copy(&lock, root.join("Cargo.lock"))
            .with_context(|| format!("cannot copy {}", lock.display()))?;
    }
    Ok(())
}

/// A fresh hidden directory in `dir` to write the crate in before it is renamed into place.
fn staging_dir(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let staging = dir.join(format!(".{name}.omni-new-{}", std::process::id()));
    std::fs::create_dir(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    Ok(staging)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types_and_crates() {
        for (task, ty, ident) in [
            ("demo", "Demo", "omni_plugin_demo"),
            ("my-task", "MyTask", "omni_plugin_my_task"),
            ("3d-print", "Task3dPrint", "omni_plugin_3d_print"),
        ] {
            let values = Values::new(task, "/sdk");
            assert_eq!(
                (values.ty.as_str(), values.crate_ident.as_str()),
                (ty, ident)
            );
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let values = Values::new("demo", r"C:\omni\sdk");
        for (path, text) in FILES.iter().chain(PYTHON_FILES) {
            let filled = values.fill(&format!("{path}\n{text}"));
            for placeholder in [
                "@TASK@",
                "@TYPE@",
                "@CRATE@",
                "@CRATE_IDENT@",
                "@MODULE@",
                "@SDK@",
                "@OMNI_VERSION@",
            ] {
                assert!(!filled.contains(placeholder), "{path}: {placeholder}");
            }
        }
        let manifest = values.fill(FILES[0].1);
        let parsed: toml::Value = toml::from_str(&manifest).unwrap();
        assert_eq!(
            parsed["dependencies"]["omni-sdk"]["path"].as_str(),
            Some(r"C:\omni\sdk")
        );
        assert_eq!(parsed["package"]["name"].as_str(), Some("omni-plugin-demo"));
    }
}
