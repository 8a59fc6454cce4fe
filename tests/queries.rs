//! `wit queries build` on real inputs: Debian's WordNet, Wikipedia-format
//! dumps (plain, bzip2, multistream bzip2) and page-view files.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::util::*;

/// Debian's `wordnet-base`, or `None` (with a message).
fn wordnet_base() -> Option<PathBuf> {
    debian_package("wordnet-base", "usr/share/wordnet/data.noun")
        .map(|root| root.join("usr/share/wordnet"))
}

fn query_list(ds: &Path) -> Vec<String> {
    serde_json::from_slice(&std::fs::read(ds.join("queries/queries.json")).unwrap()).unwrap()
}

#[test]
fn debian_wordnet_gives_metaclips_86654_entries() {
    let Some(wordnet) = wordnet_base() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    ok(&run(&[
        "queries",
        "build",
        "--wordnet",
        wordnet.to_str().unwrap(),
        "-d",
        ds.to_str().unwrap(),
    ]));
    let list = query_list(&ds);
    // MetaCLIP's Table 1: 86,654 WordNet entries (its seed numbers "0".."99"
    // plus 86,554 distinct synset names).
    assert_eq!(list.len(), 86_654);
    assert_eq!(list[..3], ["0", "1", "2"]);
    assert_eq!(list[100], "entity");
    assert!(list.contains(&"physical entity".to_string()));
    assert!(list.contains(&"new york".to_string()));
    let m = manifest(&ds, "queries");
    assert_eq!(m["counts"]["wordnet_synsets"], 117_659);
    assert_eq!(m["counts"]["source_wordnet"], 86_554);
}

/// A generated wiki: pages of known plain words wrapped in markup that adds
/// no tokens, plus pages that must not be counted.
struct Wiki {
    xml_pages: Vec<String>,
    counts: BTreeMap<String, u64>,
}

fn wiki(pages: usize) -> Wiki {
    let vocab: Vec<String> = (0..400).map(|i| format!("w{i}")).collect();
    let mut rng = Lcg(9);
    let mut counts = BTreeMap::new();
    let mut xml_pages = Vec::new();
    for p in 0..pages {
        let mut text = String::new();
        for j in 0..60 {
            // Zipf-like: low ids far more often.
            let r = rng.next() as usize;
            let w = &vocab[(r % 400) * (r % 400) / 400];
            *counts.entry(w.clone()).or_default() += 1;
            let piece = match j % 7 {
                0 => format!("'''{w}'''"),
                1 => format!("[[{w}]]"),
                2 => format!("[[Some target|{w}]]"),
                3 => format!("{w}<ref>refonlyword {{{{cite|x}}}}</ref>"),
                4 => format!("{{{{Infobox|templateonlyword}}}} {w}"),
                5 => format!("\n== {w} ==\n"),
                _ => w.clone(),
            };
            text.push_str(&piece);
            text.push(' ');
        }
        text.push_str("[[File:X.jpg|thumb|fileonlyword]] [[Category:catonlyword]]");
        let escaped = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        xml_pages.push(format!(
            "  <page>\n    <title>P{p}</title>\n    <ns>0</ns>\n    <id>{p}</id>\n    <revision><text bytes=\"{}\" xml:space=\"preserve\">{escaped}</text></revision>\n  </page>\n",
            text.len()
        ));
        if p % 10 == 0 {
            xml_pages.push(format!(
                "  <page>\n    <title>Talk:P{p}</title>\n    <ns>1</ns>\n    <revision><text>talkonlyword talkonlyword</text></revision>\n  </page>\n  <page>\n    <title>R{p}</title>\n    <ns>0</ns>\n    <redirect title=\"P{p}\" />\n    <revision><text>#REDIRECT [[redirectonlyword]]</text></revision>\n  </page>\n"
            ));
        }
    }
    Wiki { xml_pages, counts }
}

const HEADER: &str = "<mediawiki xmlns=\"http://www.mediawiki.org/xml/export-0.10/\">\n  <siteinfo><sitename>Wikipedia</sitename></siteinfo>\n";
const FOOTER: &str = "</mediawiki>\n";

