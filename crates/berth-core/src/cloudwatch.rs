//! The CloudWatch API subset that shows ECS's metrics: GetMetricStatistics, GetMetricData
//! and ListMetrics over the [`MetricsBook`], for namespace `AWS/ECS`. Other namespaces exist
//! as far as CloudWatch is concerned (any well-formed name is valid) and hold no data.
//!
//! Read-only and pure: the book, the caller's partition and `now` come in, the response's
//! bytes go out.

use crate::PartitionKey;
use crate::metrics::{Dimensions, EcsMetric, MetricPoint, MetricsBook, NAMESPACE};
use crate::pagination::TokenKey;
use berth_api::cloudwatch as api;
use berth_api::{ApiError, Service, decode, encode};

/// The most data points one request may ask for (per metric).
pub const MAX_DATAPOINTS: i64 = 1_440;

/// The most metrics one ListMetrics page returns.
pub const LIST_PAGE: usize = 500;

/// What an operation reads.
pub struct Reader<'a> {
    /// The metrics.
    pub book: &'a MetricsBook,
    /// The caller's account and region.
    pub partition: &'a PartitionKey,
    /// Now (epoch ms).
    pub now_ms: i64,
    /// Seals ListMetrics' `NextToken`.
    pub token_key: &'a TokenKey,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::client("InvalidParameterValueException", message)
}

fn combination(message: impl Into<String>) -> ApiError {
    ApiError::client("InvalidParameterCombinationException", message)
}

fn missing(message: impl Into<String>) -> ApiError {
    ApiError::client("MissingRequiredParameterException", message)
}

/// Run one CloudWatch operation.
pub fn handle(r: &Reader<'_>, operation: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    match operation {
        "GetMetricStatistics" => {
            get_metric_statistics(r, decode(Service::CloudWatch, body)?).map(|o| encode(&o))
        }
        "GetMetricData" => {
            get_metric_data(r, decode(Service::CloudWatch, body)?).map(|o| encode(&o))
        }
        "ListMetrics" => list_metrics(r, decode(Service::CloudWatch, body)?).map(|o| encode(&o)),
        other => Err(ApiError::not_implemented(Service::CloudWatch, other)),
    }
}

