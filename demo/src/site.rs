//! The synthetic site: pages, images, robots.txt, and the held-out
//! evaluation images beside it.
//!
//! ```text
//! OUT/site/      what the server serves
//!   robots.txt   disallows /private/
//!   index.html   links to the list pages
//!   list/NNN.html          links to 100 pages each
//!   gallery/pNNNNN.html    English pages; de/, fr/, es/ pages in other languages
//!   private/pNNNNN.html    pages robots.txt disallows
//!   img/NNNNNN.jpg|png     the drawings (a few truncated on purpose)
//!   static/                a logo, a divider and a spacer: decorative images
//! OUT/eval/{train,test}/COLOUR_SHAPE/NNNN.png   one object of a held-out pair
//! OUT/eval/classes.txt   the class names, one per line, in folder order
//! OUT/site.json          the options and what was made: the done marker
//! ```
//!
//! Generation is seeded, so the same options give the same bytes. It writes
//! `site/` and `eval/` under temporary names and renames them into place
//! before writing `site.json`; a rerun with the same options finds
//! `site.json` and does nothing, one killed midway starts over.

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageFormat, RgbImage};
use serde::{Deserialize, Serialize};
use wit_contract::wds::{SplitMix64, fnv1a};
use wit_contract::{Error, IoContext, Result, manifest::write_atomic};

use crate::concepts::{self, COLOURS, Concept, Lang, SHAPES};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteOptions {
    /// Pages with images (list pages and the index come on top).
    pub pages: usize,
    /// Seeds every random choice.
    pub seed: u64,
    /// Width and height of the drawings, in pixels.
    pub image_size: u32,
    /// Evaluation images per held-out class, in each of train and test.
    pub eval_per_class: usize,
}

impl Default for SiteOptions {
    fn default() -> Self {
        SiteOptions {
            pages: 4000,
            seed: 0,
            image_size: 64,
            eval_per_class: 20,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteSummary {
    pub pages: usize,
    pub pages_english: usize,
    pub pages_other_languages: usize,
    pub pages_disallowed: usize,
    pub links: usize,
    pub broken_links: usize,
    /// Drawings served under img/.
    pub images: usize,
    /// Drawings served truncated (undecodable).
    pub corrupt_images: usize,
    /// `<img>` tags pointing at images, repeats on other pages included.
    pub image_tags: usize,
    /// Tags whose image does not exist (404).
    pub broken_image_tags: usize,
    /// Tags whose only text is a file name.
    pub file_name_alts: usize,
    /// Images in a `<figure>` with a caption.
    pub figures: usize,
    /// Decorative images (logo, divider without alt, spacer pixel).
    pub decorative_tags: usize,
    /// Held-out classes and their images.
    pub eval_classes: usize,
    pub eval_train_images: usize,
    pub eval_test_images: usize,
}

/// The `site.json` file.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    options: SiteOptions,
    summary: SiteSummary,
}

/// The served directory under `out`.
pub fn site_dir(out: &Path) -> PathBuf {
    out.join("site")
}

/// Generates the site and the evaluation images under `out`, or returns the
/// summary of an earlier generation with the same options.
///
/// # Errors
/// [`Error::Conflict`] if `out` holds a site made with other options;
/// [`Error::Io`] naming the path that could not be written.
pub fn generate(out: &Path, options: &SiteOptions) -> Result<(SiteSummary, bool)> {
    if options.pages == 0 || options.image_size < 16 {
        return Err(Error::Usage(
            "demo-web: --pages must be at least 1 and --image-size at least 16".into(),
        ));
    }
    let marker_path = out.join("site.json");
    if let Ok(bytes) = std::fs::read(&marker_path) {
        let marker: Marker = serde_json::from_slice(&bytes).map_err(|e| Error::BadInput {
            path: marker_path.clone(),
            message: format!("not a demo site marker: {e}"),
        })?;
        if marker.options == *options {
            return Ok((marker.summary, false));
        }
        return Err(Error::Conflict {
            path: out.to_path_buf(),
            message: format!(
                "holds a demo site made with other options ({}); use another directory or delete it",
                serde_json::to_string(&marker.options).unwrap_or_default()
            ),
        });
    }
    std::fs::create_dir_all(out).at(out)?;
    let mut summary = SiteSummary::default();
    for (name, build) in [
        (
            "site",
            build_site as fn(&Path, &SiteOptions, &mut SiteSummary) -> Result<()>,
        ),
        ("eval", build_eval),
    ] {
        let tmp = out.join(format!(".tmp-{name}"));
        let done = out.join(name);
        for dir in [&tmp, &done] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).at(dir)?;
            }
        }
        build(&tmp, options, &mut summary)?;
        std::fs::rename(&tmp, &done).at(&done)?;
    }
    let marker = Marker {
        options: options.clone(),
        summary: summary.clone(),
    };
    let json = serde_json::to_vec_pretty(&marker).expect("plain data serialises");
    write_atomic(&marker_path, &json)?;
    Ok((summary, true))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    std::fs::write(path, bytes).at(path)
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .expect("encoding an in-memory image cannot fail");
    out.into_inner()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// One page with images.
