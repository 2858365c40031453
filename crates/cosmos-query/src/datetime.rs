//! Dates as Cosmos DB's date functions see them: UTC strings `YYYY-MM-DDThh:mm:ss.fffffffZ` and
//! ticks (100 ns) since the Unix epoch (<https://learn.microsoft.com/azure/cosmos-db/nosql/query/datetimetoticks>).
//!
//! The civil-date arithmetic is Howard Hinnant's days-from-civil algorithm, so no date library is
//! needed; the current time is never read here, it comes from the caller.

pub(crate) const TICKS_PER_SECOND: i64 = 10_000_000;
pub(crate) const TICKS_PER_DAY: i64 = 86_400 * TICKS_PER_SECOND;

/// A date and time broken into its parts; `fraction` is in ticks (0..10^7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts {
    pub(crate) year: i64,
    pub(crate) month: i64,
    pub(crate) day: i64,
    pub(crate) hour: i64,
    pub(crate) minute: i64,
    pub(crate) second: i64,
    pub(crate) fraction: i64,
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl Parts {
    /// Checks the ranges .NET's DateTime allows (years 1 to 9999).
    pub(crate) fn is_valid(&self) -> bool {
        (1..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && (0..24).contains(&self.hour)
            && (0..60).contains(&self.minute)
            && (0..60).contains(&self.second)
            && (0..TICKS_PER_SECOND).contains(&self.fraction)
    }

    pub(crate) fn to_ticks(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * TICKS_PER_DAY
            + (self.hour * 3600 + self.minute * 60 + self.second) * TICKS_PER_SECOND
            + self.fraction
    }

    pub(crate) fn from_ticks(ticks: i64) -> Parts {
        let days = ticks.div_euclid(TICKS_PER_DAY);
        let in_day = ticks.rem_euclid(TICKS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let seconds = in_day / TICKS_PER_SECOND;
        Parts {
            year,
            month,
            day,
            hour: seconds / 3600,
            minute: seconds / 60 % 60,
            second: seconds % 60,
            fraction: in_day % TICKS_PER_SECOND,
        }
    }
}

/// Parses `YYYY-MM-DDThh:mm:ss[.f{1,7}][Z]`; the examples of the DateTime pages pass strings both
/// with and without the trailing `Z`.
pub(crate) fn parse(text: &str) -> Option<Parts> {
    let bytes = text.as_bytes();
    let digits = |from: usize, count: usize| -> Option<i64> {
        let slice = bytes.get(from..from + count)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(slice).ok()?.parse().ok()
    };
    let separator = |at: usize, expected: u8| bytes.get(at) == Some(&expected);
    if !(separator(4, b'-')
        && separator(7, b'-')
        && separator(10, b'T')
        && separator(13, b':')
        && separator(16, b':'))
    {
        return None;
    }
    let mut parts = Parts {
        year: digits(0, 4)?,
        month: digits(5, 2)?,
        day: digits(8, 2)?,
        hour: digits(11, 2)?,
        minute: digits(14, 2)?,
        second: digits(17, 2)?,
        fraction: 0,
    };
    let mut index = 19;
    if separator(index, b'.') {
        index += 1;
        let start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        let count = index - start;
        if count == 0 || count > 7 {
            return None;
        }
        parts.fraction = digits(start, count)? * 10_i64.pow((7 - count) as u32);
    }
    if separator(index, b'Z') {
        index += 1;
    }
    (index == bytes.len() && parts.is_valid()).then_some(parts)
}

pub(crate) fn format(ticks: i64) -> Option<String> {
    let parts = Parts::from_ticks(ticks);
    if !parts.is_valid() {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        parts.year, parts.month, parts.day, parts.hour, parts.minute, parts.second, parts.fraction
    ))
}

/// A date and time part name, as the DateTime pages list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Nanosecond,
}

