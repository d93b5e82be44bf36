//! The one-line block message: what an agent reads in the HTTP reason phrase and body.
//!
//! `moat: blocked NAME[@VERSION] (RULE): DETAIL[; DETAIL…][; approved: NAME@V, …]; why: URL`,
//! printable ASCII only, at most [`LIMIT`] bytes. When too long, the detail is shortened first,
//! then approved entries after the first are dropped; the prefix, the first approved entry and
//! the `why` URL are kept (only a pathologically long name or URL gets cut).

use crate::{Action, Finding, RuleId, Verdict};

/// Longest message, in bytes.
pub(crate) const LIMIT: usize = 300;

/// Shortest detail worth keeping before approved entries are dropped to make room.
const MIN_DETAIL: usize = 60;

/// How far back a cut may move to end on a word boundary.
const WORD_SLACK: usize = 20;

/// Marks text that was cut.
const ELLIPSIS: &str = "...";

/// Build the block message of `verdict`.
pub(crate) fn block_message(verdict: &Verdict, why_url: &str) -> String {
    let unwaived: Vec<&Finding> = verdict.unwaived().collect();
    let blocking: Vec<&Finding> = unwaived
        .iter()
        .copied()
        .filter(|finding| finding.action == Action::Block)
        .collect();
    let shown = if blocking.is_empty() {
        unwaived
    } else {
        blocking
    };
    let rule = shown.first().map_or(RuleId::Error, |finding| finding.rule);

    let package = ascii(&verdict.package);
    let subject = match &verdict.version {
        Some(version) => format!("{package}@{}", ascii(version)),
        None => package.clone(),
    };
    let prefix = format!("moat: blocked {subject} ({rule}): ");
    let detail = if shown.is_empty() {
        "no rule blocks this".to_owned()
    } else {
        ascii(
            &shown
                .iter()
                .map(|finding| detail(finding))
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    let approved: Vec<String> = verdict
        .approved
        .iter()
        .map(|version| format!("{package}@{}", ascii(version)))
        .collect();
    let why = format!("; why: {}", ascii(why_url));

    assemble(&prefix, &detail, &approved, &why)
}

/// Fit the parts into [`LIMIT`] bytes.
fn assemble(prefix: &str, detail: &str, approved: &[String], why: &str) -> String {
    let approved_part = |count: usize| match count {
        0 => String::new(),
        count => format!("; approved: {}", approved[..count].join(", ")),
    };
    let join =
        |detail: &str, count: usize| format!("{prefix}{detail}{}{why}", approved_part(count));

    let full = join(detail, approved.len());
    if full.len() <= LIMIT {
        return full;
    }
    let wanted_detail = detail.len().min(MIN_DETAIL);
    let fewest = approved.len().min(1);
    for count in (fewest..=approved.len()).rev() {
        let fixed = prefix.len() + approved_part(count).len() + why.len();
        let budget = LIMIT.saturating_sub(fixed);
        if budget >= wanted_detail || count == fewest {
            let mut message = join(&shorten(detail, budget), count);
            // Only a name or URL longer than the whole limit gets here.
            if message.len() > LIMIT {
                message = shorten(&message, LIMIT);
            }
            return message;
        }
    }
    shorten(&full, LIMIT)
}

/// `text` cut to at most `budget` bytes, marked with `...` when cut. ASCII input.
fn shorten(text: &str, budget: usize) -> String {
    if text.len() <= budget {
        return text.to_owned();
    }
    if budget <= ELLIPSIS.len() {
        return ELLIPSIS[..budget].to_owned();
    }
    let mut cut = budget - ELLIPSIS.len();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    // Prefer ending on a word boundary when one is near.
    if let Some(space) = text[..cut]
        .rfind(' ')
        .filter(|space| cut - space <= WORD_SLACK)
    {
        cut = space;
    }
    let kept = text[..cut].trim_end_matches([' ', ',', ';', '(']);
    format!("{kept}{ELLIPSIS}")
}

/// One finding's short detail.
fn detail(finding: &Finding) -> String {
    match finding.rule {
        RuleId::Malicious | RuleId::Vulnerable if !finding.advisories.is_empty() => finding
            .advisories
            .iter()
            .map(|advisory| {
                let summary = crate::rules::short_summary(&advisory.summary);
                let mut notes: Vec<&str> = Vec::new();
                if finding.rule == RuleId::Vulnerable {
                    notes.push(
                        advisory
                            .severity
                            .map_or("unknown severity", |severity| severity.as_str()),
                    );
                }
                if !summary.is_empty() {
                    notes.push(&summary);
                }
                if notes.is_empty() {
                    advisory.id.clone()
                } else {
                    format!("{} ({})", advisory.id, notes.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        RuleId::Typosquat => match &finding.did_you_mean {
            Some(target) => format!("resembles popular package {target}; did you mean {target}?"),
            None => finding.message.clone(),
        },
        // `; ` separates rules in the message: keep it out of a single rule's detail.
        RuleId::TooNew | RuleId::Denied | RuleId::Error | RuleId::Egress => {
            finding.message.replace("; ", ", ")
        }
        RuleId::Malicious | RuleId::Vulnerable => finding.message.clone(),
    }
}

/// Printable ASCII only: whitespace becomes a space, anything else `?`.
fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c,
            c if c.is_whitespace() => ' ',
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_replaces_everything_else() {
        assert_eq!(ascii("caf\u{e9}\tbar\n\u{7}"), "caf? bar ?");
    }

    #[test]
    fn shorten_marks_the_cut() {
        assert_eq!(shorten("abcdef", 10), "abcdef");
        assert_eq!(shorten("abc def ghi", 8), "abc...");
        assert_eq!(shorten("abcdef", 2), "..");
    }

    #[test]
    fn assemble_keeps_prefix_first_approved_and_why() {
        let prefix = "moat: blocked a@1.0.0 (moat.vulnerable): ";
        let detail = "x".repeat(400);
        let approved = vec![
            "a@1.0.1".to_owned(),
            "a@2.0.0".to_owned(),
            "a@3.0.0".to_owned(),
        ];
        let why = "; why: http://127.0.0.1:7070/-/why/npm/a/1.0.0";
        let message = assemble(prefix, &detail, &approved, why);
        assert_eq!(message.len(), LIMIT);
        assert!(message.starts_with(prefix));
        assert!(message.ends_with(why));
        assert!(message.contains("; approved: a@1.0.1"));

        let huge_why = format!("; why: http://x/{}", "y".repeat(400));
        let message = assemble(prefix, "short", &approved, &huge_why);
        assert!(message.len() <= LIMIT);
        assert!(message.starts_with(prefix));
    }
}
