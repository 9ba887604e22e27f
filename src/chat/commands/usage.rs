//! `/usage`: a user's tokens per day over the last two weeks as a compact text chart
//! (one bar per day, scaled to the busiest), the models they went to, and the tokens
//! that came in (bought, granted) marked on their day.

use super::{Answer, Conversation};
use crate::core::event::IncomingEvent;
use crate::quota::usage::DayUsage;

/// Days `/usage` shows.
pub const DAYS: i64 = 14;
/// The longest bar, in block characters.
const BAR: i64 = 10;

impl Conversation {
    pub(super) async fn usage_report(&self, event: &IncomingEvent) -> Answer {
        let user = event.quota_user();
        let days = self.answers.quota.usage_by_day(&user, DAYS).await?;
        let mut text = chart(&days);
        if let Some(owner) = self.answers.quota.linked_to(&user).await? {
            text.push_str(&format!(
                "\n(This account is linked to {owner}: what it paid for you shows there.)"
            ));
        }
        Ok(text)
    }
}

/// The text chart of `days` (oldest first).
pub fn chart(days: &[DayUsage]) -> String {
    let busiest = days.iter().map(DayUsage::used).max().unwrap_or(0);
    let mut text = format!("Your tokens, last {} days (UTC):\n", days.len());
    for day in days {
        let used = day.used();
        let blocks = if busiest > 0 {
            (used * BAR + busiest - 1) / busiest
        } else {
            0
        };
        let bar = "█".repeat(blocks as usize);
        let mut line = format!("{} ", day.label());
        if !bar.is_empty() {
            line.push_str(&bar);
            line.push(' ');
        }
        line.push_str(&super::buy::thousands(used));
        if day.bought != 0 {
            line.push_str(&format!(" · bought {}", super::buy::thousands(day.bought)));
        }
        if day.refunded != 0 {
            line.push_str(&format!(
                " · refunded {}",
                super::buy::thousands(day.refunded)
            ));
        }
        if day.granted != 0 {
            line.push_str(&format!(
                " · granted {}",
                super::buy::thousands(day.granted)
            ));
        }
        if day.to_wallets != 0 {
            line.push_str(&format!(
                " · to group wallets {}",
                super::buy::thousands(day.to_wallets)
            ));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    let mut models: std::collections::BTreeMap<&str, i64> = Default::default();
    for day in days {
        for (model, used) in &day.by_model {
            *models.entry(model.as_str()).or_default() += used;
        }
    }
    if models.is_empty() {
        text.push_str("Nothing used in these days.");
    } else {
        let list: Vec<String> = models
            .iter()
            .map(|(m, used)| {
                let name = if m.is_empty() { "other" } else { m };
                format!("{name} {}", super::buy::thousands(*used))
            })
            .collect();
        text.push_str(&format!("By model: {}.", list.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_day_and_marks_show() {
        let mut days: Vec<DayUsage> = (20_000..20_003)
            .map(|day| DayUsage {
                day,
                ..DayUsage::default()
            })
            .collect();
        days[0].by_model.insert("gpt-4o-mini".into(), 1000);
        days[2].by_model.insert("gpt-4o-mini".into(), 250);
        days[2].by_model.insert("web_search".into(), 100);
        days[1].bought = 100_000;
        days[2].refunded = 40_000;
        days[2].to_wallets = 3_000;
        let text = chart(&days);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Your tokens, last 3 days (UTC):");
        assert_eq!(lines[1], "10-04 ██████████ 1,000");
        assert_eq!(lines[2], "10-05 0 · bought 100,000");
        assert_eq!(
            lines[3],
            "10-06 ████ 350 · refunded 40,000 · to group wallets 3,000"
        );
        assert_eq!(lines[4], "By model: gpt-4o-mini 1,250, web_search 100.");
    }
}
