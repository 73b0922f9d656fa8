//! # omni-engine-local: jobs as processes on this machine
//!
//! [`LocalEngine`] is Omni's engine for one machine, the embedded default: an
//! `omni_engine::Engine` over a [`LocalRunner`]. The runner runs a rendered Kubernetes Job
//! without Kubernetes, for trying Omni and developing plugins on one machine: the primary Job's
//! init containers in order, then its containers, each as a process with its command and args,
//! its environment (literal values and ConfigMap keys from the rendered ConfigMaps) and its
//! working directory. Images are not run: the commands use the tools of this machine.
//!
//! Volumes: each job gets a directory (`<root>/<job>/`), and each pod volume a directory in it
//! (`volumes/<name>/`): ConfigMap volumes hold the map's keys as files, emptyDir volumes start
//! empty. The steps do not see them at their mount paths (that takes a mount namespace); instead
//! every environment value, working directory and whole argument that is a mount path, or a path
//! under one, is rewritten to the volume's directory. Scripts that find their files through the
//! environment (as Omni's task templates do: `$OMNI_INPUT`, `$OMNI_WORK`, `$OMNI_OUTPUT`) run
//! unchanged; a path written literally inside a script is not rewritten. `HOME` is the job's own
//! `home/`, so a step never writes into the user's home.
//!
//! Each step's stdout and stderr are read line by line into [`Event::Line`]s; a step that exits
//! non-zero fails the job and the steps after it do not run; `activeDeadlineSeconds` and
//! [`Run::cancel`] kill the running step's whole process group. What the job leaves in its
//! volumes stays in the job directory (its artifacts) until [`LocalRunner::remove`].
//!
//! This crate knows rendered manifests and processes, nothing of the store, HTTP or plugins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use omni_engine::text::{LineSplitter, MAX_LINE_BYTES, decode_line};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::{Notify, mpsc};

mod engine;
mod plan;

pub use engine::{LocalEngine, LocalEngineConfig};
pub use plan::{Plan, PlanError, StepPlan, Volume};

/// What a run reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step's process started.
    StepStarted {
        /// The step (container) name.
        step: String,
    },
    /// A line a step printed, without its line ending: lines longer than
    /// [`omni_engine::text::MAX_LINE_BYTES`] come in pieces, and bytes that are not text are
    /// escaped ([`omni_engine::text::decode_line`]).
    Line {
        /// The step.
        step: String,
        /// Standard error rather than standard output.
        stderr: bool,
        /// The text.
        line: String,
    },
    /// A step's process ended.
    StepEnded {
        /// The step.
        step: String,
        /// Its exit code (none when a signal ended it).
        exit_code: Option<i32>,
    },
    /// The run ended; nothing follows.
    Ended(Outcome),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step exited 0.
    Succeeded,
    /// A step failed, or could not start; the message says which and how.
    Failed(String),
    /// `activeDeadlineSeconds` passed; the running step was killed.
    DeadlineExceeded(String),
    /// [`Run::cancel`] killed it.
    Cancelled,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The job's directory could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A ConfigMap file path that would leave its volume.
    #[error("ConfigMap file {0:?} of volume {1:?} is not a plain relative path")]
    BadKey(String, String),
}

/// A started run: its events, and a way to stop it.
#[derive(Debug)]
pub struct Run {
    /// Events, ending with [`Event::Ended`].
    pub events: mpsc::Receiver<Event>,
    cancel: Arc<Notify>,
    dir: PathBuf,
}

impl Run {
    /// Kills the running step's process group; the run ends with [`Outcome::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.notify_one();
    }

    /// A handle that cancels this run, for holders that give the events away.
    pub fn canceller(&self) -> Canceller {
        Canceller(Arc::clone(&self.cancel))
    }

    /// The job's directory (volumes, home).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Cancels one run ([`Run::canceller`]); cancelling a run that has ended does nothing.
#[derive(Debug, Clone)]
pub struct Canceller(Arc<Notify>);

impl Canceller {
    /// As [`Run::cancel`].
    pub fn cancel(&self) {
        self.0.notify_one();
    }
}

/// Runs jobs under one root directory.
#[derive(Debug, Clone)]
pub struct LocalRunner {
    root: PathBuf,
}

impl LocalRunner {
    /// A runner keeping job directories under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalRunner { root: root.into() }
    }

    /// The directory job directories are made in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of job `id`.
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The directory of one of a job's volumes (e.g. its output).
    pub fn volume_dir(&self, id: &str, volume: &str) -> PathBuf {
        self.job_dir(id).join("volumes").join(volume)
    }

    /// Prepares job `id`'s directory and starts running `plan` in the background.
    ///
    /// # Errors
    /// [`RunError`] when the directory or the ConfigMap files cannot be written.
    pub fn start(&self, id: &str, plan: Plan) -> Result<Run, RunError> {
        let dir = self.job_dir(id);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| RunError::Io { path, source }
        };
        let home = dir.join("home");
        std::fs::create_dir_all(&home).map_err(io(&home))?;
        let mut volume_dirs = BTreeMap::new();
        for (name, volume) in &plan.volumes {
            let path = self.volume_dir(id, name);
            std::fs::create_dir_all(&path).map_err(io(&path))?;
            if let Volume::ConfigMap(data) = volume {
                for (relative, bytes) in data {
                    let plain = Path::new(relative)
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)));
                    if relative.is_empty() || !plain {
                        return Err(RunError::BadKey(relative.clone(), name.clone()));
                    }
                    let file = path.join(relative);
                    if let Some(parent) = file.parent() {
                        std::fs::create_dir_all(parent).map_err(io(parent))?;
                    }
                    std::fs::write(&file, bytes).map_err(io(&file))?;
                }
            }
            volume_dirs.insert(name.clone(), path);
        }
        let (sender, events) = mpsc::channel(1024);
        let cancel = Arc::new(Notify::new());
        let job = Job {
            plan,
            volume_dirs,
            home,
            events: sender,
            cancel: cancel.clone(),
        };
        tokio::spawn(job.run());
        Ok(Run {
            events,
            cancel,
            dir,
        })
    }

    /// Deletes job `id`'s directory (its artifacts too).
    ///
    /// # Errors
    /// The OS's, except that a directory already gone is fine.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.job_dir(id)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