impl Part {
    pub(crate) fn from_name(name: &str) -> Option<Part> {
        let part = match name.to_ascii_lowercase().as_str() {
            "year" | "yyyy" | "yy" => Part::Year,
            "month" | "mm" | "m" => Part::Month,
            "day" | "dd" | "d" => Part::Day,
            "hour" | "hh" => Part::Hour,
            "minute" | "mi" | "n" => Part::Minute,
            "second" | "ss" | "s" => Part::Second,
            "millisecond" | "ms" => Part::Millisecond,
            "microsecond" | "mcs" => Part::Microsecond,
            "nanosecond" | "ns" => Part::Nanosecond,
            _ => return None,
        };
        Some(part)
    }

    /// The length of a fixed-length part in ticks (days and shorter).
    fn ticks(self) -> Option<i64> {
        match self {
            Part::Year | Part::Month | Part::Nanosecond => None,
            Part::Day => Some(TICKS_PER_DAY),
            Part::Hour => Some(3600 * TICKS_PER_SECOND),
            Part::Minute => Some(60 * TICKS_PER_SECOND),
            Part::Second => Some(TICKS_PER_SECOND),
            Part::Millisecond => Some(10_000),
            Part::Microsecond => Some(10),
        }
    }
}

pub(crate) fn part(part: Part, parts: Parts) -> i64 {
    match part {
        Part::Year => parts.year,
        Part::Month => parts.month,
        Part::Day => parts.day,
        Part::Hour => parts.hour,
        Part::Minute => parts.minute,
        Part::Second => parts.second,
        Part::Millisecond => parts.fraction / 10_000,
        Part::Microsecond => parts.fraction / 10,
        Part::Nanosecond => parts.fraction * 100,
    }
}

/// DateTimeAdd: months and years keep the day when it exists and clamp it to the month's end
/// otherwise, as .NET's AddMonths does.
pub(crate) fn add(part: Part, amount: i64, parts: Parts) -> Option<i64> {
    match part {
        Part::Year | Part::Month => {
            let months = if part == Part::Year {
                amount.checked_mul(12)?
            } else {
                amount
            };
            let total = (parts.year * 12 + parts.month - 1).checked_add(months)?;
            let year = total.div_euclid(12);
            let month = total.rem_euclid(12) + 1;
            let day = parts.day.min(days_in_month(year, month));
            let moved = Parts {
                year,
                month,
                day,
                ..parts
            };
            moved.is_valid().then(|| moved.to_ticks())
        }
        // Nanoseconds below the tick resolution are dropped.
        Part::Nanosecond => parts.to_ticks().checked_add(amount / 100),
        _ => parts
            .to_ticks()
            .checked_add(amount.checked_mul(part.ticks()?)?),
    }
}

/// DateTimeDiff counts the part boundaries crossed between the two dates, not whole intervals.
/// `None` when the count does not fit a 64-bit integer (nanoseconds over ~292 years).
pub(crate) fn diff(part: Part, start: Parts, end: Parts) -> Option<i64> {
    Some(match part {
        Part::Year => end.year - start.year,
        Part::Month => (end.year * 12 + end.month) - (start.year * 12 + start.month),
        Part::Nanosecond => (end.to_ticks() - start.to_ticks()).checked_mul(100)?,
        _ => {
            let unit = part.ticks().unwrap_or(1);
            end.to_ticks().div_euclid(unit) - start.to_ticks().div_euclid(unit)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for text in [
            "1970-01-01T00:00:00.0000000Z",
            "2016-05-29T08:30:00.1301617Z",
            "2000-02-29T23:59:59.9999999Z",
        ] {
            let parts = parse(text).unwrap();
            assert_eq!(format(parts.to_ticks()).as_deref(), Some(text));
        }
        assert_eq!(
            parse("2015-05-19T12:00:00.0000000").unwrap().to_ticks() / 10_000,
            1_432_036_800_000
        );
        assert_eq!(parse("2019-02-30T00:00:00Z"), None);
        assert_eq!(parse("2019-02-03"), None);
    }
}
