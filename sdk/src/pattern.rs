//! Regular expressions for params: `#[garde(pattern(NAME))]` with a `static NAME: Pattern`.

use std::sync::OnceLock;

/// A regular expression that checks a field (through garde) and appears in the JSON Schema
/// (through schemars, as the field's `pattern`), written once.
///
/// ```
/// use omni_sdk::Pattern;
///
/// static VOLUME_LABEL: Pattern = Pattern::new(r"^[A-Z0-9_-]{1,32}$");
///
/// #[derive(serde::Deserialize, schemars::JsonSchema, garde::Validate)]
/// struct Params {
///     #[garde(pattern(VOLUME_LABEL))]
///     volume_label: String,
/// }
/// # use garde::Validate as _;
/// # assert!(Params { volume_label: "OE_2403".into() }.validate().is_ok());
/// # assert!(Params { volume_label: "lower".into() }.validate().is_err());
/// ```
///
/// The expression is compiled on first use. A plugin call runs in a fresh instance, so that is
/// once per call: the syntax is regex-lite's (Perl classes such as `\d` and `\S` are ASCII-only),
/// which compiles several times faster than the `regex` crate and keeps components small.
#[derive(Debug)]
pub struct Pattern {
    source: &'static str,
    regex: OnceLock<regex_lite::Regex>,
}

impl Pattern {
    /// A pattern from its source text.
    pub const fn new(source: &'static str) -> Self {
        Self {
            source,
            regex: OnceLock::new(),
        }
    }

    /// Whether `text` matches anywhere (anchor the pattern with `^...$` for whole values).
    ///
    /// # Panics
    /// When the source is not a valid expression: a bug in the plugin, caught by its tests.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex
            .get_or_init(|| {
                regex_lite::Regex::new(self.source)
                    .unwrap_or_else(|e| panic!("invalid pattern {:?}: {e}", self.source))
            })
            .is_match(text)
    }

    /// The source text.
    pub fn as_str(&self) -> &'static str {
        self.source
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.source)
    }
}

impl garde::rules::AsStr for Pattern {
    fn as_str(&self) -> &str {
        self.source
    }
}

impl garde::rules::pattern::Matcher for Pattern {
    fn is_match(&self, haystack: &str) -> bool {
        Pattern::is_match(self, haystack)
    }
}