fn bz2(data: &[u8]) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(9));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn wikipedia_dumps_plain_bzip2_and_multistream_agree_with_known_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let w = wiki(2000);
    let whole = format!("{HEADER}{}{FOOTER}", w.xml_pages.concat());
    let plain = tmp.path().join("enwiki-pages-articles.xml");
    std::fs::write(&plain, &whole).unwrap();
    let single = tmp.path().join("enwiki-pages-articles.xml.bz2");
    std::fs::write(&single, bz2(whole.as_bytes())).unwrap();
    // Multistream as Wikimedia writes it: the header, then 100 pages per stream, then the footer.
    let multi = tmp.path().join("enwiki-pages-articles-multistream.xml.bz2");
    let mut bytes = bz2(HEADER.as_bytes());
    for chunk in w.xml_pages.chunks(100) {
        bytes.extend(bz2(chunk.concat().as_bytes()));
    }
    bytes.extend(bz2(FOOTER.as_bytes()));
    std::fs::write(&multi, bytes).unwrap();

    let mut lists = Vec::new();
    for (name, dump) in [("plain", &plain), ("single", &single), ("multi", &multi)] {
        let ds = tmp.path().join(name);
        let o = run(&[
            "queries",
            "build",
            "--wikipedia",
            dump.to_str().unwrap(),
            "-d",
            ds.to_str().unwrap(),
            "--min-count",
            "20",
            "--min-pmi",
            "8",
            "--no-seed-numbers",
            "--jobs",
            "2",
            "--memory-mib",
            "1",
        ]);
        ok(&o);
        let m = manifest(&ds, "queries");
        assert_eq!(m["counts"]["pages"], 2000, "{name}");
        assert_eq!(m["counts"]["pages_skipped"], 400, "{name}");
        assert_eq!(
            m["counts"]["tokens"],
            w.counts.values().sum::<u64>(),
            "{name}"
        );
        lists.push((
            name,
            query_list(&ds),
            std::fs::read(ds.join("queries/queries.parquet")).unwrap(),
        ));
    }
    assert_eq!(lists[0].1, lists[1].1);
    assert_eq!(lists[0].1, lists[2].1);
    assert_eq!(
        lists[0].2, lists[2].2,
        "queries.parquet differs between plain and multistream"
    );

    // Unigrams are exactly the words counted 20 times or more, by count, with their counts.
    let ds = tmp.path().join("multi");
    let script_free: Vec<(String, u64)> = {
        let mut v: Vec<(String, u64)> = w
            .counts
            .iter()
            .filter(|(_, c)| **c >= 20)
            .map(|(k, c)| (k.clone(), *c))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    };
    let list = query_list(&ds);
    let unigrams: Vec<&String> = list.iter().take(script_free.len()).collect();
    assert_eq!(
        unigrams,
        script_free.iter().map(|(w, _)| w).collect::<Vec<_>>()
    );
    for junk in [
        "refonlyword",
        "templateonlyword",
        "fileonlyword",
        "catonlyword",
        "talkonlyword",
        "redirectonlyword",
        "Some",
        "target",
    ] {
        assert!(
            !list.iter().any(|q| q.split(' ').any(|t| t == junk)),
            "{junk} was counted"
        );
    }
    let m = manifest(&ds, "queries");
    assert_eq!(m["counts"]["source_unigram"], script_free.len() as u64);
}

#[test]
fn sources_in_order_with_budgets_and_page_views() {
    let tmp = tempfile::tempdir().unwrap();
    let wn = tmp.path().join("wordnet");
    std::fs::create_dir_all(&wn).unwrap();
    let line = |o: u32, w: &str| format!("{o:08} 03 n 01 {w} 0 000 | gloss\n");
    std::fs::write(
        wn.join("data.noun"),
        format!("{}{}", line(1, "dog"), line(2, "hot_dog")),
    )
    .unwrap();
    for f in ["data.verb", "data.adj", "data.adv"] {
        std::fs::write(wn.join(f), line(3, "run")).unwrap();
    }
    let corpus = tmp.path().join("corpus.txt");
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "the dog likes the park . run run zebra{} \n",
            i % 2
        ));
    }
    text.push_str("rare pair\n");
    std::fs::write(&corpus, &text).unwrap();
    let pv = tmp.path().join("pageviews-20220101-000000.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&pv).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(b"en Eiffel_Tower 90 0\nen Hot_dog 80 0\nen Dog 75 0\nen Talk:Dog 900 0\nde Hund 900 0\nen Small 10 0\n").unwrap();
    gz.finish().unwrap();

    let ds = tmp.path().join("ds");
    let build = |extra: &[&str]| {
        let mut args = vec![
            "queries",
            "build",
            "--wordnet",
            wn.to_str().unwrap(),
            "--corpus",
            corpus.to_str().unwrap(),
            "--pageviews",
            pv.to_str().unwrap(),
            "-d",
            ds.to_str().unwrap(),
            "--min-count",
            "50",
            "--min-pmi",
            "8",
            "--no-seed-numbers",
            "--force",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    ok(&build(&[]));
    let list = query_list(&ds);
    // WordNet (file order), words >= 50 by count, bigrams by PMI, titles by views.
    assert_eq!(
        list,
        [
            "dog",
            "hot dog",
            "run",
            "the",
            "likes",
            "park",
            "rare pair",
            "Eiffel Tower",
            "Hot dog",
            "Dog"
        ]
    );
    ok(&build(&["--max-queries", "6", "--max-wordnet", "2"]));
    assert_eq!(
        query_list(&ds),
        ["dog", "hot dog", "run", "the", "likes", "park"]
    );
    let m = manifest(&ds, "queries");
    assert_eq!(m["counts"]["left_out_wordnet"], 1);

    // An included list comes first, outside the budgets; its repeats in later
    // sources are left out.
    let include = tmp.path().join("vocabulary.txt");
    std::fs::write(&include, "red\nhot dog\non a beach\n").unwrap();
    ok(&build(&[
        "--include",
        include.to_str().unwrap(),
        "--max-queries",
        "6",
    ]));
    assert_eq!(
        query_list(&ds),
        ["red", "hot dog", "on a beach", "dog", "run", "the"]
    );
    assert_eq!(manifest(&ds, "queries")["counts"]["source_import"], 3);

    // A rerun with the same inputs does nothing; without any source is bad usage.
    let again = run(&[
        "queries",
        "build",
        "--wordnet",
        wn.to_str().unwrap(),
        "-d",
        tmp.path().join("ds2").to_str().unwrap(),
    ]);
    ok(&again);
    let again = run(&[
        "queries",
        "build",
        "--wordnet",
        wn.to_str().unwrap(),
        "-d",
        tmp.path().join("ds2").to_str().unwrap(),
    ]);
    ok(&again);
    assert!(
        stderr(&again).contains("already complete"),
        "{}",
        stderr(&again)
    );
    let none = run(&[
        "queries",
        "build",
        "-d",
        tmp.path().join("ds3").to_str().unwrap(),
    ]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
}
