//! The `crawler` stage: web pages and web archives in, image-text candidates out.
//!
//! It will crawl pages from seed URLs (tokio, reqwest, scraper) and read
//! Common Crawl WARC/WAT archives, extract (image URL, text) candidates from
//! `<img>` alt and title attributes and figure captions, and write them as
//! `DATASET/candidates/part-NNNNN.parquet` ([`wit_contract::schema::candidates`]).
//! Nothing is implemented yet; `wit crawl` and `wit extract` say so.
#![deny(missing_docs)]
