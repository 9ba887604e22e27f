//! The UTC calendar periods refills are counted in.

use chrono::{DateTime, Datelike, Utc};

use crate::config::Refill;

/// The period `at` falls in, as stored in `refilled_period`: "2026-11-27" (daily),
/// "2026-W48" (ISO weeks start on Monday), "2026-11" (monthly); `None` without refills.
pub fn period(refill: Refill, at: DateTime<Utc>) -> Option<String> {
    match refill {
        Refill::None => None,
        Refill::Daily => Some(at.format("%Y-%m-%d").to_string()),
        Refill::Weekly => {
            let week = at.iso_week();
            Some(format!("{}-W{:02}", week.year(), week.week()))
        }
        Refill::Monthly => Some(at.format("%Y-%m").to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap()
    }

    #[test]
    fn periods_follow_utc_calendar_boundaries() {
        let daily = Refill::Daily;
        assert_eq!(
            period(daily, at(2026, 11, 27, 23, 59, 59)).unwrap(),
            "2026-11-27"
        );
        assert_eq!(
            period(daily, at(2026, 11, 28, 0, 0, 0)).unwrap(),
            "2026-11-28"
        );
        // Sunday 2026-11-29 and Monday 2026-11-30 are in different ISO weeks.
        let weekly = Refill::Weekly;
        assert_eq!(
            period(weekly, at(2026, 11, 29, 23, 59, 59)).unwrap(),
            "2026-W48"
        );
        assert_eq!(
            period(weekly, at(2026, 11, 30, 0, 0, 0)).unwrap(),
            "2026-W49"
        );
        // ISO week years differ from calendar years around New Year.
        assert_eq!(
            period(weekly, at(2027, 1, 1, 12, 0, 0)).unwrap(),
            "2026-W53"
        );
        let monthly = Refill::Monthly;
        assert_eq!(
            period(monthly, at(2026, 12, 31, 23, 59, 59)).unwrap(),
            "2026-12"
        );
        assert_eq!(period(monthly, at(2027, 1, 1, 0, 0, 0)).unwrap(), "2027-01");
        assert_eq!(period(Refill::None, at(2026, 1, 1, 0, 0, 0)), None);
    }
}
