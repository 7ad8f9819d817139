//! What every list endpoint does with its query string, as rabbit_mgmt_util does it:
//! `sort` (a dotted column, put before the default `vhost,name`) and `sort_reverse`;
//! `page`/`page_size` (≤ 500, 100 by default) with `name` (case-insensitive substring, or
//! a regex with `use_regex=true`) answering RabbitMQ's page object; `columns` keeping only
//! the named (dotted) fields.

use std::cmp::Ordering;
use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::ApiError;

const DEFAULT_PAGE_SIZE: u64 = 100;
const MAX_PAGE_SIZE: u64 = 500;

/// A list request's query parameters.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    page: Option<(u64, u64)>,
    name: Option<String>,
    use_regex: bool,
    columns: Option<Vec<Vec<String>>>,
    sort: Option<String>,
    sort_reverse: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(q) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("Pagination parameters are invalid"))?;
        ListQuery::parse(&q)
    }
}

impl ListQuery {
    pub fn parse(q: &HashMap<String, String>) -> Result<ListQuery, ApiError> {
        let int = |key: &str| -> Result<Option<i64>, ApiError> {
            q.get(key)
                .map(|v| v.parse::<i64>())
                .transpose()
                .map_err(|_| ApiError::bad_request("Pagination parameters are invalid"))
        };
        let (page, size) = (int("page")?, int("page_size")?);
        let page = match (page, size) {
            (None, _) => None,
            (Some(p), None) if p > 0 => Some((p as u64, DEFAULT_PAGE_SIZE)),
            (Some(p), Some(s)) if p > 0 && s > 0 && s as u64 <= MAX_PAGE_SIZE => {
                Some((p as u64, s as u64))
            }
            (p, s) => {
                let show = |v: Option<i64>| v.map_or("undefined".into(), |v| v.to_string());
                return Err(ApiError::bad_request_kind(
                    "invalid_pagination_parameters",
                    format!(
                        "Invalid pagination parameters: page number {}, page size {}",
                        show(p),
                        show(s)
                    ),
                ));
            }
        };
        let columns = q.get("columns").map(|c| {
            c.split(',')
                .filter(|c| !c.is_empty())
                .map(|c| c.split('.').map(str::to_owned).collect())
                .collect()
        });
        Ok(ListQuery {
            page,
            name: q.get("name").filter(|n| !n.is_empty()).cloned(),
            use_regex: q.get("use_regex").is_some_and(|v| v == "true"),
            columns,
            sort: q.get("sort").cloned(),
            sort_reverse: q.get("sort_reverse").is_some_and(|v| v == "true"),
        })
    }

    /// Sorts, filters, pages and trims `items` (objects), answering the list or, with
    /// `page`, RabbitMQ's page object.
    pub fn answer(
        &self,
        mut items: Vec<Value>,
        default_sort: &[&str],
    ) -> Result<Json<Value>, ApiError> {
        // `sort=` (empty) asks for no sorting at all.
        if self.sort.as_deref() != Some("") {
            let mut keys: Vec<Vec<&str>> = Vec::new();
            if let Some(s) = &self.sort {
                keys.push(s.split('.').collect());
            }
            keys.extend(default_sort.iter().map(|k| vec![*k]));
            // Each item's keys are looked up once, not at every comparison.
            let mut keyed: Vec<(Vec<Value>, Value)> = items
                .into_iter()
                .map(|i| (keys.iter().map(|k| dotted(&i, k).clone()).collect(), i))
                .collect();
            keyed.sort_by(|(a, _), (b, _)| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| erlang_order(x, y))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            });
            items = keyed.into_iter().map(|(_, i)| i).collect();
            if self.sort_reverse {
                items.reverse();
            }
        }
        let Some((page, size)) = self.page else {
            return Ok(Json(Value::Array(self.trim_all(items))));
        };
        let total = items.len();
        if let Some(name) = &self.name {
            let matcher = NameFilter::new(name, self.use_regex)?;
            items.retain(|i| {
                i.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| matcher.matches(n))
            });
        }
        let filtered = items.len();
        let offset = ((page - 1) * size) as usize;
        if offset > filtered {
            return Err(ApiError::bad_request_kind(
                "page_out_of_range",
                format!("Page out of range, page: {page} page size: {size}, len: {filtered}"),
            ));
        }
        let page_items: Vec<Value> = items.into_iter().skip(offset).take(size as usize).collect();
        let page_items = self.trim_all(page_items);
        Ok(Json(json!({
            "total_count": total,
            "item_count": page_items.len(),
            "filtered_count": filtered,
            "page": page,
            "page_size": size,
            "page_count": filtered.div_ceil(size as usize),
            "items": page_items,
        })))
    }

    /// No `sort`, `sort_reverse`, page or `columns`: the list as it comes, in the default
    /// order (which a handler may then produce its own, faster way).
    pub fn is_plain(&self) -> bool {
        self.page.is_none() && self.columns.is_none() && self.sort.is_none() && !self.sort_reverse
    }

    /// One object, trimmed to the `columns` asked for.
    pub fn trim(&self, item: Value) -> Value {
        match &self.columns {
            None => item,
            Some(cols) => {
                let cols: Vec<&[String]> = cols.iter().map(Vec::as_slice).collect();
                keep_columns(item, &cols)
            }
        }
    }

    fn trim_all(&self, items: Vec<Value>) -> Vec<Value> {
        items.into_iter().map(|i| self.trim(i)).collect()
    }
}

