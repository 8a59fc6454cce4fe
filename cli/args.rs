//! The command line: one subcommand per stage, parsed with clap into plain
//! structs. Nothing here does I/O; `commands.rs` turns these into library calls.

use std::path::{Path, PathBuf};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str =
    "Build CLIP-style image-text corpora from the web and train CLIP models on them";

const LONG_ABOUT: &str = "\
Build CLIP-style image-text corpora from the web and train CLIP models on them.

CLIP learned image representations from 400M (image, text) pairs whose text \
contains one of 500,000 queries, balanced to at most 20,000 pairs per query. \
wit rebuilds that data and model as a staged pipeline over one dataset directory:

  queries   the query list (WordNet, Wikipedia words, bigrams, titles)
  crawl     web pages -> image-text candidates        (or: extract, from web archives)
  match     keep candidates whose text contains a query
  balance   cap pairs per query (MetaCLIP's balancing)
  download  fetch images -> WebDataset shards
  stats     corpus statistics and report
  train     train a CLIP dual encoder on the shards
  eval      zero-shot, linear-probe and retrieval evaluation

Each stage reads the previous stage's files and writes DATASET/STAGE/ in numbered \
parts; a killed stage resumes where it stopped, and --parts N --part I splits a \
stage among N processes or machines. DATASET may be a path or a URL \
(s3://bucket/prefix, gs://, az://); `wit slurm` runs a pipeline of stages as \
Slurm job arrays (docs/scale-out.md). Every flag can also be set in a TOML file \
given with --config: top-level keys apply to every command that has the flag, \
a [match] (or [queries.import], ...) table to one command; flags given on the \
command line win.";

/// The `wit` command line.
#[derive(Debug, Parser)]
#[command(name = "wit", version, about = ABOUT, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    /// TOML file whose keys mirror the flags (flags win)
    #[arg(long, global = true, value_name = "FILE", env = "WIT_CONFIG")]
    pub config: Option<PathBuf>,

    /// More log output (-v debug, -vv trace)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Less log output (-q warnings only, -qq errors only)
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    /// The stage to run
    #[command(subcommand)]
    pub command: Command,
}

/// One subcommand per stage, in pipeline order.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build or import the query list that candidate texts must contain
    #[command(subcommand)]
    Queries(QueriesCommand),
    /// Crawl web pages from seed URLs into image-text candidates
    Crawl(CrawlArgs),
    /// Read Common Crawl WARC/WAT archives into image-text candidates
    Extract(ExtractArgs),
    /// Keep the candidates whose text contains at least one query
    Match(MatchArgs),
    /// Cap the pairs per query at t, as MetaCLIP balances CLIP's data
    Balance(BalanceArgs),
    /// Download the balanced images and write WebDataset shards
    Download(DownloadArgs),
    /// Corpus statistics: the funnel, query balance and content
    Stats(StatsArgs),
    /// Train a CLIP model on the shards
    Train(TrainArgs),
    /// Evaluate a CLIP checkpoint: zero-shot, linear probe, retrieval
    Eval(EvalArgs),
    /// What each stage of a dataset directory has done: state, counts, time,
    /// training runs and evaluation figures
    Status(StatusArgs),
    /// Write files or objects (paths or URLs: s3://, gs://, az://, https://) to stdout
    #[command(long_about = "\
Write each FILE, a path or a URL (s3://, gs://, az://, http(s)://), to stdout \
in turn, streamed with ranged resumes. For tools that read a pipe, such as \
Python webdataset: WebDataset(\"pipe:wit cat s3://bucket/corpus/shards/{00000..00009}.tar\") \
(webdataset expands the braces and runs one wit per shard). Credentials \
come from the environment, as for --dataset.")]
    Cat(CatArgs),
    /// Run a pipeline of stages as Slurm job arrays: write, submit, follow
    #[command(long_about = SLURM_ABOUT)]
    Slurm(SlurmArgs),
    /// Write a pipeline of stages as Kubernetes Indexed Jobs (not run here)
    Kube(KubeArgs),
    /// Generate (and serve) the synthetic web that `make train` crawls
    #[command(name = "demo-web", long_about = DEMO_WEB_ABOUT)]
    DemoWeb(DemoWebArgs),
    /// Write seeded candidates of realistic shape, without images, for
    /// measuring the stages at scale
    #[command(name = "demo-candidates", long_about = DEMO_CANDIDATES_ABOUT)]
    DemoCandidates(DemoCandidatesArgs),
    /// Print CLIP's token ids of each text argument, or of each line of stdin (open_clip's tokenizer)
    #[command(long_about = "\
Read text lines on stdin and print, per line, the JSON array of its 77 CLIP \
context ids: <start_of_text>, the byte-level BPE ids of the cleaned, lowercased \
text, <end_of_text>, truncated keeping the end token, zero-padded. The same ids \
as open_clip's tokenizer. With TEXT arguments, each argument instead.")]
    Tokenize(TokenizeArgs),
}

