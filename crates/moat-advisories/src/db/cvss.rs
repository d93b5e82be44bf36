//! CVSS base scores (v3.0, v3.1 and v2) from vector strings, and their severity bands.

use super::Severity;

/// A base score in tenths (`98` is 9.8), so bands compare exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Score(pub(crate) u32);

impl Score {
    /// The band of a v3 score: 0.1–3.9 low, 4.0–6.9 moderate, 7.0–8.9 high, 9.0–10 critical.
    /// A score of 0.0 ("none") has no severity.
    pub(crate) fn v3_severity(self) -> Option<Severity> {
        match self.0 {
            0 => None,
            1..=39 => Some(Severity::Low),
            40..=69 => Some(Severity::Moderate),
            70..=89 => Some(Severity::High),
            _ => Some(Severity::Critical),
        }
    }

    /// The band of a v2 score (NVD): 0.0–3.9 low, 4.0–6.9 medium, 7.0–10 high.
    pub(crate) fn v2_severity(self) -> Option<Severity> {
        match self.0 {
            0 => None,
            1..=39 => Some(Severity::Low),
            40..=69 => Some(Severity::Moderate),
            _ => Some(Severity::High),
        }
    }
}

/// The severity a `severity[]` entry of OSV type `kind` with `score` states, if computable.
pub(crate) fn severity_of(kind: &str, score: &str) -> Option<Severity> {
    match kind {
        "CVSS_V3" => v3_base_score(score)?.v3_severity(),
        "CVSS_V2" => v2_base_score(score)?.v2_severity(),
        // CVSS v4 needs its MacroVector lookup tables; without them the severity stays unknown.
        _ => None,
    }
}

/// Split `A:B/C:D` into metric pairs; `None` if a part is not `key:value` or a key repeats.
fn metrics(vector: &str) -> Option<Vec<(&str, &str)>> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for part in vector.split('/') {
        let (key, value) = part.split_once(':')?;
        if pairs.iter().any(|(seen, _)| *seen == key) {
            return None;
        }
        pairs.push((key, value));
    }
    Some(pairs)
}

