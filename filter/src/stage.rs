//! `wit match` over a dataset: `candidates/` in, `matched/` out, part by part.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, UInt32Builder};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, UInt64Array};
use wit_contract::layout::part_file_name;
use wit_contract::query_list::fingerprint;
use wit_contract::records::string_column;
use wit_contract::schema::{self, col};
use wit_contract::{
    Counts, Dataset, Error, Manifest, Result, RunOptions, Stage, StageSpec, Summary, pq, run_stage,
};

use crate::matcher::{Case, QueryMatcher};
use crate::text::TextFilter;

/// Runs the match stage on `dataset` with the query list `queries`
/// (read from `queries_path`, recorded in the manifest).
///
/// Each part of `candidates/` gives the part of the same number in `matched/`:
/// the rows that pass `filter`, appear first in the part, and contain at
/// least one query, with `query_ids` added; and the part's query counts in
/// `matched/_query_counts/`.
///
/// # Errors
/// [`Error::BadInput`] if `candidates/` is missing or incomplete; otherwise as [`run_stage`].
pub fn run_match(
    dataset: &Dataset,
    queries: &[String],
    queries_path: &Path,
    case: Case,
    filter: &TextFilter,
    opts: &RunOptions<'_>,
) -> Result<Summary> {
    let upstream = Manifest::read(dataset.root(), Stage::Candidates)?;
    let clock = std::time::Instant::now();
    let matcher = QueryMatcher::new(queries, case)?;
    tracing::info!(
        "matched: matcher over {} queries built in {:.2} s, {:.1} MB, shared by all threads",
        queries.len(),
        clock.elapsed().as_secs_f64(),
        matcher.memory_usage() as f64 / 1e6
    );
    let input_dir = dataset.stage_dir(Stage::Candidates);
    let spec = StageSpec {
        stage: Stage::Matched,
        dir: dataset.stage_dir(Stage::Matched),
        parts: upstream.parts,
        inputs: vec![
            input_dir.display().to_string(),
            queries_path.display().to_string(),
        ],
        params: serde_json::json!({
            "case": match case { Case::Sensitive => "sensitive", Case::Fold => "fold" },
            "queries": queries.len(),
            "queries_fingerprint": fingerprint(queries),
            "candidates_params_hash": upstream.params_hash,
            "text_filter": filter.params(),
        }),
    };
    run_stage(&spec, opts, |ctx| {
        let name = part_file_name(ctx.part());
        let input = input_dir.join(&name);
        let output = ctx.output(&name);
        let counts_output = ctx.output(&format!("{QUERY_COUNTS_DIR}/{name}"));
        match_part(&matcher, filter, &input, &output, &counts_output)
    })
}

/// The subdirectory of `matched/` holding each part's query counts.
pub const QUERY_COUNTS_DIR: &str = "_query_counts";

/// Filters and matches one Parquet part of candidates into one Parquet part
/// of matched pairs, and writes the part's query counts to `counts_output`.
///
/// # Errors
/// [`Error::BadInput`] if `input` is missing or does not follow the candidates
/// schema; [`Error::Write`]/[`Error::Io`] if the output cannot be written.
pub fn match_part(
    matcher: &QueryMatcher,
    filter: &TextFilter,
    input: &Path,
    output: &Path,
    counts_output: &Path,
) -> Result<Counts> {
    // A dataset on a store: the part comes down now.
    wit_contract::store::local(input)?;
    if !input.is_file() {
        return Err(Error::bad_input(
            input,
            "listed by the candidates manifest but missing",
        ));
    }
    let mut counts = Counts::new();
    let mut bump = |k: &str| *counts.entry(k.to_string()).or_default() += 1;
    let mut writer = pq::ParquetWriter::create(output, schema::matched())?;
    let (mut candidates, mut matches) = (0u64, 0u64);
    let mut seen: HashSet<String> = HashSet::new();
    let mut per_query: HashMap<u32, u64> = HashMap::new();
    for batch in pq::read_file(input, &schema::candidates())? {
        let batch = batch?;
        let texts = string_column(&batch, col::TEXT);
        let uids = string_column(&batch, col::UID);
        let langs = string_column(&batch, col::PAGE_LANG);
        let mut keep = vec![false; batch.num_rows()];
        let mut lists = ListBuilder::new(UInt32Builder::new()).with_field(schema::query_ids_item());
        // The rows that pass the filters, then all of their texts matched at once.
        let mut eligible = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let lang = langs.is_valid(row).then(|| langs.value(row));
            if let Some(why) = filter.check(texts.value(row), lang) {
                bump(why.key());
            } else if !seen.insert(uids.value(row).to_string()) {
                bump("duplicates_in_part");
            } else {
                eligible.push(row);
            }
        }
        matcher.find_all(eligible.iter().map(|&row| texts.value(row)), |i, ids| {
            if ids.is_empty() {
                bump("no_match");
            } else {
                keep[eligible[i]] = true;
                lists.values().append_slice(ids);
                lists.append(true);
                matches += ids.len() as u64;
                for &id in ids {
                    *per_query.entry(id).or_default() += 1;
                }
            }
        });
        candidates += batch.num_rows() as u64;
        let kept = arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(|e| Error::bad_input(input, e.to_string()))?;
        let mut columns: Vec<ArrayRef> = kept.columns().to_vec();
        columns.push(Arc::new(lists.finish()));
        let out = RecordBatch::try_new(schema::matched(), columns).map_err(|e| Error::Write {
            path: output.to_path_buf(),
            message: e.to_string(),
        })?;
        writer.write(&out)?;
    }
    let matched = writer.finish()?;
    let mut per_query: Vec<(u32, u64)> = per_query.into_iter().collect();
    per_query.sort_unstable();
    let batch = RecordBatch::try_new(
        schema::query_counts(),
        vec![
            Arc::new(UInt32Array::from_iter_values(per_query.iter().map(|p| p.0))),
            Arc::new(UInt64Array::from_iter_values(per_query.iter().map(|p| p.1))),
        ],
    )
    .map_err(|e| Error::Write {
        path: counts_output.to_path_buf(),
        message: e.to_string(),
    })?;
    pq::write_file(counts_output, schema::query_counts(), &[batch])?;
    counts.insert("candidates".into(), candidates);
    counts.insert("matched".into(), matched);
    counts.insert("query_matches".into(), matches);
    counts.entry("no_match".into()).or_default();
    Ok(counts)
}

/// Reads captions one per line from `input` and writes, per line, the JSON
/// array of the ids of the queries it contains (sorted), for spot checks.
///
/// # Errors
/// The I/O error of `input` or `output` (a closed pipe included).
pub fn match_lines(
    matcher: &QueryMatcher,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<u64> {
    let (mut buf, mut ids) = (String::new(), Vec::new());
    let mut lines = 0;
    for line in input.lines() {
        let line = line?;
        matcher.find(&line, &mut buf, &mut ids);
        output.write_all(b"[")?;
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                output.write_all(b",")?;
            }
            write!(output, "{id}")?;
        }
        output.write_all(b"]\n")?;
        lines += 1;
    }
    output.flush()?;
    Ok(lines)
}
