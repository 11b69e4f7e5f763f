//! The privileges the agent needs, per capability (SPEC §2): the ONE table. The README's
//! `pveum` setup lines and privilege table, `felhom-selftest privileges` (its checks and the
//! `pveum` commands that would fix what is missing) and the simulator's default agent token are
//! all derived from it or tested against it.
//!
//! Pure data and string rendering; no I/O. The paths and privilege names are PVE's, taken from
//! the permission checks in the official API schema.

/// The PVE role the setup creates for the agent.
pub const ROLE: &str = "FelhomAgent";

/// Where a privilege is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `/nodes/{node}`, this host's node (node status, reading other users' task status/log).
    /// Listing tasks (`GET /nodes/{node}/tasks`) needs no privilege of its own: the schema's
    /// `user => 'all'` lists a token its own tasks, and every task with `Sys.Audit` here.
    Node,
    /// Every guest: `/vms/{vmid}` for any vmid, i.e. `/vms` with propagate.
    EveryGuest,
    /// Every storage: `/storage/{storage}` for any storage (index lists are filtered per
    /// storage).
    EveryStorage,
    /// The storage the operation targets: an operator may grant it on the backup storage only.
    SomeStorage,
}

impl Scope {
    /// The ACL path as documentation writes it (`{node}`, `{storage}` placeholders).
    pub const fn acl_path(self) -> &'static str {
        match self {
            Scope::Node => "/nodes/{node}",
            Scope::EveryGuest => "/vms",
            Scope::EveryStorage => "/storage",
            Scope::SomeStorage => "/storage/{storage}",
        }
    }

    /// The ACL path whose grant (with propagate) covers the scope on `node`: the base a
    /// permission check starts from.
    pub fn base_path(self, node: &str) -> String {
        match self {
            Scope::Node => format!("/nodes/{node}"),
            Scope::EveryGuest => "/vms".to_owned(),
            Scope::EveryStorage | Scope::SomeStorage => "/storage".to_owned(),
        }
    }
}

/// One privilege a capability needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// The privilege, e.g. `VM.Snapshot`.
    pub privilege: &'static str,
    /// Where.
    pub scope: Scope,
}

/// A row of the privilege table.
#[derive(Debug, Clone, Copy)]
pub struct Capability {
    /// What the agent can do with it.
    pub name: &'static str,
    /// Everything it needs.
    pub needs: &'static [Need],
}

const fn need(privilege: &'static str, scope: Scope) -> Need {
    Need { privilege, scope }
}

/// What the agent needs, by capability.
pub const CAPABILITIES: &[Capability] = &[
    Capability {
        name: "host report",
        needs: &[
            need("Sys.Audit", Scope::Node),
            // Without these the guest and storage lists are silently filtered, not refused.
            need("VM.Audit", Scope::EveryGuest),
            need("Datastore.Audit", Scope::EveryStorage),
        ],
    },
    Capability {
        name: "start / stop",
        needs: &[need("VM.PowerMgmt", Scope::EveryGuest)],
    },
    Capability {
        name: "resize / describe",
        needs: &[
            need("VM.Config.CPU", Scope::EveryGuest),
            need("VM.Config.Memory", Scope::EveryGuest),
            need("VM.Config.Options", Scope::EveryGuest),
        ],
    },
    Capability {
        name: "snapshot / rollback",
        needs: &[
            need("VM.Snapshot", Scope::EveryGuest),
            need("VM.Snapshot.Rollback", Scope::EveryGuest),
        ],
    },
    Capability {
        name: "backup",
        needs: &[
            need("VM.Backup", Scope::EveryGuest),
            // Checked inside the vzdump task: a missing one fails the task, not the POST.
            need("Datastore.AllocateSpace", Scope::SomeStorage),
        ],
    },
    Capability {
        name: "restore / create",
        needs: &[
            // Restore tests create a guest under a new vmid.
            need("VM.Allocate", Scope::EveryGuest),
            need("Datastore.AllocateSpace", Scope::SomeStorage),
        ],
    },
    Capability {
        name: "restore test isolation",
        // A restore test deletes every `netN` of its scratch guest before starting it
        // (`PUT …/config` `delete=net0,…`): PVE checks VM.Config.Network per network key.
        needs: &[need("VM.Config.Network", Scope::EveryGuest)],
    },
    Capability {
        name: "destroy",
        // `DELETE /nodes/{node}/lxc/{vmid}` checks VM.Allocate on /vms/{vmid} (signed ops and
        // the cleanup of a restore test).
        needs: &[need("VM.Allocate", Scope::EveryGuest)],
    },
];

