//! A job's log, followed and collected across replicas.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_a_replica_that_does_not_collect_the_job_reads_it_from_the_store() {
    let world = world(2, config());
    // Another replica: the same store, its own fan-out (nothing is published into it) and its
    // own events (it hears nothing of the job's end).
    let other = world.jobs.replica();
    let job = submit(
        &world.jobs,
        "hostile",
        "default",
        json!({"behaviour": "print", "lines": 3000, "burst": 500}),
    )
    .await;
    let stream = other.follow_logs(job.id, None, None).await.unwrap();
    let mut stream = std::pin::pin!(stream);
    let mut lines = Vec::new();
    let end = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = futures::StreamExt::next(&mut stream).await {
            match event.unwrap() {
                omni_jobs::FollowEvent::Lines(batch) => lines.extend(batch.iter().cloned()),
                other => return other,
            }
        }
        panic!("the follow stream ended without an end");
    })
    .await
    .expect("the follower got to the end");
    assert_eq!(
        end,
        omni_jobs::FollowEvent::End {
            state: JobState::Succeeded
        }
    );
    assert!(!other.logs().collected_here(job.id));
    let texts: Vec<String> = lines.iter().map(|l| l.line.clone()).collect();
    assert_eq!(texts, printed(3000));
    assert_eq!(lines, stored_lines(&world.jobs, job.id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_a_running_jobs_log_without_losing_or_repeating_lines() {
    let mut world = world(2, config());
    // About four seconds of printing, 200 lines every 100 ms.
    let job = submit(
        &world.jobs,
        "hostile",
        "default",
        json!({"behaviour": "print", "lines": 8000, "burst": 200}),
    )
    .await;
    omni_test_support::eventually("some lines stored", || async {
        (!stored_lines(&world.jobs, job.id).await.is_empty()).then_some(())
    })
    .await;
    // The leader goes while the job prints; another takes over the same engine's job.
    world._handle = None;
    let (jobs, second, _handle) = replica(&world.jobs, vec![world.engine.clone()]);
    leading(&second).await;
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    let stored = stored_lines(&jobs, job.id).await;
    let texts: Vec<String> = stored.iter().map(|l| l.line.clone()).collect();
    assert!(
        texts == printed(8000),
        "lines lost or repeated: {} stored",
        texts.len()
    );
    let seqs: Vec<u64> = stored.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (1..=8001).collect::<Vec<u64>>());
}
