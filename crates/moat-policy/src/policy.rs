/// The built-in default policy, printed by `moat policy show-default`.
pub const DEFAULT_POLICY_TOML: &str = r#"# owner fills in
"#;

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    // owner fills in
}

/// Why a policy file was refused (with the TOML location where there is one).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not valid TOML, or a field of the wrong type / unknown field.
    #[error("{0}")]
    Parse(String),
    /// A value is well-formed TOML but not allowed (bad package spec, bad date, …).
    #[error("{0}")]
    Invalid(String),
}

/// Something `moat policy check` reports without refusing the policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolicyWarning {
    /// Short kebab-case kind: `waiver-expired`, `waiver-unused`, `waiver-not-waivable`, …
    pub kind: String,
    /// The human line.
    pub message: String,
}

impl Policy {
    /// Parse and validate a policy file's text.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let _ = text;
        todo!()
    }

    /// The built-in default ([`DEFAULT_POLICY_TOML`]).
    pub fn builtin() -> Policy {
        todo!()
    }

    /// A short stable hash of the policy's meaning; changes whenever the policy does (ETags, audit).
    pub fn revision(&self) -> &str {
        todo!()
    }

    /// Warnings for `moat policy check`: waivers past their date (relative to `today`, `YYYY-MM-DD`
    /// compared as a date), waivers that match nothing in `db`, waivers of `moat.malicious`.
    pub fn check(&self, db: &moat_advisories::AdvisoryDb, today: jiff::civil::Date) -> Vec<PolicyWarning> {
        let _ = (db, today);
        todo!()
    }
}
