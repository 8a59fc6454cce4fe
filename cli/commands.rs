//! From parsed arguments to library calls, one function per subcommand.
//! Library code never sees the argument structs.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wit_contract::{Dataset, Progress, RunOptions, Share, Stage, Summary};
use wit_filter::{Case, QueryMatcher};
use wit_queries::ngrams::NgramOptions;
use wit_queries::titles::TitleOptions;
use wit_queries::{Budgets, BuildSpec};

use crate::BadUsage;
use crate::args::{
    BalanceArgs, CatArgs, Cli, CollectiveArg, Command, CrawlArgs, DemoCandidatesArgs, DemoWebArgs,
    DownloadArgs, EncodeArg, EvalArgs, ExtractArgs, KubeArgs, MatchArgs, QueriesBuildArgs,
    QueriesCommand, QueriesImportArgs, ResizeModeArg, RunArgs, ScopeArg, SlurmArgs, SqlFormat,
    StatsArgs, TrainArgs,
};
use crate::ui::Reporter;

/// Runs the subcommand.
pub fn run(cli: Cli) -> Result<()> {
    let progress = Reporter::new(cli.quiet > 0);
    match cli.command {
        Command::Queries(QueriesCommand::Import(args)) => queries_import(args, &progress),
        Command::Queries(QueriesCommand::Build(args)) => queries_build(*args, &progress),
        Command::Crawl(args) => crawl(args, &progress),
        Command::Extract(args) => extract(args, &progress),
        Command::Match(args) => match_(args, &progress),
        Command::Balance(args) => balance(args, &progress),
        Command::Download(args) => download(args, &progress),
        Command::Stats(args) => stats(args),
        Command::Train(args) => train(args, &progress),
        Command::Eval(args) => eval(args),
        Command::Status(args) => {
            print!("{}", crate::status::report(args.dataset.path())?);
            Ok(())
        }
        Command::DemoWeb(args) => demo_web(args),
        Command::DemoCandidates(args) => demo_candidates(args, &progress),
        Command::Cat(args) => cat(args),
        Command::Slurm(args) => slurm(args),
        Command::Kube(args) => kube(args),
        Command::Tokenize(args) => tokenize(&args.texts),
    }
}

fn run_options<'a>(run: &RunArgs, progress: &'a dyn Progress) -> Result<RunOptions<'a>> {
    let share = match (run.parts, run.part) {
        (Some(n), Some(i)) => Some(Share::new(n, i)?),
        _ => None,
    };
    let jobs = match run.jobs {
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    Ok(RunOptions {
        share,
        jobs,
        force: run.force,
        progress,
    })
}

/// A dataset at a path or a URL (`s3://bucket/prefix`, ...).
fn open_dataset(location: &Path) -> Result<Dataset> {
    Ok(Dataset::open(&location.to_string_lossy())?)
}

/// Fails with exit 2, naming the flag, where `path` does not exist.
fn must_exist(flag: &str, path: &Path) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        bail!(BadUsage(format!(
            "{flag} {}: no such file or directory",
            path.display()
        )))
    }
}

/// Logs what a stage run did, in one line.
fn report(stage: Stage, dataset: &Dataset, s: &Summary) {
    let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let share = if s.in_share < s.parts {
        format!(
            " (this process's share: {} of {} parts)",
            s.in_share, s.parts
        )
    } else {
        String::new()
    };
    tracing::info!(
        "{}: ran {} parts, skipped {} already complete{share}, in {:.1}s; {}",
        stage.dir_name(),
        s.ran,
        s.skipped,
        s.elapsed.as_secs_f64(),
        counts.join(" ")
    );
    let dir = format!("{}/{}", dataset.location(), stage.dir_name());
    if s.complete {
        tracing::info!("{dir}: complete, manifest written");
    } else {
        tracing::info!(
            "{dir}: not complete yet: other shares (--parts/--part) still have parts to run"
        );
    }
}

