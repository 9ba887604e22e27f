//! What the operator commands print: the admin service's typed answer as lines and
//! tables for a terminal (and for scripts: one record per line, fixed words).

use crate::admin::{Change, Done};

/// The text printed for `done`, ending with a newline.
pub fn render(done: Done) -> String {
    let mut out = String::new();
    match done {
        Done::Balance {
            user,
            balance,
            change,
        } => {
            out.push_str(&format!(
                "{user}: remaining {} used {} reserved {} granted {} requests {}{}{}\n",
                balance.remaining,
                balance.used,
                balance.reserved,
                balance.granted,
                balance.requests,
                if balance.unlimited {
                    " (unlimited)"
                } else {
                    ""
                },
                balance
                    .refill_tokens
                    .map(|n| format!(" (own refill {n})"))
                    .unwrap_or_default(),
            ));
            if let Change::Shown { today } = change {
                out.push_str(&format!("{user}: used today {today}\n"));
            }
        }
        Done::Holds(holds) => {
            let now = chrono::Utc::now().timestamp_millis();
            out.push_str(&format!(
                "{:>8} {:<28} {:>8} {:>8} {:>10}  owner\n",
                "id", "user", "tokens", "age", "expires in"
            ));
            for h in holds {
                let user = format!("{}:{}", h.platform, h.user_id);
                let age = format!("{}s", (now - h.created_ms).max(0) / 1000);
                let expires = match h.expires_ms - now {
                    left if left > 0 => format!("{}s", left / 1000),
                    _ => "expired".into(),
                };
                out.push_str(&format!(
                    "{:>8} {user:<28} {:>8} {age:>8} {expires:>10}  {}\n",
                    h.id, h.amount, h.owner
                ));
            }
        }
        Done::Released(id) => {
            out.push_str(&format!(
                "hold {id} released: its tokens are back in the balance\n"
            ));
        }
        Done::History { entries, .. } => {
            out.push_str(&format!(
                "{:<20} {:<8} {:>10} {:>10} {:>10} {:>10} {:>10}  model\n",
                "time (UTC)", "kind", "granted", "remaining", "reserved", "used", "balance"
            ));
            for e in entries {
                let at = chrono::DateTime::from_timestamp(e.at, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| e.at.to_string());
                out.push_str(&format!(
                    "{at:<20} {:<8} {:>+10} {:>+10} {:>+10} {:>+10} {:>10}  {}\n",
                    e.kind,
                    e.d_granted,
                    e.d_remaining,
                    e.d_reserved,
                    e.d_used,
                    e.remaining,
                    e.note.as_deref().unwrap_or("")
                ));
            }
        }
        Done::Stats(s) => {
            for (name, value) in [
                ("users", s.users),
                ("tokens_used_today", s.used_today),
                ("tokens_used_total", s.used),
                ("requests_today", s.requests_today),
                ("requests_total", s.requests),
                ("errors_today", s.errors_today),
                ("errors_total", s.errors),
            ] {
                out.push_str(&format!("{name} {value}\n"));
            }
        }
        Done::Rule { subject, allowed } => {
            out.push_str(&format!(
                "{subject} {}\n",
                if allowed { "allowed" } else { "denied" }
            ));
        }
        Done::Rules(rules) => {
            for (subject, allowed, by) in rules {
                let decision = if allowed { "allowed" } else { "denied" };
                out.push_str(&format!("{subject} {decision} (by {by})\n"));
            }
        }
        Done::Refunded(payment) => {
            out.push_str(&payment.refund_report());
            out.push('\n');
        }
        Done::Payments(payments) if payments.is_empty() => out.push_str("no payments\n"),
        Done::Payments(payments) => {
            for p in payments {
                out.push_str(&p.describe());
                out.push('\n');
            }
        }
    }
    out
}
