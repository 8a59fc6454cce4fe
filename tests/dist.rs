//! `wit train` on many processes (`mpirun -n 2`, a build with the mpi
//! feature): two ranks of batch B train as one process of batch 2B reading
//! the same two shard streams, with the whole loss, with the local loss,
//! and in micro-batches (gradient accumulation); and a run started by one
//! process resumes on two ranks to the same weights.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::train::{metrics, tensors, write_shards};
use crate::util::{ok, run};

/// The settings every run here shares; `batch` per rank, 7 steps.
fn args<'a>(dataset: &'a Path, run_dir: &'a Path, batch: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "-d",
        dataset.to_str().unwrap(),
        "--run",
        run_dir.to_str().unwrap(),
        "--model",
        "tiny",
        "--batch-size",
        batch,
        "--steps",
        "7",
        "--warmup",
        "2",
        "--lr",
        "2e-3",
        "--shuffle",
        "16",
        "--checkpoint-every",
        "3",
        "--workers",
        "1",
    ]
}

/// `wit` with `args` on two ranks.
fn two_ranks(mpirun: &str, args: &[&str]) -> Output {
    Command::new(mpirun)
        .args(["-n", "2", "--oversubscribe", "--allow-run-as-root"])
        .arg(env!("CARGO_BIN_EXE_wit"))
        .args(args)
        .env_remove("WIT_CONFIG")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

/// The model's tensors as f32 values by name (all are f32 in `tiny`).
fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    tensors(path)
        .into_iter()
        .map(|(name, bytes)| {
            let v = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, v)
        })
        .collect()
}

/// The same steps, epochs and samples, and losses within 1e-5; the final
/// weights within 1e-5 relative over the whole model, and each tensor
/// within 1e-4. The key third of each attention's input bias is left out:
/// its gradient is zero in exact arithmetic, so Adam moves it by rounding
/// noise alone (trainer/tests/dist.rs). Per tensor, small biases show the
/// most: the local loss computes its logits with another kernel than the
/// one-process loss, and Adam's normalised step carries the last bits of
/// a gradient near zero into the weights (seen: at most 1.2e-5, on one
/// bias; the whole model 4e-8 to 7e-8).
fn same_run(a: &Path, b: &Path, case: &str) {
    same_run_of(a, b, case, 7);
}

/// [`same_run`] for runs of `steps` steps.
fn same_run_of(a: &Path, b: &Path, case: &str, steps: usize) {
    let (ma, mb) = (metrics(a), metrics(b));
    assert_eq!(ma.len(), steps, "{case}");
    assert_eq!(ma.len(), mb.len(), "{case}");
    for (x, y) in ma.iter().zip(&mb) {
        for k in ["step", "epoch", "samples"] {
            assert_eq!(x[k], y[k], "{case}: {k}");
        }
        let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!(
            ((lx - ly) / ly).abs() < 1e-5,
            "{case}: step {}: loss {lx} vs {ly}",
            x["step"]
        );
    }
    assert!(
        ma[steps - 1]["epoch"].as_u64() >= Some(1),
        "{case}: crossed into the second epoch"
    );
    let (wa, wb) = (
        weights(&a.join("model.safetensors")),
        weights(&b.join("model.safetensors")),
    );
    assert_eq!(wa.len(), wb.len());
    let (mut all_diff, mut all_norm) = (0f64, 0f64);
    for ((name, x), (_, y)) in wa.iter().zip(&wb) {
        let keep = |v: &[f32]| -> Vec<f32> {
            if name.ends_with("attn.in_proj_bias") {
                let w = v.len() / 3;
                v[..w].iter().chain(&v[2 * w..]).copied().collect()
            } else {
                v.to_vec()
            }
        };
        let (x, y) = (keep(x), keep(y));
        let diff: f64 = x
            .iter()
            .zip(&y)
            .map(|(p, q)| f64::from(p - q).powi(2))
            .sum();
        let norm: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum();
        all_diff += diff;
        all_norm += norm;
        let rel = (diff / norm.max(1e-30)).sqrt();
        assert!(rel < 1e-4, "{case}: {name} differs by {rel:e}");
    }
    let rel = (all_diff / all_norm).sqrt();
    assert!(rel < 1e-5, "{case}: the weights differ by {rel:e}");
    eprintln!("{case}: the weights differ by {rel:e} in all");
}

/// A dataset in `dir` and the one-process run the ranks are held to: two
/// shards of 18 and 20 usable samples read as two streams of 4 a step, so
/// an epoch is 4 steps (the shorter stream's) and 7 steps cross into the
/// second. Returns (dataset, run directory).
fn one_process(dir: &Path) -> (PathBuf, PathBuf) {
    let dataset = dir.join("d");
    write_shards(&dataset, 40, 32);
    let one = dir.join("one");
    let mut a = args(&dataset, &one, "8");
    a.extend(["--streams", "2"]);
    ok(&run(&a));
    (dataset, one)
}

