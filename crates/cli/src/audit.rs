//! `openmi audit list`: the audit log, read through the APIs Azure serves it on.
//!
//! - `--kind administrative` (the default): ARM's Activity Log,
//!   `GET /subscriptions/S/providers/Microsoft.Insights/eventtypes/management/values` with
//!   api-version 2015-04-01 and the `$filter` `az monitor activity-log list` builds
//!   (`eventTimestamp ge T [and eventTimestamp le T]` and `resourceGroupName`, `resourceId`,
//!   `resourceProvider`, `correlationId`, `caller`, `status` comparisons), paged by `nextLink`;
//! - `--kind signin`: Graph's `/v1.0/auditLogs/signIns`; `--kind directory`: Graph's
//!   `/v1.0/auditLogs/directoryAudits`, both with `$top` and `$filter` on `createdDateTime` /
//!   `activityDateTime`, `correlationId` and the caller, paged by `@odata.nextLink`, with the
//!   session's token (openmi's Graph accepts the ARM audience, see `Arm::graph_get`).
//!
//! As az does, the window is the last 6 hours unless `--since` or `--start-time` says otherwise,
//! and at most `--max-events` (50) events are printed, newest first, as the API returned them.
//! An option that a kind has no field for is refused before any request is sent. Two filters are
//! applied here rather than by the server, because the Graph `$filter`s openmi serves have no
//! form for them: `--status Failed` on sign-ins (`status/errorCode` other than 0) and `--status`
//! on directory audits (`result`).

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::arm::{self, Arm, ArmArgs};
use crate::output::Outcome;

/// api-version of the Activity Log (what az and azure-mgmt-monitor send).
const API_ACTIVITY_LOG: &str = "2015-04-01";
/// The window when neither `--since` nor `--start-time` is given (az's `--offset` default).
const DEFAULT_WINDOW_SECONDS: i64 = 6 * 3600;
/// The largest page Graph's audit logs give.
const GRAPH_MAX_TOP: u32 = 1000;
/// The longest `--since` taken (the Activity Log keeps 90 days; this is far beyond).
const MAX_SINCE_SECONDS: i64 = 3650 * 86400;

/// `openmi audit ...`
#[derive(Debug, Args)]
pub struct AuditCommand {
    #[command(flatten)]
    pub global: ArmArgs,
    #[command(subcommand)]
    pub action: AuditAction,
}

/// The audit verbs.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// List audit events, newest first: ARM writes (the Activity Log), sign-ins or directory
    /// changes.
    List(ListArgs),
}

/// Which log to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// ARM's Activity Log: writes, deletes, actions and refused requests.
    Administrative,
    /// Graph's sign-in log: tokens issued and failed sign-ins.
    Signin,
    /// Graph's directory audits: applications, service principals, users changed.
    Directory,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Administrative => "administrative",
            Kind::Signin => "signin",
            Kind::Directory => "directory",
        }
    }
}

/// `--status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    Succeeded,
    Failed,
}

/// `openmi audit list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The log to read.
    #[arg(long, value_enum, ignore_case = true, default_value = "administrative")]
    kind: Kind,
    /// How far back to look: a number and a unit (s, m, h, d), e.g. 30m, 6h, 7d, 1d12h.
    /// Default: 6h.
    #[arg(long, visible_alias = "offset", value_parser = parse_duration, conflicts_with_all = ["start_time", "end_time"])]
    since: Option<i64>,
    /// Start of the window, ISO 8601 (2026-01-31T08:00:00Z; without a zone, UTC).
    #[arg(long, value_parser = parse_time)]
    start_time: Option<OffsetDateTime>,
    /// End of the window, ISO 8601; default: now.
    #[arg(long, value_parser = parse_time, requires = "start_time")]
    end_time: Option<OffsetDateTime>,
    /// Events of this resource group (administrative only).
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
    /// Events of this resource or anything under it (administrative only).
    #[arg(long)]
    resource_id: Option<String>,
    /// Events of this resource provider, e.g. Microsoft.ManagedIdentity (administrative only).
    #[arg(long)]
    namespace: Option<String>,
    /// Events of one operation.
    #[arg(long)]
    correlation_id: Option<String>,
    /// Events of this caller: a user's sign-in name, or a principal's object id.
    #[arg(long)]
    caller: Option<String>,
    /// Only events with this outcome.
    #[arg(long, value_enum, ignore_case = true)]
    status: Option<Status>,
    /// The most events to print.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    max_events: u32,
}