const DEMO_WEB_ABOUT: &str = "\
Generate the synthetic web that `make train` crawls, and serve it on 127.0.0.1.

A few thousand linked pages (some in German, French or Spanish, some under \
/private/ which robots.txt disallows, broken links and images, decorative \
images, file names as alt texts, figures with captions) whose images are \
drawn from compositional concepts: circles, squares, triangles, stars, hearts \
and crosses in nine colours, plain, striped, dotted or checkered, small or \
large, one to three of them, on a beach, in a forest, in the snow, at night \
or on a plain backdrop, described in varied, noisy captions. A third of the \
colour-shape pairs never appear on the site: OUT/eval/{train,test}/ holds \
images of exactly those, a folder per class, for zero-shot evaluation and \
linear probes (`wit eval --data OUT/eval/test --train OUT/eval/train`).

Writes OUT/site/ (the served files), OUT/eval/ and OUT/site.json; run again \
with the same options, it reuses them. With --serve it then serves OUT/site/ \
until killed.";

const DEMO_CANDIDATES_ABOUT: &str = "\
Write DATASET/queries.txt (100,000 pseudo-words and 20,000 bigrams) and \
DATASET/candidates/ (--rows candidates in parts of --part-rows) of the shape \
of a web-scale corpus, without images: Zipf-distributed word frequencies (so \
query counts follow a Zipf law, as MetaCLIP's do), alt-text caption lengths, \
50,000 image hosts, about 1.5% of each part's rows repeating a pair of an \
earlier part. Seeded: the same options give the same bytes. Then run \
`wit queries import DATASET/queries.txt -d DATASET`, `wit match`, `wit balance`, \
`wit download --plan-only` and `wit stats` on it (make bench-scale does).";

const SLURM_ABOUT: &str = "\
Run a pipeline (a TOML file: the dataset, the stages with their flags, tasks \
and resources; docs/scale-out.md) as one Slurm job array per stage: task I of \
a stage of N tasks runs `wit STAGE --parts N --part I`, each stage starts \
once the one before completed (afterok), and a stage behind a failed one is \
cancelled. A stage of more tasks than the cluster lets one array hold \
(MaxArraySize) is split into several arrays, each running its own range of \
parts. The scripts are written to --out; without --dry-run they are \
submitted with sbatch and followed until every task has ended, and the tasks \
that failed are named with the last line of their log; where sbatch refuses \
a script, the jobs already submitted are cancelled and named. Submitting the same \
pipeline again runs only the parts that are not complete. Credentials are \
passed to the tasks in the environment (Slurm exports it), never written.";

/// `wit slurm`
#[derive(Debug, Args)]
pub struct SlurmArgs {
    /// The pipeline file (TOML)
    #[arg(value_name = "PIPELINE")]
    pub pipeline: PathBuf,
    /// Where to write the batch scripts and the tasks' logs
    #[arg(long, value_name = "DIR", default_value = "wit-slurm")]
    pub out: PathBuf,
    /// Write the scripts and print them; submit nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Submit and return at once, without following the jobs
    #[arg(long)]
    pub no_follow: bool,
    /// Seconds between two looks at the queue while following
    #[arg(value_parser = positive, long, value_name = "SECONDS", default_value_t = 2.0)]
    pub poll: f64,
    /// The most tasks one job array may hold (a stage of more is split into
    /// several arrays) [default: the cluster's MaxArraySize, from `scontrol
    /// show config`; Slurm's default 1001 where there is no scontrol]
    #[arg(long, value_name = "N", value_parser = at_least_one::<u32>)]
    pub max_array_size: Option<u32>,
}

/// `wit cat`
#[derive(Debug, Args)]
pub struct CatArgs {
    /// Paths or URLs
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<String>,
}

/// `wit kube`
#[derive(Debug, Args)]
pub struct KubeArgs {
    /// The pipeline file (TOML), as for `wit slurm`
    #[arg(value_name = "PIPELINE")]
    pub pipeline: PathBuf,
    /// Where to write the manifests and run.sh
    #[arg(long, value_name = "DIR", default_value = "wit-kube")]
    pub out: PathBuf,
}

/// `wit tokenize`
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Texts to tokenize, one result line each [default: the lines of stdin]
    #[arg(value_name = "TEXT")]
    pub texts: Vec<String>,
}

/// `wit status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dataset: DatasetEither,
}

/// The dataset of a command that reads a whole dataset (`stats`, `status`):
/// by position, or by `--dataset` as every stage names it.
#[derive(Debug, Args)]
pub struct DatasetEither {
    /// The dataset directory (or its URL on an object store)
    #[arg(value_name = "DATASET", required_unless_present = "dataset")]
    pub dataset_at: Option<PathBuf>,
    /// The dataset directory, named as the stages name it
    #[arg(
        short,
        long = "dataset",
        value_name = "DATASET",
        conflicts_with = "dataset_at"
    )]
    pub dataset: Option<PathBuf>,
}