#[test]
fn two_ranks_train_as_one_process_reading_their_two_streams() {
    let Some(mpirun) = wit_testkit::mpirun() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (dataset, one) = one_process(dir.path());
    // The whole loss, the local loss, and each rank's batch of 4 in two
    // micro-batches (gradient accumulation): all as one process's batch 8.
    for (local_loss, accum) in [(false, "1"), (true, "1"), (false, "2")] {
        let two = dir.path().join(format!("two-{local_loss}-{accum}"));
        let mut a = args(&dataset, &two, "4");
        a.extend(["--accum", accum]);
        if local_loss {
            a.push("--local-loss");
        }
        let o = two_ranks(mpirun, &a);
        ok(&o);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            out.matches("7 step(s) now").count(),
            1,
            "rank 0 alone reports: {out}"
        );
        let case = format!("two ranks, local loss {local_loss}, accum {accum}");
        same_run(&one, &two, &case);
    }
    // Shards drawn with replacement, epochs of 24 samples: each rank's
    // stream draws as the one process's stream of that number.
    let resampled = ["--dataset-resampled", "--train-num-samples", "24"];
    let one_resampled = dir.path().join("one-resampled");
    let mut a = args(&dataset, &one_resampled, "8");
    a.extend(["--streams", "2"]);
    a.extend(resampled);
    ok(&run(&a));
    let two = dir.path().join("two-resampled");
    let mut a = args(&dataset, &two, "4");
    a.extend(resampled);
    ok(&two_ranks(mpirun, &a));
    same_run(&one_resampled, &two, "two ranks, resampled shards");
    assert_eq!(metrics(&two)[3]["epoch"], 1, "epochs of 3 steps");
    // Started by one process, resumed on two ranks: the same global batch.
    let moved = dir.path().join("moved");
    let mut a = args(&dataset, &moved, "8");
    a.extend(["--streams", "2", "--stop-at", "5"]);
    ok(&run(&a));
    let mut a = args(&dataset, &moved, "4");
    a.push("--resume");
    ok(&two_ranks(mpirun, &a));
    same_run(&one, &moved, "one process, then two ranks");
    // Two ranks cannot split three streams.
    let bad = dir.path().join("bad");
    let mut a = args(&dataset, &bad, "6");
    a.extend(["--streams", "3"]);
    let o = two_ranks(mpirun, &a);
    let err = String::from_utf8_lossy(&o.stderr);
    // Bad input: exit status 2, passed on by mpirun from the ranks.
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("3 shard stream(s) over 2 rank(s)"), "{err}");
}

/// The process ids of `parent`'s children.
fn children(parent: u32) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default();
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The `wit` rank `rank` among mpirun `parent`'s children (by the
/// `OMPI_COMM_WORLD_RANK` Open MPI gives each).
fn rank_pid(parent: u32, rank: u32) -> Option<u32> {
    children(parent).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
            env.split(|b| *b == 0)
                .any(|kv| kv == format!("OMPI_COMM_WORLD_RANK={rank}").as_bytes())
        })
    })
}

#[test]
fn a_killed_rank_ends_the_job_and_the_run_resumes_to_the_same_weights() {
    let Some(mpirun) = wit_testkit::mpirun() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("d");
    write_shards(&dataset, 40, 32);
    let steps = "40";
    let with = |run_dir: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = args(&dataset, run_dir, "4")
            .iter()
            .map(|s| s.to_string())
            .collect();
        let at = a.iter().position(|s| s == "--steps").unwrap();
        a[at + 1] = steps.to_string();
        let at = a.iter().position(|s| s == "--checkpoint-every").unwrap();
        a[at + 1] = "2".to_string();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let whole = dir.path().join("whole");
    let a = with(&whole, &[]);
    ok(&two_ranks(
        mpirun,
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    ));

    let killed = dir.path().join("killed");
    let mut job = Command::new(mpirun)
        .args(["-n", "2", "--oversubscribe", "--allow-run-as-root"])
        .arg(env!("CARGO_BIN_EXE_wit"))
        .args(with(&killed, &[]))
        .env_remove("WIT_CONFIG")
        .env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once step 4's checkpoint is there (36 steps to go), rank 1 is
    // stopped at once, then killed: the job cannot have ended between.
    let checkpoint = killed.join("checkpoints/step-00000004.safetensors");
    let clock = std::time::Instant::now();
    while !checkpoint.exists() {
        assert!(
            job.try_wait().unwrap().is_none(),
            "the job ended before step 4"
        );
        assert!(
            clock.elapsed().as_secs() < 300,
            "no checkpoint at step 4 in 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let victim = rank_pid(job.id(), 1).expect("rank 1 among mpirun's children");
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(victim as i32, libc::SIGSTOP) };
    assert!(
        !killed.join("model.safetensors").exists(),
        "the run ended first"
    );
    let killed_at = std::time::Instant::now();
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let out = job.wait_with_output().unwrap();
    let waited = killed_at.elapsed().as_secs_f64();
    assert!(
        !out.status.success(),
        "the job succeeded with a rank killed"
    );
    assert!(
        waited < 60.0,
        "the job took {waited:.1} s to end after rank 1 died"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rank 1"),
        "the error does not name rank 1: {err}"
    );
    eprintln!("rank 1 killed: the job ended in {waited:.1} s");

    let a = with(&killed, &["--resume"]);
    ok(&two_ranks(
        mpirun,
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    same_run_of(&whole, &killed, "killed at step 4 or later, resumed", 40);
}

#[test]
fn srun_starts_the_ranks_under_slurm() {
    let Some(_) = wit_testkit::mpirun() else {
        return;
    };
    let Some(()) = crate::util::slurm() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (dataset, one) = one_process(dir.path());
    let two = dir.path().join("two");
    let o = Command::new("srun")
        .args(["--mpi=pmix", "-n", "2", "--kill-on-bad-exit=1", "--time=10"])
        .arg(env!("CARGO_BIN_EXE_wit"))
        .args(args(&dataset, &two, "4"))
        .env_remove("WIT_CONFIG")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    ok(&o);
    same_run(&one, &two, "srun --mpi=pmix -n 2");
}