/// Runs an audit verb.
pub async fn run(command: AuditCommand) -> anyhow::Result<Outcome> {
    let AuditAction::List(args) = command.action;
    check_options(&args, command.global.subscription.is_some())?;
    let (from, to) = window(&args, OffsetDateTime::now_utc())?;
    let arm = Arm::connect(command.global.subscription.as_deref()).await?;
    let first_page = first_page(&args, &arm.subscription_path(), from, to);
    let kind = args.kind;
    let status = args.status;
    let events = arm
        .list_up_to(&first_page, args.max_events as usize, |event| {
            kept_here(kind, status, event)
        })
        .await?;
    let table = match kind {
        Kind::Administrative => administrative_table,
        Kind::Signin => sign_in_table,
        Kind::Directory => directory_table,
    };
    Ok(Outcome::with_table(Value::Array(events), table))
}

/// Refuses the options `args.kind` has no field for.
fn check_options(args: &ListArgs, subscription: bool) -> anyhow::Result<()> {
    if args.kind == Kind::Administrative {
        return Ok(());
    }
    let arm_only = [
        ("--resource-group", args.resource_group.is_some()),
        ("--resource-id", args.resource_id.is_some()),
        ("--namespace", args.namespace.is_some()),
        ("--subscription", subscription),
    ];
    if let Some((option, _)) = arm_only.iter().find(|(_, given)| *given) {
        return Err(anyhow!(
            "{option} does not apply to --kind {}: {} records are not ARM events and belong to no subscription or resource; use it with --kind administrative",
            args.kind.name(),
            match args.kind {
                Kind::Signin => "sign-in",
                _ => "directory audit",
            }
        ));
    }
    Ok(())
}

/// The window `[from, to]` asked for; `to` is `None` for "until now".
fn window(
    args: &ListArgs,
    now: OffsetDateTime,
) -> anyhow::Result<(OffsetDateTime, Option<OffsetDateTime>)> {
    if let Some(start) = args.start_time {
        if let Some(end) = args.end_time {
            if end < start {
                return Err(anyhow!("--end-time must not be before --start-time"));
            }
        }
        return Ok((start, args.end_time));
    }
    let seconds = args.since.unwrap_or(DEFAULT_WINDOW_SECONDS);
    let from = now
        .checked_sub(time::Duration::seconds(seconds))
        .ok_or_else(|| anyhow!("--since reaches before the earliest time supported"))?;
    Ok((from, None))
}