impl DatasetEither {
    /// The dataset, however it was named.
    pub fn path(&self) -> &Path {
        self.dataset_at
            .as_deref()
            .or(self.dataset.as_deref())
            .expect("clap requires one of the two")
    }
}

/// `wit demo-candidates`
#[derive(Debug, Args)]
pub struct DemoCandidatesArgs {
    #[command(flatten)]
    pub dataset: DatasetArg,
    /// Candidates in all
    #[arg(value_parser = at_least_one::<u64>, long, value_name = "N", default_value_t = 1_000_000)]
    pub rows: u64,
    /// Candidates per part
    #[arg(value_parser = at_least_one::<u64>, long, value_name = "N", default_value_t = 100_000)]
    pub part_rows: u64,
    /// Seeds every draw
    #[arg(long, value_name = "N", default_value_t = 17)]
    pub seed: u64,
    /// Point the image URLs at BASE/imgN/... (a local server, for measuring
    /// downloads) instead of https://imgN.example.com/...
    #[arg(long, value_name = "BASE")]
    pub image_base: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `wit demo-web`
#[derive(Debug, Args)]
pub struct DemoWebArgs {
    /// Where the site and the evaluation images go
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Pages with images
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 4000)]
    pub pages: usize,
    /// Seeds every random choice (the same seed gives the same site)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Width and height of the drawings, in pixels
    #[arg(value_parser = at_least_one::<u32>, long, value_name = "PX", default_value_t = 64)]
    pub image_size: u32,
    /// Evaluation images per held-out class, in each of train and test
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 20)]
    pub eval_per_class: usize,
    /// After generating, serve OUT/site/ until killed
    #[arg(long)]
    pub serve: bool,
    /// The address to serve on
    #[arg(
        long,
        value_name = "IP",
        default_value = "127.0.0.1",
        requires = "serve"
    )]
    pub host: std::net::IpAddr,
    /// The port to serve on (0: any free port, printed)
    #[arg(long, value_name = "PORT", default_value_t = 8917, requires = "serve")]
    pub port: u16,
}

/// Options shared by every stage that runs in parts.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Split the stage's parts among N processes (on one machine or many) and
    /// run only one share; use with --part
    #[arg(value_parser = at_least_one::<u32>, long, value_name = "N", requires = "part")]
    pub parts: Option<u32>,

    /// Which share to run, 0 <= I < N: the parts whose number is I modulo N
    #[arg(long, value_name = "I", requires = "parts")]
    pub part: Option<u32>,

    /// Worker threads [default: the number of CPUs]
    #[arg(value_parser = at_least_one::<usize>, short, long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Delete this stage's earlier output and start it over (finished parts
    /// are otherwise kept and skipped)
    #[arg(long)]
    pub force: bool,
}

/// The dataset directory every stage reads and writes.
#[derive(Debug, Clone, Args)]
pub struct DatasetArg {
    /// The dataset directory: each stage reads the previous stage's output
    /// there and writes its own into DATASET/STAGE/
    #[arg(short, long = "dataset", visible_alias = "out", value_name = "DATASET")]
    pub dataset: PathBuf,
}

