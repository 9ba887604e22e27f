//! The usage chart of the web pages: tokens per day over the last two weeks as a small
//! inline SVG bar chart (no script, no external file: the page's CSP allows it), each bar
//! titled with its day and figures, days with tokens bought or granted marked by a dot.

use maud::{Markup, html};

use crate::quota::usage::DayUsage;

const BAR_WIDTH: i64 = 14;
const GAP: i64 = 4;
const HEIGHT: i64 = 60;
/// Room above the bars for a day's mark.
const TOP: i64 = 8;

pub fn chart(days: &[DayUsage]) -> Markup {
    let busiest = days.iter().map(DayUsage::used).max().unwrap_or(0).max(1);
    let width = days.len() as i64 * (BAR_WIDTH + GAP);
    let total: i64 = days.iter().map(DayUsage::used).sum();
    let label = format!(
        "Tokens used per day, last {} days: {} in all",
        days.len(),
        total
    );
    html! {
        figure.usage {
            svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
                width=(width) height=(HEIGHT + TOP + 14)
                viewBox={ "0 0 " (width) " " (HEIGHT + TOP + 14) } {
                @for (i, day) in days.iter().enumerate() {
                    @let used = day.used();
                    @let h = if used > 0 { (used * HEIGHT / busiest).max(1) } else { 0 };
                    @let x = i as i64 * (BAR_WIDTH + GAP);
                    g.day data-day=(day.label()) data-used=(used) {
                        title { (tooltip(day)) }
                        rect.bar x=(x) y=(TOP + HEIGHT - h) width=(BAR_WIDTH) height=(h) {}
                        @if day.bought != 0 || day.granted != 0 {
                            circle.mark cx=(x + BAR_WIDTH / 2) cy=(TOP / 2) r="3" {}
                        }
                        @if i % 7 == 0 {
                            text x=(x) y=(TOP + HEIGHT + 12) font-size="10" { (day.label()) }
                        }
                    }
                }
            }
            figcaption { (label) }
        }
    }
}

fn tooltip(day: &DayUsage) -> String {
    let mut text = format!("{}: {} tokens", day.label(), day.used());
    for (model, used) in &day.by_model {
        let name = if model.is_empty() { "other" } else { model };
        text.push_str(&format!(", {name} {used}"));
    }
    if day.bought != 0 {
        text.push_str(&format!("; bought {}", day.bought));
    }
    if day.refunded != 0 {
        text.push_str(&format!("; refunded {}", day.refunded));
    }
    if day.to_wallets != 0 {
        text.push_str(&format!("; to group wallets {}", day.to_wallets));
    }
    if day.granted != 0 {
        text.push_str(&format!("; granted {}", day.granted));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_scaled_titled_and_marked() {
        let mut days: Vec<DayUsage> = (20_000..20_014)
            .map(|day| DayUsage {
                day,
                ..DayUsage::default()
            })
            .collect();
        days[13].by_model.insert("gpt-4o-mini".into(), 500);
        days[12].by_model.insert("gpt-4o-mini".into(), 250);
        days[12].bought = 100_000;
        let svg = chart(&days).into_string();
        assert_eq!(svg.matches("<rect").count(), 14);
        assert!(svg.contains(r#"y="8" width="14" height="60""#), "{svg}");
        assert!(svg.contains(r#"y="38" width="14" height="30""#), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(
            svg.contains("10-16: 250 tokens, gpt-4o-mini 250; bought 100000"),
            "{svg}"
        );
        assert!(svg.contains("last 14 days: 750 in all"));
    }
}