/// An OData string literal.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A time as the filters carry it: RFC 3339 in UTC, unquoted (as az sends it).
fn timestamp(moment: OffsetDateTime) -> String {
    moment
        .to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The `$filter` of the request for `args.kind`.
fn filter_text(args: &ListArgs, from: OffsetDateTime, to: Option<OffsetDateTime>) -> String {
    let time_field = match args.kind {
        Kind::Administrative => "eventTimestamp",
        Kind::Signin => "createdDateTime",
        Kind::Directory => "activityDateTime",
    };
    let mut conditions = vec![format!("{time_field} ge {}", timestamp(from))];
    if let Some(to) = to {
        conditions.push(format!("{time_field} le {}", timestamp(to)));
    }
    let mut equal = |field: &str, value: &str| conditions.push(format!("{field} eq {value}"));
    let by_user_name = args.caller.as_deref().is_some_and(|c| c.contains('@'));
    match args.kind {
        Kind::Administrative => {
            for (field, value) in [
                ("resourceGroupName", &args.resource_group),
                ("resourceId", &args.resource_id),
                ("resourceProvider", &args.namespace),
                ("correlationId", &args.correlation_id),
                ("caller", &args.caller),
            ] {
                if let Some(value) = value {
                    equal(field, &quoted(value));
                }
            }
            if let Some(status) = args.status {
                equal(
                    "status",
                    &quoted(match status {
                        Status::Succeeded => "Succeeded",
                        Status::Failed => "Failed",
                    }),
                );
            }
        }
        Kind::Signin => {
            if let Some(correlation_id) = &args.correlation_id {
                equal("correlationId", &quoted(correlation_id));
            }
            if let Some(caller) = &args.caller {
                let field = if by_user_name {
                    "userPrincipalName"
                } else {
                    "servicePrincipalId"
                };
                equal(field, &quoted(caller));
            }
            // Graph writes failures as `status/errorCode ne 0`, a form openmi's filter does not
            // take: failures are picked out here (`kept_here`).
            if args.status == Some(Status::Succeeded) {
                equal("status/errorCode", "0");
            }
        }
        Kind::Directory => {
            if let Some(correlation_id) = &args.correlation_id {
                equal("correlationId", &quoted(correlation_id));
            }
            if let Some(caller) = &args.caller {
                let field = if by_user_name {
                    "initiatedBy/user/userPrincipalName"
                } else {
                    "initiatedBy/app/servicePrincipalId"
                };
                equal(field, &quoted(caller));
            }
        }
    }
    conditions.join(" and ")
}

/// The URL of the first page (a path with its query) on the server.
fn first_page(
    args: &ListArgs,
    subscription_path: &str,
    from: OffsetDateTime,
    to: Option<OffsetDateTime>,
) -> String {
    let filter = arm::query_value(&filter_text(args, from, to));
    match args.kind {
        Kind::Administrative => format!(
            "{subscription_path}/providers/Microsoft.Insights/eventtypes/management/values?api-version={API_ACTIVITY_LOG}&$filter={filter}"
        ),
        Kind::Signin | Kind::Directory => {
            let collection = if args.kind == Kind::Signin {
                "signIns"
            } else {
                "directoryAudits"
            };
            // With a filter applied here, full pages: most of a page may be dropped.
            let top = if filtered_here(args.kind, args.status) {
                GRAPH_MAX_TOP
            } else {
                args.max_events.min(GRAPH_MAX_TOP)
            };
            format!("/v1.0/auditLogs/{collection}?$top={top}&$filter={filter}")
        }
    }
}

/// Whether some of the filter is applied here rather than by the server.
fn filtered_here(kind: Kind, status: Option<Status>) -> bool {
    matches!(
        (kind, status),
        (Kind::Signin, Some(Status::Failed)) | (Kind::Directory, Some(_))
    )
}

/// The part of the filter applied here: `--status` where the server's `$filter` has no form for
/// it.
fn kept_here(kind: Kind, status: Option<Status>, event: &Value) -> bool {
    if !filtered_here(kind, status) {
        return true;
    }
    let failed = match kind {
        Kind::Signin => event
            .pointer("/status/errorCode")
            .and_then(Value::as_i64)
            .is_some_and(|code| code != 0),
        _ => event
            .get("result")
            .and_then(Value::as_str)
            .is_some_and(|result| !result.eq_ignore_ascii_case("success")),
    };
    failed == (status == Some(Status::Failed))
}

/// `--since`: `30m`, `6h`, `7d`, `1d12h`, `90s`; in seconds.
fn parse_duration(text: &str) -> Result<i64, String> {
    let refused = || {
        format!(
            "'{text}' is not a duration: use numbers with units s, m, h or d, e.g. 30m, 6h, 7d or 1d12h"
        )
    };
    let mut total: i64 = 0;
    let mut number: Option<i64> = None;
    for character in text.trim().chars() {
        if let Some(digit) = character.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(i64::from(digit)))
                    .ok_or_else(refused)?,
            );
            continue;
        }
        let unit = match character.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(refused()),
        };
        let value = number.take().ok_or_else(refused)?;
        total = value
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(refused)?;
    }
    if number.is_some() || total == 0 {
        return Err(refused());
    }
    if total > MAX_SINCE_SECONDS {
        return Err(format!("'{text}' is too long: at most 3650d"));
    }
    Ok(total)
}