/// `wit queries ...`
#[derive(Debug, Subcommand)]
pub enum QueriesCommand {
    /// Build the query list from WordNet, Wikipedia and page views (MetaCLIP's recipe)
    #[command(long_about = "\
Build the query list from WordNet, Wikipedia and page views (MetaCLIP's recipe).

CLIP's 500,000 queries: every WordNet synset, every word occurring at least 100 \
times in English Wikipedia, bigrams with high pointwise mutual information, and \
the titles of Wikipedia articles above a search volume. A query's id is its \
position in the list. Any source may be left out.")]
    Build(Box<QueriesBuildArgs>),
    /// Import an existing query list (a JSON array of strings, or one query per line)
    #[command(long_about = "\
Import an existing query list: a JSON array of strings (the format MetaCLIP \
publishes its metadata.json in) or a text file with one query per line. The \
list is kept as it is: a query's id is its position. Writes \
DATASET/queries/queries.parquet (id, query, source, score), queries.json and \
_manifest.json.")]
    Import(QueriesImportArgs),
}

/// `wit queries build`
#[derive(Debug, Args)]
pub struct QueriesBuildArgs {
    #[command(flatten)]
    pub dataset: DatasetArg,
    /// WordNet 3.0 database directory (data.noun, data.verb, data.adj, data.adv;
    /// Debian's wordnet-base installs it in /usr/share/wordnet)
    #[arg(long, value_name = "DIR")]
    pub wordnet: Option<PathBuf>,
    /// Wikipedia pages-articles XML dump (.xml or .xml.bz2, multistream or not);
    /// repeatable
    #[arg(long, value_name = "DUMP")]
    pub wikipedia: Vec<PathBuf>,
    /// Plain-text corpus files for word and bigram counts ("-" for stdin)
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub corpus: Vec<PathBuf>,
    /// Wikimedia page-view files ("project title views bytes" lines, gzipped)
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub pageviews: Vec<PathBuf>,
    /// A list of titles with view counts ("title<TAB>views" lines), instead of
    /// or besides page-view files
    #[arg(long, value_name = "FILE")]
    pub titles: Option<PathBuf>,
    /// Queries in all: sources are added in order (WordNet, words, bigrams,
    /// titles) until the list is full
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 500_000)]
    pub max_queries: usize,
    /// At most this many WordNet names [default: no limit of its own]
    #[arg(long, value_name = "N")]
    pub max_wordnet: Option<usize>,
    /// At most this many words [default: no limit of its own]
    #[arg(long, value_name = "N")]
    pub max_unigrams: Option<usize>,
    /// At most this many bigrams [default: no limit of its own]
    #[arg(long, value_name = "N")]
    pub max_bigrams: Option<usize>,
    /// At most this many titles [default: no limit of its own]
    #[arg(long, value_name = "N")]
    pub max_titles: Option<usize>,
    /// Keep words seen at least this many times
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub min_count: u64,
    /// Keep bigrams whose pointwise mutual information (base 2, as NLTK
    /// computes it) is at least this
    #[arg(value_parser = finite, long, value_name = "PMI", default_value_t = 30.0)]
    pub min_pmi: f64,
    /// Ignore bigrams seen fewer times than this
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub bigram_min_count: u64,
    /// Keep titles with at least this many views in all
    #[arg(long, value_name = "N", default_value_t = 70)]
    pub min_views: u64,
    /// Ignore page-view rows with fewer views than this
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub min_row_views: u64,
    /// The page-view project to read (en: English Wikipedia, desktop)
    #[arg(long, value_name = "CODE", default_value = "en")]
    pub project: String,
    /// Leave out MetaCLIP's seed entries, the numbers "0" to "99"
    #[arg(long)]
    pub no_seed_numbers: bool,
    /// A query list (JSON array or one per line) put first, before every
    /// other source and outside their budgets; repeatable
    #[arg(long, value_name = "FILE")]
    pub include: Vec<PathBuf>,
    /// Memory for counting, in MiB, over all threads; counts beyond it are
    /// spilled to disk and merged
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "MIB", default_value_t = 4096)]
    pub memory_mib: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `wit queries import`
#[derive(Debug, Args)]
pub struct QueriesImportArgs {
    /// The query list: a JSON array of strings, or one query per line
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub dataset: DatasetArg,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `wit crawl`
#[derive(Debug, Args)]
#[command(long_about = "\
Crawl web pages from seed URLs and extract image-text candidates: each <img> \
with its alt or title text, and figures with their captions, with the page's \
URL, title and language. Obeys robots.txt (with Crawl-delay) and per-host \
limits, follows links within the seeds' hosts (--scope), refuses private and \
loopback addresses unless --allow-private is given, and writes \
DATASET/candidates/ a part at a time. Killed, it resumes where its last part \
ended when run again with the same options; pages of finished parts are not \
fetched again. Counts of pages, candidates and failures by reason are in each \
part's _part-NNNNN.json.")]
pub struct CrawlArgs {
    #[command(flatten)]
    pub dataset: DatasetArg,
    /// A URL to start from (repeatable)
    #[arg(long, value_name = "URL")]
    pub seed: Vec<String>,
    /// A file of seed URLs, one per line (blank lines and # comments skipped)
    #[arg(long, value_name = "FILE")]
    pub seeds: Option<PathBuf>,
    /// Allow private, loopback and link-local addresses (off: such hosts are refused)
    #[arg(long)]
    pub allow_private: bool,
    /// Which links to follow: the seeds' hosts, their subdomains too, or any
    #[arg(long, value_enum, default_value = "host")]
    pub scope: ScopeArg,
    /// Stop after this many URLs (fetched or failed)
    #[arg(value_parser = at_least_one::<u64>, long, value_name = "N")]
    pub max_pages: Option<u64>,
    /// Follow links at most this many hops from a seed
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_depth: u32,
    /// Requests at once, in all
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 32)]
    pub concurrency: usize,
    /// Requests at once to one host
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 2)]
    pub per_host: usize,
    /// Minimum seconds between two requests to one host (robots.txt
    /// Crawl-delay raises it, up to --max-crawl-delay)
    #[arg(value_parser = non_negative, long, value_name = "SECONDS", default_value_t = 0.5)]
    pub delay: f64,
    /// The longest Crawl-delay obeyed, in seconds
    #[arg(value_parser = non_negative, long, value_name = "SECONDS", default_value_t = 30.0)]
    pub max_crawl_delay: f64,
    /// Seconds allowed for a whole request, body included
    #[arg(value_parser = positive, long, value_name = "SECONDS", default_value_t = 30.0)]
    pub timeout: f64,
    /// Seconds allowed to connect
    #[arg(value_parser = positive, long, value_name = "SECONDS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Largest page read, in bytes after decompression
    #[arg(value_parser = at_least_one::<u64>, long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub max_page_bytes: u64,
    /// Longest redirect chain followed
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_redirects: u32,
    /// Retries of a 429 or 503 answer (after its Retry-After)
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub retries: u32,
    /// The User-Agent; the default names wit and its version
    #[arg(long, value_name = "TEXT")]
    pub user_agent: Option<String>,
    /// A URL or e-mail address for site owners, added to the User-Agent
    #[arg(long, value_name = "URL")]
    pub contact: Option<String>,
    /// URLs per output part (each part is committed with a frontier checkpoint)
    #[arg(value_parser = at_least_one::<u64>, long, value_name = "N", default_value_t = 1000)]
    pub part_urls: u64,
    /// Worker threads [default: the number of CPUs]
    #[arg(value_parser = at_least_one::<usize>, short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Delete the earlier crawl output and start over
    #[arg(long)]
    pub force: bool,
}

