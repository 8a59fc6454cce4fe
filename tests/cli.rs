//! The command line: help, exit codes, one-line errors, the config file.

use crate::util::*;

const STAGES: &[&str] = &[
    "queries", "crawl", "extract", "match", "balance", "download", "stats", "train", "eval",
];

#[test]
fn help_lists_every_stage_and_each_has_help() {
    let o = run(&["--help"]);
    ok(&o);
    let text = String::from_utf8(o.stdout).unwrap();
    for stage in STAGES {
        assert!(
            text.contains(&format!("\n  {stage} ")),
            "wit --help lacks {stage}:\n{text}"
        );
        let sub = run(&[stage, "--help"]);
        ok(&sub);
        assert!(sub.stdout.len() > 200, "wit {stage} --help is too short");
    }
    ok(&run(&["queries", "import", "--help"]));
    ok(&run(&["queries", "build", "--help"]));
}

fn assert_one_line_error(o: &std::process::Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line:\n{err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
}

#[test]
fn bad_usage_exits_2_with_one_line() {
    assert_one_line_error(&run(&["match", "--no-such-flag"]), 2, "--no-such-flag");
    assert_one_line_error(&run(&["no-such-stage"]), 2, "no-such-stage");
    assert_one_line_error(&run(&["queries", "import"]), 2, "FILE");
    assert_one_line_error(&run(&["match", "-d", "x", "--parts", "2"]), 2, "--part");
    assert_one_line_error(&run(&["match", "-d", "x", "--jobs", "many"]), 2, "many");
    assert_one_line_error(&run(&["crawl", "-d", "x"]), 2, "--seed");
    assert_one_line_error(
        &run(&["crawl", "-d", "x", "--seed", "ftp://a.example/"]),
        2,
        "seed",
    );
}

#[test]
fn missing_input_exits_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here.json");
    let ds = tmp.path().join("ds");
    let o = run(&[
        "queries",
        "import",
        missing.to_str().unwrap(),
        "-d",
        ds.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, 2, "nothing-here.json");

    // A dataset without candidates says which command makes them.
    let list = tmp.path().join("q.txt");
    write_queries(&list);
    ok(&run(&[
        "queries",
        "import",
        list.to_str().unwrap(),
        "-d",
        ds.to_str().unwrap(),
    ]));
    let o = run(&["match", "-d", ds.to_str().unwrap()]);
    assert_one_line_error(&o, 2, "wit crawl");

    // A truncated candidates part fails that part, names the file, keeps the others.
    write_candidates(&ds, 3, 50);
    let part = ds.join("candidates/part-00001.parquet");
    let bytes = std::fs::read(&part).unwrap();
    std::fs::write(&part, &bytes[..bytes.len() / 3]).unwrap();
    let o = run(&["match", "-d", ds.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.lines().last().unwrap().contains("part-00001.parquet"),
        "{err}"
    );
    assert!(ds.join("matched/part-00000.parquet").is_file());
    assert!(ds.join("matched/part-00002.parquet").is_file());
    assert!(!ds.join("matched/part-00001.parquet").exists());
    assert!(!ds.join("matched/_manifest.json").exists());
}

#[test]
fn stages_without_input_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&["eval", "--checkpoint", "x.safetensors"]);
    assert_one_line_error(&o, 2, "nothing to evaluate");
    let o = run(&["eval", "--checkpoint", "x.safetensors", "--data", "d"]);
    assert_one_line_error(&o, 2, "--checkpoint x.safetensors: no such file");
    // No shards: train says what to run first.
    let o = run(&["train", "-d", tmp.path().to_str().unwrap()]);
    assert_one_line_error(&o, 2, "wit download");
    let o = run(&[
        "train",
        "-d",
        tmp.path().to_str().unwrap(),
        "--model",
        "ViT-Q-9",
    ]);
    assert_one_line_error(&o, 2, "unknown model");
    // An empty dataset: stats says what to run first.
    let o = run(&["stats", tmp.path().to_str().unwrap()]);
    assert_one_line_error(&o, 2, "no stage output");
}