/// `--start-time` / `--end-time`: RFC 3339 (`2026-01-31T08:00:00Z`, `...+02:00`), or a date
/// with an optional time and no zone (`2026-01-31`, `2026-01-31T08:00`, `2026-01-31 08:00:00.5`),
/// taken as UTC as az takes it.
fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    let text = text.trim();
    if let Ok(moment) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(moment);
    }
    naive_time(text)
        .map(PrimitiveDateTime::assume_utc)
        .ok_or_else(|| {
            format!("'{text}' is not an ISO 8601 time, e.g. 2026-01-31T08:00:00Z or 2026-01-31")
        })
}

fn naive_time(text: &str) -> Option<PrimitiveDateTime> {
    let (date_part, clock) = match text.split_once(['T', 't', ' ']) {
        Some((date, clock)) => (date, Some(clock.strip_suffix(['Z', 'z']).unwrap_or(clock))),
        None => (text, None),
    };
    let number = |digits: &str, width: usize| -> Option<u32> {
        (digits.len() == width && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    };
    let mut date_parts = date_part.split('-');
    let year = number(date_parts.next()?, 4)?;
    let month = number(date_parts.next()?, 2)?;
    let day = number(date_parts.next()?, 2)?;
    if date_parts.next().is_some() {
        return None;
    }
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let Some(clock) = clock else {
        return Some(PrimitiveDateTime::new(date, Time::MIDNIGHT));
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (clock, None),
    };
    let mut parts = hms.split(':');
    let hour = number(parts.next()?, 2)?;
    let minute = number(parts.next()?, 2)?;
    let second = match parts.next() {
        Some(second) => number(second, 2)?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    let nanos = match fraction {
        None => 0,
        Some(digits)
            if !digits.is_empty()
                && digits.len() <= 9
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{digits:0<9}").parse().ok()?
        }
        Some(_) => return None,
    };
    let time = Time::from_hms_nano(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time))
}

