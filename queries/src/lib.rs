//! The `queries` stage: the list of queries that a candidate's text must contain.
//!
//! CLIP searched for (image, text) pairs whose text contains one of 500,000
//! queries; MetaCLIP published the recipe (WordNet synsets, Wikipedia unigrams
//! and bigrams, popular article titles). This crate writes the list as
//! `DATASET/queries/queries.parquet` (id, query, source, score) and
//! `queries.json` (a JSON array in id order, MetaCLIP's format).
//!
//! Today it imports an existing list ([`import`]); building one from WordNet
//! and Wikipedia is the subject of a later change.
#![deny(missing_docs)]

use std::collections::HashSet;
use std::path::Path;

use wit_contract::query_list::{query_list_json, read_query_list};
use wit_contract::records::{Query, queries_to_batch};
use wit_contract::{Dataset, Result, RunOptions, Stage, StageSpec, Summary, pq, run_stage, schema};

/// File name of the Parquet query table inside `DATASET/queries/`.
pub const QUERIES_PARQUET: &str = "queries.parquet";
/// File name of the JSON query list inside `DATASET/queries/`.
pub const QUERIES_JSON: &str = "queries.json";

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
            source: "import".into(),
            score: None,
        })
        .collect())
}

/// Writes the query list into `dataset` as the `queries` stage (one part).
///
/// # Errors
/// As [`run_stage`].
pub fn write_stage(
    dataset: &Dataset,
    queries: &[Query],
    inputs: Vec<String>,
    params: serde_json::Value,
    opts: &RunOptions<'_>,
) -> Result<Summary> {
    let spec = StageSpec {
        stage: Stage::Queries,
        dir: dataset.stage_dir(Stage::Queries),
        parts: 1,
        inputs,
        params,
    };
    run_stage(&spec, opts, |ctx| {
        let batch = queries_to_batch(queries)?;
        pq::write_file(&ctx.output(QUERIES_PARQUET), schema::queries(), &[batch])?;
        let strings: Vec<String> = queries.iter().map(|q| q.query.clone()).collect();
        let json = ctx.output(QUERIES_JSON);
        std::fs::write(&json, query_list_json(&strings))
            .map_err(|e| wit_contract::Error::io(&json, e))?;
        let mut counts = wit_contract::Counts::new();
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

    #[test]
    fn import_keeps_order_and_repeats_and_the_stage_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "dog\ncat\ndog\nhot dog\n").unwrap();
        let queries = import(&list).unwrap();
        assert_eq!(queries.len(), 4);
        assert_eq!((queries[2].id, queries[2].query.as_str()), (2, "dog"));
        let dataset = Dataset::new(dir.path().join("ds"));
        let opts = RunOptions {
            share: None,
            jobs: 1,
            force: false,
            progress: &NoProgress,
        };
        let sum = write_stage(&dataset, &queries, vec![], serde_json::json!({}), &opts).unwrap();
        assert!(sum.complete);
        assert_eq!(sum.counts["queries"], 4);
        let back = read_query_list(&dataset.stage_dir(Stage::Queries).join(QUERIES_JSON)).unwrap();
        assert_eq!(back, vec!["dog", "cat", "dog", "hot dog"]);
    }
}