/// `columns` as RabbitMQ applies it: a field is kept if some column starts with it; a
/// column that ends at the field keeps all of it, longer ones descend into it.
fn keep_columns(item: Value, cols: &[&[String]]) -> Value {
    match item {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let wanted: Vec<&[String]> = cols
                    .iter()
                    .filter(|c| c.first().is_some_and(|f| *f == k))
                    .map(|c| &c[1..])
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                let v = if wanted.iter().any(|c| c.is_empty()) {
                    v
                } else {
                    keep_columns(v, &wanted)
                };
                out.insert(k, v);
            }
            Value::Object(out)
        }
        Value::Array(list) => {
            Value::Array(list.into_iter().map(|v| keep_columns(v, cols)).collect())
        }
        other => other,
    }
}

/// A dotted field of an object; a missing one sorts as 0, as in RabbitMQ.
fn dotted<'a>(item: &'a Value, key: &[&str]) -> &'a Value {
    static ZERO: Value = Value::Null;
    let mut v = item;
    for k in key {
        match v.get(*k) {
            Some(next) => v = next,
            None => return &ZERO,
        }
    }
    v
}

/// Erlang's term order for what JSON carries: numbers < atoms (`false`, `null`, `true`
/// by name) < maps < lists < binaries (strings, bytewise). A missing field (`Null` from
/// `dotted`) counts as the number 0.
fn erlang_order(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) | Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Object(_) => 2,
            Value::Array(_) => 3,
            Value::String(_) => 4,
        }
    }
    fn number(v: &Value) -> f64 {
        v.as_f64().unwrap_or(0.0)
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ if rank(a) == 0 && rank(b) == 0 => number(a).total_cmp(&number(b)),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// `name=` of a paged list: a case-insensitive substring, or a case-insensitive regex.
enum NameFilter {
    Substring(String),
    Regex(regex::bytes::Regex),
}

impl NameFilter {
    fn new(name: &str, regex: bool) -> Result<NameFilter, ApiError> {
        if !regex {
            return Ok(NameFilter::Substring(name.to_lowercase()));
        }
        regex::bytes::RegexBuilder::new(name)
            .unicode(false)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map(NameFilter::Regex)
            .map_err(|_| ApiError::bad_request("Pagination parameters are invalid"))
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NameFilter::Substring(s) => name.to_lowercase().contains(s.as_str()),
            NameFilter::Regex(r) => r.is_match(name.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> ListQuery {
        let q = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ListQuery::parse(&q).unwrap()
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"name": "b", "vhost": "/", "messages": 3, "message_stats": {"publish": 1}}),
            json!({"name": "a", "vhost": "/", "messages": 10}),
            json!({"name": "C", "vhost": "/", "messages": 1, "message_stats": {"publish": 5}}),
        ]
    }

    fn names(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn default_sort_is_vhost_then_name_bytewise() {
        let out = query(&[]).answer(items(), &["vhost", "name"]).unwrap();
        assert_eq!(names(&out), ["C", "a", "b"]);
    }

    #[test]
    fn sort_by_a_dotted_column_missing_counts_as_zero() {
        let q = query(&[("sort", "message_stats.publish"), ("sort_reverse", "true")]);
        let out = q.answer(items(), &["vhost", "name"]).unwrap();
        assert_eq!(names(&out), ["C", "b", "a"]);
    }

    #[test]
    fn pages_filter_by_name_and_count() {
        let q = query(&[("page", "1"), ("page_size", "1"), ("name", "c")]);
        let out = q.answer(items(), &["vhost", "name"]).unwrap();
        assert_eq!(out["total_count"], 3);
        assert_eq!(out["filtered_count"], 1);
        assert_eq!(out["page_count"], 1);
        assert_eq!(names(&out["items"]), ["C"]);
        let bad = ListQuery::parse(
            &[("page".to_string(), "0".to_string())]
                .into_iter()
                .collect(),
        )
        .unwrap_err();
        assert_eq!(bad.status, 400);
    }

    #[test]
    fn columns_keep_named_fields_and_descend() {
        let q = query(&[("columns", "name,message_stats.publish")]);
        let out = q.answer(items(), &["name"]).unwrap();
        assert_eq!(
            out.0[2],
            json!({"name": "b", "message_stats": {"publish": 1}})
        );
        assert_eq!(
            out.0[0],
            json!({"name": "C", "message_stats": {"publish": 5}})
        );
    }
}