/// The text at `pointer` in `event`, or "".
fn text_at(event: &Value, pointer: &str) -> String {
    event
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The first non-empty text of `pointers`, or "".
fn first_text(event: &Value, pointers: &[&str]) -> String {
    pointers
        .iter()
        .map(|pointer| text_at(event, pointer))
        .find(|text| !text.is_empty())
        .unwrap_or_default()
}

type Row = Vec<(String, Value)>;

fn row(cells: [(&str, String); 5]) -> Row {
    cells
        .into_iter()
        .map(|(column, text)| (column.to_string(), Value::String(text)))
        .collect()
}

fn rows(events: &Value, make: fn(&Value) -> Row) -> Vec<Row> {
    events.as_array().into_iter().flatten().map(make).collect()
}

/// Activity Log events: Time, Operation, Status, Caller, Resource.
fn administrative_table(events: &Value) -> Vec<Row> {
    rows(events, |event| {
        row([
            ("Time", text_at(event, "/eventTimestamp")),
            ("Operation", text_at(event, "/operationName/value")),
            ("Status", text_at(event, "/status/value")),
            ("Caller", text_at(event, "/caller")),
            ("Resource", text_at(event, "/resourceId")),
        ])
    })
}

/// Sign-ins: the event type as the operation, `Failed (code)` for a failure, the principal, and
/// the resource the token was asked for.
fn sign_in_table(events: &Value) -> Vec<Row> {
    rows(events, |event| {
        let code = event
            .pointer("/status/errorCode")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let status = if code == 0 {
            "Succeeded".to_string()
        } else {
            format!("Failed ({code})")
        };
        row([
            ("Time", text_at(event, "/createdDateTime")),
            ("Operation", text_at(event, "/signInEventTypes/0")),
            ("Status", status),
            (
                "Caller",
                first_text(
                    event,
                    &[
                        "/userPrincipalName",
                        "/servicePrincipalName",
                        "/appId",
                        "/servicePrincipalId",
                    ],
                ),
            ),
            (
                "Resource",
                first_text(event, &["/resourceDisplayName", "/resourceId"]),
            ),
        ])
    })
}

/// Directory audits: Time, Operation (the activity), Status (the result), Caller, Target.
fn directory_table(events: &Value) -> Vec<Row> {
    rows(events, |event| {
        row([
            ("Time", text_at(event, "/activityDateTime")),
            ("Operation", text_at(event, "/activityDisplayName")),
            ("Status", text_at(event, "/result")),
            (
                "Caller",
                first_text(
                    event,
                    &[
                        "/initiatedBy/user/userPrincipalName",
                        "/initiatedBy/user/id",
                        "/initiatedBy/app/appId",
                        "/initiatedBy/app/servicePrincipalId",
                    ],
                ),
            ),
            (
                "Target",
                first_text(
                    event,
                    &["/targetResources/0/displayName", "/targetResources/0/id"],
                ),
            ),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ListArgs,
    }

    fn args(words: &[&str]) -> ListArgs {
        let mut argv = vec!["audit-list"];
        argv.extend_from_slice(words);
        Wrapper::try_parse_from(argv).unwrap().args
    }

    fn at(text: &str) -> OffsetDateTime {
        parse_time(text).unwrap()
    }

    #[test]
    fn durations_take_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("7d"), Ok(7 * 86400));
        assert_eq!(parse_duration("1d12h"), Ok(86400 + 12 * 3600));
        for bad in [
            "1x",
            "",
            "h",
            "10",
            "0h",
            "1h2",
            "-1h",
            "99999999999999999999d",
            "3651d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_iso_8601_and_utc_without_a_zone() {
        assert_eq!(
            timestamp(at("2026-01-31T08:00:00Z")),
            "2026-01-31T08:00:00Z"
        );
        assert_eq!(
            timestamp(at("2026-01-31T10:00:00+02:00")),
            "2026-01-31T08:00:00Z"
        );
        assert_eq!(timestamp(at("2026-01-31")), "2026-01-31T00:00:00Z");
        assert_eq!(timestamp(at("2026-01-31 08:30")), "2026-01-31T08:30:00Z");
        assert_eq!(
            timestamp(at("2026-01-31T08:30:01.5")),
            "2026-01-31T08:30:01.5Z"
        );
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-01-31T25:00",
            "2026-1-1",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_activity_log_filter_is_the_one_az_builds() {
        let args = args(&[
            "--start-time",
            "2026-01-31T08:00:00Z",
            "--end-time",
            "2026-01-31T09:00:00Z",
            "-g",
            "o'brien",
            "--namespace",
            "Microsoft.ManagedIdentity",
            "--status",
            "failed",
        ]);
        let (from, to) = window(&args, OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            filter_text(&args, from, to),
            "eventTimestamp ge 2026-01-31T08:00:00Z and eventTimestamp le 2026-01-31T09:00:00Z and resourceGroupName eq 'o''brien' and resourceProvider eq 'Microsoft.ManagedIdentity' and status eq 'Failed'"
        );
        let page = first_page(&args, "/subscriptions/s", from, to);
        assert!(page.starts_with("/subscriptions/s/providers/Microsoft.Insights/eventtypes/management/values?api-version=2015-04-01&$filter=eventTimestamp%20ge%202026-01-31T08%3A00%3A00Z%20and"), "{page}");
    }

    #[test]
    fn the_default_window_is_six_hours_until_now() {
        let now = at("2026-01-31T12:00:00Z");
        let (from, to) = window(&args(&[]), now).unwrap();
        assert_eq!(
            (timestamp(from), to),
            ("2026-01-31T06:00:00Z".to_string(), None)
        );
        let (from, _) = window(&args(&["--since", "30m"]), now).unwrap();
        assert_eq!(timestamp(from), "2026-01-31T11:30:00Z");
        let backwards = args(&["--start-time", "2026-01-31", "--end-time", "2026-01-30"]);
        assert!(window(&backwards, now).is_err());
    }

    #[test]
    fn graph_filters_use_graph_fields() {
        let now = at("2026-01-31T12:00:00Z");
        let sign_ins = args(&[
            "--kind",
            "signin",
            "--caller",
            "a@b.c",
            "--status",
            "Succeeded",
            "--max-events",
            "5",
        ]);
        assert_eq!(
            filter_text(&sign_ins, now, None),
            "createdDateTime ge 2026-01-31T12:00:00Z and userPrincipalName eq 'a@b.c' and status/errorCode eq 0"
        );
        assert!(first_page(&sign_ins, "/subscriptions/s", now, None)
            .starts_with("/v1.0/auditLogs/signIns?$top=5&$filter="));
        let audits = args(&[
            "--kind",
            "directory",
            "--caller",
            "0000",
            "--correlation-id",
            "c",
            "--status",
            "failed",
        ]);
        assert_eq!(
            filter_text(&audits, now, Some(now)),
            "activityDateTime ge 2026-01-31T12:00:00Z and activityDateTime le 2026-01-31T12:00:00Z and correlationId eq 'c' and initiatedBy/app/servicePrincipalId eq '0000'"
        );
        assert!(first_page(&audits, "/subscriptions/s", now, None)
            .starts_with("/v1.0/auditLogs/directoryAudits?$top=1000&"));
    }

    #[test]
    fn options_of_another_kind_are_refused() {
        let error = check_options(&args(&["--kind", "signin", "-g", "g"]), false)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("--resource-group does not apply to --kind signin"),
            "{error}"
        );
        assert!(check_options(&args(&["--kind", "directory", "--namespace", "M"]), false).is_err());
        assert!(check_options(&args(&["--kind", "directory"]), true).is_err());
        assert!(check_options(
            &args(&["-g", "g", "--resource-id", "/x", "--caller", "c"]),
            true
        )
        .is_ok());
        assert!(
            Wrapper::try_parse_from(["x", "--since", "1h", "--start-time", "2026-01-01"]).is_err()
        );
        assert!(Wrapper::try_parse_from(["x", "--end-time", "2026-01-01"]).is_err());
        assert!(Wrapper::try_parse_from(["x", "--max-events", "0"]).is_err());
    }

    #[test]
    fn statuses_graph_cannot_filter_are_filtered_here() {
        let failed_sign_in = json!({"status": {"errorCode": 7000215}});
        let sign_in = json!({"status": {"errorCode": 0}});
        assert!(kept_here(
            Kind::Signin,
            Some(Status::Failed),
            &failed_sign_in
        ));
        assert!(!kept_here(Kind::Signin, Some(Status::Failed), &sign_in));
        assert!(kept_here(
            Kind::Signin,
            Some(Status::Succeeded),
            &failed_sign_in
        )); // the server's
        let audit = json!({"result": "success"});
        assert!(kept_here(Kind::Directory, Some(Status::Succeeded), &audit));
        assert!(!kept_here(Kind::Directory, Some(Status::Failed), &audit));
        assert!(kept_here(
            Kind::Administrative,
            Some(Status::Failed),
            &audit
        ));
    }

    #[test]
    fn tables_have_the_same_columns_for_every_event() {
        let event = json!({"eventTimestamp": "t", "operationName": {"value": "op"}, "status": {"value": "Failed"},
                           "caller": "c", "resourceId": "/r"});
        let table = administrative_table(&json!([event, {}]));
        let headers: Vec<&str> = table[1].iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            headers,
            ["Time", "Operation", "Status", "Caller", "Resource"]
        );
        assert_eq!(table[0][1].1, "op");
        let sign_in = json!({"createdDateTime": "t", "signInEventTypes": ["servicePrincipal"],
                             "status": {"errorCode": 50126}, "userPrincipalName": "", "appId": "a"});
        let table = sign_in_table(&json!([sign_in]));
        assert_eq!(table[0][2].1, "Failed (50126)");
        assert_eq!(table[0][3].1, "a");
        let audit = json!({"activityDisplayName": "Add application", "result": "success",
                           "initiatedBy": {"user": null, "app": {"appId": "x"}},
                           "targetResources": [{"id": "o", "displayName": null}]});
        let table = directory_table(&json!([audit]));
        assert_eq!(table[0][4], ("Target".to_string(), json!("o")));
    }
}
