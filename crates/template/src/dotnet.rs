//! The .NET formatting that ARM's functions expose: composite format strings for `format()`
//! (`{0}`, `{0,5}`, `{0:D3}`, `{0:N0}`), numeric format strings, and date and time format
//! strings for `utcNow()` and `dateTimeAdd()`, all in the invariant culture.
//!
//! Sources: learn.microsoft.com "Composite formatting", "Standard numeric format strings",
//! "Standard date and time format strings" and "Custom date and time format strings"; the
//! template function pages say `format` uses `System.String.Format` and `utcNow` .NET format
//! strings.

use serde_json::Value;

use crate::error::{EvalError, EvalResult};

/// `String.Format(format, args)` for the values a template can pass.
pub(crate) fn composite_format(format: &str, args: &[Value]) -> EvalResult<String> {
    let invalid = || EvalError::new("Input string was not in a correct format.");
    let characters: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut index = 0;
    while index < characters.len() {
        match characters[index] {
            '{' if characters.get(index + 1) == Some(&'{') => {
                out.push('{');
                index += 2;
            }
            '}' if characters.get(index + 1) == Some(&'}') => {
                out.push('}');
                index += 2;
            }
            '}' => return Err(invalid()),
            '{' => {
                index += 1;
                let mut number = String::new();
                while let Some(digit) = characters.get(index).filter(|c| c.is_ascii_digit()) {
                    number.push(*digit);
                    index += 1;
                }
                let position: usize = number.parse().map_err(|_| invalid())?;
                let mut alignment: i64 = 0;
                while characters.get(index) == Some(&' ') {
                    index += 1;
                }
                if characters.get(index) == Some(&',') {
                    index += 1;
                    let mut text = String::new();
                    while let Some(character) = characters
                        .get(index)
                        .filter(|c| c.is_ascii_digit() || **c == '-' || **c == ' ')
                    {
                        if *character != ' ' {
                            text.push(*character);
                        }
                        index += 1;
                    }
                    alignment = text.parse().map_err(|_| invalid())?;
                }
                let mut spec = String::new();
                if characters.get(index) == Some(&':') {
                    index += 1;
                    while let Some(character) = characters.get(index) {
                        if *character == '}' {
                            break;
                        }
                        spec.push(*character);
                        index += 1;
                    }
                }
                if characters.get(index) != Some(&'}') {
                    return Err(invalid());
                }
                index += 1;
                let arg = args.get(position).ok_or_else(|| {
                    EvalError::new(
                        "Index (zero based) must be greater than or equal to zero and less than the size of the argument list.",
                    )
                })?;
                let text = format_value(arg, &spec)?;
                let width = alignment.unsigned_abs() as usize;
                if width > MAX_WIDTH {
                    return Err(invalid());
                }
                let length = text.chars().count();
                if length < width {
                    let pad = " ".repeat(width - length);
                    if alignment > 0 {
                        out.push_str(&pad);
                        out.push_str(&text);
                    } else {
                        out.push_str(&text);
                        out.push_str(&pad);
                    }
                } else {
                    out.push_str(&text);
                }
            }
            other => {
                out.push(other);
                index += 1;
            }
        }
    }
    Ok(out)
}

fn format_value(value: &Value, spec: &str) -> EvalResult<String> {
    match value {
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                format_integer(integer, spec)
            } else {
                let float = number.as_f64().unwrap_or(0.0);
                format_float(float, spec)
            }
        }
        other => Ok(to_dotnet_string(other)),
    }
}

