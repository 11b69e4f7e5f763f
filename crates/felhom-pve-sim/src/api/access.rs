//! `GET /access/permissions`: what a user or token may do, per path (`PVE::API2::AccessControl`
//! `permissions`).

use serde_json::{json, Map, Value};

use super::{ApiResult, Ctx, Reply};
use crate::acl::{split_tokenid, PrivSet};

fn privs_json(set: &PrivSet) -> Value {
    let mut m = Map::new();
    for (p, propagate) in set {
        m.insert(p.clone(), json!(u8::from(*propagate)));
    }
    Value::Object(m)
}

pub(super) fn permissions(ctx: &mut Ctx<'_>) -> ApiResult {
    let userid = ctx
        .params
        .str("userid")
        .unwrap_or_else(|| ctx.authid.to_string());
    // anyone may dump their own permissions and those of their own tokens
    let check_self = userid == ctx.authid;
    let check_owned_token = split_tokenid(&userid).is_some_and(|(user, _)| user == ctx.authid);
    if !(check_self || check_owned_token) {
        ctx.check("/access", &["Sys.Audit"])?;
    }
    let principals = &ctx.inner.principals;
    let mut out = Map::new();
    match ctx.params.str("path") {
        Some(path) => {
            out.insert(
                path.clone(),
                privs_json(&principals.permissions(&userid, &path)),
            );
        }
        None => {
            for (path, set) in principals.effective(&userid) {
                out.insert(path, privs_json(&set));
            }
        }
    }
    Ok(Reply::data(Value::Object(out)))
}