fn queries_build(args: QueriesBuildArgs, progress: &dyn Progress) -> Result<()> {
    let mut opts = run_options(&args.run, progress)?;
    if args.corpus.iter().any(|c| c.as_os_str() == "-") {
        // Stdin cannot be fingerprinted: always count it again.
        opts.force = true;
    }
    if args.run.parts.is_some() {
        bail!(BadUsage(
            "the queries stage is one part: --parts/--part do not apply".into()
        ));
    }
    let spec = BuildSpec {
        wordnet: args.wordnet,
        wikipedia: args.wikipedia,
        corpus: args.corpus,
        pageviews: args.pageviews,
        titles: args.titles,
        include: args.include,
        seed_numbers: !args.no_seed_numbers,
        ngrams: NgramOptions {
            min_count: args.min_count,
            min_pmi: args.min_pmi,
            bigram_min_count: args.bigram_min_count,
            keep: args.max_queries,
            memory: args.memory_mib << 20,
            threads: opts.jobs,
        },
        title_options: TitleOptions {
            project: args.project,
            min_row_views: args.min_row_views,
            min_views: args.min_views,
        },
        max_queries: args.max_queries,
        budgets: Budgets {
            wordnet: args.max_wordnet,
            unigrams: args.max_unigrams,
            bigrams: args.max_bigrams,
            titles: args.max_titles,
        },
    };
    let dataset = open_dataset(&args.dataset.dataset)?;
    let stage = wit_queries::stage_spec(&dataset, spec.inputs(), spec.params());
    if !opts.force {
        if wit_contract::stage_complete(&stage) {
            tracing::info!(
                "{}: already complete with these inputs and parameters",
                stage.dir.display()
            );
            return Ok(());
        }
        // Refuse other parameters before counting for hours, not after.
        wit_contract::check_params(&stage)?;
    }
    let (queries, counts) = wit_queries::build(&spec, &stage.dir, progress)?;
    let summary = wit_queries::write_stage(&stage, &queries, &counts, &opts)?;
    report(Stage::Queries, &dataset, &summary);
    Ok(())
}

fn queries_import(args: QueriesImportArgs, progress: &dyn Progress) -> Result<()> {
    let opts = run_options(&args.run, progress)?;
    // A path or a URL (s3://, https://).
    let queries = wit_queries::import(&wit_contract::store::fetch_input(
        &args.file.to_string_lossy(),
    )?)?;
    let dataset = open_dataset(&args.dataset.dataset)?;
    let strings: Vec<String> = queries.iter().map(|q| q.query.clone()).collect();
    let stage = wit_queries::stage_spec(
        &dataset,
        vec![args.file.display().to_string()],
        serde_json::json!({
            "import": wit_contract::query_list::fingerprint(&strings),
            "queries": queries.len(),
        }),
    );
    let summary = wit_queries::write_stage(&stage, &queries, &wit_contract::Counts::new(), &opts)?;
    report(Stage::Queries, &dataset, &summary);
    Ok(())
}

