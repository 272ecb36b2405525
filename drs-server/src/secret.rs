//! Secret strings (bearer tokens, passphrases): never printed, zeroized on drop.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string such as a bearer token or a key passphrase.
///
/// It does not implement `Clone`, `Serialize` or a revealing `Debug`; `Debug` and `Display`
/// print `[secret elided]`. The bytes are overwritten when it is dropped. Read it only through
/// [`SecretString::expose`].
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `value`, taking ownership so that no unzeroized copy is left behind by this call.
    pub fn new(value: String) -> Self {
        SecretString(Zeroizing::new(value))
    }

    /// The secret value. Do not log or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret elided]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret elided]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = SecretString::new("hunter2-token".into());
        assert_eq!(format!("{secret:?}"), "[secret elided]");
        assert_eq!(format!("{secret}"), "[secret elided]");
        assert_eq!(secret.expose(), "hunter2-token");
    }
}
