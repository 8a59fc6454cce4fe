//! Every image in tests/fixtures/images (vendored from ../shared/data/images,
//! licences in its NOTICE.md) goes through the decoder: PngSuite's
//! valid files are stored, its broken ones and image-rs's bad and fuzzer-found
//! files fail with a counted reason. No panic, no out-of-memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wit_shards::resize::{ImageOptions, process};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_none_or(|x| x != "txt" && x != "md") {
            out.push(p);
        }
    }
}

#[test]
fn shared_images_decode_or_fail_with_a_reason() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let mut all = Vec::new();
    files(&root, &mut all);
    all.sort();
    let opts = ImageOptions::default();
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut pngsuite_valid_failed = Vec::new();
    for path in &all {
        let bytes = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = process(&bytes, &opts);
        let key = match &result {
            Ok(p) => {
                assert_eq!((p.width, p.height), (256, 256), "{name}");
                "stored".to_string()
            }
            Err(e) => e.key().to_string(),
        };
        *by_reason.entry(key).or_default() += 1;
        let in_pngsuite = path.parent().is_some_and(|d| d.ends_with("pngsuite"));
        // PngSuite: names starting with x are corrupt on purpose.
        if let (true, Err(e)) = (
            in_pngsuite && !name.starts_with('x') && name.ends_with(".png"),
            &result,
        ) {
            pngsuite_valid_failed.push(format!("{name}: {e}"));
        }
        if name == "Bad_reallybig.bmp" {
            // Refused from its header (by the BMP decoder's own size check,
            // before ours), so nothing was allocated for it.
            let e = result.as_ref().unwrap_err();
            assert!(matches!(e.key(), "too_many_pixels" | "decode_error"), "{e}");
        }
    }
    let peak_mib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024);
    eprintln!(
        "{} files: {by_reason:?}; peak memory {peak_mib} MiB",
        all.len()
    );
    assert!(peak_mib < 1024, "peak memory {peak_mib} MiB");
    assert!(
        pngsuite_valid_failed.is_empty(),
        "valid PngSuite files failed: {pngsuite_valid_failed:?}"
    );
    assert!(by_reason.get("stored").copied().unwrap_or(0) >= 150);
    assert!(
        by_reason.len() >= 3,
        "several failure reasons: {by_reason:?}"
    );
}

/// The arithmetic-coded JPEGs and the AVIF files of tests/fixtures/spec-valid,
/// each damaged in many ways (bytes overwritten, cut short): every copy is
/// stored or fails with a counted reason, none panics.
#[test]
fn damaged_arithmetic_jpeg_and_avif_fail_with_a_reason() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec-valid");
    let mut all = Vec::new();
    files(&root, &mut all);
    all.retain(|p| p.extension().is_some_and(|x| x == "jpg" || x == "avif"));
    all.sort();
    assert!(all.len() >= 8, "{all:?}");
    let opts = ImageOptions::default();
    let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
    // SplitMix64 draws: where and what to overwrite.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for path in &all {
        let bytes = std::fs::read(path).unwrap();
        for i in 0..60 {
            let mut damaged = bytes.clone();
            if i % 3 == 0 {
                damaged.truncate((next() as usize) % bytes.len());
            } else {
                for _ in 0..1 + i % 4 {
                    let at = (next() as usize) % damaged.len();
                    damaged[at] = next() as u8;
                }
            }
            let key = match process(&damaged, &opts) {
                Ok(_) => "stored",
                Err(e) => e.key(),
            };
            *by_reason.entry(key).or_default() += 1;
        }
    }
    eprintln!("damaged copies: {by_reason:?}");
    assert!(
        by_reason.get("decode_error").copied().unwrap_or(0) > 0,
        "{by_reason:?}"
    );
}
