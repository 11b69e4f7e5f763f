//! `felhom-sign sign`: runs OpenSSH's own `ssh-keygen -Y sign`, so hardware keys, `-f key.pub`
//! with ssh-agent and passphrase-protected keys behave exactly as OpenSSH users expect. This
//! tool never reads a private key itself.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use felhom_hub_proto::OP_SIGNATURE_NAMESPACE;

use crate::SignError;

/// The command an operator would run by hand, for error messages.
pub fn manual_command(key: &Path, file: &Path) -> String {
    format!(
        "ssh-keygen -Y sign -n {OP_SIGNATURE_NAMESPACE} -f {} {}",
        key.display(),
        file.display()
    )
}

/// Where ssh-keygen writes the signature of `file`: `file` with `.sig` appended.
pub fn sig_path(file: &Path) -> PathBuf {
    let mut name = OsString::from(file.as_os_str());
    name.push(".sig");
    PathBuf::from(name)
}

/// Signs `file` with `key` by running `program` (`ssh-keygen`) with the terminal passed
/// through (passphrase and touch prompts). Returns the signature's path.
pub fn sign(program: &OsStr, key: &Path, file: &Path) -> Result<PathBuf, SignError> {
    let manual = manual_command(key, file);
    if !key.exists() {
        return Err(SignError::KeyMissing {
            path: key.to_owned(),
        });
    }
    let status = Command::new(program)
        .args(["-Y", "sign", "-n", OP_SIGNATURE_NAMESPACE, "-f"])
        .arg(key)
        .arg(file)
        .status()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                SignError::SshKeygenMissing {
                    manual: manual.clone(),
                }
            } else {
                SignError::SshKeygenSpawn {
                    manual: manual.clone(),
                    source,
                }
            }
        })?;
    if !status.success() {
        return Err(SignError::SshKeygenFailed { status, manual });
    }
    Ok(sig_path(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_the_manual_command() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        std::fs::write(&key, "not used").unwrap();
        let e = sign(
            OsStr::new("/nonexistent/ssh-keygen"),
            &key,
            Path::new("op.json"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "ssh-keygen was not found on PATH (install OpenSSH); to sign by hand run: \
                 ssh-keygen -Y sign -n felhom-op-v1 -f {} op.json",
                key.display()
            )
        );
    }

    #[test]
    fn the_signature_goes_next_to_the_file() {
        assert_eq!(
            sig_path(Path::new("/tmp/op.json")),
            Path::new("/tmp/op.json.sig")
        );
    }
}