fn crawl(args: CrawlArgs, progress: &dyn Progress) -> Result<()> {
    let mut seeds = args.seed.clone();
    if let Some(file) = &args.seeds {
        let local = wit_contract::store::fetch_input(&file.to_string_lossy())?;
        let bytes = std::fs::read(&local)
            .map_err(|e| wit_contract::Error::bad_input(file, format!("cannot read: {e}")))?;
        let lines = wit_contract::list_file::parse(&bytes)
            .map_err(|m| wit_contract::Error::bad_input(file, m))?;
        seeds.extend(
            lines
                .into_iter()
                .map(|(_, l)| l)
                .filter(|l| !l.starts_with('#')),
        );
    }
    if seeds.is_empty() {
        bail!(BadUsage("give --seed URL or --seeds FILE".into()));
    }
    let secs = |name: &str, v: f64| -> Result<Duration> {
        Duration::try_from_secs_f64(v)
            .map_err(|_| BadUsage(format!("--{name} must be a number of seconds >= 0")).into())
    };
    let jobs = match args.jobs {
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let opts = wit_crawler::CrawlOptions {
        seeds,
        user_agent: args
            .user_agent
            .clone()
            .unwrap_or_else(|| wit_net::user_agent(args.contact.as_deref())),
        policy: wit_net::addr::AddressPolicy {
            allow_private: args.allow_private,
        },
        scope: match args.scope {
            ScopeArg::Host => wit_crawler::Scope::Host,
            ScopeArg::Domain => wit_crawler::Scope::Domain,
            ScopeArg::Any => wit_crawler::Scope::Any,
        },
        max_pages: args.max_pages,
        max_depth: args.max_depth,
        concurrency: args.concurrency,
        per_host: args.per_host,
        delay: secs("delay", args.delay)?,
        max_crawl_delay: secs("max-crawl-delay", args.max_crawl_delay)?,
        connect_timeout: secs("connect-timeout", args.connect_timeout)?,
        timeout: secs("timeout", args.timeout)?,
        max_page_bytes: args.max_page_bytes,
        max_redirects: args.max_redirects,
        retries: args.retries,
        part_urls: args.part_urls,
        threads: jobs,
        ..wit_crawler::CrawlOptions::default()
    };
    let dataset = open_dataset(&args.dataset.dataset)?;
    let summary = wit_crawler::run_crawl(&dataset, &opts, args.force, progress)?;
    report(Stage::Candidates, &dataset, &summary);
    crate::verdict::check(
        &summary.counts,
        &crate::verdict::Work {
            stage: "crawl",
            unit: "URLs",
            total: &["urls"],
            ok: "pages",
            prefix: "fail_",
            rerun: "--force (the crawl is complete: without it, a rerun does nothing)",
        },
    )?;
    if let Some(why) = crate::verdict::no_candidates(&summary.counts) {
        tracing::warn!("crawl: {why}");
    }
    Ok(())
}

fn extract(args: ExtractArgs, progress: &dyn Progress) -> Result<()> {
    let opts = run_options(&args.run, progress)?;
    let dataset = open_dataset(&args.dataset.dataset)?;
    let mut archives = args.archives.clone();
    if let Some(listing) = &args.paths {
        archives.extend(wit_crawler::read_paths_listing(listing, &args.base_url)?);
    }
    let summary = wit_crawler::run_extract(&dataset, &archives, &opts)?;
    report(Stage::Candidates, &dataset, &summary);
    Ok(())
}

fn match_(args: MatchArgs, progress: &dyn Progress) -> Result<()> {
    // Values that can only be mistakes fail before any reading.
    if args.min_length > args.max_length {
        bail!(BadUsage(format!(
            "--min-length {} is above --max-length {}: no text could be kept",
            args.min_length, args.max_length
        )));
    }
    let languages = if args.lang.is_empty() {
        None
    } else {
        Some(
            args.lang
                .iter()
                .map(|l| wit_filter::text::wanted_language(l))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| BadUsage(format!("--lang: {e}")))?,
        )
    };
    let case = if args.lowercase {
        Case::Fold
    } else {
        Case::Sensitive
    };
    let queries_path: PathBuf = match (&args.queries, &args.dataset) {
        (Some(q), _) => q.clone(),
        (None, Some(d)) => {
            let dataset = open_dataset(d)?;
            dataset.pull(Stage::Queries.dir_name())?;
            dataset
                .stage_dir(Stage::Queries)
                .join(wit_queries::QUERIES_JSON)
        }
        (None, None) => bail!(BadUsage("give --dataset, or --queries with --stdin".into())),
    };
    if args.queries.is_none() && !queries_path.is_file() {
        return Err(wit_contract::Error::bad_input(
            &queries_path,
            format!(
                "not found: run {} first, or give --queries",
                Stage::Queries.commands()
            ),
        )
        .into());
    }
    // `--queries` may be a URL: read a local copy, record the URL.
    let queries = wit_contract::query_list::read_query_list(&wit_contract::store::fetch_input(
        &queries_path.to_string_lossy(),
    )?)?;
    if args.stdin {
        let matcher = QueryMatcher::new(&queries, case)?;
        let stdout = std::io::stdout();
        let out = std::io::BufWriter::new(stdout.lock());
        return match wit_filter::match_lines(&matcher, std::io::stdin().lock(), out) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(e).context("matching lines from stdin"),
        };
    }
    let Some(dataset) = &args.dataset else {
        bail!(BadUsage(
            "give --dataset (or --stdin to match lines from stdin)".into()
        ));
    };
    let opts = run_options(&args.run, progress)?;
    let dataset = open_dataset(dataset)?;
    let filter = wit_filter::TextFilter {
        min_chars: args.min_length,
        max_chars: args.max_length,
        drop_file_names: !args.keep_file_names,
        languages,
    };
    let summary = wit_filter::run_match(&dataset, &queries, &queries_path, case, &filter, &opts)?;
    report(Stage::Matched, &dataset, &summary);
    Ok(())
}

