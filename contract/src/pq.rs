//! Reading and writing the contract's Parquet files.
//!
//! Writers use one fixed set of properties (zstd level 3, the library's default
//! row-group size), so that a part is a deterministic function of its rows:
//! rerunning a stage gives byte-identical files. Readers check the file's
//! columns against the contract schema and name the file and column on mismatch.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, IoContext, Result};

mod conform;

/// Rows per record batch when reading.
pub const READ_BATCH_ROWS: usize = 8192;

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("zstd level 3 is valid"),
        ))
        .build()
}

/// The properties of a bucketed pass's scatter file: statistics for the
/// bucket column only, so that the footer a reduce task parses once per
/// file and bucket stays small (no page indexes, no string statistics).
fn bucketed_properties(bucket_column: &str) -> WriterProperties {
    use parquet::file::properties::EnabledStatistics;
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("zstd level 3 is valid"),
        ))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(bucket_column.into(), EnabledStatistics::Chunk)
        .build()
}

/// Writes record batches of one schema to a Parquet file.
pub struct ParquetWriter {
    path: PathBuf,
    inner: ArrowWriter<File>,
    rows: u64,
}

impl ParquetWriter {
    /// Creates (truncates) `path` for rows of `schema`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be created.
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self> {
        Self::with_properties(path, schema, writer_properties())
    }

    /// Creates a bucketed pass's scatter file: rows written bucket by
    /// bucket, [`ParquetWriter::flush`] after each, read back with
    /// [`read_row_groups_where`] on `bucket_column` (UInt32), the only
    /// column with statistics.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be created.
    pub fn create_bucketed(path: &Path, schema: SchemaRef, bucket_column: &str) -> Result<Self> {
        Self::with_properties(path, schema, bucketed_properties(bucket_column))
    }

    /// Creates a file to be read back as one of many streams open at once
    /// (a k-way merge): pages of at most 1,024 rows, no dictionary and no
    /// statistics, so that a reader holds little besides its batch.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be created.
    pub fn create_streamed(path: &Path, schema: SchemaRef) -> Result<Self> {
        use parquet::file::properties::EnabledStatistics;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("zstd level 3 is valid"),
            ))
            .set_statistics_enabled(EnabledStatistics::None)
            .set_dictionary_enabled(false)
            .set_data_page_row_count_limit(1024)
            .set_write_batch_size(1024)
            .build();
        Self::with_properties(path, schema, props)
    }

    fn with_properties(path: &Path, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        let file = File::create(path).at(path)?;
        let inner =
            ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| write_error(path, e))?;
        Ok(ParquetWriter {
            path: path.to_path_buf(),
            inner,
            rows: 0,
        })
    }

    /// Appends one batch.
    ///
    /// # Errors
    /// [`Error::Write`] if the batch does not fit the schema or the write fails.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.inner
            .write(batch)
            .map_err(|e| write_error(&self.path, e))
    }

    /// Ends the current row group: the rows written since the last flush
    /// form one (or more, past the library's row-group size), so that a
    /// reader can pick them out by their statistics
    /// ([`read_row_groups_where`]).
    ///
    /// # Errors
    /// [`Error::Write`] if the write fails.
    pub fn flush(&mut self) -> Result<()> {
        self.inner.flush().map_err(|e| write_error(&self.path, e))
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the footer and flushes the file to disk.
    ///
    /// # Errors
    /// [`Error::Write`] or [`Error::Io`] if closing or syncing fails.
    pub fn finish(self) -> Result<u64> {
        let file = self
            .inner
            .into_inner()
            .map_err(|e| write_error(&self.path, e))?;
        file.sync_all().at(&self.path)?;
        Ok(self.rows)
    }
}

/// An [`Error::Write`] naming `path`, for errors of building or writing a batch.
pub fn write_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes `batches` to `path` in one go.
///
/// # Errors
/// As [`ParquetWriter`].
pub fn write_file(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<u64> {
    let mut w = ParquetWriter::create(path, schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()
}

/// Writes `batches` to `path` atomically: to a temporary name beside it,
/// flushed to disk, then renamed (for files outside a stage runner's parts).
///
/// # Errors
/// As [`ParquetWriter`]; [`Error::Io`] naming the file if the rename fails.
pub fn write_file_atomic(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<u64> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".tmp-{}-{name}", crate::runner::nonce()));
    let rows = write_file(&tmp, schema, batches)?;
    File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)?;
    if let Some(dir) = path.parent() {
        crate::manifest::sync_dir(dir);
    }
    crate::store::push(path)?;
    Ok(rows)
}

