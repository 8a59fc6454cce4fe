#!/usr/bin/env python3
"""What building N final (stored) image-text pairs from Common Crawl WAT files
costs with wit, stage by stage: core-hours, memory per task and bytes, from
per-core rates measured on this project's machines (docs/scale.md), next to
cc2dataset + img2dataset for the same pairs.

Every input is a flag whose default is a figure measured here or published,
named in --help; change any of them to redo the sums with your own.

    python3 scripts/cost-model.py                    # 400M pairs, the defaults
    python3 scripts/cost-model.py --pairs 1e9 --download-success 0.6
    python3 scripts/cost-model.py --markdown         # the table of docs/scale.md

Standard library only.
"""

import argparse


def flags():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--pairs", type=float, default=400e6, help="final pairs stored (default 400M, WIT-400M's size)")
    # The funnel (published ratios).
    a("--download-success", type=float, default=0.70,
      help="share of balanced pairs whose image downloads (default 0.70: img2dataset users "
           "report 56-78%% with retries on HPC, issue #361)")
    a("--balance-keep", type=float, default=0.23,
      help="share of matched pairs balancing keeps (MetaCLIP: t=20k keeps about 23%%)")
    a("--match-keep", type=float, default=0.50,
      help="share of English pairs that match a query (MetaCLIP: about 50%%)")
    a("--english-share", type=float, default=0.39,
      help="share of candidate pairs in English (LAION-5B: 2.3B of 5.85B)")
    a("--pairs-per-wat", type=float, default=17.6e3,
      help="distinct image/alt-text pairs per WAT file (cc2dataset: 88B pairs from about 5M WATs)")
    # wit's rates (CPU seconds per unit, one core), measured here.
    a("--extract-wat-s", type=float, default=None,
      help="wit CPU seconds per WAT file; default: cc2dataset's 50 s divided by --extract-speedup")
    a("--extract-speedup", type=float, default=1.27,
      help="wit extract's speed over cc2dataset's way (FastWARC + simdjson) per byte of WAT, "
           "one core each, same run (scripts/wat-rate.py: 1.27x)")
    a("--match-us", type=float, default=4.4, help="wit match, µs CPU per candidate (bench-scale, 100M rows)")
    a("--balance-us", type=float, default=5.4, help="wit balance, µs CPU per candidate row (bench-scale, 100M)")
    a("--plan-us", type=float, default=7.1, help="wit download plan, µs CPU per candidate row (bench-scale, 100M)")
    a("--download-ms", type=float, default=3.80,
      help="wit download, ms CPU per image at 256 px (cargo bench -p wit-shards --bench download)")
    a("--stats-us", type=float, default=5.0, help="wit stats, µs CPU per candidate row (bench-scale, 100M)")
    # Bytes per row written (bench-scale).
    a("--candidate-bytes", type=float, default=62.0, help="candidates Parquet, bytes per row")
    a("--matched-bytes", type=float, default=74.5, help="matched Parquet, bytes per matched row")
    a("--balanced-bytes", type=float, default=109.0,
      help="balanced/ (parts and the repeat pass), bytes per matched row")
    a("--plan-bytes", type=float, default=160.0, help="the plan and its scatter, bytes per balanced pair")
    a("--image-bytes", type=float, default=25e3,
      help="stored bytes per image at 256 px (LAION-400M: 10 TB for 400M)")
    # The references.
    a("--cc2dataset-wat-s", type=float, default=50.0,
      help="cc2dataset CPU seconds per WAT file (its README: 70k core-hours for about 5M WATs)")
    a("--img2dataset-ms", type=float, default=13.17,
      help="img2dataset ms CPU per image, same images and settings as --download-ms, same run")
    a("--markdown", action="store_true", help="print a Markdown table")
    return p.parse_args()


def main():
    f = flags()
    balanced = f.pairs / f.download_success
    matched = balanced / f.balance_keep
    english = matched / f.match_keep
    candidates = english / f.english_share
    wats = candidates / f.pairs_per_wat
    wat_s = f.extract_wat_s if f.extract_wat_s else f.cc2dataset_wat_s / f.extract_speedup
    h = 3600.0
    rows = [
        # stage, rows in, core-hours, bytes out, memory per task
        ("extract (WAT files)", wats, wats * wat_s / h, candidates * f.candidate_bytes, "one archive streamed"),
        ("match", candidates, candidates * f.match_us / 1e6 / h, matched * f.matched_bytes, "170-200 MiB"),
        ("balance", matched, matched * f.balance_us / 1e6 / h, matched * f.balanced_bytes,
         "150-190 MiB (--memory-budget 32M)"),
        ("download plan", balanced, balanced * f.plan_us / 1e6 / h, balanced * f.plan_bytes,
         "240-320 MiB (--memory-budget 128M)"),
        ("download", balanced, balanced * f.download_ms / 1e3 / h, f.pairs * f.image_bytes, "about 100 MiB"),
        ("stats", candidates, candidates * f.stats_us / 1e6 / h, 0.0, "about 100 MiB"),
    ]
    total = sum(r[2] for r in rows)
    ref_extract = wats * f.cc2dataset_wat_s / h
    ref_download = balanced * f.img2dataset_ms / 1e3 / h
    funnel = (
        f"{f.pairs / 1e6:,.0f}M stored <- {balanced / 1e6:,.0f}M balanced "
        f"(download success {f.download_success:.0%}) <- {matched / 1e9:,.2f}B matched "
        f"(balancing keeps {f.balance_keep:.0%}) <- {english / 1e9:,.2f}B English "
        f"(match keeps {f.match_keep:.0%}) <- {candidates / 1e9:,.1f}B candidates "
        f"({f.english_share:.0%} English) <- {wats / 1e3:,.0f}k WAT files "
        f"({f.pairs_per_wat / 1e3:,.1f}k pairs each)"
    )
    if f.markdown:
        print(funnel + "\n")
        print("| stage | rows in | core-hours | written | memory per task |")
        print("| --- | --- | --- | --- | --- |")
        for name, n, ch, b, mem in rows:
            count = f"{n / 1e3:,.0f}k" if n < 1e7 else f"{n / 1e6:,.0f}M"
            print(f"| {name} | {count} | {ch:,.0f} | {b / 1e12:,.2f} TB | {mem} |")
        print(f"| **wit, all stages** | | **{total:,.0f}** | | |")
        print(f"| cc2dataset (extract, {wats / 1e3:,.0f}k WATs at {f.cc2dataset_wat_s:.0f} s) + "
              f"img2dataset ({balanced / 1e6:,.0f}M images at {f.img2dataset_ms} ms) | | "
              f"**{ref_extract + ref_download:,.0f}** ({ref_extract:,.0f} + {ref_download:,.0f}) | | |")
    else:
        print(funnel)
        for name, n, ch, b, mem in rows:
            print(f"{name:15} {n / 1e6:12,.0f}M rows {ch:10,.0f} core-h {b / 1e12:8.2f} TB  {mem}")
        print(f"{'wit total':15} {'':18} {total:10,.0f} core-h")
        print(f"{'cc2dataset + img2dataset':26} {ref_extract + ref_download:10,.0f} core-h "
              f"({ref_extract:,.0f} + {ref_download:,.0f})")
    print(f"\nratio: wit uses {total / (ref_extract + ref_download):.2f}x the references' core-hours")


if __name__ == "__main__":
    main()
