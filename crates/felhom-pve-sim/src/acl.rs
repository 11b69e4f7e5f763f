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
        // a token holds nothing its owning user does not: the user's privileges are the
        // candidates for both
        let owner = split_tokenid(authid).map_or(authid, |(user, _)| user);
        let candidates: BTreeSet<&str> = if authid == "root@pam" {
            ADMINISTRATOR_PRIVILEGES.iter().copied().collect()
        } else {
            self.users
                .get(owner)
                .into_iter()
                .flatten()
                .flat_map(|e| e.privs.iter().map(String::as_str))
                .collect()
        };
        candidates
            .into_iter()
            .filter_map(|p| Some((p.to_owned(), self.grant(authid, path, p)?)))
            .collect()
    }

    /// Whether `authid` holds `privilege` on `path`, and with which propagate flag: one entry
    /// of [`Principals::permissions`], without building the set (every request checks one or
    /// two privileges; a guest list checks one per guest).
    fn grant(&self, authid: &str, path: &str, privilege: &str) -> Option<bool> {
        if authid == "root@pam" {
            return ADMINISTRATOR_PRIVILEGES
                .contains(&privilege)
                .then_some(true);
        }
        if let Some((user, _)) = split_tokenid(authid) {
            let token = self.tokens.get(authid)?;
            let by_user = self.grant(user, path, privilege)?;
            // "return user privs for non-privsep tokens"
            if !token.privsep {
                return Some(by_user);
            }
            // "intersect user and token permissions" (propagate is ANDed too)
            return grant_of(&token.acl, path, privilege).map(|by_token| by_token && by_user);
        }
        grant_of(self.users.get(authid)?, path, privilege)
    }

    fn holds(&self, authid: &str, path: &str, privilege: &str) -> bool {
        self.grant(authid, path, privilege).is_some()
    }

    /// `check`: every privilege in `privs` (or, with `any`, at least one) on `path`.
    pub(crate) fn allows(&self, authid: &str, path: &str, privs: &[&str], any: bool) -> bool {
        if any {
            privs.iter().any(|p| self.holds(authid, path, p))
        } else {
            privs.iter().all(|p| self.holds(authid, path, p))
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
        if any {
            if self.allows(authid, path, privs, true) {
                None
            } else {
                Some(format!("{path}, {}", privs.join("|")))
            }
        } else {
            privs
                .iter()
                .find(|p| !self.holds(authid, path, p))
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

/// PVE's `roles()` + `compile_acl_path` for one principal's entries and one privilege:
/// `Some(propagate)` when `entries` grant `privilege` on `path`. The walk goes from `/` down
/// to `path`; at each level the entries that apply (all at the final level, only propagating
/// ones above it) replace whatever was inherited, whether or not they grant it. A privilege
/// propagates if any entry granting it does. Allocates nothing.
fn grant_of(entries: &[Acl], path: &str, privilege: &str) -> Option<bool> {
    let target = normalized(path);
    let depth = target.split('/').filter(|c| !c.is_empty()).count();
    let mut inherited = None;
    for level in 0..=depth {
        let is_final = level == depth;
        let mut applies = false;
        let mut granted: Option<bool> = None;
        for entry in entries.iter().filter(|e| {
            (is_final || e.propagate) && names_level(&normalized(&e.path), &target, level)
        }) {
            applies = true;
            if entry.privs.iter().any(|p| p == privilege) {
                granted = Some(granted.unwrap_or(false) || entry.propagate);
            }
        }
        if applies {
            inherited = granted;
        }
    }
    inherited
}

/// Whether the normalized ACL path `entry` names the level of `target` that holds its first
/// `level` non-empty components (`/` for 0). An entry path with an empty component (`/a//b`)
/// names no level, as in PVE's string comparison with the joined components.
fn names_level(entry: &str, target: &str, level: usize) -> bool {
    if entry == "/" {
        return level == 0;
    }
    let mut want = target.split('/').filter(|c| !c.is_empty()).take(level);
    // `entry` is normalized: one leading slash, none trailing
    let mut have = entry.split('/').skip(1);
    loop {
        match (have.next(), want.next()) {
            (None, None) => return true,
            (Some(h), Some(w)) if h == w => {}
            _ => return false,
        }
    }
}

/// Every privilege `entries` grant on `path`, each with its propagate flag.
#[cfg(test)]
pub(crate) fn compile(entries: &[Acl], path: &str) -> PrivSet {
    let names: BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| e.privs.iter().map(String::as_str))
        .collect();
    names
        .into_iter()
        .filter_map(|p| Some((p.to_owned(), grant_of(entries, path, p)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &PrivSet) -> Vec<&str> {
        set.keys().map(|s| s.as_str()).collect()
    }

    /// `compile_acl_path` transcribed as PVE writes it (build each level's path string, keep
    /// whole privilege sets): the oracle [`grant_of`] is checked against.
    fn reference_compile(entries: &[Acl], path: &str) -> PrivSet {
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
                    for p in &entry.privs {
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

    #[test]
    fn one_privilege_is_decided_as_the_whole_set_decides_it() {
        let a = |path: &str, privs: &[&str], propagate| Acl::new(path, privs, propagate);
        let sets: Vec<Vec<Acl>> = vec![
            vec![],
            vec![a("/", &["VM.Audit", "Sys.Audit"], true)],
            vec![a("/", &["VM.Audit"], false)],
            vec![
                a("/", &["VM.Audit", "Sys.Audit"], true),
                a("/vms/100", &["VM.PowerMgmt"], false),
            ],
            vec![
                a("/vms", &["VM.Audit"], true),
                a("/vms", &["VM.Audit", "VM.Backup"], false),
                a("/vms/101", &[], true),
            ],
            vec![
                a("/vms/", &["VM.Audit"], true),
                a("vms/100", &["VM.Audit"], false),
                a("/storage/local", &["Datastore.Audit"], true),
            ],
        ];
        let paths = [
            "/",
            "/vms",
            "/vms/",
            "/vms/100",
            "/vms/101",
            "/vms/102",
            "/vms//100",
            "/storage",
            "/storage/local",
            "storage/local/x",
            "/nodes/pve",
        ];
        let privs = [
            "VM.Audit",
            "Sys.Audit",
            "VM.PowerMgmt",
            "VM.Backup",
            "Datastore.Audit",
        ];
        for entries in &sets {
            for path in paths {
                let whole = reference_compile(entries, path);
                assert_eq!(compile(entries, path), whole, "{path} with {entries:?}");
                for p in privs {
                    assert_eq!(
                        grant_of(entries, path, p),
                        whole.get(p).copied(),
                        "{p} on {path} with {entries:?}"
                    );
                }
            }
        }
        // principals: users, privilege-separated and plain tokens, root
        let p = Principals::from_tokens(&[
            TokenSpec::new("u@pve!sep", "s")
                .acl(a("/vms", &["VM.Audit"], true))
                .user_acl(a("/", &["VM.Audit", "Sys.Audit"], true)),
            TokenSpec::new("w@pve!all", "s").privsep(false).user_acl(a(
                "/vms/100",
                &["VM.Audit"],
                false,
            )),
        ]);
        for authid in [
            "u@pve!sep",
            "u@pve",
            "w@pve!all",
            "w@pve",
            "x@pve!none",
            "root@pam",
        ] {
            for path in paths {
                let whole = p.permissions(authid, path);
                // PVE's rules over the reference walk: root has all, a user its entries', a
                // privilege-separated token (token ∩ user) with the flags ANDed, another token
                // its user's, an unknown one nothing
                let of_user = |u: &str| {
                    p.users
                        .get(u)
                        .map_or_else(PrivSet::new, |e| reference_compile(e, path))
                };
                let expected: PrivSet = match (authid, split_tokenid(authid)) {
                    ("root@pam", _) => ADMINISTRATOR_PRIVILEGES
                        .iter()
                        .map(|a| (a.to_string(), true))
                        .collect(),
                    (_, Some((user, _))) => match p.tokens.get(authid) {
                        None => PrivSet::new(),
                        Some(t) if !t.privsep => of_user(user),
                        Some(t) => {
                            let by_user = of_user(user);
                            reference_compile(&t.acl, path)
                                .into_iter()
                                .filter_map(|(k, f)| by_user.get(&k).map(|u| (k, f && *u)))
                                .collect()
                        }
                    },
                    (user, None) => of_user(user),
                };
                assert_eq!(whole, expected, "{authid} on {path}");
                for privilege in privs {
                    assert_eq!(
                        p.holds(authid, path, privilege),
                        whole.contains_key(privilege),
                        "{authid}: {privilege} on {path}"
                    );
                }
            }
        }
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