/// How .NET prints a JSON value when no format is given: booleans as `True`/`False`,
/// objects and arrays as compact JSON, null as nothing.
pub(crate) fn to_dotnet_string(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The widest field a format may ask for; .NET allows 999 999 digits, but a template
/// never needs more than this and a larger one would only cost memory.
pub(crate) const MAX_WIDTH: usize = 100_000;

fn precision(spec: &str, default: usize) -> EvalResult<usize> {
    if spec.len() <= 1 {
        return Ok(default);
    }
    spec[1..]
        .parse()
        .ok()
        .filter(|width| *width <= MAX_WIDTH)
        .ok_or_else(|| EvalError::new("Format specifier was invalid."))
}

fn format_integer(value: i64, spec: &str) -> EvalResult<String> {
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    let Some(kind) = spec.chars().next() else {
        return Ok(value.to_string());
    };
    let is_standard = kind.is_ascii_alphabetic()
        && (spec.len() == 1 || spec[1..].chars().all(|c| c.is_ascii_digit()));
    if !is_standard {
        return Ok(format_custom_number(value as f64, spec));
    }
    Ok(match kind {
        'D' | 'd' => {
            let digits = magnitude.to_string();
            let width = precision(spec, 0)?;
            format!("{sign}{digits:0>width$}")
        }
        'N' | 'n' => {
            let decimals = precision(spec, 2)?;
            let grouped = group_thousands(&magnitude.to_string());
            if decimals == 0 {
                format!("{sign}{grouped}")
            } else {
                format!("{sign}{grouped}.{}", "0".repeat(decimals))
            }
        }
        'F' | 'f' => {
            let decimals = precision(spec, 2)?;
            if decimals == 0 {
                format!("{sign}{magnitude}")
            } else {
                format!("{sign}{magnitude}.{}", "0".repeat(decimals))
            }
        }
        'X' | 'x' => {
            let width = precision(spec, 0)?;
            // .NET prints negative numbers in two's complement.
            let hex = if kind == 'X' {
                format!("{:X}", value as u64)
            } else {
                format!("{:x}", value as u64)
            };
            let hex = if value < 0 && value >= i64::from(i32::MIN) {
                hex[8..].to_string()
            } else {
                hex
            };
            format!("{hex:0>width$}")
        }
        'G' | 'g' => value.to_string(),
        _ => return Err(EvalError::new("Format specifier was invalid.")),
    })
}

fn format_float(value: f64, spec: &str) -> EvalResult<String> {
    let Some(kind) = spec.chars().next() else {
        return Ok(value.to_string());
    };
    Ok(match kind {
        'F' | 'f' => format!("{value:.*}", precision(spec, 2)?),
        'N' | 'n' => {
            let decimals = precision(spec, 2)?;
            let text = format!("{:.*}", decimals, value.abs());
            let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
            let sign = if value < 0.0 { "-" } else { "" };
            if fraction.is_empty() {
                format!("{sign}{}", group_thousands(whole))
            } else {
                format!("{sign}{}.{fraction}", group_thousands(whole))
            }
        }
        _ => value.to_string(),
    })
}

/// Custom numeric formats of zeros and hashes (`000`, `#,##0`), the ones templates use to
/// pad numbers in names.
fn format_custom_number(value: f64, spec: &str) -> String {
    let zeros = spec.chars().filter(|c| *c == '0').count();
    let grouped = spec.contains(',');
    let rounded = value.round() as i64;
    let digits = format!("{:0>zeros$}", rounded.unsigned_abs());
    let digits = if grouped {
        group_thousands(&digits)
    } else {
        digits
    };
    if rounded < 0 {
        format!("-{digits}")
    } else {
        digits
    }
}

/// A UTC date and time, to the second, and the fraction in 100 ns ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub ticks: u32,
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Howard Hinnant's algorithm: days since 1970-01-01 in the proleptic Gregorian calendar.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl DateTime {
    pub(crate) fn from_unix(seconds: i64) -> DateTime {
        let days = seconds.div_euclid(86_400);
        let rest = seconds.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: rest / 3600,
            minute: rest / 60 % 60,
            second: rest % 60,
            ticks: 0,
        }
    }

    pub(crate) fn unix(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
    }

    fn day_of_week(&self) -> usize {
        // 1970-01-01 was a Thursday.
        (days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) as usize
    }

    /// Reads ISO 8601 (`2020-04-07T14:53:14Z`, `2020-04-07 14:53:14Z`, with fraction or offset),
    /// as `dateTimeAdd` expects its base.
    pub(crate) fn parse_iso(text: &str) -> Option<DateTime> {
        let bytes = text.trim().as_bytes();
        let number = |from: usize, to: usize| -> Option<u32> {
            std::str::from_utf8(bytes.get(from..to)?).ok()?.parse().ok()
        };
        let year = i64::from(number(0, 4)?);
        if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
            return None;
        }
        let month = number(5, 7)?;
        let day = number(8, 10)?;
        let mut result = DateTime {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
            ticks: 0,
        };
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let mut offset_seconds: i64 = 0;
        if bytes.len() > 10 {
            if !matches!(bytes[10], b'T' | b't' | b' ') {
                return None;
            }
            result.hour = number(11, 13)?;
            result.minute = number(14, 16)?;
            let mut index = 16;
            if bytes.get(16) == Some(&b':') {
                result.second = number(17, 19)?;
                index = 19;
            }
            if bytes.get(index) == Some(&b'.') {
                let start = index + 1;
                let mut end = start;
                while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
                let fraction = std::str::from_utf8(&bytes[start..end]).ok()?;
                let padded = format!("{:0<7}", &fraction[..fraction.len().min(7)]);
                result.ticks = padded.parse().ok()?;
                index = end;
            }
            match bytes.get(index) {
                None | Some(b'Z' | b'z') => {}
                Some(sign @ (b'+' | b'-')) => {
                    let hours = i64::from(number(index + 1, index + 3)?);
                    let minutes = i64::from(number(index + 4, index + 6).unwrap_or(0));
                    let total = hours * 3600 + minutes * 60;
                    offset_seconds = if *sign == b'+' { total } else { -total };
                }
                _ => return None,
            }
            if result.hour > 23 || result.minute > 59 || result.second > 59 {
                return None;
            }
        }
        if offset_seconds != 0 {
            let ticks = result.ticks;
            result = DateTime::from_unix(result.unix() - offset_seconds);
            result.ticks = ticks;
        }
        Some(result)
    }

    /// Adds an ISO 8601 duration (`P3Y`, `-P9D`, `PT1H`, `P1Y2M3DT4H5M6S`, `P2W`).
    pub(crate) fn add_duration(&self, duration: &str) -> Option<DateTime> {
        let (negative, rest) = match duration.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, duration.strip_prefix('+').unwrap_or(duration)),
        };
        let rest = rest.strip_prefix(['P', 'p'])?;
        let sign: i64 = if negative { -1 } else { 1 };
        let (mut years, mut months, mut days, mut seconds) = (0i64, 0i64, 0i64, 0i64);
        let mut in_time = false;
        let mut number = String::new();
        let mut any = false;
        for character in rest.chars() {
            match character {
                'T' | 't' => in_time = true,
                '0'..='9' => number.push(character),
                unit => {
                    let amount: i64 = number.parse().ok()?;
                    number.clear();
                    any = true;
                    match (in_time, unit.to_ascii_uppercase()) {
                        (false, 'Y') => years += amount,
                        (false, 'M') => months += amount,
                        (false, 'W') => days += 7 * amount,
                        (false, 'D') => days += amount,
                        (true, 'H') => seconds += 3600 * amount,
                        (true, 'M') => seconds += 60 * amount,
                        (true, 'S') => seconds += amount,
                        _ => return None,
                    }
                }
            }
        }
        if !number.is_empty() || !any {
            return None;
        }
        let total_months =
            self.year * 12 + i64::from(self.month) - 1 + sign * (years * 12 + months);
        let year = total_months.div_euclid(12);
        let month = (total_months.rem_euclid(12) + 1) as u32;
        let day = self.day.min(days_in_month(year, month));
        let moved = DateTime {
            year,
            month,
            day,
            ..*self
        };
        let mut result = DateTime::from_unix(moved.unix() + sign * (days * 86_400 + seconds));
        result.ticks = self.ticks;
        Some(result)
    }

    /// Formats with a .NET standard (one letter) or custom date and time format string.
    pub(crate) fn format(&self, format: &str) -> EvalResult<String> {
        let pattern = match format {
            "" => "yyyyMMddTHHmmssZ",
            "d" => "MM/dd/yyyy",
            "D" => "dddd, dd MMMM yyyy",
            "f" => "dddd, dd MMMM yyyy HH:mm",
            "F" => "dddd, dd MMMM yyyy HH:mm:ss",
            "g" => "MM/dd/yyyy HH:mm",
            "G" => "MM/dd/yyyy HH:mm:ss",
            "m" | "M" => "MMMM dd",
            "o" | "O" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
            "r" | "R" => "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
            "s" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
            "t" => "HH:mm",
            "T" => "HH:mm:ss",
            "u" => "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
            "U" => "dddd, dd MMMM yyyy HH:mm:ss",
            "y" | "Y" => "yyyy MMMM",
            other if other.chars().count() == 1 => {
                return Err(EvalError::new("Input string was not in a correct format."))
            }
            custom => custom,
        };
        Ok(self.format_custom(pattern))
    }

    fn format_custom(&self, pattern: &str) -> String {
        const MONTHS: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        const DAYS: [&str; 7] = [
            "Sunday",
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
        ];
        let characters: Vec<char> = pattern.chars().collect();
        let mut out = String::new();
        let mut index = 0;
        while index < characters.len() {
            let character = characters[index];
            let mut run = 1;
            while characters.get(index + run) == Some(&character) {
                run += 1;
            }
            match character {
                'y' => {
                    out.push_str(&match run {
                        1 => (self.year % 100).to_string(),
                        2 => format!("{:02}", self.year % 100),
                        _ => format!("{:0width$}", self.year, width = run),
                    });
                }
                'M' => out.push_str(&match run {
                    1 => self.month.to_string(),
                    2 => format!("{:02}", self.month),
                    3 => MONTHS[self.month as usize - 1][..3].to_string(),
                    _ => MONTHS[self.month as usize - 1].to_string(),
                }),
                'd' => out.push_str(&match run {
                    1 => self.day.to_string(),
                    2 => format!("{:02}", self.day),
                    3 => DAYS[self.day_of_week()][..3].to_string(),
                    _ => DAYS[self.day_of_week()].to_string(),
                }),
                'H' => out.push_str(&pad(self.hour, run)),
                'h' => out.push_str(&pad(
                    if self.hour.is_multiple_of(12) {
                        12
                    } else {
                        self.hour % 12
                    },
                    run,
                )),
                'm' => out.push_str(&pad(self.minute, run)),
                's' => out.push_str(&pad(self.second, run)),
                't' => {
                    let designator = if self.hour < 12 { "AM" } else { "PM" };
                    out.push_str(if run == 1 {
                        &designator[..1]
                    } else {
                        designator
                    });
                }
                'f' | 'F' => {
                    let digits = format!("{:07}", self.ticks);
                    let shown = &digits[..run.min(7)];
                    if character == 'F' {
                        out.push_str(shown.trim_end_matches('0'));
                    } else {
                        out.push_str(shown);
                    }
                }
                'K' => out.push('Z'),
                'z' => out.push_str(match run {
                    1 => "+0",
                    2 => "+00",
                    _ => "+00:00",
                }),
                '\'' | '"' => {
                    // A quoted literal; `run` is not used for quotes.
                    let mut end = index + 1;
                    while end < characters.len() && characters[end] != character {
                        out.push(characters[end]);
                        end += 1;
                    }
                    index = end + 1;
                    continue;
                }
                '\\' => {
                    if let Some(next) = characters.get(index + 1) {
                        out.push(*next);
                    }
                    index += 2;
                    continue;
                }
                '%' => {
                    index += 1;
                    continue;
                }
                other => {
                    for _ in 0..run {
                        out.push(other);
                    }
                }
            }
            index += run;
        }
        out
    }
}

