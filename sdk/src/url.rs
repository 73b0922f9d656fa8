//! Checking URLs a job will fetch from.

/// Why `url` is not a URL a job may fetch from, or `None` when it is: the scheme must be one of
/// `schemes` (`["https"]`), and the URL must have a host, no credentials (they would be readable
/// in the job's objects) and no spaces or control characters.
///
/// ```
/// use omni_sdk::url_error;
/// assert_eq!(url_error("https://gitee.com/src-openeuler/zlib.git", &["https"]), None);
/// assert_eq!(url_error("http://example.com/a", &["https"]).as_deref(), Some("must be an https:// URL"));
/// assert_eq!(url_error("git://example.com/a", &["https", "http", "git"]), None);
/// ```
pub fn url_error(url: &str, schemes: &[&str]) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("must be a URL (`https://host/path`)".to_owned());
    };
    if !schemes.contains(&scheme) {
        let names: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        let listed = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        };
        return Some(format!("must be an {listed} URL"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces or control characters".to_owned());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Some("has no host".to_owned());
    }
    if authority.contains('@') {
        return Some("must not contain credentials: they would be readable in the job".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_allowed_schemes_and_refuses_what_a_job_must_not_fetch() {
        let all = ["https", "http", "git"];
        assert_eq!(
            url_error("ftp://h/a", &["https", "http"]).as_deref(),
            Some("must be an https:// or http:// URL")
        );
        assert_eq!(
            url_error("ssh://h/a", &all).as_deref(),
            Some("must be an https://, http:// or git:// URL")
        );
        assert_eq!(
            url_error("file:///etc", &all).as_deref(),
            Some("must be an https://, http:// or git:// URL")
        );
        assert_eq!(
            url_error("h/a.git", &all).as_deref(),
            Some("must be a URL (`https://host/path`)")
        );
        assert_eq!(url_error("https://", &all).as_deref(), Some("has no host"));
        assert_eq!(
            url_error("https:///a", &all).as_deref(),
            Some("has no host")
        );
        assert!(
            url_error("https://u:p@h/a", &all)
                .unwrap()
                .contains("credentials")
        );
        assert!(url_error("https://h/a b", &all).unwrap().contains("spaces"));
    }
}