#[test]
fn match_stdin_prints_sorted_ids_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q.json");
    std::fs::write(&q, r#"["dog", "hot dog", "The", "the"]"#).unwrap();
    let mut child = wit()
        .args(["match", "--queries", q.to_str().unwrap(), "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a hot dog.\nThe dog\nnothing\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    ok(&o);
    assert_eq!(String::from_utf8(o.stdout).unwrap(), "[0,1]\n[0,2]\n[]\n");
}

fn match_stdin(args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = wit()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn config_file_sets_flags_and_flags_win() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q.json");
    std::fs::write(&q, r#"["dog"]"#).unwrap();
    let config = tmp.path().join("wit.toml");
    std::fs::write(
        &config,
        format!(
            "jobs = 2\n[match]\nlowercase = true\nqueries = {:?}\n",
            q.to_str().unwrap()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();

    // The config's queries and lowercase apply: "DOG" matches.
    let o = match_stdin(&["--config", c, "match", "--stdin"], "DOG\n");
    ok(&o);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "[0]\n");

    // A flag wins over the config: other queries.
    let q2 = tmp.path().join("q2.json");
    std::fs::write(&q2, r#"["cat", "DOG"]"#).unwrap();
    let o = match_stdin(
        &[
            "match",
            "--config",
            c,
            "--stdin",
            "--queries",
            q2.to_str().unwrap(),
        ],
        "DOG\n",
    );
    ok(&o);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "[1]\n");

    // The command's table wins over a top-level key for the same flag: the
    // top level says lowercase, `[match]` says not, and "DOG" then matches
    // no query (with the top level's value it would match "dog").
    std::fs::write(
        &config,
        format!(
            "lowercase = true\n[match]\nlowercase = false\nqueries = {:?}\n",
            q.to_str().unwrap()
        ),
    )
    .unwrap();
    let o = match_stdin(&["--config", c, "match", "--stdin"], "DOG\ndog\n");
    ok(&o);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "[]\n[0]\n");
    // Only the top level: it applies.
    std::fs::write(
        &config,
        format!(
            "lowercase = true\n[match]\nqueries = {:?}\n",
            q.to_str().unwrap()
        ),
    )
    .unwrap();
    let o = match_stdin(&["--config", c, "match", "--stdin"], "DOG\ndog\n");
    ok(&o);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "[0]\n[0]\n");

    // Typos are errors naming the file and the key.
    std::fs::write(&config, "[match]\nlowercas = true\n").unwrap();
    let o = match_stdin(&["--config", c, "match", "--stdin"], "");
    assert_one_line_error(&o, 2, "lowercas");
    assert!(stderr(&o).contains("wit.toml"));
    std::fs::write(&config, "[mach]\nlowercase = true\n").unwrap();
    assert_one_line_error(
        &match_stdin(&["--config", c, "match", "--stdin"], ""),
        2,
        "[mach]",
    );
    std::fs::write(&config, "[match]\nlowercase = \"yes\"\n").unwrap();
    assert_one_line_error(
        &match_stdin(&["--config", c, "match", "--stdin"], ""),
        2,
        "true or false",
    );
    std::fs::write(&config, "[match]\njobs = \"many\"\n").unwrap();
    assert_one_line_error(
        &match_stdin(&["--config", c, "match", "-d", "x"], ""),
        2,
        "many",
    );
}

/// `stats` and `status` take the dataset by position or by `--dataset` as
/// every stage does, `tokenize` takes texts as arguments as well as on stdin,
/// and `train --help` lists every model preset there is.
#[test]
fn commands_name_their_inputs_the_same_way() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    for command in ["stats", "status"] {
        let (a, b) = (run(&[command, d]), run(&[command, "--dataset", d]));
        assert_eq!(
            a.status.code(),
            b.status.code(),
            "{command}: {}",
            stderr(&b)
        );
        assert_eq!(
            (&a.stdout, stderr(&a)),
            (&b.stdout, stderr(&b)),
            "{command}"
        );
        let both = run(&[command, d, "--dataset", d]);
        assert_eq!(both.status.code(), Some(2), "{command}: {}", stderr(&both));
    }
    let o = run(&["status", "-d", d]);
    ok(&o);
    let piped = match_stdin(&["tokenize"], "a photo of a dog\nA red car.\n");
    ok(&piped);
    let args = run(&["tokenize", "a photo of a dog", "A red car."]);
    ok(&args);
    assert_eq!(args.stdout, piped.stdout);
    assert_eq!(String::from_utf8_lossy(&args.stdout).lines().count(), 2);
    let help = run(&["train", "--help"]);
    ok(&help);
    let text = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
    for preset in [
        "demo",
        "tiny",
        "tiny-RN",
        "ViT-B-32",
        "RN50",
        "ViT-L-14-336",
    ] {
        assert!(
            text.contains(&format!(" {preset},")) || text.contains(&format!(" {preset};")),
            "{preset} not in train --help:\n{text}"
        );
    }
}

/// Every command's mistakes in what the user gave exit 2, on one line that
/// names the input (the README's promise), before any work.
#[test]
fn bad_input_exits_2_from_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).display().to_string();
    let empty = p("empty");
    std::fs::create_dir(&empty).unwrap();
    let (nods, ck) = (p("nods"), p("no.safetensors"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "eval".into(),
                "--checkpoint".into(),
                ck.clone(),
                "--data".into(),
                empty.clone(),
            ],
            "--checkpoint",
        ),
        (
            vec![
                "train".into(),
                "-d".into(),
                empty.clone(),
                "--steps".into(),
                "0".into(),
            ],
            "'--steps <N>': must be at least 1",
        ),
        (
            vec![
                "train".into(),
                "-d".into(),
                empty.clone(),
                "--batch-size".into(),
                "0".into(),
            ],
            "'--batch-size <N>': must be at least 1",
        ),
        (
            vec!["train".into(), "-d".into(), nods.clone()],
            "run `wit download` first",
        ),
        (
            vec![
                "match".into(),
                "-d".into(),
                empty.clone(),
                "--lang".into(),
                "english".into(),
            ],
            "\"english\" is not a language subtag",
        ),
        (
            vec!["match".into(), "-d".into(), nods.clone()],
            "queries.json: not found",
        ),
        (
            vec!["balance".into(), "-d".into(), empty.clone()],
            "run `wit match` first",
        ),
        (
            vec!["download".into(), "-d".into(), empty.clone()],
            "run `wit balance` first",
        ),
        (
            vec!["stats".into(), "--dataset".into(), empty.clone()],
            "holds no stage output",
        ),
        (
            vec!["status".into(), "--dataset".into(), nods.clone()],
            "not a dataset directory",
        ),
        (
            vec!["extract".into(), p("no.warc.gz"), "-d".into(), p("ds1")],
            "no.warc.gz",
        ),
        (
            vec![
                "crawl".into(),
                "-d".into(),
                p("ds2"),
                "--seed".into(),
                "notaurl".into(),
            ],
            "notaurl",
        ),
        (vec!["cat".into(), p("no.tar")], "no.tar"),
        (
            vec!["slurm".into(), p("no.toml"), "--dry-run".into()],
            "no.toml",
        ),
        (vec!["kube".into(), p("no.toml")], "no.toml"),
        (
            vec![
                "demo-web".into(),
                "--out".into(),
                p("web"),
                "--pages".into(),
                "0".into(),
            ],
            "--pages",
        ),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_one_line_error(&run(&args), 2, needle);
    }
}

