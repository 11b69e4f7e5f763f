//! Task endpoints (`pve-manager PVE/API2/Tasks.pm`): status (400 `no such task` while the log
//! file does not exist yet, `tokenid` for token tasks, no `exitstatus` while running), the log
//! (1-based `n`, `total`, ExtJS's "no content" line) and the task list.

use serde_json::{json, Map, Value};

use super::{ApiError, ApiResult, Ctx, Reply};
use crate::acl::split_tokenid;
use crate::task::{upid_parses, Task};

/// Task fields with a token id split back into `user` and `tokenid` (`$convert_token_task`).
fn task_fields(node: &str, t: &Task) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("upid".into(), json!(t.upid));
    m.insert("node".into(), json!(node));
    m.insert("pid".into(), json!(t.pid));
    m.insert("pstart".into(), json!(t.pstart));
    m.insert("starttime".into(), json!(t.starttime));
    m.insert("type".into(), json!(t.task_type));
    m.insert("id".into(), json!(t.id));
    match split_tokenid(&t.user) {
        Some((user, token)) => {
            m.insert("user".into(), json!(user));
            m.insert("tokenid".into(), json!(token));
        }
        None => {
            m.insert("user".into(), json!(t.user));
        }
    }
    m
}

/// Owner of the task: the same auth id, or a user looking at its own tokens' tasks.
fn owns(authid: &str, t: &Task) -> bool {
    authid == t.user || split_tokenid(&t.user).is_some_and(|(user, _)| user == authid)
}

fn upid_param(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let upid = ctx.params.str("upid").unwrap_or_default();
    if !upid_parses(&upid) {
        return Err(ApiError::param(
            "upid",
            "unable to parse worker upid".to_string(),
        ));
    }
    Ok(upid)
}

fn check_owner_or_audit(ctx: &Ctx<'_>, t: &Task) -> Result<(), ApiError> {
    if owns(ctx.authid, t) {
        return Ok(());
    }
    let node = ctx.params.str("node").unwrap_or_default();
    ctx.check(&format!("/nodes/{node}"), &["Sys.Audit"])
}

pub(super) fn status(ctx: &mut Ctx<'_>) -> ApiResult {
    let upid = upid_param(ctx)?;
    let no_such_task = || ApiError::param("upid", "no such task".to_string());
    let Some(task) = ctx.inner.task_mut(&upid) else {
        return Err(no_such_task());
    };
    task.polls += 1;
    if task.hidden_polls > 0 {
        // the worker has not written its log file yet
        task.hidden_polls -= 1;
        return Err(no_such_task());
    }
    let Some(t) = ctx.inner.task(&upid) else {
        return Err(no_such_task());
    };
    check_owner_or_audit(ctx, t)?;
    let mut m = task_fields(&ctx.inner.node, t);
    match &t.exitstatus {
        Some(exit) => {
            m.insert("status".into(), json!("stopped"));
            m.insert("exitstatus".into(), json!(exit));
        }
        None => {
            m.insert("status".into(), json!("running"));
        }
    }
    Ok(Reply::data(Value::Object(m)))
}

pub(super) fn log(ctx: &mut Ctx<'_>) -> ApiResult {
    let upid = upid_param(ctx)?;
    let start = ctx.params.int("start").unwrap_or(0).max(0) as usize;
    let limit = ctx.params.int("limit").unwrap_or(50).max(0) as usize;
    let lines: Vec<String> = match ctx.inner.task(&upid) {
        Some(t) if t.hidden_polls == 0 => {
            check_owner_or_audit(ctx, t)?;
            t.log.clone()
        }
        // no log file (yet): not an error here, unlike the status endpoint
        _ => {
            return Ok(Reply {
                data: json!([{ "n": 1, "t": "unable to open file - No such file or directory" }]),
                total: Some(1),
                ..Reply::default()
            })
        }
    };
    if lines.is_empty() {
        // "HACK: ExtJS store.guaranteeRange() does not like empty array"
        return Ok(Reply {
            data: json!([{ "n": 1, "t": "no content" }]),
            total: Some(1),
            ..Reply::default()
        });
    }
    let take = if limit == 0 { usize::MAX } else { limit };
    let data: Vec<Value> = lines
        .iter()
        .enumerate()
        .skip(start)
        .take(take)
        .map(|(i, l)| json!({ "n": i + 1, "t": l }))
        .collect();
    Ok(Reply {
        data: Value::Array(data),
        total: Some(lines.len() as u64),
        ..Reply::default()
    })
}

pub(super) fn list(ctx: &mut Ctx<'_>) -> ApiResult {
    let node = ctx.params.str("node").unwrap_or_default();
    let audit = ctx.allowed(&format!("/nodes/{node}"), &["Sys.Audit"]);
    let source = ctx
        .params
        .str("source")
        .unwrap_or_else(|| "archive".to_string());
    let vmid = ctx.params.str("vmid");
    let typefilter = ctx.params.str("typefilter");
    let userfilter = ctx.params.str("userfilter");
    let errors_only = ctx.params.flag("errors");
    let since = ctx.params.int("since");
    let until = ctx.params.int("until");
    let start = ctx.params.int("start").unwrap_or(0).max(0) as usize;
    let limit = ctx.params.int("limit").unwrap_or(50).max(0) as usize;
    let statusfilter: Vec<String> = ctx
        .params
        .str("statusfilter")
        .map(|s| crate::lxcconf::split_list(&s.to_ascii_lowercase()))
        .unwrap_or_default();
    let mut tasks: Vec<&Task> = ctx
        .inner
        .tasks
        .iter()
        .filter(|t| audit || owns(ctx.authid, t))
        .filter(|t| match source.as_str() {
            "active" => t.running(),
            "all" => true,
            _ => !t.running(),
        })
        .filter(|t| vmid.as_deref().is_none_or(|v| t.id == v))
        .filter(|t| typefilter.as_deref().is_none_or(|f| t.task_type == f))
        .filter(|t| userfilter.as_deref().is_none_or(|f| t.user.contains(f)))
        .filter(|t| since.is_none_or(|s| t.starttime as i64 >= s))
        .filter(|t| until.is_none_or(|u| t.starttime as i64 <= u))
        .filter(|t| {
            let class = match t.exitstatus.as_deref() {
                None => "unknown",
                Some("OK") => "ok",
                Some(s) if s.starts_with("WARNINGS: ") => "warning",
                Some(_) => "error",
            };
            (!errors_only || class == "error")
                && (statusfilter.is_empty() || statusfilter.iter().any(|f| f == class))
        })
        .collect();
    tasks.sort_by(|a, b| b.starttime.cmp(&a.starttime).then(b.pid.cmp(&a.pid)));
    let total = tasks.len() as u64;
    let take = if limit == 0 { usize::MAX } else { limit };
    let data: Vec<Value> = tasks
        .into_iter()
        .skip(start)
        .take(take)
        .map(|t| {
            let mut m = task_fields(&ctx.inner.node, t);
            // in the list, status is the exit text (or RUNNING)
            match &t.exitstatus {
                Some(exit) => {
                    m.insert("status".into(), json!(exit));
                    m.insert("endtime".into(), json!(t.endtime.unwrap_or(t.starttime)));
                }
                None => {
                    m.insert("status".into(), json!("RUNNING"));
                }
            }
            Value::Object(m)
        })
        .collect();
    Ok(Reply {
        data: Value::Array(data),
        total: Some(total),
        ..Reply::default()
    })
}