struct Page {
    path: String,
    lang: Lang,
}

/// An image on the site: its URL path and what it shows.
struct Drawing {
    path: String,
    concept: Concept,
}

fn build_site(dir: &Path, options: &SiteOptions, summary: &mut SiteSummary) -> Result<()> {
    let mut rng = SplitMix64::new(options.seed ^ 0x5173_0000);
    let pages: Vec<Page> = (0..options.pages)
        .map(|i| {
            let roll = concepts::unit(&mut rng);
            let (lang, folder) = if roll < 0.06 {
                (Lang::En, "private")
            } else if roll < 0.13 {
                (Lang::De, "de")
            } else if roll < 0.17 {
                (Lang::Fr, "fr")
            } else if roll < 0.21 {
                (Lang::Es, "es")
            } else {
                (Lang::En, "gallery")
            };
            Page {
                path: format!("/{folder}/p{:05}.html", i + 1),
                lang,
            }
        })
        .collect();
    summary.pages = pages.len();
    summary.pages_disallowed = pages
        .iter()
        .filter(|p| p.path.starts_with("/private/"))
        .count();
    summary.pages_other_languages = pages.iter().filter(|p| p.lang != Lang::En).count();
    summary.pages_english = summary.pages - summary.pages_other_languages;

    write(
        &dir.join("robots.txt"),
        b"# The demo web of wit: everything but /private/ may be crawled.\nUser-agent: *\nDisallow: /private/\n",
    )?;
    let logo = concepts::draw(
        &Concept {
            colour: 2,
            shape: 0,
            texture: 0,
            background: 0,
            size: 0,
            count: 1,
        },
        32,
        1,
    );
    write(
        &dir.join("static/logo.png"),
        &encode(&logo, ImageFormat::Png),
    )?;
    let divider = RgbImage::from_pixel(200, 4, image::Rgb([180, 180, 180]));
    write(
        &dir.join("static/divider.png"),
        &encode(&divider, ImageFormat::Png),
    )?;
    let spacer = RgbImage::from_pixel(1, 1, image::Rgb([255, 255, 255]));
    write(
        &dir.join("static/spacer.png"),
        &encode(&spacer, ImageFormat::Png),
    )?;

    // The index and the list pages: every page within two hops of the root.
    let per_list = 100;
    let lists = pages.len().div_ceil(per_list);
    let mut index = head("The demo web of wit", Lang::En);
    index.push_str("<h1>Shapes of every colour</h1>\n<ul>\n");
    for l in 0..lists {
        let _ = writeln!(
            index,
            "<li><a href=\"/list/{:03}.html\">Pictures {}-{}</a></li>",
            l + 1,
            l * per_list + 1,
            ((l + 1) * per_list).min(pages.len())
        );
    }
    index.push_str("</ul>\n<p><a href=\"/about.html\">About</a></p>\n</body></html>\n");
    write(&dir.join("index.html"), index.as_bytes())?;
    for l in 0..lists {
        let mut html = head(&format!("Pictures, page {}", l + 1), Lang::En);
        html.push_str("<ul>\n");
        for page in pages.iter().skip(l * per_list).take(per_list) {
            let _ = writeln!(html, "<li><a href=\"{}\">{}</a></li>", page.path, page.path);
        }
        html.push_str("</ul>\n<a href=\"/\">Home</a>\n</body></html>\n");
        write(
            &dir.join(format!("list/{:03}.html", l + 1)),
            html.as_bytes(),
        )?;
    }

    let mut drawings: Vec<Drawing> = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let mut html = head(&format!("Gallery {}", i + 1), page.lang);
        html.push_str("<header><img src=\"/static/logo.png\" alt=\"logo\" width=\"32\" height=\"32\"> <a href=\"/\">Home</a></header>\n");
        summary.decorative_tags += 1;
        let images = 1 + rng.below(4);
        for _ in 0..images {
            html.push_str(&image_tag(
                &mut rng,
                dir,
                options,
                page.lang,
                &mut drawings,
                summary,
            )?);
            if concepts::unit(&mut rng) < 0.3 {
                html.push_str("<img src=\"/static/divider.png\" alt=\"\">\n");
                summary.decorative_tags += 1;
            }
        }
        if concepts::unit(&mut rng) < 0.2 {
            html.push_str("<img src=\"/static/spacer.png\" width=\"1\" height=\"1\">\n");
            summary.decorative_tags += 1;
        }
        html.push_str("<nav>\n");
        let mut links = Vec::new();
        if i > 0 {
            links.push(pages[i - 1].path.clone());
        }
        if i + 1 < pages.len() {
            links.push(pages[i + 1].path.clone());
        }
        for _ in 0..3 {
            links.push(pages[rng.below(pages.len())].path.clone());
        }
        if concepts::unit(&mut rng) < 0.05 {
            links.push(format!("/gallery/gone-{:05}.html", rng.below(100_000)));
            summary.broken_links += 1;
        }
        for link in &links {
            let _ = writeln!(html, "<a href=\"{link}\">more</a>");
        }
        summary.links += links.len();
        html.push_str("</nav>\n</body></html>\n");
        write(
            &dir.join(page.path.trim_start_matches('/')),
            html.as_bytes(),
        )?;
    }
    Ok(())
}

