//! Text filters applied to candidates before matching.

use wit_contract::text::is_file_name_or_url;

/// Which candidate texts are kept. [`TextFilter::default`] gives the
/// defaults of `wit match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFilter {
    /// Fewer characters (after trimming) are dropped.
    pub min_chars: usize,
    /// More characters are dropped.
    pub max_chars: usize,
    /// Drop texts that are a file name or a URL.
    pub drop_file_names: bool,
    /// If set, drop rows whose page declares a language whose primary subtag
    /// (lowercase: `en` of `en-GB`) is not listed; rows without one are kept.
    pub languages: Option<Vec<String>>,
}

impl Default for TextFilter {
    fn default() -> Self {
        TextFilter {
            min_chars: 5,
            max_chars: 1000,
            drop_file_names: true,
            languages: None,
        }
    }
}

/// Why a text was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Shorter than the minimum.
    TooShort,
    /// Longer than the maximum.
    TooLong,
    /// A file name or URL.
    FileNameOrUrl,
    /// The page's declared language is not wanted.
    Language,
}

impl Dropped {
    /// The counter name: `dropped_too_short`, `dropped_too_long`,
    /// `dropped_file_name_or_url`, `dropped_language`.
    pub fn key(self) -> &'static str {
        match self {
            Dropped::TooShort => "dropped_too_short",
            Dropped::TooLong => "dropped_too_long",
            Dropped::FileNameOrUrl => "dropped_file_name_or_url",
            Dropped::Language => "dropped_language",
        }
    }
}

/// The primary language subtag of a declared language, lowercase.
pub fn primary_subtag(lang: &str) -> String {
    lang.trim()
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The primary subtag of a language the user asks for (`en`, `en-GB`,
/// `pt_BR`): two or three ASCII letters, the ISO 639 codes that pages
/// declare in `lang` (RFC 5646, section 2.2.1; the longer registered
/// subtags are not used in practice).
///
/// # Errors
/// The value is not a language tag (`english`, `e`, `12`): a message naming it.
pub fn wanted_language(value: &str) -> Result<String, String> {
    let sub = primary_subtag(value);
    if (2..=3).contains(&sub.len()) && sub.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(sub)
    } else {
        Err(format!(
            "{value:?} is not a language subtag: give the two- or three-letter ISO 639 code that pages declare (en, de, fr, zh)"
        ))
    }
}

impl TextFilter {
    /// Why `text` (of a page declaring `lang`) is dropped, if it is.
    pub fn check(&self, text: &str, lang: Option<&str>) -> Option<Dropped> {
        let trimmed = text.trim();
        let n = trimmed.chars().count();
        if n < self.min_chars {
            return Some(Dropped::TooShort);
        }
        if n > self.max_chars {
            return Some(Dropped::TooLong);
        }
        if self.drop_file_names && is_file_name_or_url(trimmed) {
            return Some(Dropped::FileNameOrUrl);
        }
        if let (Some(wanted), Some(lang)) = (&self.languages, lang)
            && !lang.trim().is_empty()
            && !wanted.contains(&primary_subtag(lang))
        {
            return Some(Dropped::Language);
        }
        None
    }

    /// The filter's settings, for the stage's parameters.
    pub fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "min_chars": self.min_chars,
            "max_chars": self.max_chars,
            "drop_file_names": self.drop_file_names,
            "languages": self.languages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_languages_are_subtags() {
        assert_eq!(wanted_language("en").unwrap(), "en");
        assert_eq!(wanted_language(" pt_BR").unwrap(), "pt");
        assert_eq!(wanted_language("EN-gb").unwrap(), "en");
        assert_eq!(wanted_language("fil").unwrap(), "fil");
        for bad in ["english", "e", "12", "", "en1"] {
            assert!(wanted_language(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_filter_and_its_default() {
        let f = TextFilter::default();
        assert_eq!(f.check("a dog", None), None);
        assert_eq!(f.check("  dog ", None), Some(Dropped::TooShort));
        assert_eq!(f.check("éléph", None), None, "characters, not bytes");
        assert_eq!(f.check(&"x".repeat(1001), None), Some(Dropped::TooLong));
        assert_eq!(f.check("DSC_0001.jpg", None), Some(Dropped::FileNameOrUrl));
        assert_eq!(
            f.check("https://a.example/b", None),
            Some(Dropped::FileNameOrUrl)
        );
        let f = TextFilter {
            languages: Some(vec!["en".into(), "de".into()]),
            drop_file_names: false,
            ..TextFilter::default()
        };
        assert_eq!(f.check("DSC_0001.jpg", None), None);
        assert_eq!(f.check("a red car", Some("en-GB")), None);
        assert_eq!(f.check("ein rotes Auto", Some("DE")), None);
        assert_eq!(f.check("une voiture", Some("fr")), Some(Dropped::Language));
        assert_eq!(f.check("no language", None), None);
        assert_eq!(f.check("empty language", Some(" ")), None);
    }
}
