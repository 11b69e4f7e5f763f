//! Privilege computation as PVE's `RPCEnvironment::permissions` does it (pure): ACL path
//! inheritance where a deeper entry replaces what was inherited, the propagate flag, and
//! privilege-separated tokens getting (token ACLs ∩ user privileges).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Acl, TokenSpec, ADMINISTRATOR_PRIVILEGES};

/// Privilege name → propagate flag, as `/access/permissions` reports it.
pub(crate) type PrivSet = BTreeMap<String, bool>;

/// Who may hold privileges: tokens by full id, users by `user@realm`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Principals {
    pub(crate) tokens: BTreeMap<String, TokenSpec>,
    pub(crate) users: BTreeMap<String, Vec<Acl>>,
}

impl Principals {
    pub(crate) fn from_tokens(tokens: &[TokenSpec]) -> Principals {
        let mut p = Principals::default();
        for t in tokens {
            p.add_token(t.clone());
        }
        p
    }

    /// Adds or replaces a token; its `user_acl` entries join the owning user's.
    pub(crate) fn add_token(&mut self, token: TokenSpec) {
        let user = self.users.entry(token.user().to_string()).or_default();
        for acl in &token.user_acl {
            if !user.contains(acl) {
                user.push(acl.clone());
            }
        }
        self.tokens.insert(token.id.clone(), token);
    }

    /// The privileges `authid` (a user or a full token id) has on `path`.
    pub(crate) fn permissions(&self, authid: &str, path: &str) -> PrivSet {
        self.permissions_among(authid, path, None)
    }

    /// [`Principals::permissions`] restricted to `wanted` (all with `None`): what a check of
    /// a few privileges needs, without building the whole set on every request.
    fn permissions_among(&self, authid: &str, path: &str, wanted: Option<&[&str]>) -> PrivSet {
        if authid == "root@pam" {
            return ADMINISTRATOR_PRIVILEGES
                .iter()
                .filter(|p| is_wanted(wanted, p))
                .map(|p| (p.to_string(), true))
                .collect();
        }
        if let Some((user, _)) = split_tokenid(authid) {
            let Some(token) = self.tokens.get(authid) else {
                return PrivSet::new();
            };
            let user_perms = self.permissions_among(user, path, wanted);
            // "return user privs for non-privsep tokens"
            if !token.privsep {
                return user_perms;
            }
            // "intersect user and token permissions" (propagate is ANDed too)
            return compile_among(&token.acl, path, wanted)
                .into_iter()
                .filter_map(|(p, prop)| user_perms.get(&p).map(|up| (p, prop && *up)))
                .collect();
        }
        match self.users.get(authid) {
            Some(entries) => compile_among(entries, path, wanted),
            None => PrivSet::new(),
        }
    }

    /// `check`: every privilege in `privs` (or, with `any`, at least one) on `path`.
    pub(crate) fn allows(&self, authid: &str, path: &str, privs: &[&str], any: bool) -> bool {
        let have = self.permissions_among(authid, path, Some(privs));
        if any {
            privs.iter().any(|p| have.contains_key(*p))
        } else {
            privs.iter().all(|p| have.contains_key(*p))
        }
    }

    /// The first privilege `check` would name in its error, or `None` when allowed.
    pub(crate) fn denial(
        &self,
        authid: &str,
        path: &str,
        privs: &[&str],
        any: bool,
    ) -> Option<String> {
        let have = self.permissions_among(authid, path, Some(privs));
        if any {
            if privs.iter().any(|p| have.contains_key(*p)) {
                None
            } else {
                Some(format!("{path}, {}", privs.join("|")))
            }
        } else {
            privs
                .iter()
                .find(|p| !have.contains_key(**p))
                .map(|p| format!("{path}, {p}"))
        }
    }

    /// `get_effective_permissions`: the default top-level paths plus every path named in an
    /// ACL, each with what `authid` has there; paths without privileges are left out.
    pub(crate) fn effective(&self, authid: &str) -> BTreeMap<String, PrivSet> {
        let mut paths: BTreeSet<String> = [
            "/",
            "/access",
            "/access/groups",
            "/mapping",
            "/nodes",
            "/pool",
            "/sdn",
            "/storage",
            "/vms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for t in self.tokens.values() {
            paths.extend(t.acl.iter().map(|a| normalize(&a.path)));
        }
        for entries in self.users.values() {
            paths.extend(entries.iter().map(|a| normalize(&a.path)));
        }
        paths
            .into_iter()
            .filter_map(|p| {
                let perms = self.permissions(authid, &p);
                (!perms.is_empty()).then_some((p, perms))
            })
            .collect()
    }
}

/// `user@realm!name` → (`user@realm`, `name`), with PVE's token-name pattern.
pub(crate) fn split_tokenid(id: &str) -> Option<(&str, &str)> {
    let (user, name) = id.rsplit_once('!')?;
    valid_userid(user).then_some(())?;
    valid_token_name(name).then_some((user, name))
}

