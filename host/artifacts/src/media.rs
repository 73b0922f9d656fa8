//! The media type of a file by its name: the types of what distributions build first (where
//! the general tables are wrong: `.rpm` is RealAudio's plugin there), then `mime_guess`'s
//! table, then `application/octet-stream`.

/// Names ending so have this type; the first match wins, so longer endings come first.
const BUILD_TYPES: &[(&str, &str)] = &[
    (".src.rpm", "application/x-rpm"),
    (".rpm", "application/x-rpm"),
    (".drpm", "application/x-rpm"),
    (".iso", "application/x-iso9660-image"),
    (".img", "application/octet-stream"),
    (".qcow2", "application/x-qemu-disk"),
    (".tar.gz", "application/gzip"),
    (".tgz", "application/gzip"),
    (".tar.xz", "application/x-xz"),
    (".tar.zst", "application/zstd"),
    (".tar.bz2", "application/x-bzip2"),
    (".zst", "application/zstd"),
    (".xz", "application/x-xz"),
    (".bz2", "application/x-bzip2"),
    (".gz", "application/gzip"),
    (".sqlite", "application/vnd.sqlite3"),
    (".spec", "text/plain; charset=utf-8"),
    (".log", "text/plain; charset=utf-8"),
    (".txt", "text/plain; charset=utf-8"),
    (".json", "application/json"),
    (".xml", "application/xml"),
    (".yaml", "application/yaml"),
    (".yml", "application/yaml"),
    (".asc", "application/pgp-signature"),
    (".sig", "application/pgp-signature"),
];

/// The media type of a file named `name` (a path: only its last segment counts).
pub fn media_type(name: &str) -> &'static str {
    let file = name.rsplit('/').next().unwrap_or(name);
    let lower = file.to_ascii_lowercase();
    if let Some((_, kind)) = BUILD_TYPES.iter().find(|(end, _)| lower.ends_with(end)) {
        return kind;
    }
    mime_guess::from_path(file)
        .first_raw()
        .unwrap_or("application/octet-stream")
}

#[cfg(test)]
mod tests {
    use super::media_type;

    #[test]
    fn build_outputs_have_their_own_types() {
        for (name, kind) in [
            ("hello-1.0-1.src.rpm", "application/x-rpm"),
            ("Packages/h/hello-1.0-1.x86_64.RPM", "application/x-rpm"),
            (
                "openEuler-24.03-x86_64-dvd.iso",
                "application/x-iso9660-image",
            ),
            ("repodata/repomd.xml", "application/xml"),
            ("repodata/abc-primary.xml.zst", "application/zstd"),
            ("repodata/abc-primary.sqlite.bz2", "application/x-bzip2"),
            ("build.log", "text/plain; charset=utf-8"),
            ("index.html", "text/html"),
            ("picture.png", "image/png"),
            ("no-extension", "application/octet-stream"),
            ("dir.rpm/file", "application/octet-stream"),
        ] {
            assert_eq!(media_type(name), kind, "{name}");
        }
    }
}