/// Opens a Parquet file of the contract and checks that it has every column of
/// `expected` with the expected type. Extra columns are allowed and not read.
///
/// # Errors
/// [`Error::BadInput`] naming the file if it is not Parquet, is truncated, or
/// lacks a column; [`Error::Io`] if it cannot be opened.
pub fn read_file(
    path: &Path,
    expected: &Schema,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    read_selected(path, expected, None, READ_BATCH_ROWS)
}

/// [`read_file`] in batches of at most `rows` rows: for readers that hold
/// many files open at once (a k-way merge).
///
/// # Errors
/// As [`read_file`].
pub fn read_file_in_batches(
    path: &Path,
    expected: &Schema,
    rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    read_selected(path, expected, None, rows.max(1))
}

/// [`read_file`], only the row groups whose UInt32 column `column` holds
/// just `value` (by the row groups' statistics): the bucket of a bucketed
/// pass's scatter file, written one bucket to a row group
/// ([`ParquetWriter::flush`]).
///
/// # Errors
/// As [`read_file`]; [`Error::BadInput`] if `column` is missing or a row
/// group has no statistics for it.
pub fn read_row_groups_where(
    path: &Path,
    expected: &Schema,
    column: &str,
    value: u32,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    read_selected(path, expected, Some((column, value)), READ_BATCH_ROWS)
}