/// `[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+`
pub(crate) fn valid_userid(user: &str) -> bool {
    let Some((name, realm)) = user.rsplit_once('@') else {
        return false;
    };
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == ':' || c == '/')
        && valid_token_name(realm)
}

/// `[A-Za-z][A-Za-z0-9.\-_]+` (PVE uses the same shape for realms and token names).
pub(crate) fn valid_token_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn is_wanted(wanted: Option<&[&str]>, privilege: &str) -> bool {
    wanted.is_none_or(|w| w.contains(&privilege))
}

fn normalize(path: &str) -> String {
    normalized(path).into_owned()
}

/// `path` with one leading and no trailing slash (`/` for the root); borrowed when it already
/// is (ACL paths almost always are).
fn normalized(path: &str) -> Cow<'_, str> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        Cow::Borrowed("/")
    } else if trimmed.starts_with('/') {
        Cow::Borrowed(trimmed)
    } else {
        Cow::Owned(format!("/{trimmed}"))
    }
}

/// PVE's `roles()` + `compile_acl_path` for one principal's entries: walk from `/` to `path`;
/// at each level the entries that apply (all at the final level, only propagating ones above
/// it) replace whatever was inherited. A privilege propagates if any entry granting it does.
#[cfg(test)]
pub(crate) fn compile(entries: &[Acl], path: &str) -> PrivSet {
    compile_among(entries, path, None)
}

