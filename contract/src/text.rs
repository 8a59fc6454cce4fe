//! Rules about caption texts that more than one stage applies: the crawler
//! drops such texts as it extracts them, and the filter drops them again from
//! candidates that came from elsewhere (an imported table, an older crawl).

/// File name extensions that a text naming a file ends with.
const FILE_EXTENSIONS: &[&str] = &[
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".svg", ".tif", ".tiff", ".ico", ".avif",
    ".heic", ".pdf", ".html", ".htm", ".php", ".aspx",
];

/// Whether `text` is a file name (one word ending in a file extension:
/// `IMG_1234.JPG`) or a URL (`http://`, `https://`, `www.`), not a description.
pub fn is_file_name_or_url(text: &str) -> bool {
    let t = text.trim();
    let lower = t.to_lowercase();
    let file =
        !t.contains(char::is_whitespace) && FILE_EXTENSIONS.iter().any(|e| lower.ends_with(e));
    let url =
        lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("www.");
    file || url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_urls() {
        for t in [
            "IMG_1234.JPG",
            "photo.png",
            " https://a.example/x ",
            "www.example.org",
            "index.html",
        ] {
            assert!(is_file_name_or_url(t), "{t}");
        }
        for t in [
            "a dog.jpg on a mat",
            "the .png format",
            "a red car",
            "version 1.2",
        ] {
            assert!(!is_file_name_or_url(t), "{t}");
        }
    }
}
