//! The `/budget` command's language: a group's wallet shown, funded, and its rules set.
//! Pure: `text → BudgetOp`.

use std::fmt;

/// What a group's members do when its wallet cannot pay for a question (empty, or the
/// member's daily share is spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenEmpty {
    /// They pay from their own balance, as outside the group.
    #[default]
    Own,
    /// They are refused until the wallet is topped up (or the next day, for a share).
    Refuse,
}

impl WhenEmpty {
    pub fn as_str(self) -> &'static str {
        match self {
            WhenEmpty::Own => "own",
            WhenEmpty::Refuse => "refuse",
        }
    }

    pub fn parse(text: &str) -> Option<WhenEmpty> {
        match text.to_ascii_lowercase().as_str() {
            "own" | "self" | "members" => Some(WhenEmpty::Own),
            "refuse" | "stop" | "none" => Some(WhenEmpty::Refuse),
            _ => None,
        }
    }
}

impl fmt::Display for WhenEmpty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `/budget …` in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetOp {
    /// The wallet, its rules and the members' use today.
    Show,
    /// Moves tokens into the wallet (a group admin's own, or granted by a bot admin).
    Add(i64),
    /// Tokens each member may spend from the wallet per UTC day; 0 lifts the limit.
    MemberLimit(i64),
    WhenEmpty(WhenEmpty),
    /// Not understood: the usage to show.
    Invalid,
}

/// What `/budget` takes, shown when its arguments are not understood.
pub const BUDGET_USAGE: &str = "/budget — this group's wallet; /budget add <tokens> — move tokens from your balance into it (group admins); /budget member-limit <tokens per day | off>; /budget when-empty own|refuse — whether members pay themselves or are refused when the wallet cannot pay";

/// Parses the arguments of `/budget`.
pub fn parse_budget(args: &str) -> BudgetOp {
    let mut words = args.split_whitespace();
    let (Some(verb), value, None) = (words.next(), words.next(), words.next()) else {
        return if args.trim().is_empty() {
            BudgetOp::Show
        } else {
            BudgetOp::Invalid
        };
    };
    match (verb.to_ascii_lowercase().as_str(), value) {
        ("show", None) => BudgetOp::Show,
        ("add" | "fund" | "topup", Some(n)) => match tokens(n) {
            Some(n) if n > 0 => BudgetOp::Add(n),
            _ => BudgetOp::Invalid,
        },
        ("member-limit" | "limit" | "member_limit", Some(n)) => {
            if matches!(n.to_ascii_lowercase().as_str(), "off" | "none") {
                BudgetOp::MemberLimit(0)
            } else {
                tokens(n).map_or(BudgetOp::Invalid, BudgetOp::MemberLimit)
            }
        }
        ("when-empty" | "empty" | "when_empty", Some(w)) => {
            WhenEmpty::parse(w).map_or(BudgetOp::Invalid, BudgetOp::WhenEmpty)
        }
        _ => BudgetOp::Invalid,
    }
}

/// The most tokens one `/budget` command moves or allows (a typo of a few digits more
/// is refused rather than obeyed).
pub const MAX_BUDGET_TOKENS: i64 = 1_000_000_000_000;

/// `12000`, `12_000`, `12,000`, `12k`, `3m`.
fn tokens(text: &str) -> Option<i64> {
    let clean: String = text.chars().filter(|c| !matches!(c, '_' | ',')).collect();
    let lower = clean.to_ascii_lowercase();
    let (digits, times) = match lower.strip_suffix('k') {
        Some(d) => (d, 1_000),
        None => match lower.strip_suffix('m') {
            Some(d) => (d, 1_000_000),
            None => (lower.as_str(), 1),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.parse::<i64>().ok()?.checked_mul(times)?;
    (n <= MAX_BUDGET_TOKENS).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_commands_parse() {
        assert_eq!(parse_budget(""), BudgetOp::Show);
        assert_eq!(parse_budget("show"), BudgetOp::Show);
        assert_eq!(parse_budget("add 5000"), BudgetOp::Add(5000));
        assert_eq!(parse_budget("add 12,000"), BudgetOp::Add(12_000));
        assert_eq!(parse_budget("ADD 10k"), BudgetOp::Add(10_000));
        assert_eq!(parse_budget("add 2m"), BudgetOp::Add(2_000_000));
        assert_eq!(
            parse_budget("member-limit 2000"),
            BudgetOp::MemberLimit(2000)
        );
        assert_eq!(parse_budget("limit off"), BudgetOp::MemberLimit(0));
        assert_eq!(parse_budget("member-limit 0"), BudgetOp::MemberLimit(0));
        assert_eq!(
            parse_budget("when-empty refuse"),
            BudgetOp::WhenEmpty(WhenEmpty::Refuse)
        );
        assert_eq!(
            parse_budget("when-empty own"),
            BudgetOp::WhenEmpty(WhenEmpty::Own)
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_usage() {
        for bad in [
            "add",
            "add 0",
            "add -5",
            "add lots",
            "add 5 6",
            "add 99999999999999999999",
            "add 2000000000000",
            "member-limit",
            "member-limit -1",
            "when-empty maybe",
            "take 5",
            "show me",
        ] {
            assert_eq!(parse_budget(bad), BudgetOp::Invalid, "{bad}");
        }
    }
}
