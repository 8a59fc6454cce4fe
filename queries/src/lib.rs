//! The `queries` stage: the list of queries that a candidate's text must contain.
//!
//! CLIP searched for (image, text) pairs whose text contains one of 500,000
//! queries; MetaCLIP published the recipe: every WordNet synset name, every
//! Wikipedia word seen at least 100 times, Wikipedia bigrams with PMI >= 30,
//! and Wikipedia titles with at least 70 views, added in that order without
//! repeats up to 500,000 entries (its Table 1: 86,654 + 251,465 + 100,646 +
//! 61,235). A query's id is its position in the list.
//!
//! # Brief overview
//! - [`wordnet::synset_names`]: WordNet synset names from the database files.
//! - [`ngrams::count`]: exact unigram counts and bigram PMI over corpora larger
//!   than memory, on every core ([`wikipedia`] reads dumps and text corpora).
//! - [`titles::popular_titles`]: titles summed over page-view files.
//! - [`assemble`]: the sources in order, deduplicated, within budgets.
//! - [`build`] runs all of it from a [`BuildSpec`]; [`import`] reads an existing
//!   list; [`write_stage`] writes `DATASET/queries/`.
#![deny(missing_docs)]

pub mod ngrams;
pub mod spill;
pub mod text;
pub mod titles;
pub mod wikipedia;
pub mod wordnet;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use wit_contract::query_list::{query_list_json, read_query_list};
use wit_contract::records::{Query, queries_to_batch};
use wit_contract::{
    Counts, Dataset, IoContext, Progress, Result, RunOptions, Stage, StageSpec, Summary, pq,
    run_stage, schema,
};

/// File name of the Parquet query table inside `DATASET/queries/`.
pub const QUERIES_PARQUET: &str = "queries.parquet";
/// File name of the JSON query list inside `DATASET/queries/`.
pub const QUERIES_JSON: &str = "queries.json";

/// Where a query came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// MetaCLIP's seed entries, the numbers "0" to "99".
    Seed,
    /// A WordNet synset name.
    Wordnet,
    /// A frequent word.
    Unigram,
    /// A bigram with high PMI.
    Bigram,
    /// A popular Wikipedia title.
    Title,
    /// An imported list.
    Import,
}

impl Source {
    /// The name written in the `source` column.
    pub fn name(self) -> &'static str {
        match self {
            Source::Seed => "seed",
            Source::Wordnet => "wordnet",
            Source::Unigram => "unigram",
            Source::Bigram => "bigram",
            Source::Title => "title",
            Source::Import => "import",
        }
    }
}

/// One source's candidate queries, best first, with their scores.
#[derive(Debug, Clone)]
pub struct SourceList {
    /// The source.
    pub source: Source,
    /// At most this many new queries from this source.
    pub max: Option<usize>,
    /// Candidates in order.
    pub entries: Vec<(String, Option<f64>)>,
}

/// True for entries MetaCLIP refuses: empty, or one punctuation character.
fn forbidden(entry: &str) -> bool {
    let mut chars = entry.chars();
    match (chars.next(), chars.next()) {
        (None, _) => true,
        (Some(c), None) => c.is_ascii_punctuation(),
        _ => false,
    }
}

/// Adds the sources in order, skipping repeats and forbidden entries, each
/// within its own budget, until `total` queries are listed. Ids are positions.
/// Counts: `added_SOURCE`, `repeats_SOURCE`, `forbidden`, and `left_out_SOURCE`
/// for candidates cut by a budget.
pub fn assemble(lists: Vec<SourceList>, total: usize) -> (Vec<Query>, Counts) {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out: Vec<Query> = Vec::new();
    let mut counts = Counts::new();
    for list in lists {
        let name = list.source.name();
        let mut added = 0usize;
        let mut iter = list.entries.into_iter();
        for (entry, score) in iter.by_ref() {
            if out.len() >= total || list.max.is_some_and(|m| added >= m) {
                *counts.entry(format!("left_out_{name}")).or_default() += 1;
                break;
            }
            if forbidden(&entry) {
                *counts.entry("forbidden".into()).or_default() += 1;
            } else if seen.contains(&entry) {
                *counts.entry(format!("repeats_{name}")).or_default() += 1;
            } else {
                seen.insert(entry.clone());
                out.push(Query {
                    id: out.len() as u32,
                    query: entry,
                    source: name.to_string(),
                    score,
                });
                added += 1;
            }
        }
        *counts.entry(format!("left_out_{name}")).or_default() += iter.count() as u64;
        counts.insert(format!("added_{name}"), added as u64);
    }
    counts.retain(|_, v| *v > 0);
    counts.insert("queries".into(), out.len() as u64);
    (out, counts)
}