fn download(args: DownloadArgs, progress: &dyn Progress) -> Result<()> {
    use wit_shards::resize::{Encoding, ImageOptions, ResizeMode};
    let secs = |name: &str, v: f64| -> Result<Duration> {
        Duration::try_from_secs_f64(v)
            .map_err(|_| BadUsage(format!("--{name} must be a number of seconds >= 0")).into())
    };
    let opts = run_options(&args.run, progress)?;
    let download = wit_shards::DownloadOptions {
        image: ImageOptions {
            size: args.image_size,
            mode: match args.resize_mode {
                ResizeModeArg::No => ResizeMode::No,
                ResizeModeArg::Border => ResizeMode::Border,
                ResizeModeArg::KeepRatio => ResizeMode::KeepRatio,
                ResizeModeArg::KeepRatioLargest => ResizeMode::KeepRatioLargest,
                ResizeModeArg::CenterCrop => ResizeMode::CenterCrop,
            },
            only_if_bigger: args.resize_only_if_bigger,
            encoding: match args.encode_format {
                EncodeArg::Jpg => Encoding::Jpeg(args.encode_quality),
                EncodeArg::Png => Encoding::Png,
                EncodeArg::Webp => Encoding::Webp,
            },
            max_pixels: args.max_pixels,
            min_side: args.min_image_size,
            max_aspect_ratio: args.max_aspect_ratio.unwrap_or(f64::INFINITY),
        },
        shard_size: args.shard_size,
        seed: args.seed,
        concurrency: args.concurrency,
        per_host: args.per_host,
        host_delay: secs("delay", args.delay)?,
        max_redirects: args.max_redirects,
        retries: args.retries,
        connect_timeout: secs("connect-timeout", args.connect_timeout)?,
        timeout: secs("timeout", args.timeout)?,
        max_bytes: args.max_bytes,
        user_agent: wit_net::user_agent(args.contact.as_deref()),
        policy: wit_net::addr::AddressPolicy {
            allow_private: args.allow_private,
        },
        robots: !args.ignore_robots,
        opt_out: args
            .disallowed_header_directives
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect(),
        threads: opts.jobs,
        retry_failed: args.retry_failed,
        memory_budget: args.memory_budget,
        plan_only: args.plan_only,
        ..wit_shards::DownloadOptions::default()
    };
    let dataset = open_dataset(&args.dataset.dataset)?;
    let summary = wit_shards::run_download(&dataset, &download, &opts)?;
    if args.plan_only {
        tracing::info!(
            "shards: planned {} pairs in {} shards in {}",
            summary.counts.get("planned").copied().unwrap_or(0),
            summary.parts,
            dataset
                .stage_dir(Stage::Shards)
                .join(wit_shards::PLAN_DIR)
                .display()
        );
        return Ok(());
    }
    report(Stage::Shards, &dataset, &summary);
    crate::verdict::check(
        &summary.counts,
        &crate::verdict::Work {
            stage: "shards",
            unit: "images",
            total: &["samples"],
            ok: "success",
            prefix: "error_",
            rerun: "--retry-failed",
        },
    )
}