/// [`compile`] keeping only the privileges in `wanted` (all with `None`). An applying entry
/// replaces what was inherited even when it grants none of them, as in [`compile`].
fn compile_among(entries: &[Acl], path: &str, wanted: Option<&[&str]>) -> PrivSet {
    let target = normalized(path);
    let components: Vec<&str> = if target == "/" {
        vec![""]
    } else {
        target.split('/').collect()
    };
    let mut current = String::new();
    let mut inherited = PrivSet::new();
    for (i, part) in components.iter().enumerate() {
        let is_final = i + 1 == components.len();
        if !part.is_empty() {
            current.push('/');
            current.push_str(part);
        }
        let here = if current.is_empty() {
            "/"
        } else {
            current.as_str()
        };
        let mut replacement: Option<PrivSet> = None;
        for entry in entries.iter().filter(|e| normalized(&e.path) == here) {
            if is_final || entry.propagate {
                let set = replacement.get_or_insert_with(PrivSet::new);
                for p in entry.privs.iter().filter(|p| is_wanted(wanted, p)) {
                    let flag = set.entry(p.clone()).or_insert(false);
                    *flag = *flag || entry.propagate;
                }
            }
        }
        if let Some(r) = replacement {
            inherited = r;
        }
    }
    inherited
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &PrivSet) -> Vec<&str> {
        set.keys().map(|s| s.as_str()).collect()
    }

    #[test]
    fn propagate_inherits_and_deeper_entries_replace() {
        let entries = vec![
            Acl::new("/", &["VM.Audit", "Sys.Audit"], true),
            Acl::new("/vms/100", &["VM.PowerMgmt"], false),
        ];
        assert_eq!(
            names(&compile(&entries, "/vms/101")),
            ["Sys.Audit", "VM.Audit"]
        );
        // the entry on /vms/100 replaces what / gave: PVE does not merge levels
        assert_eq!(names(&compile(&entries, "/vms/100")), ["VM.PowerMgmt"]);
        assert!(!compile(&entries, "/vms/100")["VM.PowerMgmt"]);
    }

    #[test]
    fn non_propagating_entries_apply_only_at_their_path() {
        let entries = vec![Acl::new("/vms", &["VM.Audit"], false)];
        assert_eq!(names(&compile(&entries, "/vms")), ["VM.Audit"]);
        assert!(compile(&entries, "/vms/100").is_empty());
        assert!(compile(&entries, "/").is_empty());
    }

    #[test]
    fn privsep_token_gets_the_intersection() {
        let token = TokenSpec::new("u@pve!tok", "s")
            .acl(Acl::new("/", &["VM.Audit", "VM.Backup"], true))
            .user_acl(Acl::new("/vms", &["VM.Audit", "VM.PowerMgmt"], true));
        let p = Principals::from_tokens(&[token]);
        assert_eq!(names(&p.permissions("u@pve!tok", "/vms/100")), ["VM.Audit"]);
        assert!(p.permissions("u@pve!tok", "/storage").is_empty());
        assert_eq!(
            names(&p.permissions("u@pve", "/vms/100")),
            ["VM.Audit", "VM.PowerMgmt"]
        );
    }

    #[test]
    fn non_privsep_token_gets_the_user_privileges() {
        let token = TokenSpec::new("u@pve!tok", "s")
            .privsep(false)
            .user_acl(Acl::new("/", &["Sys.Audit"], true));
        let p = Principals::from_tokens(&[token]);
        assert_eq!(
            names(&p.permissions("u@pve!tok", "/nodes/pve")),
            ["Sys.Audit"]
        );
    }

    #[test]
    fn privsep_token_without_acl_sees_nothing() {
        let token = TokenSpec::new("u@pve!tok", "s").user_acl(Acl::new("/", &["VM.Audit"], true));
        let p = Principals::from_tokens(&[token]);
        assert!(p.permissions("u@pve!tok", "/vms/100").is_empty());
        assert!(p.permissions("u@pve!missing", "/").is_empty());
    }

    #[test]
    fn denial_names_path_and_privilege_like_pve() {
        let p = Principals::from_tokens(&[TokenSpec::new("u@pve!tok", "s")
            .acl(Acl::new("/", &["VM.Audit"], true))
            .user_acl(Acl::new("/", &["VM.Audit"], true))]);
        assert_eq!(
            p.denial("u@pve!tok", "/vms/100", &["VM.Config.Options"], false)
                .as_deref(),
            Some("/vms/100, VM.Config.Options")
        );
        assert_eq!(
            p.denial(
                "u@pve!tok",
                "/vms/100",
                &["VM.Snapshot", "VM.Snapshot.Rollback"],
                true
            )
            .as_deref(),
            Some("/vms/100, VM.Snapshot|VM.Snapshot.Rollback")
        );
        assert_eq!(
            p.denial("u@pve!tok", "/vms/100", &["VM.Audit"], false),
            None
        );
    }

    #[test]
    fn checks_of_a_few_privileges_agree_with_the_whole_set() {
        // the restricted computation behind allows/denial must answer as the full one does,
        // including a deeper entry that grants none of the privileges asked for
        let token = TokenSpec::new("u@pve!tok", "s")
            .acl(Acl::new("/", &["VM.Audit", "VM.Backup", "Sys.Audit"], true))
            .acl(Acl::new("/vms/100", &["VM.PowerMgmt"], false))
            .acl(Acl::new("storage/local/", &["Datastore.Audit"], true))
            .user_acl(Acl::new(
                "/",
                &["VM.Audit", "VM.PowerMgmt", "Sys.Audit"],
                true,
            ))
            .user_acl(Acl::new("/storage", &["Datastore.Audit"], true));
        let open = TokenSpec::new("v@pve!tok", "s")
            .privsep(false)
            .user_acl(Acl::new("/vms", &["VM.Audit"], true));
        let p = Principals::from_tokens(&[token, open]);
        let privs = [
            "VM.Audit",
            "VM.Backup",
            "VM.PowerMgmt",
            "Sys.Audit",
            "Datastore.Audit",
        ];
        for who in ["u@pve!tok", "u@pve", "v@pve!tok", "root@pam", "nobody@pve"] {
            for path in [
                "/",
                "/vms",
                "/vms/100",
                "/vms/101",
                "/storage/local",
                "/nodes/pve",
            ] {
                let all = p.permissions(who, path);
                for any in [false, true] {
                    for n in 1..=2 {
                        for start in 0..privs.len() {
                            let asked: Vec<&str> =
                                privs.iter().cycle().skip(start).take(n).copied().collect();
                            let expect = if any {
                                asked.iter().any(|a| all.contains_key(*a))
                            } else {
                                asked.iter().all(|a| all.contains_key(*a))
                            };
                            assert_eq!(
                                p.allows(who, path, &asked, any),
                                expect,
                                "{who} {path} {asked:?} any={any}"
                            );
                            assert_eq!(p.denial(who, path, &asked, any).is_none(), expect);
                        }
                    }
                }
            }
        }
        assert!(p.allows("u@pve!tok", "/vms/101", &["VM.Audit"], false));
        assert!(!p.allows("u@pve!tok", "/vms/100", &["VM.Audit"], false));
    }

    #[test]
    fn effective_lists_only_paths_with_privileges() {
        let p = Principals::from_tokens(&[TokenSpec::agent_default()]);
        let eff = p.effective(crate::config::DEFAULT_TOKEN_ID);
        assert!(eff.contains_key("/"));
        assert!(eff.contains_key("/vms"));
        assert!(eff["/"].contains_key("VM.Backup"));
        assert!(!eff["/"].contains_key("Sys.Modify"));
    }

    #[test]
    fn token_ids_follow_pve_syntax() {
        assert_eq!(
            split_tokenid("felhom@pve!agent"),
            Some(("felhom@pve", "agent"))
        );
        // the realm would be "b!c": not a valid realm
        assert_eq!(split_tokenid("a@b!c!dd"), None);
        assert_eq!(split_tokenid("nouser!tok"), None);
        assert_eq!(split_tokenid("u@pve!1bad"), None);
        assert!(valid_userid("root@pam"));
        assert!(!valid_userid("root"));
    }
}
