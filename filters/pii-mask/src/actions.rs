//! What happens to a match: replace, mask, redact, hash or reject.

use crate::sha256;

/// The action of one entity or rule, resolved at configuration time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Replace the value with fixed text (default `[ENTITY_NAME]`).
    Replace { text: String },
    /// Replace every letter and digit with `mask_char` except the last
    /// `keep_last` of them; punctuation and spaces stay, so the shape of the
    /// value survives (`****-****-****-1111`).
    Mask { keep_last: usize, mask_char: char },
    /// Remove the value.
    Redact,
    /// A salted SHA-256 prefix: `[ENTITY_NAME:3f2a9c1b]`. The same value always
    /// gives the same token (for one salt), so conversations stay coherent.
    Hash,
    /// Refuse the request (400) or withhold the completion.
    Reject { message: String },
}

impl Action {
    pub fn is_reject(&self) -> bool {
        matches!(self, Action::Reject { .. })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Action::Replace { .. } => "replace",
            Action::Mask { .. } => "mask",
            Action::Redact => "redact",
            Action::Hash => "hash",
            Action::Reject { .. } => "reject",
        }
    }
}

/// Salt and length of hash tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashSettings {
    pub salt: String,
    pub chars: usize,
}

/// Appends the replacement of `value` (matched by rule `name`) to `out`.
/// Reject has no replacement: callers act on it before rendering.
pub fn render(action: &Action, name: &str, value: &str, hash: &HashSettings, out: &mut String) {
    match action {
        Action::Replace { text } => out.push_str(text),
        Action::Mask { keep_last, mask_char } => {
            let total = value.chars().filter(|c| c.is_alphanumeric()).count();
            let mask_until = total.saturating_sub(*keep_last);
            let mut seen = 0;
            for c in value.chars() {
                if c.is_alphanumeric() {
                    out.push(if seen < mask_until { *mask_char } else { c });
                    seen += 1;
                } else {
                    out.push(c);
                }
            }
        }
        Action::Redact => {}
        Action::Hash => {
            out.push('[');
            out.push_str(name);
            out.push(':');
            out.push_str(&hash_token(name, value, hash));
            out.push(']');
        }
        Action::Reject { .. } => {}
    }
}

/// The hex token for `value`: SHA-256 over salt, rule name and value, each
/// length-prefixed so that no two inputs collide by concatenation.
pub fn hash_token(name: &str, value: &str, hash: &HashSettings) -> String {
    let mut hasher = sha256::Sha256::new();
    for part in [hash.salt.as_bytes(), name.as_bytes(), value.as_bytes()] {
        hasher.update(&(part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    sha256::hex_prefix(&hasher.finish(), hash.chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(action: &Action, name: &str, value: &str) -> String {
        let mut out = String::new();
        render(action, name, value, &HashSettings { salt: "s".into(), chars: 8 }, &mut out);
        out
    }

    #[test]
    fn replace_and_redact() {
        assert_eq!(
            apply(&Action::Replace { text: "[EMAIL_ADDRESS]".into() }, "EMAIL_ADDRESS", "a@b.com"),
            "[EMAIL_ADDRESS]"
        );
        assert_eq!(apply(&Action::Redact, "X", "secret"), "");
    }

    #[test]
    fn mask_keeps_last_n_alphanumerics_and_punctuation() {
        let mask = Action::Mask { keep_last: 4, mask_char: '*' };
        assert_eq!(apply(&mask, "CREDIT_CARD", "4111-1111-1111-1234"), "****-****-****-1234");
        assert_eq!(apply(&mask, "CREDIT_CARD", "4111111111111234"), "************1234");
        assert_eq!(apply(&Action::Mask { keep_last: 0, mask_char: '#' }, "E", "a.b@c.io"), "#.#@#.##");
        assert_eq!(apply(&Action::Mask { keep_last: 10, mask_char: '*' }, "E", "ab"), "ab");
        assert_eq!(apply(&Action::Mask { keep_last: 1, mask_char: '•' }, "E", "日本x"), "••x");
    }

    #[test]
    fn hash_is_stable_salted_and_name_scoped() {
        let settings = HashSettings { salt: "salt-1".into(), chars: 8 };
        let a = hash_token("EMAIL_ADDRESS", "a@b.com", &settings);
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, hash_token("EMAIL_ADDRESS", "a@b.com", &settings));
        assert_ne!(a, hash_token("EMAIL_ADDRESS", "c@b.com", &settings));
        assert_ne!(a, hash_token("EMAIL_ADDRESS", "a@b.com", &HashSettings { salt: "salt-2".into(), chars: 8 }));
        assert_ne!(a, hash_token("OTHER", "a@b.com", &settings));
        assert_eq!(apply(&Action::Hash, "US_SSN", "123-45-6789").len(), "[US_SSN:12345678]".len());
        assert!(apply(&Action::Hash, "US_SSN", "123-45-6789").starts_with("[US_SSN:"));
    }
}