/// Every privilege of the table, sorted, once each: the privileges of [`ROLE`].
pub fn role_privileges() -> Vec<&'static str> {
    let mut privs: Vec<&'static str> = CAPABILITIES
        .iter()
        .flat_map(|c| c.needs.iter().map(|n| n.privilege))
        .collect();
    privs.sort_unstable();
    privs.dedup();
    privs
}

/// `pveum role add FelhomAgent --privs "…"`: creates the role with every privilege.
pub fn role_add_command() -> String {
    format!(
        "pveum role add {ROLE} --privs \"{}\"",
        role_privileges().join(",")
    )
}

/// `pveum role modify FelhomAgent --privs "…"`: sets an existing role's privileges to the
/// table's (e.g. after an upgrade added one).
pub fn role_modify_command() -> String {
    format!(
        "pveum role modify {ROLE} --privs \"{}\"",
        role_privileges().join(",")
    )
}

/// The user part of a token id (`felhom@pve` of `felhom@pve!agent`); the whole id if it has no
/// `!`.
pub fn user_of(token_id: &str) -> &str {
    token_id.rsplit_once('!').map_or(token_id, |(user, _)| user)
}

/// The two ACL lines granting [`ROLE`] on `path`: one for the user, one for the token. A
/// privilege-separated token gets the *intersection* of its own ACLs and its user's, so both
/// are needed.
pub fn acl_commands(path: &str, token_id: &str) -> [String; 2] {
    let path = shell_quote(path);
    [
        format!(
            "pveum acl modify {path} --users {} --roles {ROLE}",
            shell_quote(user_of(token_id))
        ),
        format!(
            "pveum acl modify {path} --tokens {} --roles {ROLE}",
            shell_quote(token_id)
        ),
    ]
}

/// What `felhom-selftest privileges` prints when something is missing: the role (created, or
/// set to the full list if it exists) and the ACL lines for each path a privilege is missing
/// on. `missing_paths` are the paths the judgement named (e.g. `/vms`, or `/vms/105` when an
/// ACL there replaces what `/vms` grants).
pub fn fix_commands<'a>(
    token_id: &str,
    missing_paths: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut paths: Vec<&str> = missing_paths.into_iter().collect();
    if paths.is_empty() {
        return Vec::new();
    }
    paths.sort_unstable();
    paths.dedup();
    let mut out = vec![
        format!(
            "# the role (if {ROLE} exists already: {})",
            role_modify_command()
        ),
        role_add_command(),
    ];
    for path in paths {
        out.extend(acl_commands(path, token_id));
    }
    out
}

/// The token the README's example uses.
pub const README_TOKEN_ID: &str = "felhom@pve!agent";

