//! What a fetching stage (crawl, download) says at its end when all, or
//! nearly all, of its work failed for one reason: the reason, how many, and
//! the remedy. A run in which nothing could be fetched fails (exit 1) even
//! though its output is complete, so that a script does not go on with an
//! empty stage; one in which most failed for one reason warns.

use anyhow::{Result, bail};
use wit_contract::Counts;

/// The share of the work one reason must account for to be worth a warning.
const NEARLY_ALL: f64 = 0.9;

/// How a stage's counters name its work, its successes and its failures.
pub struct Work<'a> {
    /// The stage, as the log names it (`crawl`, `shards`).
    pub stage: &'a str,
    /// What one unit of work is (`URLs`, `images`).
    pub unit: &'a str,
    /// The counters whose sum is the units of work finished, failed or not.
    pub total: &'a [&'a str],
    /// The counter of the units that succeeded.
    pub ok: &'a str,
    /// The prefix of the failure counters (`fail_`, `error_`).
    pub prefix: &'a str,
    /// The flags that rerun the failed work (`--force`, `--retry-failed`).
    pub rerun: &'a str,
}

/// The failure reason with the largest count (the shortest name on a tie,
/// so that `error_robots_unreachable` wins over its own cause
/// `error_robots_unreachable_connect`).
fn dominant<'c>(counts: &'c Counts, prefix: &str) -> Option<(&'c str, u64)> {
    counts
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?, *v)))
        .filter(|(_, v)| *v > 0)
        .min_by(|a, b| b.1.cmp(&a.1).then(a.0.len().cmp(&b.0.len())))
}

/// Why most fetches failed for `reason`, and what to do.
fn remedy(reason: &str, rerun: &str) -> String {
    match reason {
        "refused_address" => format!(
            "the hosts are at private, loopback or link-local addresses, which wit refuses \
             unless told: rerun with --allow-private {rerun}"
        ),
        "dns" => format!(
            "the host names did not resolve: check the URLs and this machine's DNS, then rerun with {rerun}"
        ),
        "connect" | "timeout" | "network" | "robots_unreachable" => format!(
            "the hosts did not answer: check that they are up and reachable from here, then rerun with {rerun}"
        ),
        "robots" => "robots.txt disallows them".to_string(),
        _ => "the counts above say more".to_string(),
    }
}

/// Fails if no unit of `work` succeeded, warns if one reason accounts for
/// nearly all of it.
///
/// # Errors
/// Nothing succeeded: the reason and the remedy, on one line.
pub fn check(counts: &Counts, work: &Work<'_>) -> Result<()> {
    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
    let total: u64 = work.total.iter().map(|k| get(k)).sum();
    if total == 0 {
        return Ok(());
    }
    let Some((reason, n)) = dominant(counts, work.prefix) else {
        return Ok(());
    };
    let line = format!(
        "{} of {} {} failed as {reason}: {}",
        n,
        total,
        work.unit,
        remedy(reason, work.rerun)
    );
    if get(work.ok) == 0 {
        bail!("{}: nothing could be fetched: {line}", work.stage);
    }
    if n as f64 >= NEARLY_ALL * total as f64 {
        tracing::warn!("{}: {line}", work.stage);
    }
    Ok(())
}

/// Why pages were fetched and gave no candidate, from the crawl's
/// counters: `None` where some candidate was found or no page fetched.
pub fn no_candidates(counts: &Counts) -> Option<String> {
    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
    let pages = get("pages");
    if pages == 0 || get("candidates") > 0 {
        return None;
    }
    let images = get("images");
    let mut why = vec![format!("{images} images")];
    for (key, what) in [
        ("images_tiny", "declared tiny"),
        ("images_no_url", "without a URL"),
        ("images_placeholder", "placeholders"),
        ("texts_boilerplate", "texts that describe nothing"),
        ("pages_noindex", "pages marked noindex"),
        ("links_out_of_scope", "links out of scope"),
        ("refresh_out_of_scope", "refreshes out of scope"),
        ("redirect_out_of_scope", "redirects out of scope"),
        ("fail_robots", "URLs robots.txt disallows"),
    ] {
        if get(key) > 0 {
            why.push(format!("{} {what}", get(key)));
        }
    }
    Some(format!(
        "{pages} pages fetched and no candidate found: {} (an image needs a URL and an alt, \
         title or figcaption text)",
        why.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(items: &[(&str, u64)]) -> Counts {
        items.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    const CRAWL: Work<'static> = Work {
        stage: "crawl",
        unit: "URLs",
        total: &["urls"],
        ok: "pages",
        prefix: "fail_",
        rerun: "--force",
    };

    #[test]
    fn nothing_fetched_names_the_reason_and_the_remedy() {
        let c = counts(&[("urls", 2), ("fail_refused_address", 2), ("candidates", 0)]);
        let err = check(&c, &CRAWL).unwrap_err().to_string();
        assert_eq!(
            err,
            "crawl: nothing could be fetched: 2 of 2 URLs failed as refused_address: the hosts \
             are at private, loopback or link-local addresses, which wit refuses unless told: \
             rerun with --allow-private --force"
        );
    }

    #[test]
    fn the_parent_reason_wins_over_its_cause_and_some_success_only_warns() {
        let c = counts(&[
            ("error_robots_unreachable", 3),
            ("error_robots_unreachable_connect", 3),
            ("error_http_4xx", 1),
            ("failed", 4),
        ]);
        assert_eq!(dominant(&c, "error_"), Some(("robots_unreachable", 3)));
        let w = Work {
            total: &["failed", "success"],
            ok: "success",
            prefix: "error_",
            ..CRAWL
        };
        let err = check(&c, &w).unwrap_err().to_string();
        assert!(
            err.contains("3 of 4 URLs failed as robots_unreachable: the hosts did not answer"),
            "{err}"
        );
        let mut some = c.clone();
        some.insert("success".into(), 1);
        assert!(check(&some, &w).is_ok());
        assert!(check(&counts(&[]), &CRAWL).is_ok());
    }
}