struct Job {
    plan: Plan,
    volume_dirs: BTreeMap<String, PathBuf>,
    home: PathBuf,
    events: mpsc::Sender<Event>,
    cancel: Arc<Notify>,
}

impl Job {
    async fn run(self) {
        let deadline = self.plan.deadline.map(|d| tokio::time::Instant::now() + d);
        let mut outcome = Outcome::Succeeded;
        for step in &self.plan.steps {
            match self.step(step, deadline).await {
                Outcome::Succeeded => {}
                ended => {
                    outcome = ended;
                    break;
                }
            }
        }
        let _ = self.events.send(Event::Ended(outcome)).await;
    }

    /// `value` with a mount path prefix replaced by its volume's directory.
    fn rewrite(&self, step: &StepPlan, value: &str) -> String {
        // The longest mount path first: `/work/out` before `/work`.
        let mut mounts: Vec<&(String, String)> = step.mounts.iter().collect();
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        for (path, volume) in mounts {
            let path = path.trim_end_matches('/');
            let rest = match value.strip_prefix(path) {
                Some("") => "",
                Some(rest) if rest.starts_with('/') => rest,
                _ => continue,
            };
            if let Some(dir) = self.volume_dirs.get(volume) {
                return format!("{}{rest}", dir.display());
            }
        }
        value.to_owned()
    }

    async fn step(&self, step: &StepPlan, deadline: Option<tokio::time::Instant>) -> Outcome {
        let name = &step.name;
        let argv: Vec<String> = step.argv.iter().map(|a| self.rewrite(step, a)).collect();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env_clear()
            .env("HOME", &self.home)
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("LANG", "C.UTF-8")
            .current_dir(match &step.working_dir {
                Some(dir) => PathBuf::from(self.rewrite(step, dir)),
                None => self.home.clone(),
            })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that killing it kills what it started.
            .process_group(0)
            .kill_on_drop(true);
        for (key, value) in &step.env {
            command.env(key, self.rewrite(step, value));
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Outcome::Failed(format!("step {name}: cannot run {:?}: {e}", argv[0]));
            }
        };
        let _ = self
            .events
            .send(Event::StepStarted { step: name.clone() })
            .await;
        let readers = [
            child
                .stdout
                .take()
                .map(|out| self.forward(name, false, out)),
            child.stderr.take().map(|err| self.forward(name, true, err)),
        ];
        let group = child.id().and_then(|pid| i32::try_from(pid).ok());
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            status = child.wait() => Ok(status),
            () = self.cancel.notified() => Err(Outcome::Cancelled),
            () = sleep => Err(Outcome::DeadlineExceeded(format!(
                "the job's deadline ({}s) passed during step {name}",
                self.plan.deadline.map_or(0, |d| d.as_secs())
            ))),
        };
        if ended.is_err() {
            kill_group(group);
        }
        // What it printed before it ended (or was killed) is still read to the end.
        for reader in readers.into_iter().flatten() {
            let _ = reader.await;
        }
        match ended {
            Ok(Ok(status)) => {
                let _ = self
                    .events
                    .send(Event::StepEnded {
                        step: name.clone(),
                        exit_code: status.code(),
                    })
                    .await;
                if status.success() {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed(match status.code() {
                        Some(code) => format!("step {name} exited with code {code}"),
                        None => format!("step {name} was killed by a signal"),
                    })
                }
            }
            Ok(Err(e)) => Outcome::Failed(format!("step {name}: waiting for it failed: {e}")),
            Err(outcome) => {
                let _ = child.wait().await;
                let _ = self
                    .events
                    .send(Event::StepEnded {
                        step: name.clone(),
                        exit_code: None,
                    })
                    .await;
                outcome
            }
        }
    }

    fn forward(
        &self,
        step: &str,
        stderr: bool,
        pipe: impl AsyncRead + Unpin + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let events = self.events.clone();
        let step = step.to_owned();
        tokio::spawn(async move {
            let mut pipe = pipe;
            let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
            let mut chunk = vec![0; 64 * 1024];
            let mut pieces = Vec::new();
            loop {
                let read = pipe.read(&mut chunk).await.unwrap_or(0);
                if read == 0 {
                    splitter.finish(&mut pieces);
                } else {
                    splitter.push(&chunk[..read], &mut pieces);
                }
                for piece in pieces.drain(..) {
                    let event = Event::Line {
                        step: step.clone(),
                        stderr,
                        line: decode_line(&piece.bytes),
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
                if read == 0 {
                    return;
                }
            }
        })
    }
}

fn kill_group(group: Option<i32>) {
    let Some(pid) = group.and_then(rustix::process::Pid::from_raw) else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
        tracing::warn!(error = %e, "cannot kill a step's process group");
    }
}