/// Per-source budgets; `None` is no limit of its own.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    /// WordNet names.
    pub wordnet: Option<usize>,
    /// Unigrams.
    pub unigrams: Option<usize>,
    /// Bigrams.
    pub bigrams: Option<usize>,
    /// Titles.
    pub titles: Option<usize>,
}

/// Everything `wit queries build` needs; every source may be left out.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// WordNet 3.0 database directory.
    pub wordnet: Option<PathBuf>,
    /// Wikipedia pages-articles dumps (`.xml` or `.xml.bz2`).
    pub wikipedia: Vec<PathBuf>,
    /// Plain-text corpora (`-` for stdin).
    pub corpus: Vec<PathBuf>,
    /// Page-view files.
    pub pageviews: Vec<PathBuf>,
    /// A title list with view counts.
    pub titles: Option<PathBuf>,
    /// Query lists (as `import` reads them) added first, before every other
    /// source: a vocabulary that must be in the list whatever the budgets.
    pub include: Vec<PathBuf>,
    /// Start with MetaCLIP's seed entries "0".."99".
    pub seed_numbers: bool,
    /// Counting thresholds and resources.
    pub ngrams: ngrams::NgramOptions,
    /// Page-view thresholds.
    pub title_options: titles::TitleOptions,
    /// Queries in all (MetaCLIP: 500,000).
    pub max_queries: usize,
    /// Per-source budgets.
    pub budgets: Budgets,
}

impl BuildSpec {
    /// The inputs, for the manifest.
    pub fn inputs(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .include
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        v.extend(self.wordnet.iter().map(|p| p.display().to_string()));
        for p in self
            .wikipedia
            .iter()
            .chain(&self.corpus)
            .chain(&self.pageviews)
            .chain(&self.titles)
        {
            v.push(p.display().to_string());
        }
        v
    }

    /// Every parameter that affects the list, with the inputs' sizes, as JSON.
    pub fn params(&self) -> serde_json::Value {
        let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let files = |v: &[PathBuf]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|p| serde_json::json!([p.display().to_string(), size(p)]))
                .collect()
        };
        serde_json::json!({
            "include": files(&self.include),
            "wordnet": self.wordnet.as_ref().map(|p| p.display().to_string()),
            "wikipedia": files(&self.wikipedia),
            "corpus": files(&self.corpus),
            "pageviews": files(&self.pageviews),
            "titles": self.titles.as_ref().map(|p| files(std::slice::from_ref(p))),
            "seed_numbers": self.seed_numbers,
            "min_count": self.ngrams.min_count,
            "min_pmi": self.ngrams.min_pmi,
            "bigram_min_count": self.ngrams.bigram_min_count,
            "project": self.title_options.project,
            "min_row_views": self.title_options.min_row_views,
            "min_views": self.title_options.min_views,
            "max_queries": self.max_queries,
            "max_wordnet": self.budgets.wordnet,
            "max_unigrams": self.budgets.unigrams,
            "max_bigrams": self.budgets.bigrams,
            "max_titles": self.budgets.titles,
        })
    }
}