fn head(title: &str, lang: Lang) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n",
        lang.code(),
        escape(title)
    )
}

/// One image on a page, as HTML: mostly a new drawing, sometimes one shown
/// before (with a new caption), sometimes a broken link.
fn image_tag(
    rng: &mut SplitMix64,
    dir: &Path,
    options: &SiteOptions,
    lang: Lang,
    drawings: &mut Vec<Drawing>,
    summary: &mut SiteSummary,
) -> Result<String> {
    summary.image_tags += 1;
    let roll = concepts::unit(rng);
    let (src, concept) = if roll < 0.04 {
        summary.broken_image_tags += 1;
        let concept = Concept::random_seen(rng);
        (
            format!("/img/missing-{:06}.jpg", rng.below(1_000_000)),
            concept,
        )
    } else if roll < 0.14 && !drawings.is_empty() {
        let d = &drawings[rng.below(drawings.len())];
        (d.path.clone(), d.concept)
    } else {
        let concept = Concept::random_seen(rng);
        let n = drawings.len() + 1;
        let seed = rng.next_u64();
        let img = concepts::draw(&concept, options.image_size, seed);
        let (ext, format) = if rng.below(10) < 7 {
            ("jpg", ImageFormat::Jpeg)
        } else {
            ("png", ImageFormat::Png)
        };
        let mut bytes = encode(&img, format);
        if concepts::unit(rng) < 0.01 {
            bytes.truncate(bytes.len() / 3);
            summary.corrupt_images += 1;
        }
        let path = format!("/img/{n:06}.{ext}");
        write(&dir.join(path.trim_start_matches('/')), &bytes)?;
        summary.images += 1;
        drawings.push(Drawing {
            path: path.clone(),
            concept,
        });
        (path, concept)
    };
    let caption = escape(&concepts::describe(&concept, lang, rng));
    let file_name = format!(
        "{}_{:04}.{}",
        ["IMG", "DSC", "image", "photo"][rng.below(4)],
        rng.below(10_000),
        ["jpg", "JPG", "png"][rng.below(3)]
    );
    let size = options.image_size;
    Ok(match rng.below(10) {
        0 | 1 => {
            summary.figures += 1;
            summary.file_name_alts += 1;
            format!(
                "<figure><img src=\"{src}\" alt=\"{file_name}\" width=\"{size}\" height=\"{size}\"><figcaption>{caption}</figcaption></figure>\n"
            )
        }
        2 => {
            summary.figures += 1;
            let second = escape(&concepts::describe(&concept, lang, rng));
            format!(
                "<figure><img src=\"{src}\" alt=\"{caption}\"><figcaption>{second}</figcaption></figure>\n"
            )
        }
        3 => format!("<img src=\"{src}\" title=\"{caption}\">\n"),
        4 => {
            summary.file_name_alts += 1;
            format!("<p>{caption}</p><img src=\"{src}\" alt=\"{file_name}\">\n")
        }
        _ => format!("<img src=\"{src}\" alt=\"{caption}\" width=\"{size}\" height=\"{size}\">\n"),
    })
}

fn build_eval(dir: &Path, options: &SiteOptions, summary: &mut SiteSummary) -> Result<()> {
    let classes = concepts::held_out_classes();
    let mut names = String::new();
    let mut folders: Vec<(String, usize, usize)> = classes
        .iter()
        .map(|&(c, s)| (format!("{}_{}", COLOURS[c].0, SHAPES[s]), c, s))
        .collect();
    folders.sort();
    for (split, salt) in [("train", 1u64), ("test", 2u64)] {
        for (folder, colour, shape) in &folders {
            let mut rng =
                SplitMix64::new(options.seed ^ salt.wrapping_mul(0x9e37_79b9) ^ fnv1a(folder));
            for k in 0..options.eval_per_class {
                let concept = Concept::single(&mut rng, *colour, *shape);
                let img = concepts::draw(&concept, options.image_size, rng.next_u64());
                let path = dir.join(split).join(folder).join(format!("{k:04}.png"));
                write(&path, &encode(&img, ImageFormat::Png))?;
            }
        }
    }
    for (folder, ..) in &folders {
        names.push_str(&folder.replace('_', " "));
        names.push('\n');
    }
    write(&dir.join("classes.txt"), names.as_bytes())?;
    summary.eval_classes = folders.len();
    summary.eval_train_images = folders.len() * options.eval_per_class;
    summary.eval_test_images = summary.eval_train_images;
    Ok(())
}