fn metric<'a>(pairs: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The CVSS v3.0/v3.1 base score of a vector like `CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`.
pub(crate) fn v3_base_score(vector: &str) -> Option<Score> {
    let pairs = metrics(vector.trim())?;
    let minor = match metric(&pairs, "CVSS")? {
        "3.0" => 0,
        "3.1" => 1,
        _ => return None,
    };
    let changed = match metric(&pairs, "S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let attack_vector = match metric(&pairs, "AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let attack_complexity = match metric(&pairs, "AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let privileges = match (metric(&pairs, "PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let user_interaction = match metric(&pairs, "UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let impact_of = |key: &str| -> Option<f64> {
        match metric(&pairs, key)? {
            "H" => Some(0.56),
            "L" => Some(0.22),
            "N" => Some(0.0),
            _ => None,
        }
    };
    let (c, i, a) = (impact_of("C")?, impact_of("I")?, impact_of("A")?);

    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * attack_vector * attack_complexity * privileges * user_interaction;
    if impact <= 0.0 {
        return Some(Score(0));
    }
    let raw = if changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    Some(if minor == 1 {
        roundup_v31(raw)
    } else {
        roundup_v30(raw)
    })
}

/// CVSS v3.1 Appendix A `Roundup`: the smallest one-decimal number >= input, computed on
/// integers to avoid floating-point surprises.
fn roundup_v31(input: f64) -> Score {
    let int_input = (input * 100_000.0).round() as u64;
    if int_input % 10_000 == 0 {
        Score((int_input / 10_000) as u32)
    } else {
        Score((int_input / 10_000 + 1) as u32)
    }
}

/// CVSS v3.0 `Round up`: the smallest one-decimal number >= input.
fn roundup_v30(input: f64) -> Score {
    Score((input * 10.0).ceil() as u32)
}

/// The CVSS v2 base score of a vector like `AV:N/AC:L/Au:N/C:P/I:P/A:P` (a leading
/// `CVSS:2.0/` or surrounding parentheses are tolerated).
pub(crate) fn v2_base_score(vector: &str) -> Option<Score> {
    let trimmed = vector.trim().trim_start_matches('(').trim_end_matches(')');
    let trimmed = trimmed.strip_prefix("CVSS:2.0/").unwrap_or(trimmed);
    let pairs = metrics(trimmed)?;
    let access_vector = match metric(&pairs, "AV")? {
        "L" => 0.395,
        "A" => 0.646,
        "N" => 1.0,
        _ => return None,
    };
    let access_complexity = match metric(&pairs, "AC")? {
        "H" => 0.35,
        "M" => 0.61,
        "L" => 0.71,
        _ => return None,
    };
    let authentication = match metric(&pairs, "Au")? {
        "M" => 0.45,
        "S" => 0.56,
        "N" => 0.704,
        _ => return None,
    };
    let impact_of = |key: &str| -> Option<f64> {
        match metric(&pairs, key)? {
            "N" => Some(0.0),
            "P" => Some(0.275),
            "C" => Some(0.660),
            _ => None,
        }
    };
    let (c, i, a) = (impact_of("C")?, impact_of("I")?, impact_of("A")?);
    let impact = 10.41 * (1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a));
    let exploitability = 20.0 * access_vector * access_complexity * authentication;
    let f_impact = if impact == 0.0 { 0.0 } else { 1.176 };
    let base = ((0.6 * impact) + (0.4 * exploitability) - 1.5) * f_impact;
    // "round_to_1_decimal"; the 1e-9 nudge keeps values like x.x5 from falling below by
    // representation error.
    Some(Score(((base * 10.0) + 1e-9).round().max(0.0) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v3(vector: &str) -> u32 {
        v3_base_score(vector).map(|s| s.0).unwrap_or(999)
    }

    #[test]
    fn v3_known_vectors() {
        // Scores as published by the FIRST / NVD calculators.
        let cases = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 98),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 98),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 100),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", 81),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 75),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 61),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 78),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 75),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H", 74),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 16),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 64),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0),
        ];
        for (vector, expected) in cases {
            assert_eq!(v3(vector), expected, "{vector}");
        }
    }

    #[test]
    fn v3_rejects_malformed_vectors() {
        for vector in [
            "",
            "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
            "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        ] {
            assert_eq!(v3_base_score(vector), None, "{vector}");
        }
    }

    #[test]
    fn v2_known_vectors() {
        let cases = [
            ("AV:N/AC:L/Au:N/C:P/I:P/A:P", 75),
            ("AV:N/AC:L/Au:N/C:C/I:C/A:C", 100),
            ("AV:N/AC:M/Au:N/C:N/I:P/A:N", 43),
            ("AV:L/AC:L/Au:N/C:C/I:C/A:C", 72),
            ("AV:N/AC:L/Au:N/C:N/I:N/A:P", 50),
            ("AV:N/AC:L/Au:N/C:N/I:N/A:N", 0),
        ];
        for (vector, expected) in cases {
            assert_eq!(
                v2_base_score(vector).map(|s| s.0),
                Some(expected),
                "{vector}"
            );
        }
    }

    #[test]
    fn bands() {
        assert_eq!(Score(0).v3_severity(), None);
        assert_eq!(Score(1).v3_severity(), Some(Severity::Low));
        assert_eq!(Score(39).v3_severity(), Some(Severity::Low));
        assert_eq!(Score(40).v3_severity(), Some(Severity::Moderate));
        assert_eq!(Score(69).v3_severity(), Some(Severity::Moderate));
        assert_eq!(Score(70).v3_severity(), Some(Severity::High));
        assert_eq!(Score(89).v3_severity(), Some(Severity::High));
        assert_eq!(Score(90).v3_severity(), Some(Severity::Critical));
        assert_eq!(Score(100).v3_severity(), Some(Severity::Critical));
        assert_eq!(Score(100).v2_severity(), Some(Severity::High));
        assert_eq!(
            severity_of("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(Severity::Critical)
        );
        assert_eq!(severity_of("CVSS_V4", "CVSS:4.0/AV:N"), None);
    }
}