/// `--scope`
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    /// The seeds' hosts only
    Host,
    /// The seeds' hosts and their subdomains
    Domain,
    /// Any host
    Any,
}

/// `wit extract`
#[derive(Debug, Args)]
#[command(long_about = "\
Read web archives (Common Crawl WARC or WAT files, gzipped or not) and extract \
image-text candidates from the archived HTML pages, as the crawler does, one \
part per archive file. Writes DATASET/candidates/.

Archives may be local files or URLs (s3://, gs://, az://, https://), streamed \
in place: never held whole in memory or on disk, and a stream that breaks \
mid-file resumes with a ranged read. --paths reads Common Crawl's listing \
(warc.paths.gz, wat.paths.gz: one path a line) relative to --base-url.")]
pub struct ExtractArgs {
    /// WARC or WAT files: paths or URLs
    #[arg(value_name = "ARCHIVE", required_unless_present = "paths")]
    pub archives: Vec<String>,
    /// A paths listing as Common Crawl publishes it (a path or a URL), read
    /// after the ARCHIVEs
    #[arg(long, value_name = "LISTING")]
    pub paths: Option<String>,
    /// What the listing's paths are relative to
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://data.commoncrawl.org/"
    )]
    pub base_url: String,
    #[command(flatten)]
    pub dataset: DatasetArg,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `wit match`
#[derive(Debug, Args)]
#[command(long_about = "\
Keep the candidates whose text contains at least one query, and record the ids \
of all the queries it contains.