fn tokenize(texts: &[String]) -> Result<()> {
    use std::io::{BufRead, Write};
    let t = wit_trainer::tokenizer::Tokenizer::get();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut one = |text: &str| -> std::io::Result<()> {
        let ids = t.context(text);
        out.write_all(b"[")?;
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                out.write_all(b", ")?;
            }
            write!(out, "{id}")?;
        }
        out.write_all(b"]\n")
    };
    let mut write = || -> std::io::Result<()> {
        if texts.is_empty() {
            for line in stdin.lock().lines() {
                one(&line?)?;
            }
        } else {
            for text in texts {
                one(text)?;
            }
        }
        Ok(())
    };
    let written = write().and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other.context(if texts.is_empty() {
            "tokenizing stdin"
        } else {
            "tokenizing the arguments"
        }),
    }
}

fn stats(args: StatsArgs) -> Result<()> {
    use std::io::Write;
    // On a store, every stage comes down to the mirror first (Polars reads files).
    let dataset = open_dataset(args.dataset.path())?;
    for stage in Stage::ALL {
        dataset.pull(stage.dir_name())?;
    }
    let root = dataset.root();
    if let Some(query) = &args.sql {
        let df = wit_stats::sql(root, query)?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let written = match args.format {
            SqlFormat::Table => writeln!(out, "{}", wit_stats::table_text(&df)),
            SqlFormat::Csv => out.write_all(wit_stats::csv(&df)?.as_bytes()),
            SqlFormat::Json => out.write_all(wit_stats::json_lines(&df)?.as_bytes()),
        };
        return match written {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
            other => other.context("writing the result"),
        };
    }
    let report = wit_stats::report(root)?;
    let out = args.out.clone().unwrap_or_else(|| root.join("stats"));
    let written = wit_stats::write_report(&report, &out)?;
    if args.out.is_none() {
        dataset.push("stats")?;
    }
    print!("{}", report.text());
    for p in written {
        tracing::info!("stats: wrote {}", p.display());
    }
    Ok(())
}

fn balance(args: BalanceArgs, progress: &dyn Progress) -> Result<()> {
    let opts = run_options(&args.run, progress)?;
    let dataset = open_dataset(&args.dataset.dataset)?;
    let (summary, reduced) = wit_filter::run_balance(
        &dataset,
        &wit_filter::BalanceOptions {
            t: args.max_per_query,
            seed: args.seed,
            memory_budget: args.memory_budget,
        },
        &opts,
    )?;
    let distinct = reduced.pairs - reduced.duplicates;
    tracing::info!(
        "balanced: {} matched pairs, {} of them repeats of another (dropped), so {distinct} distinct; {} of {} queries matched, {} at or over t={}",
        reduced.pairs,
        reduced.duplicates,
        reduced.queries_matched,
        reduced.queries,
        reduced.queries_at_or_over_t,
        reduced.t
    );
    if summary.complete {
        let kept = summary.counts.get("kept").copied().unwrap_or(0);
        tracing::info!(
            "balanced: kept {kept} of the {distinct} distinct pairs ({} dropped by balancing)",
            distinct.saturating_sub(kept)
        );
    }
    report(Stage::Balanced, &dataset, &summary);
    Ok(())
}

