//! The file name of an inline spec: `<Name>.spec`, as packagers name it, from the spec's first
//! `Name:` tag.
//!
//! The plugin does not run rpm, so it expands only the macros it can know without running
//! anything: `%name`, `%{name}` and `%{?name}` defined by a `%global` or `%define` line before
//! the tag (the last one wins, `%if` is not evaluated) or by the job's `defines` (the spec's own
//! definitions shadow them, as rpm's do), and `%%`. Anything else (`%(...)`, `%{lua:...}`,
//! conditionals, macros only rpm defines) is left as written; when that is not what the spec
//! file should be called, the job gives `spec_name`.

use std::collections::BTreeMap;

/// How deep macro bodies are expanded at most (a macro that names itself stops here).
const MAX_DEPTH: usize = 16;

/// The value of the first `Name:` tag of `spec` (tags are case-insensitive), with the macros
/// this module knows expanded; `None` when the spec has no `Name:` tag.
pub fn package_name(spec: &str, defines: &BTreeMap<String, String>) -> Option<String> {
    let mut macros: BTreeMap<&str, &str> = defines
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for line in spec.lines() {
        let line = line.trim_start();
        if let Some(value) = tag_value(line, "name") {
            return Some(expand(value, &macros, 0));
        }
        if let Some((name, body)) = definition(line) {
            macros.insert(name, body);
        }
    }
    None
}

/// The value of `line` when it is the tag `tag` (`Name: x`, `name :x`).
fn tag_value<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    let head = line.get(..tag.len())?;
    if !head.eq_ignore_ascii_case(tag) {
        return None;
    }
    let value = line[tag.len()..].trim_start().strip_prefix(':')?;
    Some(value.trim())
}

/// The macro a `%global name body` or `%define name body` line defines (not one with
/// parameters).
fn definition(line: &str) -> Option<(&str, &str)> {
    let rest = line
        .strip_prefix("%global")
        .or_else(|| line.strip_prefix("%define"))?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let (name, body) = rest.split_at(end);
    if !is_macro_name(name) || !body.starts_with([' ', '\t']) {
        return None;
    }
    Some((name, body.trim()))
}

fn is_macro_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `text` with the macros of `macros` expanded, everything else as written.
fn expand(text: &str, macros: &BTreeMap<&str, &str>, depth: usize) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (replaced, used) = one_macro(after, macros, depth);
        match replaced {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[at..at + 1 + used]),
        }
        rest = &after[used..];
    }
    out.push_str(rest);
    out
}

/// The expansion of the macro at the start of `after` (what follows a `%`) and how many bytes
/// it took; `None` to leave those bytes as written.
fn one_macro(after: &str, macros: &BTreeMap<&str, &str>, depth: usize) -> (Option<String>, usize) {
    if after.starts_with('%') {
        return (Some("%".to_owned()), 1);
    }
    let body = |name: &str| {
        macros
            .get(name)
            .filter(|_| depth < MAX_DEPTH)
            .map(|body| expand(body, macros, depth + 1))
    };
    if let Some(braced) = after.strip_prefix('{') {
        let Some(close) = braced.find('}') else {
            return (None, 0);
        };
        let inner = &braced[..close];
        let used = close + 2;
        if let Some(name) = inner.strip_prefix('?')
            && is_macro_name(name)
        {
            // `%{?name}`: its value, or nothing when it is not defined (not known here: rpm
            // may define it, so it stays as written).
            return (body(name), used);
        }
        if is_macro_name(inner) {
            return (body(inner), used);
        }
        return (None, used);
    }
    let end = after
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(after.len());
    let name = &after[..end];
    if is_macro_name(name) {
        (body(name), end)
    } else {
        (None, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(spec: &str) -> Option<String> {
        package_name(spec, &BTreeMap::new())
    }

    #[test]
    fn the_first_name_tag() {
        assert_eq!(
            name("Summary: x\nName:   vsftpd \nName: other\n"),
            Some("vsftpd".into())
        );
        assert_eq!(name("  name :zlib\n"), Some("zlib".into()));
        assert_eq!(name("NAME:\tzlib\n"), Some("zlib".into()));
        assert_eq!(name("Summary: x\n%description\nNamed: no\n"), None);
        assert_eq!(name("Name"), None);
    }

    #[test]
    fn macros_it_can_know_are_expanded() {
        let spec = "%global srcname requests\n%define pypi python-%{srcname}\nName: %{pypi}%%\n";
        assert_eq!(name(spec), Some("python-requests%".into()));
        assert_eq!(
            name("%global   base foo\nName: %base-bar\n"),
            Some("foo-bar".into())
        );
        // The job's defines, shadowed by the spec's own.
        let defines = BTreeMap::from([
            ("flavor".to_owned(), "x".to_owned()),
            ("base".to_owned(), "job".to_owned()),
        ]);
        assert_eq!(
            package_name("%global base spec\nName: %{base}-%{?flavor}\n", &defines),
            Some("spec-x".into())
        );
        // A definition after the tag does not count.
        assert_eq!(
            name("Name: %{late}\n%global late x\n"),
            Some("%{late}".into())
        );
    }

    #[test]
    fn what_it_cannot_know_stays_as_written() {
        for value in [
            "%(echo a)",
            "%{lua:print('a')}",
            "%{?undefined}",
            "%{!?x:y}",
            "%{unclosed",
            "a%",
            "%{loop}",
        ] {
            let spec = format!("%global loop %{{loop}}x\nName: {value}\n");
            let got = name(&spec).unwrap();
            if value == "%{loop}" {
                assert!(got.starts_with("%{loop}") && got.ends_with('x'), "{got}");
            } else {
                assert_eq!(got, value);
            }
        }
        // A macro with parameters is not a plain definition.
        assert_eq!(name("%define f(a) x\nName: %{f}\n"), Some("%{f}".into()));
    }
}