Matching follows MetaCLIP: the text is padded with a space on each side; the \
characters , . ; : ? ! and ` get a space on both sides; tab, newline and \
carriage return become spaces; each query matches as \" query \" (whole words or \
phrases), case-sensitive unless --lowercase. Overlapping matches all count.

Reads DATASET/candidates/ and DATASET/queries/queries.json, writes \
DATASET/matched/ (the candidate columns plus query_ids); candidates that match \
nothing are dropped and counted. With --stdin, reads captions one per line and \
prints the JSON array of matched query ids for each.")]
pub struct MatchArgs {
    /// The dataset directory (not needed with --stdin and --queries)
    #[arg(short, long = "dataset", visible_alias = "out", value_name = "DATASET")]
    pub dataset: Option<PathBuf>,
    /// The query list [default: DATASET/queries/queries.json]
    #[arg(long, value_name = "FILE")]
    pub queries: Option<PathBuf>,
    /// Lowercase texts and queries before matching (MetaCLIP matches case-sensitively)
    #[arg(long)]
    pub lowercase: bool,
    /// Read captions from stdin, one per line; print each one's matched query ids
    #[arg(long)]
    pub stdin: bool,
    /// Drop texts shorter than this many characters (after trimming)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub min_length: usize,
    /// Drop texts longer than this many characters
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 1000)]
    pub max_length: usize,
    /// Keep texts that are a file name or a URL (dropped by default)
    #[arg(long)]
    pub keep_file_names: bool,
    /// Keep only pages that declare one of these languages (primary subtags,
    /// comma-separated: en,de); pages that declare none are kept
    #[arg(long, value_name = "LANGS", value_delimiter = ',')]
    pub lang: Vec<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `wit balance`
#[derive(Debug, Args)]
#[command(long_about = "\
Balance the matched pairs over queries (MetaCLIP's Algorithm 1): count the pairs \
of every query over the whole dataset, then keep each pair with probability \
1 - prod(1 - min(1, t / count(q))) over its queries q, so that head queries \
(\"the\", \"photo\") keep about t pairs and tail queries keep all of theirs. \
Random draws come from a seeded hash of the pair's uid: the result does not \
depend on how many processes ran. Writes DATASET/balanced/.")]
pub struct BalanceArgs {
    #[command(flatten)]
    pub dataset: DatasetArg,
    /// t: the number of pairs a query keeps on average (CLIP and MetaCLIP: 20,000)
    #[arg(value_parser = at_least_one::<u64>, short = 't', long, value_name = "T", default_value_t = 20_000)]
    pub max_per_query: u64,
    /// Seed of the per-pair random draws
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Memory a task of the repeat-finding reduce may use (sets the number of
    /// buckets, not the output): bytes, or with K, M, G or T (binary units)
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub memory_budget: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

/// An integer flag's parser, refusing 0 (counts, sizes and limits that
/// cannot be zero) and negative numbers; clap names the flag and the value.
fn at_least_one<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let what = "a whole number of at least 1";
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("not a whole number: must be {what}"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    T::try_from(n).map_err(|_| format!("too large: must be {what} that fits"))
}

/// A number flag's value: finite, and `ok` of it, else `what` it must be.
fn number(s: &str, ok: impl Fn(f64) -> bool, what: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && ok(v) => Ok(v),
        Ok(_) => Err(format!("must be {what}")),
        Err(_) => Err(format!("not a number: must be {what}")),
    }
}

/// A finite number above 0 (a learning rate, a timeout, a norm).
fn positive(s: &str) -> Result<f64, String> {
    number(s, |v| v > 0.0, "a finite number above 0")
}

/// A finite number of at least 0 (a delay, a weight decay).
fn non_negative(s: &str) -> Result<f64, String> {
    number(s, |v| v >= 0.0, "a finite number of at least 0")
}

/// Any finite number (a threshold that may be negative).
fn finite(s: &str) -> Result<f64, String> {
    number(s, |_| true, "a finite number")
}

/// A ratio of a longer to a shorter side: at least 1.
fn at_least_one_ratio(s: &str) -> Result<f64, String> {
    number(s, |v| v >= 1.0, "a finite number of at least 1")
}

/// `cmd` with every flag that takes a value reading `-1` or `-0.001` as
/// its value (`--lr -0.001`), so that the flag's own validation names a
/// negative number where it is not allowed, instead of clap taking it for
/// an unknown flag.
pub fn negative_numbers_are_values(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| {
        if a.get_action().takes_values() {
            a.allow_negative_numbers(true)
        } else {
            a
        }
    })
    .mut_subcommands(negative_numbers_are_values)
}

/// Parses a size in bytes: `4096`, `512K`, `64M`, `1G`, `2T` (binary units;
/// `KiB`, `MB` and the like are read the same).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().map_err(|_| {
        format!("`{s}` is not a size (a number, optionally followed by K, M, G or T)")
    })?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches('B')
        .trim_end_matches('I')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("`{s}` is out of range"))
}

/// `wit download`
#[derive(Debug, Args)]
#[command(long_about = "\
Download the images of the balanced pairs, resize and re-encode them, and write \
WebDataset tar shards (KEY.jpg, KEY.txt, KEY.json) with one Parquet row per \
pair, failures included with their reason. Obeys X-Robots-Tag opt-outs (noai, \
noimageai, ...) and robots.txt, with per-host rate limits. Writes DATASET/shards/.")]
pub struct DownloadArgs {
    #[command(flatten)]
    pub dataset: DatasetArg,
    /// Target image size in pixels
    #[arg(value_parser = at_least_one::<u32>, long, value_name = "PX", default_value_t = 256)]
    pub image_size: u32,
    /// How to fit images to the size (img2dataset's modes)
    #[arg(long, value_enum, default_value = "border")]
    pub resize_mode: ResizeModeArg,
    /// Never enlarge an image
    #[arg(long)]
    pub resize_only_if_bigger: bool,
    /// Stored format
    #[arg(long, value_enum, default_value = "jpg")]
    pub encode_format: EncodeArg,
    /// JPEG quality
    #[arg(value_parser = clap::value_parser!(u8).range(1..=100), long, value_name = "Q", default_value_t = 95)]
    pub encode_quality: u8,
    /// Refuse images whose shorter side is smaller
    #[arg(long, value_name = "PX", default_value_t = 0)]
    pub min_image_size: u32,
    /// Refuse images whose longer/shorter side ratio is larger
    #[arg(value_parser = at_least_one_ratio, long, value_name = "R")]
    pub max_aspect_ratio: Option<f64>,
    /// Refuse images with more pixels, from their header, before decoding
    #[arg(value_parser = at_least_one::<u64>, long, value_name = "N", default_value_t = 89_478_485)]
    pub max_pixels: u64,
    /// Samples per shard
    #[arg(value_parser = at_least_one::<u32>, long, value_name = "N", default_value_t = 10_000)]
    pub shard_size: u32,
    /// Seed of the shuffle that assigns pairs to shards
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Downloads in flight
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 64)]
    pub concurrency: usize,
    /// Downloads in flight per host
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 8)]
    pub per_host: usize,
    /// Minimum seconds between two requests to one host
    #[arg(value_parser = non_negative, long, value_name = "SECONDS", default_value_t = 0.0)]
    pub delay: f64,
    /// Retries of a failed download (timeouts, connection errors, 429, 5xx),
    /// with exponential backoff and jitter, or after Retry-After
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub retries: u32,
    /// Longest redirect chain followed to an image (0: none); every hop is
    /// checked as the first request is (scheme, address, robots.txt,
    /// X-Robots-Tag)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_redirects: u32,
    /// Seconds allowed for a whole download
    #[arg(value_parser = positive, long, value_name = "SECONDS", default_value_t = 20.0)]
    pub timeout: f64,
    /// Seconds allowed to connect
    #[arg(value_parser = positive, long, value_name = "SECONDS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Largest image downloaded, in bytes
    #[arg(value_parser = at_least_one::<u64>, long, value_name = "BYTES", default_value_t = 32 << 20)]
    pub max_bytes: u64,
    /// Do not read the image hosts' robots.txt (obeyed by default)
    #[arg(long)]
    pub ignore_robots: bool,
    /// X-Robots-Tag directives that opt an image out (comma-separated; empty
    /// to obey none)
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "noai,noimageai,noindex,noimageindex"
    )]
    pub disallowed_header_directives: Vec<String>,
    /// A URL or e-mail address for site owners, added to the User-Agent
    #[arg(long, value_name = "URL")]
    pub contact: Option<String>,
    /// Allow private, loopback and link-local addresses (off: such hosts are refused)
    #[arg(long)]
    pub allow_private: bool,
    /// Fetch again only the samples that failed to download in finished
    /// shards, and rewrite those shards
    #[arg(long)]
    pub retry_failed: bool,
    /// Write the plan (shards/_plan/: which pair goes to which shard, under
    /// which key) and stop
    #[arg(long)]
    pub plan_only: bool,
    /// Memory a task of the plan's external sort may use (sets the number of
    /// buckets, not the plan): bytes, or with K, M, G or T (binary units)
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub memory_budget: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `wit train --collective`
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CollectiveArg {
    /// NCCL on a GPU, Open MPI on a CPU, nothing for one rank
    Auto,
    /// Open MPI (a build with the mpi feature)
    Mpi,
    /// NCCL (a build with the cuda feature; started through MPI on many ranks)
    Nccl,
}

/// `--resize-mode`
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ResizeModeArg {
    /// Keep the decoded size
    No,
    /// Longer side to the size, centred on a black square
    Border,
    /// Shorter side to the size
    KeepRatio,
    /// Longer side to the size
    KeepRatioLargest,
    /// Shorter side to the size, then the centre square
    CenterCrop,
}

/// `--encode-format`
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EncodeArg {
    /// JPEG
    Jpg,
    /// PNG
    Png,
    /// Lossless WebP
    Webp,
}

/// `wit stats`
#[derive(Debug, Args)]
#[command(long_about = "\
Corpus statistics over every stage of a dataset: the funnel from candidates to \
stored images, the balance of pairs over queries before and after balancing, \
and the content (caption lengths, image sizes, hosts). Prints tables and writes \
a JSON file, PNG plots and an HTML report. --sql runs a query over the stage \
tables (candidates, matched, balanced, shards).")]
pub struct StatsArgs {
    #[command(flatten)]
    pub dataset: DatasetEither,
    /// Run this SQL query (Polars SQL) over the stage tables instead of the
    /// report: queries, candidates, matched, balanced, query_counts, shards
    #[arg(long, value_name = "QUERY")]
    pub sql: Option<String>,
    /// How --sql prints its result
    #[arg(long, value_enum, default_value = "table")]
    pub format: SqlFormat,
    /// Where the report goes [default: DATASET/stats]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `--format`
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SqlFormat {
    /// An aligned table
    Table,
    /// CSV with a header line
    Csv,
    /// One JSON object per line
    Json,
}

/// `wit train`
#[derive(Debug, Args)]
#[command(long_about = "\
Train a CLIP dual encoder (a ViT or modified ResNet for images, a Transformer for \
text, linear projections into one embedding space, a learned temperature) with \
the symmetric contrastive loss and AdamW with warmup and cosine decay, \
streaming DATASET/shards/.")]
pub struct TrainArgs {
    #[command(flatten)]
    pub dataset: DatasetArg,
    /// The run directory: config.json, checkpoints/, metrics.jsonl,
    /// curves.png and the final model.safetensors [default: DATASET/runs/MODEL]
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    #[arg(long, value_name = "NAME", default_value = "ViT-B-32", help = model_help())]
    pub model: String,
    /// Samples per optimiser step, per rank where many processes train
    /// (`mpirun`, `srun`; a build with the mpi feature): the global batch is
    /// this times the ranks (CLIP: 32,768)
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 256)]
    pub batch_size: usize,
    /// Micro-batches per step (gradient accumulation over the whole batch's
    /// negatives); divides --batch-size
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "K", default_value_t = 1)]
    pub accum: usize,
    /// Optimiser steps; the cosine schedule reaches zero at the last
    #[arg(value_parser = at_least_one::<u64>, long, value_name = "N", default_value_t = 1000)]
    pub steps: u64,
    /// Peak learning rate
    #[arg(value_parser = positive, long, value_name = "LR", default_value_t = 5e-4)]
    pub lr: f64,
    /// Decoupled weight decay on weights (none on gains, biases, the temperature)
    #[arg(value_parser = non_negative, long, value_name = "W", default_value_t = 0.2)]
    pub wd: f64,
    /// Warmup steps [default: the smaller of 2,000 and a tenth of --steps]
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,
    /// Clip the global gradient norm to this
    #[arg(value_parser = positive, long, value_name = "NORM")]
    pub clip_norm: Option<f64>,
    /// Seed of the initialisation, the shard order, the shuffle and the crops
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Shuffle buffer of the sample stream (samples)
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 1000)]
    pub shuffle: usize,
    /// Image preprocessing threads [default: the cores]
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N")]
    pub workers: Option<usize>,
    /// Steps between checkpoints
    #[arg(value_parser = at_least_one::<u64>, long, value_name = "N", default_value_t = 1000)]
    pub checkpoint_every: u64,
    /// Checkpoints kept (the newest)
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N", default_value_t = 2)]
    pub keep: usize,
    /// Continue the run in --run from its newest checkpoint, exactly
    #[arg(long)]
    pub resume: bool,
    /// Stop after this step with a checkpoint (a job with a time limit)
    #[arg(long, value_name = "STEP")]
    pub stop_at: Option<u64>,
    /// Where to compute: cpu, or cuda (a build with the cuda feature); on
    /// many ranks, `cuda` is each rank's own GPU (its local rank)
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: String,
    /// How the ranks exchange features and gradients: NCCL on GPUs and
    /// Open MPI on CPUs (auto), or one of them; nccl also in a world of one
    #[arg(long, value_enum, value_name = "BACKEND", default_value = "auto")]
    pub collective: CollectiveArg,
    /// Compute precision: f32, or bf16 over f32 master weights (CUDA only)
    /// [default: bf16 on cuda, f32 on cpu]
    #[arg(long, value_name = "P")]
    pub precision: Option<String>,
    /// Many ranks: each computes the loss of its own rows against every
    /// column (OpenCLIP's --local-loss) instead of the whole global loss;
    /// the same gradient, less memory and compute per rank
    #[arg(long)]
    pub local_loss: bool,
    /// Shard streams the global batch draws from in equal shares, each
    /// reading every Nth shard of an epoch; the ranks split them. Fixed for
    /// a run: keep it to resume with another number of ranks
    /// [default: the number of ranks]
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "N")]
    pub streams: Option<usize>,
    /// Samples in an epoch (OpenCLIP's name): an epoch ends after
    /// ceil(N / global batch) steps, or sooner where the shards run out;
    /// the shuffle and the crops change with the epoch [default: one pass
    /// over the shards]
    #[arg(value_parser = at_least_one::<u64>, long, value_name = "N")]
    pub train_num_samples: Option<u64>,
    /// Every shard stream draws shards with replacement (OpenCLIP's name;
    /// webdataset's ResampledShards), for shard counts that do not divide
    /// among the ranks; needs --train-num-samples
    #[arg(long, requires = "train_num_samples")]
    pub dataset_resampled: bool,
}

/// `wit eval`
#[derive(Debug, Args)]
#[command(long_about = "\
Evaluate a CLIP checkpoint: zero-shot classification (class names in prompt \
templates, ensembles averaged in embedding space), linear probes on frozen \
image features, and image-text retrieval.")]
pub struct EvalArgs {
    /// The checkpoint (safetensors: a `wit train` checkpoint or model.safetensors,
    /// or an open_clip/OpenAI state dict converted by scripts/convert-checkpoint.py)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// The model preset [default: the checkpoint's wit.model metadata]
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Labelled test set: a folder per class (DIR/CLASS/IMAGE), or WebDataset
    /// shards with a cls field; zero-shot classification and the probe's test set
    #[arg(long, value_name = "DIR|SHARD", num_args = 1..)]
    pub data: Vec<String>,
    /// Class names, one per line (line i names class i); needed for shards
    #[arg(long, value_name = "FILE")]
    pub classes: Option<PathBuf>,
    /// Training set of a linear probe on the frozen image features (same
    /// layouts; a fifth validates the regularisation)
    #[arg(long, value_name = "DIR|SHARD", num_args = 1..)]
    pub train: Vec<String>,
    /// Few-shot probe: training samples per class
    #[arg(value_parser = at_least_one::<usize>, long, value_name = "K")]
    pub shots: Option<usize>,
    /// Held-out pairs (shards with txt) for image-text retrieval recall@1/5/10
    #[arg(long, value_name = "SHARD", num_args = 1..)]
    pub retrieval: Vec<String>,
    /// The ensemble's templates, one per line with {} for the class name
    /// [default: OpenAI's 80 ImageNet templates]
    #[arg(long, value_name = "FILE")]
    pub templates: Option<PathBuf>,
    /// Where eval.json and confusion.png go [default: CHECKPOINT's folder/eval]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Where to compute: cpu, or cuda (a build with the cuda feature)
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: String,
}

/// `--model`'s help: every preset the trainer has.
fn model_help() -> String {
    format!(
        "Model preset (open_clip's names, and wit's small ones): {}; add -quickgelu for OpenAI's activation",
        wit_trainer::model::PRESETS.join(", ")
    )
}
