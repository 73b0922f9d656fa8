//! How steps run: their environment, mounts and working directory, a failing step, the
//! deadline and cancel, what a step leaves behind, long and binary output, what is refused.

use super::*;

#[tokio::test]
async fn env_mounts_and_working_dir_are_the_jobs_and_a_failing_step_stops_the_rest() {
    // Paths written into the script work as well as those from the environment: the volumes
    // are at their mount paths, the ConfigMap read-only.
    let mut first = sh(
        "first",
        "cat \"$IN/greeting\"; echo; echo \"$WORD\"; mkdir -p \"$OUT\"; pwd; cat /in/word; echo; \
         touch /in/new 2>/dev/null || echo read-only; echo oops >&2; exit 3",
    );
    first["workingDir"] = json!("/out");
    let rendered = job(
        &json!([first]),
        &json!([sh("never", "echo should not run")]),
        None,
    );
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner
        .start("j2", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(
        outcome,
        Outcome::Failed("step first exited with code 3".into())
    );
    let out_dir = runner.volume_dir("j2", "out");
    assert_eq!(
        lines(&events, "first"),
        vec![
            "hi there".to_owned(),
            "pineapple".into(),
            "/out".into(),
            "pineapple".into(),
            "read-only".into(),
            "oops".into()
        ]
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Line { stderr: true, line, .. } if line == "oops"))
    );
    assert!(out_dir.join("sub").is_dir());
    assert!(lines(&events, "never").is_empty());
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::StepStarted { step } if step == "never"))
    );
}

#[tokio::test]
async fn the_deadline_kills_every_process_of_the_step() {
    let rendered = job(
        &json!([]),
        &json!([leaves_a_sleep("600.101", true)]),
        Some(1),
    );
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner
        .start("j3", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    started(&mut run).await;
    assert!(sleeping("600.101"));
    let (_, outcome) = finish(&mut run).await;
    assert!(
        matches!(outcome, Outcome::DeadlineExceeded(ref m) if m.contains("step slow")),
        "{outcome:?}"
    );
    omni_test_support::wait_until("the step's sleep is gone", || !sleeping("600.101"));
}

#[tokio::test]
async fn cancel_kills_every_process_of_the_step() {
    let rendered = job(&json!([]), &json!([leaves_a_sleep("600.102", true)]), None);
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner
        .start("j4", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    started(&mut run).await;
    assert!(sleeping("600.102"));
    run.cancel();
    let (_, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Cancelled);
    omni_test_support::wait_until("the step's sleep is gone", || !sleeping("600.102"));
}

/// `sleep 600 &` and exit 0: the step succeeds, and what it left behind dies with it (its pid
/// namespace ends with its first process).
#[tokio::test]
async fn what_a_step_leaves_behind_dies_when_it_ends() {
    let rendered = job(
        &json!([leaves_a_sleep("600.103", false)]),
        &json!([sh("next", "echo next")]),
        None,
    );
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner
        .start("j5", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert_eq!(lines(&events, "slow"), ["started"]);
    assert_eq!(lines(&events, "next"), ["next"]);
    omni_test_support::wait_until("the step's sleep is gone", || !sleeping("600.103"));
}

/// A job started once is never started again: not by the same runner, and not by the runner of
/// a server started again over the same directory after the first one died (the window between
/// an engine's accepting a job and the store's recording it as running).
#[tokio::test]
async fn a_job_is_started_at_most_once_even_across_a_restart() {
    let rendered = job(&json!([]), &json!([sh("c", "echo once")]), None);
    let root = tempfile::tempdir().unwrap();
    let plan = || Plan::from_rendered(&rendered).unwrap();
    let mut run = LocalRunner::new(root.path()).start("j7", plan()).unwrap();
    let (_, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded);
    let restarted = LocalRunner::new(root.path());
    let Err(error) = restarted.start("j7", plan()) else {
        panic!("started a second time");
    };
    assert!(
        matches!(error, RunError::Started(ref id) if id == "j7"),
        "{error}"
    );
    assert!(
        error.to_string().contains("not run a second time"),
        "{error}"
    );
    // Its directory goes with its record; then the id could start again.
    restarted.remove("j7").unwrap();
    let mut again = restarted.start("j7", plan()).unwrap();
    assert_eq!(finish(&mut again).await.1, Outcome::Succeeded);
}

#[test]
fn what_the_local_engine_cannot_run_is_refused_with_the_reason() {
    let mut no_command = sh("c", "true");
    no_command.as_object_mut().unwrap().remove("command");
    let mut secret_env = sh("c", "true");
    secret_env["env"] =
        json!([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]);
    let mut missing_key = sh("c", "true");
    missing_key["env"] =
        json!([{"name": "T", "valueFrom": {"configMapKeyRef": {"name": "in", "key": "nope"}}}]);
    for (container, expected) in [
        (no_command, "has no command"),
        (secret_env, "comes from neither a value nor a ConfigMap key"),
        (missing_key, "names key \"nope\""),
    ] {
        let error = Plan::from_rendered(&job(&json!([]), &json!([container]), None)).unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
    }
    let mut hostpath = job(&json!([]), &json!([sh("c", "true")]), None);
    hostpath.manifests[1].body["spec"]["template"]["spec"]["volumes"][1] =
        json!({"name": "out", "hostPath": {"path": "/"}});
    assert!(matches!(
        Plan::from_rendered(&hostpath),
        Err(PlanError::Unsupported(_))
    ));
    let mut other = job(&json!([]), &json!([sh("c", "true")]), None);
    other.primary = "elsewhere".into();
    assert_eq!(
        Plan::from_rendered(&other),
        Err(PlanError::NoJob("elsewhere".into()))
    );
}

#[tokio::test]
async fn a_long_line_comes_in_pieces_and_binary_output_is_escaped() {
    // 40,000 bytes without a newline, then bytes that are not text, then a line without one.
    let script =
        "head -c 40000 /dev/zero | tr '\\0' a; echo; printf 'bin\\000\\377ary\\n'; printf last";
    let rendered = job(&json!([]), &json!([sh("print", script)]), None);
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner
        .start("j-long", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    let max = omni_engine::text::MAX_LINE_BYTES;
    let a = |n: usize| "a".repeat(n);
    assert_eq!(
        lines(&events, "print"),
        vec![
            a(max),
            a(max),
            a(40_000 - 2 * max),
            "bin\\x00\\xffary".to_owned(),
            "last".into()
        ]
    );
}