fn read_selected(
    path: &Path,
    expected: &Schema,
    select: Option<(&str, u32)>,
    batch_rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    // In a dataset on a store, the part comes down when first read.
    crate::store::local(path)?;
    let file = File::open(path).at(path)?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::bad_input(path, format!("not a readable Parquet file: {e}")))?;
    let mut batch_rows = batch_rows;
    if let Some((column, value)) = select {
        let groups = row_groups_holding(builder.metadata(), column, value)
            .map_err(|m| Error::bad_input(path, m))?;
        // Batches no larger than the rows selected: the reader sizes its
        // buffers for a whole batch, and callers that keep many small
        // selections (a bucket from each of many files) would hold the slack.
        let rows: i64 = groups
            .iter()
            .map(|&g| builder.metadata().row_group(g).num_rows())
            .sum();
        batch_rows = batch_rows.min(rows.max(1) as usize);
        builder = builder.with_row_groups(groups);
    }
    let found = builder.schema().clone();
    // Each expected column's index in the file; `None` for a nullable
    // column the file predates (the contract grew it later): read as nulls.
    let mut indices: Vec<Option<usize>> = Vec::with_capacity(expected.fields().len());
    for field in expected.fields() {
        let Some((i, got)) = found.column_with_name(field.name()) else {
            if field.is_nullable() {
                indices.push(None);
                continue;
            }
            return Err(Error::bad_input(
                path,
                format!("missing column `{}`", field.name()),
            ));
        };
        if !conform::convertible(got.data_type(), field.data_type()) {
            return Err(Error::bad_input(
                path,
                format!(
                    "column `{}` has type {}, expected {}",
                    field.name(),
                    got.data_type(),
                    field.data_type()
                ),
            ));
        }
        indices.push(Some(i));
    }
    let present: Vec<usize> = indices.iter().flatten().copied().collect();
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), present.clone());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| Error::bad_input(path, format!("not a readable Parquet file: {e}")))?;
    // The projection keeps the file's column order; reorder to the contract's.
    let mut sorted = present;
    sorted.sort_unstable();
    let position: Vec<Option<usize>> = indices
        .iter()
        .map(|i| i.map(|i| sorted.binary_search(&i).expect("projected")))
        .collect();
    let expected = SchemaRef::new(expected.clone());
    let path = path.to_path_buf();
    Ok(reader.map(move |batch| {
        let batch = batch.map_err(|e| Error::bad_input(&path, decode_failure(&e)))?;
        // The decoder grows its buffers by doubling: give the slack back, so
        // that callers that keep what they read (a bucket from each of many
        // files) hold the data, not up to twice it.
        let (_, columns, rows) = batch.into_parts();
        let mut columns: Vec<Option<ArrayRef>> = columns.into_iter().map(Some).collect();
        let columns = position
            .iter()
            .zip(expected.fields())
            .map(|(p, field)| match p {
                Some(p) => {
                    let mut column = columns[*p].take().expect("each column once");
                    column.shrink_to_fit();
                    conform::conform(column, field.data_type()).map_err(|m| {
                        Error::bad_input(&path, format!("column `{}` {m}", field.name()))
                    })
                }
                None => Ok(arrow_array::new_null_array(field.data_type(), rows)),
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(expected.clone(), columns)
            .map_err(|e| Error::bad_input(&path, format!("columns do not fit the contract: {e}")))
    }))
}

/// The bucket of a uniform 64-bit hash among `buckets` ranges of equal
/// width, ⌊hash · buckets / 2⁶⁴⌋: the bucket column of a bucketed pass's
/// scatter file ([`ParquetWriter::create_bucketed`]). Buckets in order are
/// hashes in order.
pub fn bucket_of(hash: u64, buckets: u32) -> u32 {
    ((u128::from(hash) * u128::from(buckets)) >> 64) as u32
}

/// The row groups whose column `column` (physical INT32) has min = max = `value`.
fn row_groups_holding(
    meta: &parquet::file::metadata::ParquetMetaData,
    column: &str,
    value: u32,
) -> std::result::Result<Vec<usize>, String> {
    use parquet::file::statistics::Statistics;
    let schema = meta.file_metadata().schema_descr();
    let c = (0..schema.num_columns())
        .find(|&i| schema.column(i).name() == column)
        .ok_or_else(|| format!("missing column `{column}`"))?;
    let mut out = Vec::new();
    for (g, group) in meta.row_groups().iter().enumerate() {
        match group.column(c).statistics() {
            Some(Statistics::Int32(v)) => {
                let (lo, hi) = (v.min_opt(), v.max_opt());
                if lo.is_some_and(|&x| x as u32 > value) || hi.is_some_and(|&x| (x as u32) < value)
                {
                    continue;
                }
                if lo != hi {
                    return Err(format!(
                        "row group {g} holds several values of `{column}`; expected one per row group"
                    ));
                }
                if lo.is_some() {
                    out.push(g);
                }
            }
            _ => {
                return Err(format!(
                    "row group {g} has no 32-bit statistics for `{column}`"
                ));
            }
        }
    }
    Ok(out)
}

/// What a page that cannot be decoded is: a compression codec this build
/// lacks (LZO, which the parquet crate does not implement) named as such,
/// anything else as damage.
fn decode_failure(e: &impl std::fmt::Display) -> String {
    let e = e.to_string();
    if e.contains("Disabled feature at compile time") || e.contains("not supported") {
        format!(
            "written with a compression codec wit cannot read ({e}); rewrite it with zstd, snappy, gzip, brotli or lz4"
        )
    } else {
        format!("corrupt Parquet data: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Candidate, candidates_to_batch};
    use crate::schema;

    fn sample(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| {
                Candidate::new(
                    format!("http://a/{i}.jpg"),
                    format!("text {i}"),
                    "alt",
                    "http://a/",
                )
            })
            .collect()
    }

    #[test]
    fn write_then_read_gives_the_same_rows_and_deterministic_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let batch = candidates_to_batch(&sample(100)).unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        write_file(&a, schema::candidates(), std::slice::from_ref(&batch)).unwrap();
        write_file(&b, schema::candidates(), std::slice::from_ref(&batch)).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let back: Vec<RecordBatch> = read_file(&a, &schema::candidates())
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(back, vec![batch]);
    }

    #[test]
    fn truncated_or_foreign_files_are_bad_input_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.parquet");
        let batch = candidates_to_batch(&sample(10)).unwrap();
        write_file(&good, schema::candidates(), &[batch]).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cut = dir.path().join("cut.parquet");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_file(&cut, &schema::candidates()).err().unwrap();
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("cut.parquet"), "{err}");

        // A valid Parquet file of another stage's schema lacks columns.
        let err = read_file(&good, &schema::matched()).err().unwrap();
        assert!(
            err.to_string().contains("missing column `query_ids`"),
            "{err}"
        );
    }
}