/// Builds the query list: reads every source given, counts, and assembles.
/// Counting spills to a scratch directory under `scratch_parent`, removed at
/// the end (and by the next run if this one is killed).
///
/// # Errors
/// [`wit_contract::Error::BadInput`] naming an input that is missing or
/// malformed; [`wit_contract::Error::Io`] for the scratch directory.
pub fn build(
    spec: &BuildSpec,
    scratch_parent: &Path,
    progress: &dyn Progress,
) -> Result<(Vec<Query>, Counts)> {
    let mut lists = Vec::new();
    let mut counts = Counts::new();
    for path in &spec.include {
        lists.push(SourceList {
            source: Source::Import,
            max: None,
            entries: read_query_list(path)?
                .into_iter()
                .map(|q| (q, None))
                .collect(),
        });
    }
    if spec.seed_numbers {
        lists.push(SourceList {
            source: Source::Seed,
            max: None,
            entries: (0..100).map(|i| (i.to_string(), None)).collect(),
        });
    }
    if let Some(dir) = &spec.wordnet {
        let wn = wordnet::synset_names(dir)?;
        tracing::info!(
            "wordnet: {} synsets, {} distinct names",
            wn.synsets,
            wn.names.len()
        );
        counts.insert("wordnet_synsets".into(), wn.synsets);
        lists.push(SourceList {
            source: Source::Wordnet,
            max: spec.budgets.wordnet,
            entries: wn.names.into_iter().map(|n| (n, None)).collect(),
        });
    }
    if !spec.wikipedia.is_empty() || !spec.corpus.is_empty() {
        for p in spec
            .wikipedia
            .iter()
            .chain(spec.corpus.iter().filter(|p| p.as_os_str() != "-"))
        {
            if !p.is_file() {
                return Err(wit_contract::Error::bad_input(p, "not found"));
            }
        }
        std::fs::create_dir_all(scratch_parent).at(scratch_parent)?;
        remove_stale_scratch(scratch_parent)?;
        let scratch = scratch_parent.join(format!(".tmp-count-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).at(&scratch)?;
        let result = ngrams::count(&spec.ngrams, &scratch, progress, |feed| {
            for dump in &spec.wikipedia {
                wikipedia::feed_dump(dump, feed, progress)?;
                progress.finish();
            }
            for file in &spec.corpus {
                wikipedia::feed_corpus(file, feed, progress)?;
                progress.finish();
            }
            Ok(())
        });
        let _ = std::fs::remove_dir_all(&scratch);
        let c = result?;
        tracing::info!(
            "counted {} tokens ({} pages): {} distinct words, {} distinct bigrams, {} runs spilled; {} words >= {}, {} bigrams with PMI >= {}",
            c.tokens,
            c.pages,
            c.distinct_unigrams,
            c.distinct_bigrams,
            c.runs,
            c.unigrams.len(),
            spec.ngrams.min_count,
            c.bigrams.len(),
            spec.ngrams.min_pmi
        );
        for (k, v) in [
            ("tokens", c.tokens),
            ("pages", c.pages),
            ("pages_skipped", c.pages_skipped),
            ("distinct_unigrams", c.distinct_unigrams),
            ("distinct_bigrams", c.distinct_bigrams),
        ] {
            counts.insert(k.into(), v);
        }
        lists.push(SourceList {
            source: Source::Unigram,
            max: spec.budgets.unigrams,
            entries: c
                .unigrams
                .into_iter()
                .map(|(w, n)| (w, Some(n as f64)))
                .collect(),
        });
        lists.push(SourceList {
            source: Source::Bigram,
            max: spec.budgets.bigrams,
            entries: c.bigrams.into_iter().map(|(w, p)| (w, Some(p))).collect(),
        });
    }
    if !spec.pageviews.is_empty() || spec.titles.is_some() {
        let titles = titles::popular_titles(
            &spec.pageviews,
            spec.titles.as_deref(),
            &spec.title_options,
            progress,
        )?;
        lists.push(SourceList {
            source: Source::Title,
            max: spec.budgets.titles,
            entries: titles
                .into_iter()
                .map(|(t, n)| (t, Some(n as f64)))
                .collect(),
        });
    }
    if lists.iter().all(|l| l.source == Source::Seed) {
        return Err(wit_contract::Error::Usage(
            "give at least one source: --wordnet, --wikipedia, --corpus, --pageviews or --titles"
                .into(),
        ));
    }
    let (queries, assembled) = assemble(lists, spec.max_queries);
    wit_contract::manifest::add_counts(&mut counts, &assembled);
    Ok((queries, counts))
}

fn remove_stale_scratch(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp-count-")
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// Reads an existing query list (a JSON array of strings, or one query per
/// line) and keeps it as it is: ids are positions, source `import`.
/// Repeated queries are kept (ids must stay positions in the source list) and
/// reported in the log.
///
/// # Errors
/// [`wit_contract::Error::BadInput`] naming the file if it cannot be parsed.
pub fn import(path: &Path) -> Result<Vec<Query>> {
    let list = read_query_list(path)?;
    let mut seen = HashSet::with_capacity(list.len());
    let repeats = list.iter().filter(|q| !seen.insert(q.as_str())).count();
    if repeats > 0 {
        tracing::warn!(
            "{}: {repeats} queries occur more than once; each keeps its own id",
            path.display()
        );
    }
    Ok(list
        .into_iter()
        .enumerate()
        .map(|(i, query)| Query {
            id: i as u32,
            query,
            source: Source::Import.name().into(),
            score: None,
        })
        .collect())
}

/// The stage spec of the queries stage (one part).
pub fn stage_spec(dataset: &Dataset, inputs: Vec<String>, params: serde_json::Value) -> StageSpec {
    StageSpec {
        stage: Stage::Queries,
        dir: dataset.stage_dir(Stage::Queries),
        parts: 1,
        inputs,
        params,
    }
}

/// Writes the query list as the `queries` stage of `spec`; `extra` counts
/// (from building) go into the manifest beside the per-source counts.
///
/// # Errors
/// As [`run_stage`].
pub fn write_stage(
    spec: &StageSpec,
    queries: &[Query],
    extra: &Counts,
    opts: &RunOptions<'_>,
) -> Result<Summary> {
    run_stage(spec, opts, |ctx| {
        let batch = queries_to_batch(queries)?;
        pq::write_file(&ctx.output(QUERIES_PARQUET), schema::queries(), &[batch])?;
        let strings: Vec<String> = queries.iter().map(|q| q.query.clone()).collect();
        let json = ctx.output(QUERIES_JSON);
        std::fs::write(&json, query_list_json(&strings)).at(&json)?;
        let mut counts = extra.clone();
        counts.insert("queries".into(), queries.len() as u64);
        for q in queries {
            *counts.entry(format!("source_{}", q.source)).or_default() += 1;
        }
        Ok(counts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wit_contract::NoProgress;

    fn list(source: Source, max: Option<usize>, entries: &[&str]) -> SourceList {
        SourceList {
            source,
            max,
            entries: entries.iter().map(|e| (e.to_string(), None)).collect(),
        }
    }

    #[test]
    fn assemble_keeps_order_dedups_and_respects_budgets() {
        let (q, counts) = assemble(
            vec![
                list(Source::Wordnet, None, &["dog", "cat", "", "dog", "."]),
                list(Source::Unigram, Some(2), &["cat", "The", "the", "a.b"]),
                list(Source::Bigram, None, &["hot dog", "red car"]),
                list(Source::Title, None, &["Paris"]),
            ],
            5,
        );
        let names: Vec<&str> = q.iter().map(|q| q.query.as_str()).collect();
        assert_eq!(names, vec!["dog", "cat", "The", "the", "hot dog"]);
        assert_eq!(
            q.iter().map(|q| q.id).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(q[2].source, "unigram");
        assert_eq!(counts["forbidden"], 2);
        assert_eq!(counts["repeats_wordnet"], 1);
        assert_eq!(counts["repeats_unigram"], 1);
        assert_eq!(counts["left_out_unigram"], 1);
        assert_eq!(counts["left_out_bigram"], 1);
        assert_eq!(counts["left_out_title"], 1);
        assert_eq!(counts["added_bigram"], 1);
        assert!(!counts.contains_key("added_title"));
    }

    #[test]
    fn import_keeps_order_and_repeats_and_the_stage_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        std::fs::write(&path, "dog\ncat\ndog\nhot dog\n").unwrap();
        let queries = import(&path).unwrap();
        assert_eq!(queries.len(), 4);
        assert_eq!((queries[2].id, queries[2].query.as_str()), (2, "dog"));
        let dataset = Dataset::new(dir.path().join("ds"));
        let opts = RunOptions {
            share: None,
            jobs: 1,
            force: false,
            progress: &NoProgress,
        };
        let spec = stage_spec(&dataset, vec![], serde_json::json!({}));
        let sum = write_stage(&spec, &queries, &Counts::new(), &opts).unwrap();
        assert!(sum.complete);
        assert_eq!(sum.counts["queries"], 4);
        let back = read_query_list(&dataset.stage_dir(Stage::Queries).join(QUERIES_JSON)).unwrap();
        assert_eq!(back, vec!["dog", "cat", "dog", "hot dog"]);
    }
}