/// The README's privilege section, exactly: the table and the setup commands for
/// [`README_TOKEN_ID`], granted on `/` (which covers `/nodes`, `/vms` and `/storage`).
pub fn readme_block() -> String {
    let mut s = String::from("| capability | privileges, on ACL path |\n|---|---|\n");
    for cap in CAPABILITIES {
        // Consecutive needs on one path share it: `A`, `B` on `/vms`.
        let mut groups: Vec<(Scope, Vec<&str>)> = Vec::new();
        for n in cap.needs {
            match groups.last_mut() {
                Some((scope, privs)) if *scope == n.scope => privs.push(n.privilege),
                _ => groups.push((n.scope, vec![n.privilege])),
            }
        }
        let cell: Vec<String> = groups
            .iter()
            .map(|(scope, privs)| {
                let privs: Vec<String> = privs.iter().map(|p| format!("`{p}`")).collect();
                format!("{} on `{}`", privs.join(", "), scope.acl_path())
            })
            .collect();
        s.push_str(&format!("| {} | {} |\n", cap.name, cell.join("; ")));
    }
    let user = user_of(README_TOKEN_ID);
    let token_name = README_TOKEN_ID.rsplit_once('!').map_or("", |(_, n)| n);
    s.push_str("\n```sh\n");
    s.push_str(&format!("pveum user add {user}\n"));
    s.push_str(&format!(
        "pveum user token add {user} {token_name}   # prints the secret once\n"
    ));
    s.push_str(&role_add_command());
    s.push('\n');
    for line in acl_commands("/", README_TOKEN_ID) {
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str("```\n");
    s
}

/// `s` as one shell word: unchanged when it is plain, else single-quoted.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const README_BEGIN: &str = "<!-- privileges: generated by felhom_proxmox::privileges::readme_block; a test keeps it equal -->\n";
    const README_END: &str = "<!-- /privileges -->";

    #[test]
    fn the_role_holds_every_privilege_of_the_table_once() {
        assert_eq!(
            role_privileges(),
            [
                "Datastore.AllocateSpace",
                "Datastore.Audit",
                "Sys.Audit",
                "VM.Allocate",
                "VM.Audit",
                "VM.Backup",
                "VM.Config.CPU",
                "VM.Config.Memory",
                "VM.Config.Network",
                "VM.Config.Options",
                "VM.PowerMgmt",
                "VM.Snapshot",
                "VM.Snapshot.Rollback",
            ]
        );
        assert_eq!(
            role_add_command(),
            "pveum role add FelhomAgent --privs \"Datastore.AllocateSpace,Datastore.Audit,\
             Sys.Audit,VM.Allocate,VM.Audit,VM.Backup,VM.Config.CPU,VM.Config.Memory,\
             VM.Config.Network,VM.Config.Options,VM.PowerMgmt,VM.Snapshot,VM.Snapshot.Rollback\""
        );
        // Nobody asked for `PVEAuditor` alone: it lacks everything that changes a guest.
        for p in [
            "VM.PowerMgmt",
            "VM.Snapshot",
            "VM.Allocate",
            "Datastore.AllocateSpace",
        ] {
            assert!(role_privileges().contains(&p), "{p}");
        }
    }

    #[test]
    fn destroy_and_restore_need_vm_allocate_on_the_guests() {
        for name in ["destroy", "restore / create"] {
            let cap = CAPABILITIES.iter().find(|c| c.name == name).unwrap();
            assert!(
                cap.needs.contains(&need("VM.Allocate", Scope::EveryGuest)),
                "{name}"
            );
        }
    }

    #[test]
    fn acl_lines_cover_the_user_and_the_token_quoted_for_the_shell() {
        assert_eq!(
            acl_commands("/", "felhom@pve!agent"),
            [
                "pveum acl modify / --users felhom@pve --roles FelhomAgent",
                "pveum acl modify / --tokens 'felhom@pve!agent' --roles FelhomAgent",
            ]
        );
        assert_eq!(
            user_of("first.last@example.com@pve!t-1"),
            "first.last@example.com@pve"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn fix_commands_grant_the_role_on_each_missing_path_once() {
        assert!(fix_commands("felhom@pve!agent", []).is_empty());
        let fix = fix_commands("felhom@pve!agent", ["/vms", "/nodes/pve", "/vms"]);
        assert_eq!(
            fix[0],
            format!(
                "# the role (if FelhomAgent exists already: {})",
                role_modify_command()
            )
        );
        assert_eq!(fix[1], role_add_command());
        assert_eq!(
            &fix[2..],
            [
                "pveum acl modify /nodes/pve --users felhom@pve --roles FelhomAgent",
                "pveum acl modify /nodes/pve --tokens 'felhom@pve!agent' --roles FelhomAgent",
                "pveum acl modify /vms --users felhom@pve --roles FelhomAgent",
                "pveum acl modify /vms --tokens 'felhom@pve!agent' --roles FelhomAgent",
            ]
        );
    }

    /// The README's privilege section is exactly what the table generates.
    #[test]
    fn the_readme_agrees_with_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md at the workspace root");
        let expected = readme_block();
        let Some((_, rest)) = readme.split_once(README_BEGIN) else {
            panic!("README.md lacks the line {README_BEGIN:?}; put this after it:\n{expected}")
        };
        let Some((block, _)) = rest.split_once(README_END) else {
            panic!("README.md lacks the end marker {README_END:?}")
        };
        assert!(
            block == expected,
            "README.md's privilege section differs from the table; replace it with:\n{expected}"
        );
        assert!(
            !readme.contains("-role PVEAuditor"),
            "the old grant is gone"
        );
    }

    #[test]
    fn the_readme_block_lists_every_capability_and_the_role() {
        let block = readme_block();
        for cap in CAPABILITIES {
            assert!(
                block.contains(&format!("| {} | ", cap.name)),
                "{}",
                cap.name
            );
        }
        assert!(block.contains(
            "| host report | `Sys.Audit` on `/nodes/{node}`; `VM.Audit` on `/vms`; \
             `Datastore.Audit` on `/storage` |"
        ));
        assert!(block.contains(&role_add_command()));
        assert!(block.contains("pveum user token add felhom@pve agent"));
    }
}
