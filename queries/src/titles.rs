//! Wikipedia article titles by page views, as MetaCLIP picks them.
//!
//! Wikimedia page-view files have one line per (project, title):
//! `project title views bytes`, gzipped, one file per hour. MetaCLIP reads
//! the English Wikipedia rows (`en`), counts a row only if it has at least 50
//! views (its `count / 50 > 0`) and the title holds no `:` (other namespaces),
//! sums views per title over all files, and keeps titles with at least 70
//! views in all, with `_` as a space.

use std::io::{BufRead, BufReader};
use std::path::Path;

use wit_contract::{Error, IoContext, Progress, Result};

/// How page views become titles.
#[derive(Debug, Clone)]
pub struct TitleOptions {
    /// The project code of the rows to read (MetaCLIP: `en`).
    pub project: String,
    /// Rows with fewer views are ignored (MetaCLIP: 50).
    pub min_row_views: u64,
    /// Titles with fewer views in all are dropped (MetaCLIP: 70).
    pub min_views: u64,
}

/// Views summed per title.
#[derive(Debug, Default)]
pub struct TitleViews {
    views: std::collections::HashMap<String, u64>,
    /// Lines read.
    pub lines: u64,
    /// Lines that are not `project title views bytes`.
    pub malformed: u64,
}

impl TitleViews {
    /// Adds one page-view file (gzipped if its name ends in `.gz`).
    ///
    /// # Errors
    /// [`Error::BadInput`] naming the file if it cannot be read or decompressed.
    pub fn add_pageviews(&mut self, path: &Path, opts: &TitleOptions) -> Result<()> {
        let reader = open_maybe_gz(path)?;
        for line in reader.split(b'\n') {
            let line = line.map_err(|e| Error::bad_input(path, format!("cannot read: {e}")))?;
            self.lines += 1;
            let line = String::from_utf8_lossy(&line);
            let mut f = line.trim_end().split(' ');
            let (Some(project), Some(title), Some(views)) = (f.next(), f.next(), f.next()) else {
                self.malformed += 1;
                continue;
            };
            let Ok(views) = views.parse::<u64>() else {
                self.malformed += 1;
                continue;
            };
            if project != opts.project || views < opts.min_row_views || title.contains(':') {
                continue;
            }
            *self.views.entry(title.replace('_', " ")).or_default() += views;
        }
        Ok(())
    }

    /// Adds a list of titles with view counts: `title<TAB>views` per line
    /// (`_` in titles read as a space).
    ///
    /// # Errors
    /// [`Error::BadInput`] naming the file and line if a line has no count.
    pub fn add_title_list(&mut self, path: &Path) -> Result<()> {
        let reader = open_maybe_gz(path)?;
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| Error::bad_input(path, format!("cannot read: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            self.lines += 1;
            let parsed = line
                .rsplit_once('\t')
                .and_then(|(t, v)| Some((t, v.trim().parse::<u64>().ok()?)));
            let Some((title, views)) = parsed else {
                return Err(Error::bad_input(
                    path,
                    format!("line {}: expected `title<TAB>views`, got {line:?}", n + 1),
                ));
            };
            *self.views.entry(title.replace('_', " ")).or_default() += views;
        }
        Ok(())
    }

    /// Titles with at least `min_views`, by views (descending), then title.
    pub fn popular(self, min_views: u64) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .views
            .into_iter()
            .filter(|(_, n)| *n >= min_views)
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

fn open_maybe_gz(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).at(path)?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(
            BufReader::new(file),
        )))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Reads every page-view file and title list; returns the popular titles.
///
/// # Errors
/// As [`TitleViews::add_pageviews`] and [`TitleViews::add_title_list`].
pub fn popular_titles(
    pageviews: &[std::path::PathBuf],
    title_list: Option<&Path>,
    opts: &TitleOptions,
    progress: &dyn Progress,
) -> Result<Vec<(String, u64)>> {
    let mut views = TitleViews::default();
    progress.start("reading page views", pageviews.len() as u64, 0);
    for p in pageviews {
        views.add_pageviews(p, opts)?;
        progress.advance(1);
    }
    progress.finish();
    if let Some(list) = title_list {
        views.add_title_list(list)?;
    }
    if views.malformed > 0 {
        tracing::warn!(
            "page views: {} of {} lines malformed and skipped",
            views.malformed,
            views.lines
        );
    }
    Ok(views.popular(opts.min_views))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn pageviews_follow_metaclip_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pageviews-20220101-000000.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(
            b"en Hot_dog 60 0\nen Hot_dog 49 0\nen.m Hot_dog 500 0\nde Hund 900 0\n\
              en Talk:Dog 900 0\nen Cat 40 0\nen Eiffel_Tower 80 0\nbroken line\nen X notanumber 0\n",
        )
        .unwrap();
        gz.finish().unwrap();
        let opts = TitleOptions {
            project: "en".into(),
            min_row_views: 50,
            min_views: 70,
        };
        let mut v = TitleViews::default();
        v.add_pageviews(&path, &opts).unwrap();
        v.add_pageviews(&path, &opts).unwrap();
        assert_eq!(v.malformed, 4);
        // Hot dog: 60 per file (the 49-view row does not count), twice = 120.
        assert_eq!(
            v.popular(70),
            vec![
                ("Eiffel Tower".to_string(), 160),
                ("Hot dog".to_string(), 120)
            ]
        );
    }

    #[test]
    fn title_lists_need_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("titles.tsv");
        std::fs::write(&path, "New_York\t100\nParis\t5\n").unwrap();
        let mut v = TitleViews::default();
        v.add_title_list(&path).unwrap();
        assert_eq!(v.popular(70), vec![("New York".to_string(), 100)]);
        std::fs::write(&path, "New York\n").unwrap();
        let err = TitleViews::default().add_title_list(&path).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