#[allow(clippy::cast_possible_truncation)]
fn ms(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

#[allow(clippy::cast_precision_loss)]
fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The time range, validated: StartTime before EndTime.
fn range(start: Option<f64>, end: Option<f64>) -> Result<(i64, i64), ApiError> {
    let (Some(start), Some(end)) = (start, end) else {
        return Err(missing(
            "The parameters StartTime and EndTime are required.",
        ));
    };
    if !(start.is_finite() && end.is_finite()) {
        return Err(invalid(
            "The parameters StartTime and EndTime must be valid times.",
        ));
    }
    let (start, end) = (ms(start), ms(end));
    if start >= end {
        return Err(invalid(
            "The parameter StartTime must be less than the parameter EndTime.",
        ));
    }
    Ok((start, end))
}

/// CloudWatch's periods: 1, 5, 10, 20, 30 or a multiple of 60 seconds (and, on Berth, any
/// multiple of the metrics period, which tests set shorter).
fn period_ms(r: &Reader<'_>, period: Option<i32>, field: &str) -> Result<i64, ApiError> {
    let Some(p) = period else {
        return Err(missing(format!("The parameter {field} is required.")));
    };
    let p = i64::from(p);
    let base = r.book.period_ms();
    if p < 1 || !([1, 5, 10, 20, 30].contains(&p) || p % 60 == 0 || (p * 1000) % base == 0) {
        return Err(invalid(format!(
            "The parameter {field} must be 1, 5, 10, 20, 30, or a multiple of 60."
        )));
    }
    Ok(p * 1000)
}

/// StartTime rounded down as CloudWatch rounds it: to the minute for periods of a minute
/// or more, else to a multiple of the period.
fn round_start(start_ms: i64, period_ms: i64) -> i64 {
    let unit = if period_ms >= 60_000 {
        60_000
    } else {
        period_ms
    };
    start_ms.div_euclid(unit) * unit
}

fn check_datapoints(start_ms: i64, end_ms: i64, period_ms: i64) -> Result<(), ApiError> {
    let n = (end_ms - start_ms + period_ms - 1) / period_ms;
    if n > MAX_DATAPOINTS {
        return Err(combination(format!(
            "You have requested up to {n} datapoints, which exceeds the limit of {MAX_DATAPOINTS}. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
        )));
    }
    Ok(())
}

/// The series a (namespace, metric name, dimensions) names, if Berth publishes it: the
/// dimensions must be exactly `{ClusterName}` or `{ClusterName, ServiceName}` (in any
/// order), as CloudWatch matches a metric's full dimension set.
fn series(
    namespace: &str,
    metric_name: &str,
    dimensions: &[api::Dimension],
) -> Option<(Dimensions, EcsMetric)> {
    if namespace != NAMESPACE {
        return None;
    }
    let metric = EcsMetric::from_name(metric_name)?;
    let get = |name: &str| {
        dimensions
            .iter()
            .find(|d| d.name.as_deref() == Some(name))
            .and_then(|d| d.value.clone())
    };
    let cluster = get("ClusterName")?;
    let dims = match (get("ServiceName"), dimensions.len()) {
        (None, 1) => Dimensions::cluster(&cluster),
        (Some(service), 2) if metric.per_service() => Dimensions::service(&cluster, &service),
        _ => return None,
    };
    Some((dims, metric))
}

fn check_dimensions(dimensions: &[api::Dimension]) -> Result<(), ApiError> {
    let mut seen = std::collections::BTreeSet::new();
    for d in dimensions {
        if let Some(n) = &d.name
            && !seen.insert(n.as_str())
        {
            return Err(combination(format!(
                "The collection Dimensions must not contain duplicate dimension names: {n}."
            )));
        }
    }
    Ok(())
}

fn get_metric_statistics(
    r: &Reader<'_>,
    req: api::GetMetricStatisticsInput,
) -> Result<api::GetMetricStatisticsOutput, ApiError> {
    let namespace = req.namespace.unwrap_or_default();
    let metric_name = req.metric_name.unwrap_or_default();
    let dimensions = req.dimensions.unwrap_or_default();
    check_dimensions(&dimensions)?;
    let (start, end) = range(req.start_time, req.end_time)?;
    let period = period_ms(r, req.period, "Period")?;
    let statistics = req.statistics.unwrap_or_default();
    let extended = req.extended_statistics.unwrap_or_default();
    match (statistics.is_empty(), extended.is_empty()) {
        (true, true) => {
            return Err(missing(
                "Either the parameter Statistics or ExtendedStatistics is required.",
            ));
        }
        (false, false) => {
            return Err(combination(
                "The parameters Statistics and ExtendedStatistics are mutually exclusive.",
            ));
        }
        _ => {}
    }
    for e in &extended {
        if !is_percentile(e) {
            return Err(invalid(format!(
                "The value {e} for parameter ExtendedStatistics is not supported."
            )));
        }
    }
    let start = round_start(start, period);
    check_datapoints(start, end, period)?;
    let unit_matches = req
        .unit
        .as_ref()
        .is_none_or(|u| *u == api::StandardUnit::Percent);
    // Percentiles need raw values; ECS publishes statistic sets, from which CloudWatch
    // computes no percentile either: no data points.
    let points = match series(&namespace, &metric_name, &dimensions) {
        Some((dims, metric)) if unit_matches && extended.is_empty() => {
            r.book
                .points(r.partition, &dims, metric, start, end, period)
        }
        _ => vec![],
    };
    let datapoints = points
        .iter()
        .map(|p| {
            let has = |s: api::Statistic| statistics.contains(&s);
            api::Datapoint {
                timestamp: Some(secs(p.timestamp_ms)),
                unit: Some(api::StandardUnit::Percent),
                average: has(api::Statistic::Average).then_some(p.average),
                minimum: has(api::Statistic::Minimum).then_some(p.minimum),
                maximum: has(api::Statistic::Maximum).then_some(p.maximum),
                sum: has(api::Statistic::Sum).then_some(p.sum),
                sample_count: has(api::Statistic::SampleCount).then_some(p.sample_count),
                ..Default::default()
            }
        })
        .collect();
    Ok(api::GetMetricStatisticsOutput {
        label: Some(metric_name),
        datapoints: Some(datapoints),
    })
}

/// `p90`, `p99.9`: a percentile (Berth has none to give, but the request is well formed).
fn is_percentile(s: &str) -> bool {
    s.strip_prefix('p')
        .and_then(|v| v.parse::<f64>().ok())
        .is_some_and(|v| (0.0..=100.0).contains(&v))
}

fn stat_of(p: &MetricPoint, stat: &str) -> Option<f64> {
    match stat {
        "Average" => Some(p.average),
        "Minimum" => Some(p.minimum),
        "Maximum" => Some(p.maximum),
        "Sum" => Some(p.sum),
        "SampleCount" => Some(p.sample_count),
        _ => None,
    }
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn get_metric_data(
    r: &Reader<'_>,
    req: api::GetMetricDataInput,
) -> Result<api::GetMetricDataOutput, ApiError> {
    let (start, end) = range(req.start_time, req.end_time)?;
    if req.next_token.is_some() {
        // Berth answers every query in one response and never issues a token.
        return Err(ApiError::client(
            "InvalidNextToken",
            "The service couldn't process the token.",
        ));
    }
    let queries = req.metric_data_queries.unwrap_or_default();
    if queries.is_empty() {
        return Err(missing("The parameter MetricDataQueries is required."));
    }
    if queries.len() > 500 {
        return Err(invalid(
            "The collection MetricDataQueries must not have a size greater than 500.",
        ));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut plans = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let n = i + 1;
        let id = q.id.clone().unwrap_or_default();
        if !valid_id(&id) {
            return Err(invalid(format!(
                "The value {id} for parameter MetricDataQueries.member.{n}.Id is not valid. The first character must be a lower-case letter, and the rest must be letters, numbers or underscores."
            )));
        }
        if !ids.insert(id.clone()) {
            return Err(invalid(format!(
                "The value {id} for parameter MetricDataQueries.member.{n}.Id is duplicated."
            )));
        }
        let stat = match (&q.metric_stat, &q.expression) {
            (Some(s), None) => s,
            (None, Some(_)) => {
                return Err(invalid(format!(
                    "The parameter MetricDataQueries.member.{n}.Expression is not supported by Berth: use MetricStat."
                )));
            }
            _ => {
                return Err(combination(format!(
                    "Exactly one element of the MetricDataQueries.member.{n} must specify either MetricStat or Expression."
                )));
            }
        };
        let period = period_ms(
            r,
            stat.period,
            &format!("MetricDataQueries.member.{n}.MetricStat.Period"),
        )?;
        let name = stat.stat.clone().unwrap_or_default();
        let known =
            ["Average", "Minimum", "Maximum", "Sum", "SampleCount"].contains(&name.as_str());
        if !known && !is_percentile(&name) {
            return Err(invalid(format!(
                "The value {name} for parameter MetricDataQueries.member.{n}.MetricStat.Stat is not a valid statistic."
            )));
        }
        let metric = stat.metric.clone().unwrap_or_default();
        let dimensions = metric.dimensions.clone().unwrap_or_default();
        check_dimensions(&dimensions)?;
        let start = round_start(start, period);
        check_datapoints(start, end, period)?;
        plans.push((
            q,
            metric,
            dimensions,
            name,
            period,
            start,
            known,
            stat.unit.clone(),
        ));
    }
    let descending = req
        .scan_by
        .as_ref()
        .is_none_or(|s| *s != api::ScanBy::TimestampAscending);
    let mut results = Vec::new();
    for (q, metric, dimensions, stat, period, start, known, unit) in plans {
        if q.return_data == Some(false) {
            continue;
        }
        let metric_name = metric.metric_name.clone().unwrap_or_default();
        let unit_matches = unit.is_none_or(|u| u == api::StandardUnit::Percent);
        let mut points = match series(
            metric.namespace.as_deref().unwrap_or_default(),
            &metric_name,
            &dimensions,
        ) {
            Some((dims, m)) if known && unit_matches => {
                r.book.points(r.partition, &dims, m, start, end, period)
            }
            _ => vec![],
        };
        if descending {
            points.reverse();
        }
        results.push(api::MetricDataResult {
            id: q.id.clone(),
            label: Some(q.label.clone().unwrap_or(metric_name)),
            timestamps: Some(points.iter().map(|p| secs(p.timestamp_ms)).collect()),
            values: Some(points.iter().filter_map(|p| stat_of(p, &stat)).collect()),
            status_code: Some(api::StatusCode::Complete),
            ..Default::default()
        });
    }
    Ok(api::GetMetricDataOutput {
        metric_data_results: Some(results),
        messages: Some(vec![]),
        ..Default::default()
    })
}

fn list_metrics(
    r: &Reader<'_>,
    req: api::ListMetricsInput,
) -> Result<api::ListMetricsOutput, ApiError> {
    let scope = crate::pagination::scope("monitoring", "ListMetrics", r.partition);
    let offset = match &req.next_token {
        Some(t) => r
            .token_key
            .open(&scope, t)
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::client(
                    "InvalidNextToken",
                    "The service couldn't process the token.",
                )
            })?,
        None => 0,
    };
    let filters = req.dimensions.unwrap_or_default();
    let wanted = |dims: &Dimensions, metric: EcsMetric| {
        if req.namespace.as_deref().is_some_and(|n| n != NAMESPACE)
            || req
                .metric_name
                .as_deref()
                .is_some_and(|n| n != metric.name())
        {
            return false;
        }
        filters.iter().all(|f| {
            let value = match f.name.as_deref() {
                Some("ClusterName") => Some(dims.cluster_name.as_str()),
                Some("ServiceName") => dims.service_name.as_deref(),
                _ => None,
            };
            value.is_some_and(|v| f.value.as_deref().is_none_or(|want| want == v))
        })
    };
    let all: Vec<api::Metric> = r
        .book
        .list(r.partition)
        .into_iter()
        .filter(|(d, m)| wanted(d, *m))
        .map(|(d, m)| {
            let mut dimensions = vec![api::Dimension {
                name: Some("ClusterName".into()),
                value: Some(d.cluster_name.clone()),
            }];
            if let Some(s) = &d.service_name {
                dimensions.push(api::Dimension {
                    name: Some("ServiceName".into()),
                    value: Some(s.clone()),
                });
            }
            api::Metric {
                namespace: Some(NAMESPACE.into()),
                metric_name: Some(m.name().into()),
                dimensions: Some(dimensions),
            }
        })
        .collect();
    let page: Vec<api::Metric> = all.iter().skip(offset).take(LIST_PAGE).cloned().collect();
    let next = offset + page.len();
    Ok(api::ListMetricsOutput {
        metrics: Some(page),
        next_token: (next < all.len()).then(|| r.token_key.seal(&scope, &next.to_string())),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Reading, Sample};
    use serde_json::{Value, json};

    fn key() -> PartitionKey {
        PartitionKey {
            account: "000000000000".into(),
            region: "us-east-1".into(),
        }
    }

    fn book() -> MetricsBook {
        let mut b = MetricsBook::new(60_000);
        for (entity, used) in [("t1", 256.0), ("t2", 0.0)] {
            b.record(
                &key(),
                Sample {
                    dimensions: Dimensions::service("default", "web"),
                    entity: entity.into(),
                    timestamp_ms: 120_000,
                    readings: vec![(
                        EcsMetric::CpuUtilization,
                        Reading {
                            used,
                            capacity: 256.0,
                        },
                    )],
                },
                121_000,
            )
            .unwrap();
        }
        b
    }

    fn call(op: &str, body: Value) -> Result<Value, ApiError> {
        let b = book();
        let k = key();
        let token_key = TokenKey::default();
        let r = Reader {
            book: &b,
            partition: &k,
            now_ms: 150_000,
            token_key: &token_key,
        };
        handle(&r, op, body.to_string().as_bytes())
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
    }

    fn stats(extra: Value) -> Result<Value, ApiError> {
        let mut body = json!({
            "Namespace": "AWS/ECS", "MetricName": "CPUUtilization",
            "Dimensions": [{"Name": "ServiceName", "Value": "web"}, {"Name": "ClusterName", "Value": "default"}],
            "StartTime": 0, "EndTime": 600, "Period": 60,
            "Statistics": ["Average", "Maximum", "Minimum", "SampleCount", "Sum"]
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        call("GetMetricStatistics", body)
    }

    #[test]
    fn statistics_of_a_service() {
        let v = stats(json!({})).unwrap();
        assert_eq!(v["Label"], "CPUUtilization");
        let d = &v["Datapoints"][0];
        assert_eq!(v["Datapoints"].as_array().unwrap().len(), 1);
        assert_eq!(d["Timestamp"], 120.0);
        assert_eq!(d["Average"], 50.0);
        assert_eq!(d["Maximum"], 100.0);
        assert_eq!(d["Minimum"], 0.0);
        assert_eq!(d["SampleCount"], 2.0);
        assert_eq!(d["Sum"], 100.0);
        assert_eq!(d["Unit"], "Percent");
        let only_avg = stats(json!({"Statistics": ["Average"]})).unwrap();
        assert!(only_avg["Datapoints"][0].get("Maximum").is_none());
    }

    #[test]
    fn unknown_series_have_no_data() {
        for extra in [
            json!({"Namespace": "Custom/Thing"}),
            json!({"MetricName": "CPUReservation"}),
            json!({"Dimensions": [{"Name": "ClusterName", "Value": "default"}]}),
            json!({"Dimensions": [{"Name": "ClusterName", "Value": "default"}, {"Name": "ServiceName", "Value": "web"}, {"Name": "X", "Value": "y"}]}),
            json!({"Unit": "Bytes"}),
            json!({"Statistics": null, "ExtendedStatistics": ["p90"]}),
        ] {
            let v = stats(extra.clone()).unwrap();
            assert_eq!(v["Datapoints"], json!([]), "{extra}");
        }
    }

    #[test]
    fn bad_statistics_requests() {
        let code = |extra: Value| stats(extra).unwrap_err().code;
        assert_eq!(
            code(json!({"StartTime": 600, "EndTime": 0})),
            "InvalidParameterValueException"
        );
        let e = stats(json!({"StartTime": 600, "EndTime": 600})).unwrap_err();
        assert_eq!(
            e.message,
            "The parameter StartTime must be less than the parameter EndTime."
        );
        assert_eq!(
            code(json!({"Statistics": ["Avg"]})),
            "InvalidParameterValueException"
        );
        assert_eq!(
            code(json!({"Statistics": null})),
            "MissingRequiredParameterException"
        );
        assert_eq!(
            code(json!({"ExtendedStatistics": ["p90"]})),
            "InvalidParameterCombinationException"
        );
        assert_eq!(
            code(json!({"Namespace": null})),
            "MissingRequiredParameterException"
        );
        assert_eq!(
            code(json!({"Namespace": ":bad"})),
            "InvalidParameterValueException"
        );
        assert_eq!(code(json!({"Period": 7})), "InvalidParameterValueException");
        assert_eq!(code(json!({"Period": 0})), "InvalidParameterValueException");
        let e = stats(json!({"EndTime": 86_400 * 2})).unwrap_err();
        assert_eq!(e.code, "InvalidParameterCombinationException");
        assert!(e.message.contains("2880 datapoints"), "{}", e.message);
        assert_eq!(
            code(
                json!({"Dimensions": [{"Name": "ClusterName", "Value": "a"}, {"Name": "ClusterName", "Value": "b"}]})
            ),
            "InvalidParameterCombinationException"
        );
    }

    #[test]
    fn metric_data() {
        let body = json!({
            "StartTime": 0, "EndTime": 600,
            "MetricDataQueries": [
                {"Id": "cpu", "MetricStat": {"Metric": {"Namespace": "AWS/ECS", "MetricName": "CPUUtilization",
                    "Dimensions": [{"Name": "ClusterName", "Value": "default"}, {"Name": "ServiceName", "Value": "web"}]},
                    "Period": 60, "Stat": "Maximum"}},
                {"Id": "hidden", "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "AWS/ECS", "MetricName": "CPUUtilization"},
                    "Period": 60, "Stat": "Average"}}
            ]
        });
        let v = call("GetMetricData", body.clone()).unwrap();
        let rs = v["MetricDataResults"].as_array().unwrap();
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0]["Id"], "cpu");
        assert_eq!(rs[0]["Label"], "CPUUtilization");
        assert_eq!(rs[0]["Values"], json!([100.0]));
        assert_eq!(rs[0]["Timestamps"], json!([120.0]));
        assert_eq!(rs[0]["StatusCode"], "Complete");

        let mut bad = body.clone();
        bad["MetricDataQueries"][0]["Id"] = json!("Cpu");
        assert_eq!(
            call("GetMetricData", bad).unwrap_err().code,
            "InvalidParameterValueException"
        );
        let mut bad = body.clone();
        bad["MetricDataQueries"][0]["MetricStat"]["Stat"] = json!("Mean");
        assert_eq!(
            call("GetMetricData", bad).unwrap_err().code,
            "InvalidParameterValueException"
        );
        let mut bad = body.clone();
        bad["MetricDataQueries"][0]["Expression"] = json!("m1*2");
        assert_eq!(
            call("GetMetricData", bad).unwrap_err().code,
            "InvalidParameterCombinationException"
        );
        let mut bad = body;
        bad["EndTime"] = json!(0);
        assert_eq!(
            call("GetMetricData", bad).unwrap_err().code,
            "InvalidParameterValueException"
        );
    }

    #[test]
    fn list() {
        let v = call("ListMetrics", json!({})).unwrap();
        assert_eq!(
            v["Metrics"],
            json!([{"Namespace": "AWS/ECS", "MetricName": "CPUUtilization",
                "Dimensions": [{"Name": "ClusterName", "Value": "default"}, {"Name": "ServiceName", "Value": "web"}]}])
        );
        assert!(v.get("NextToken").is_none());
        for filter in [
            json!({"Namespace": "AWS/EC2"}),
            json!({"MetricName": "MemoryUtilization"}),
            json!({"Dimensions": [{"Name": "ServiceName", "Value": "api"}]}),
            json!({"Dimensions": [{"Name": "InstanceId"}]}),
        ] {
            let v = call("ListMetrics", filter.clone()).unwrap();
            assert_eq!(v["Metrics"], json!([]), "{filter}");
        }
        let v = call(
            "ListMetrics",
            json!({"Dimensions": [{"Name": "ServiceName"}]}),
        )
        .unwrap();
        assert_eq!(v["Metrics"].as_array().unwrap().len(), 1);
        assert_eq!(
            call("ListMetrics", json!({"NextToken": "forged"}))
                .unwrap_err()
                .code,
            "InvalidNextToken"
        );
    }

    #[test]
    fn other_operations_are_refused() {
        let e = call("PutMetricData", json!({})).unwrap_err();
        assert_eq!(e.code, "InvalidAction");
        assert!(berth_api::error::query_error(e.code).is_some());
    }
}
