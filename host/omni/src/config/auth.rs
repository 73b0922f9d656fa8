//! `[auth]`: users and tokens, in the configuration and in a users file of their own.

use anyhow::Context as _;
use omni_api::AuthConfig;
use serde::Deserialize;
use std::path::PathBuf;

/// `[auth]`: users and tokens, here and in `users_file` (kept apart so that the passwords'
/// hashes can live in a Kubernetes Secret while the rest is a ConfigMap).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// A TOML file of more `[[users]]` and `[[tokens]]`.
    pub users_file: Option<PathBuf>,
    /// `[[auth.users]]`: HTTP Basic users.
    pub users: Vec<omni_api::auth::UserConfig>,
    /// `[[auth.tokens]]`: bearer tokens.
    pub tokens: Vec<omni_api::auth::TokenConfig>,
    /// `[auth.throttle]`: how wrong credentials are held back.
    pub throttle: omni_api::auth::ThrottleConfig,
}

impl AuthSection {
    /// The users and tokens of this section and of `users_file`.
    pub fn resolve(&self) -> anyhow::Result<AuthConfig> {
        let mut config = AuthConfig {
            users: self.users.clone(),
            tokens: self.tokens.clone(),
            throttle: self.throttle,
        };
        if let Some(path) = &self.users_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the users file {}", path.display()))?;
            let file: AuthConfig = toml::from_str(&text)
                .with_context(|| format!("invalid users file {}", path.display()))?;
            config.users.extend(file.users);
            config.tokens.extend(file.tokens);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_file_adds_users_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.toml");
        std::fs::write(
            &file,
            "[[users]]\nname = \"b\"\npassword_hash = \"x\"\nroles = { default = \"admin\" }\n[[tokens]]\nname = \"t\"\nsha256 = \"00\"\nroles = { \"*\" = \"viewer\" }\n",
        )
        .unwrap();
        let section: AuthSection = toml::from_str(&format!(
            "users_file = {file:?}\n[[users]]\nname = \"a\"\npassword_hash = \"x\"\nroles = {{ default = \"viewer\" }}\n"
        ))
        .unwrap();
        let auth = section.resolve().unwrap();
        let names: Vec<&str> = auth.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(auth.tokens[0].name, "t");
        std::fs::write(&file, "[[user]]\n").unwrap();
        let err = section.resolve().unwrap_err();
        assert!(format!("{err:#}").contains("invalid users file"), "{err:#}");
    }
}