/// Values that can only be mistakes are refused before any work, naming
/// the flag and the value (exit 2); a negative number after a space is
/// read as the flag's value, not as an unknown flag. Before issue 37,
/// `--lr nan` trained to NaN weights and `--lr=-0.001` uphill, both exit 0,
/// and `--lr -0.001` was an unknown argument.
#[test]
fn numbers_that_can_only_be_mistakes_are_refused_naming_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut a = vec!["train", "-d", d, "--model", "tiny", "--steps", "1"];
        a.extend_from_slice(extra);
        run(&a)
    };
    for (extra, needle) in [
        (
            &["--lr", "nan"][..],
            "invalid value 'nan' for '--lr <LR>': must be a finite number above 0",
        ),
        (
            &["--lr=-0.001"],
            "invalid value '-0.001' for '--lr <LR>': must be a finite number above 0",
        ),
        (
            &["--lr", "-0.001"],
            "invalid value '-0.001' for '--lr <LR>': must be a finite number above 0",
        ),
        (
            &["--lr", "inf"],
            "'--lr <LR>': must be a finite number above 0",
        ),
        (
            &["--wd", "-0.1"],
            "'--wd <W>': must be a finite number of at least 0",
        ),
        (
            &["--clip-norm", "0"],
            "'--clip-norm <NORM>': must be a finite number above 0",
        ),
        (&["--seed", "-1"], "invalid value '-1' for '--seed <N>'"),
        (&["--shuffle", "0"], "'--shuffle <N>': must be at least 1"),
    ] {
        assert_one_line_error(&train(extra), 2, needle);
    }
    let out = tmp.path().join("c").to_str().unwrap().to_string();
    let crawl = |extra: &[&str]| {
        let mut a = vec!["crawl", "--out", &out, "--seed", "http://example.com/"];
        a.extend_from_slice(extra);
        run(&a)
    };
    assert_one_line_error(
        &crawl(&["--delay", "-1"]),
        2,
        "'--delay <SECONDS>': must be a finite number of at least 0",
    );
    assert_one_line_error(
        &crawl(&["--timeout", "0"]),
        2,
        "'--timeout <SECONDS>': must be a finite number above 0",
    );
    assert_one_line_error(
        &crawl(&["--concurrency", "0"]),
        2,
        "'--concurrency <N>': must be at least 1",
    );
    assert_one_line_error(
        &run(&["download", "-d", d, "--max-aspect-ratio", "0.5"]),
        2,
        "'--max-aspect-ratio <R>': must be a finite number of at least 1",
    );
    assert_one_line_error(
        &run(&["match", "-d", d, "--min-length", "50", "--max-length", "10"]),
        2,
        "--min-length 50 is above --max-length 10",
    );
    // Where a negative number is legal, it parses.
    let o = run(&["queries", "build", "-d", d, "--min-pmi", "-2.5", "--help"]);
    ok(&o);
}

/// Training on shards that hold no image (every download failed) names that
/// cause, not the batch size.
#[test]
fn training_on_shards_without_images_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    // An empty tar: its two zero end blocks.
    std::fs::write(shards.join("00000.tar"), vec![0u8; 1024]).unwrap();
    let d = tmp.path().to_str().unwrap();
    let o = run(&[
        "train",
        "-d",
        d,
        "--model",
        "tiny",
        "--steps",
        "1",
        "--batch-size",
        "2",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let last = err.trim().lines().last().unwrap_or("");
    assert!(
        last.contains("the 1 shard(s) hold no samples: no image was stored"),
        "{err}"
    );
}