fn pad(value: u32, run: usize) -> String {
    if run >= 2 {
        format!("{value:02}")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_format(format: &str, args: Value, expected: &str) {
        let Value::Array(args) = args else {
            panic!("args must be an array")
        };
        assert_eq!(
            composite_format(format, &args).unwrap(),
            expected,
            "{format}"
        );
    }

    fn check_date(unix: i64, format: &str, expected: &str) {
        assert_eq!(
            DateTime::from_unix(unix).format(format).unwrap(),
            expected,
            "{format}"
        );
    }

    fn check_add(base: &str, duration: &str, expected: &str) {
        let date = DateTime::parse_iso(base)
            .unwrap()
            .add_duration(duration)
            .unwrap();
        assert_eq!(date.format("yyyy-MM-ddTHH:mm:ssZ").unwrap(), expected);
    }

    #[test]
    fn composite() {
        // The docs' format() example.
        check_format(
            "{0}, {1}. Formatted number: {2:N0}",
            json!(["Hello", "User", 8175133]),
            "Hello, User. Formatted number: 8,175,133",
        );
        check_format("vm{0:D3}", json!([7]), "vm007");
        check_format("{0:000}-{1}", json!([42, true]), "042-True");
        check_format("{{{0}}}", json!(["x"]), "{x}");
        check_format("[{0,4}][{0,-4}]", json!(["ab"]), "[  ab][ab  ]");
        check_format("{0:X}/{0:x4}", json!([255]), "FF/00ff");
        check_format("{0:N}", json!([1234]), "1,234.00");
        assert!(composite_format("{1}", &[json!("a")]).is_err());
        assert!(composite_format("{0", &[json!("a")]).is_err());
    }

    #[test]
    fn dates() {
        // 2019-03-05T17:53:18Z, the time of the docs' utcNow() example.
        let unix = 1_551_808_398;
        check_date(unix, "", "20190305T175318Z");
        check_date(unix, "d", "03/05/2019");
        check_date(unix, "M d", "3 5");
        check_date(unix, "u", "2019-03-05 17:53:18Z");
        check_date(unix, "o", "2019-03-05T17:53:18.0000000Z");
        check_date(unix, "yyyy-MM-ddTHH:mm:ssZ", "2019-03-05T17:53:18Z");
        check_date(unix, "dddd, MMM d, h:mm tt", "Tuesday, Mar 5, 5:53 PM");
        check_date(0, "s", "1970-01-01T00:00:00");
        assert!(DateTime::from_unix(0).format("q").is_err());
    }

    #[test]
    fn date_arithmetic() {
        // The docs' dateTimeAdd() example, base 2020-04-07 14:53:14Z.
        check_add("2020-04-07 14:53:14Z", "P3Y", "2023-04-07T14:53:14Z");
        check_add("2020-04-07 14:53:14Z", "-P9D", "2020-03-29T14:53:14Z");
        check_add("2020-04-07 14:53:14Z", "PT1H", "2020-04-07T15:53:14Z");
        check_add("2020-01-31T00:00:00Z", "P1M", "2020-02-29T00:00:00Z");
        check_add("2020-01-01T00:00:00+02:00", "PT0S", "2019-12-31T22:00:00Z");
        assert!(DateTime::parse_iso("2020-13-01").is_none());
        assert!(DateTime::parse_iso("2020-01-01")
            .unwrap()
            .add_duration("P")
            .is_none());
    }
}