fn train(args: TrainArgs, progress: &dyn Progress) -> Result<()> {
    use wit_trainer::train::{Precision, TrainConfig, Trainer};
    wit_trainer::runtime::prepare_cpu_training();
    // Many ranks when a launcher (mpirun, srun, torchrun) started this one.
    let ranks = wit_trainer::dist::Ranks::from_env().map_err(|e| anyhow::anyhow!(e))?;
    // One GPU per rank: `cuda` is the local rank's.
    let device = if args.device == "cuda" && ranks.world > 1 {
        format!("cuda:{}", ranks.local_rank)
    } else {
        args.device.clone()
    };
    let device = wit_trainer::train::device(&device)?;
    let backend = match args.collective {
        CollectiveArg::Auto => wit_trainer::dist::Backend::Auto,
        CollectiveArg::Mpi => wit_trainer::dist::Backend::Mpi,
        CollectiveArg::Nccl => wit_trainer::dist::Backend::Nccl,
    };
    let collective = wit_trainer::dist::connect(ranks, &device, backend)?;
    let lead = ranks.rank == 0;
    let quiet = wit_contract::progress::NoProgress;
    let progress: &dyn Progress = if lead { progress } else { &quiet };
    let model = args.model.replace('/', "-");
    if wit_trainer::model::ClipConfig::preset(&model).is_none() {
        bail!(BadUsage(format!(
            "--model {}: unknown model; the presets are {} (each also with -quickgelu)",
            args.model,
            wit_trainer::model::PRESETS.join(", ")
        )));
    }
    let dataset = open_dataset(&args.dataset.dataset)?;
    // Shards are read where they lie: files, or objects streamed from a store.
    let shards = match dataset.files(Stage::Shards.dir_name(), ".tar") {
        Ok(s) => s,
        Err(e) => bail!(BadUsage(format!("{e}; run `wit download` first"))),
    };
    if shards.is_empty() {
        bail!(BadUsage(format!(
            "{}/shards holds no .tar shards; run `wit download` first",
            dataset.location()
        )));
    }
    let mut config = TrainConfig::new(&model, args.batch_size, args.steps);
    config.accum = args.accum;
    config.lr = args.lr;
    config.weight_decay = args.wd;
    if let Some(w) = args.warmup {
        config.warmup = w;
    }
    config.clip_norm = args.clip_norm;
    config.precision = match args.precision.as_deref() {
        Some("f32") => Precision::F32,
        Some("bf16") => Precision::Bf16,
        None if device.is_cpu() => Precision::F32,
        None => Precision::Bf16,
        Some(other) => bail!(BadUsage(format!("--precision {other}: use f32 or bf16"))),
    };
    config.seed = args.seed;
    config.shuffle = args.shuffle;
    config.workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    config.checkpoint_every = args.checkpoint_every.max(1);
    config.keep = args.keep;
    config.local_loss = args.local_loss;
    config.streams = args.streams.unwrap_or(0);
    config.train_num_samples = args.train_num_samples;
    config.resampled = args.dataset_resampled;
    // A run under a dataset on a store comes down to resume and goes back up at the end.
    let run_rel = format!("runs/{model}");
    if args.run.is_none() {
        dataset.pull(&run_rel)?;
    }
    let run_dir = args
        .run
        .unwrap_or_else(|| dataset.root().join("runs").join(&model));
    let mut trainer =
        Trainer::open_rank(config, &run_dir, &device, args.resume, progress, collective)?;
    let from = trainer.position().step;
    let result = trainer.run(&shards, &wit_contract::store::StoreOpener, args.stop_at);
    // Rank 0 alone writes the run.
    if lead {
        dataset.push(&run_rel)?;
    }
    let summary = result?;
    if !lead {
        return Ok(());
    }
    if ranks.world > 1 && summary.step_secs > 0.0 {
        println!(
            "train: {} ranks; {:.1} s in steps, {:.1}% of it in collectives (moving features and gradients, and waiting for the slowest rank)",
            ranks.world,
            summary.step_secs,
            100.0 * summary.collective_secs / summary.step_secs
        );
    }
    println!(
        "train: {} step(s) now (from step {from} to {}), last loss {:.4}, {} sample(s) seen, {} unusable sample(s) skipped; run in {}",
        summary.steps_now,
        summary.position.step,
        summary.loss,
        summary.position.samples,
        summary.skipped,
        run_dir.display()
    );
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    use wit_trainer::eval::{
        self, EvalSpec, data::read_class_names, data::read_templates, zeroshot,
    };
    if args.data.is_empty() && args.retrieval.is_empty() {
        bail!(BadUsage(
            "nothing to evaluate: give --data (zero-shot, and the probe's test set with --train) or --retrieval".into()
        ));
    }
    if !args.train.is_empty() && args.data.is_empty() {
        bail!(BadUsage(
            "--train needs --data, the probe's test set".into()
        ));
    }
    // Every input named on the command line exists, before the model loads.
    let files = [("--checkpoint", &args.checkpoint)]
        .into_iter()
        .chain(args.templates.iter().map(|t| ("--templates", t)))
        .chain(args.classes.iter().map(|c| ("--classes", c)));
    for (flag, path) in files {
        must_exist(flag, path)?;
    }
    for (flag, list) in [
        ("--data", &args.data),
        ("--train", &args.train),
        ("--retrieval", &args.retrieval),
    ] {
        // URLs and brace patterns (`{00000..00009}.tar`) are for the reader.
        for item in list
            .iter()
            .filter(|i| !i.contains("://") && !i.contains('{'))
        {
            must_exist(flag, Path::new(item))?;
        }
    }
    let device = wit_trainer::train::device(&args.device)?;
    let model = eval::load_model(&args.checkpoint, args.model.as_deref(), &device)?;
    let templates = match &args.templates {
        Some(f) => read_templates(f)?,
        None => zeroshot::openai_imagenet_templates(),
    };
    let spec = EvalSpec {
        data: args.data.clone(),
        classes: args.classes.as_deref().map(read_class_names).transpose()?,
        train: (!args.train.is_empty()).then(|| args.train.clone()),
        shots: args.shots,
        retrieval: (!args.retrieval.is_empty()).then(|| args.retrieval.clone()),
        templates,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let report = eval::evaluate(&model, &spec, &device)?;
    let out = args.out.clone().unwrap_or_else(|| {
        args.checkpoint
            .parent()
            .unwrap_or(Path::new("."))
            .join("eval")
    });
    std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
    let json = out.join("eval.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report.to_json())?)
        .with_context(|| json.display().to_string())?;
    let shown = report
        .ensemble
        .as_ref()
        .map(|s| ("zero-shot confusion", s))
        .or(report
            .probe
            .as_ref()
            .map(|p| ("linear-probe confusion", &p.test)));
    if let Some((title, s)) = shown {
        let png = wit_plot::heatmap(title, &report.classes, &s.confusion)
            .map_err(|e| anyhow::anyhow!("drawing the confusion matrix: {e}"))?;
        let path = out.join("confusion.png");
        std::fs::write(&path, png).with_context(|| path.display().to_string())?;
    }
    print!("{}", report.to_table());
    println!("eval: results in {}", out.display());
    Ok(())
}

fn demo_candidates(args: DemoCandidatesArgs, progress: &dyn Progress) -> Result<()> {
    let opts = run_options(&args.run, progress)?;
    let dataset = open_dataset(&args.dataset.dataset)?;
    let (queries, summary) = wit_demo::write_scale_corpus(
        &dataset,
        &wit_demo::ScaleOptions {
            rows: args.rows,
            part_rows: args.part_rows,
            seed: args.seed,
            image_base: args.image_base,
        },
        &opts,
    )?;
    tracing::info!("demo-candidates: query list in {}", queries.display());
    report(Stage::Candidates, &dataset, &summary);
    Ok(())
}

fn demo_web(args: DemoWebArgs) -> Result<()> {
    let options = wit_demo::SiteOptions {
        pages: args.pages,
        seed: args.seed,
        image_size: args.image_size,
        eval_per_class: args.eval_per_class,
    };
    let started = std::time::Instant::now();
    let (s, made) = wit_demo::generate(&args.out, &options)?;
    let verb = if made { "generated" } else { "reused" };
    tracing::info!(
        "demo-web: {verb} {} in {:.1}s: {} pages ({} in other languages, {} disallowed by robots.txt), \
         {} images ({} truncated), {} image tags ({} broken, {} with a file name as alt, {} figures), \
         {} decorative, {} broken links; {} held-out classes with {} + {} evaluation images",
        args.out.display(),
        started.elapsed().as_secs_f64(),
        s.pages,
        s.pages_other_languages,
        s.pages_disallowed,
        s.images,
        s.corrupt_images,
        s.image_tags,
        s.broken_image_tags,
        s.file_name_alts,
        s.figures,
        s.decorative_tags,
        s.broken_links,
        s.eval_classes,
        s.eval_train_images,
        s.eval_test_images,
    );
    if !args.serve {
        return Ok(());
    }
    let root = wit_demo::site_dir(&args.out);
    let addr = std::net::SocketAddr::new(args.host, args.port);
    let server = wit_demo::Server::start(root, addr)
        .with_context(|| format!("demo-web: cannot serve on {addr}"))?;
    // The URL on stdout, alone on its line, for scripts to read.
    println!("http://{}/", server.addr());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    server.wait();
    Ok(())
}

/// The `wit` binary the tasks of a pipeline run: the pipeline's `wit`, else this one.
fn pipeline_wit(p: &wit_sched::Pipeline) -> Result<String> {
    match &p.wit {
        Some(w) => Ok(w.clone()),
        None => Ok(std::env::current_exe()
            .context("locating the wit binary")?
            .display()
            .to_string()),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| p.display().to_string())
}

fn slurm(args: SlurmArgs) -> Result<()> {
    use wit_sched::slurm;
    let pipeline = wit_sched::Pipeline::read(&args.pipeline)?;
    let wit = pipeline_wit(&pipeline)?;
    let out = absolute(&args.out)?;
    let logs = match &pipeline.logs {
        Some(l) => absolute(Path::new(l))?,
        None => out.join("logs"),
    };
    std::fs::create_dir_all(&logs).with_context(|| logs.display().to_string())?;
    let workdir = std::env::current_dir().context("the current directory")?;
    let limits = match args.max_array_size {
        Some(n) => slurm::Limits { max_array_size: n },
        None => match slurm::Limits::query() {
            Ok(l) => l,
            Err(e) if args.dry_run => {
                tracing::info!(
                    "slurm: the cluster's limits are unknown here ({e}); writing for Slurm's defaults (MaxArraySize {})",
                    slurm::Limits::DEFAULT.max_array_size
                );
                slurm::Limits::DEFAULT
            }
            Err(e) => return Err(e.into()),
        },
    };
    let scripts = slurm::scripts(&pipeline, &wit, &workdir, &logs, limits)?;
    let paths = slurm::write_scripts(&scripts, &out)?;
    if args.dry_run {
        for (s, p) in scripts.iter().zip(&paths) {
            println!("# {}\n{}", p.display(), s.text);
        }
        return Ok(());
    }
    let jobs = slurm::submit(&scripts, &paths)?;
    for j in &jobs {
        println!(
            "{}\tjob {}\tparts {}-{}\tlogs {}",
            j.name,
            j.id,
            j.first,
            j.first + j.tasks - 1,
            j.log_pattern.display()
        );
    }
    if args.no_follow {
        return Ok(());
    }
    let poll = Duration::try_from_secs_f64(args.poll)
        .map_err(|_| BadUsage("--poll must be a number of seconds >= 0".into()))?;
    let ends = slurm::follow(&jobs, poll, |line| tracing::info!("{line}"))?;
    let done = ends.iter().filter(|e| e.state == "COMPLETED").count();
    println!("slurm: {done} of {} tasks completed", ends.len());
    slurm::check(&ends)?;
    Ok(())
}

fn kube(args: KubeArgs) -> Result<()> {
    let pipeline = wit_sched::Pipeline::read(&args.pipeline)?;
    let wit = pipeline.wit.clone().unwrap_or_else(|| "wit".into());
    for p in wit_sched::kube::write_manifests(&pipeline, &wit, &args.out)? {
        println!("{}", p.display());
    }
    Ok(())
}

fn cat(args: CatArgs) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    for f in &args.files {
        let mut input = wit_contract::store::open_input(f)?;
        match std::io::copy(&mut input, &mut out) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).with_context(|| f.clone()),
        }
    }
    match std::io::Write::flush(&mut out) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing stdout"),
    }
}
