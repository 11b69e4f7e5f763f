//! `cargo xtask deb`: the Debian package of felhom-agent, built with the tools every Debian
//! machine has (`dpkg-deb --build --root-owner-group`, `gzip`, `md5sum`), not cargo-deb.
//!
//! The tree: both binaries in /usr/bin, the unit in /usr/lib/systemd/system, the example config
//! as the conffile /etc/felhom-agent/agent.json.example, docs, copyright, changelog and the
//! lintian overrides; DEBIAN/ holds the control file (Depends computed from the binaries'
//! DT_NEEDED entries and glibc symbol versions, Installed-Size from the staged files),
//! conffiles, md5sums and the maintainer scripts from configs/debian/. `lintian` runs on the
//! result when it is installed.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::cargo;

/// The package name.
pub const PACKAGE: &str = "felhom-agent";
/// The one conffile: the example config (the real agent.json is the operator's, not the
/// package's).
pub const CONFFILE: &str = "/etc/felhom-agent/agent.json.example";

#[derive(Debug, clap::Args)]
pub struct DebArgs {
    /// Where to write the .deb (default: target/debian).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip lintian even when it is installed.
    #[arg(long)]
    no_lintian: bool,
}

/// What goes into one package build.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The workspace root (configs/ is read from it).
    pub root: PathBuf,
    /// The daemon binary.
    pub agent: PathBuf,
    /// The self-test binary.
    pub selftest: PathBuf,
    /// The Debian version (the workspace version; a native package).
    pub version: String,
    /// The Debian architecture, e.g. `amd64`.
    pub arch: String,
}

/// `cargo xtask deb`: release build, package, lintian.
pub fn run(root: &Path, args: DebArgs) -> Result<()> {
    let built = cargo::build(
        root,
        &["felhom-agent", "felhom-selftest"],
        cargo::Profile::Release,
    )?;
    let exe = |name: &str| {
        built
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .with_context(|| format!("cargo built no {name}"))
    };
    let inputs = Inputs {
        root: root.to_owned(),
        agent: exe("felhom-agent")?,
        selftest: exe("felhom-selftest")?,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        arch: debian_arch()?,
    };
    let out = args.out.unwrap_or_else(|| root.join("target/debian"));
    let deb = build(&inputs, &out)?;
    println!("deb      {}", deb.display());
    if args.no_lintian {
        return Ok(());
    }
    match lintian(&deb)? {
        Lintian::Clean => {
            println!("lintian  clean (overrides: usr/share/lintian/overrides/{PACKAGE})")
        }
        Lintian::NotInstalled => {
            println!("lintian  not installed: skipped (apt-get install lintian)")
        }
    }
    Ok(())
}

/// The Debian architecture of this machine's builds.
pub fn debian_arch() -> Result<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        other => bail!("no Debian architecture known for {other}"),
    };
    Ok(arch.to_owned())
}

/// Stages the tree in a temporary directory and builds `<out>/felhom-agent_<version>_<arch>.deb`.
pub fn build(inputs: &Inputs, out: &Path) -> Result<PathBuf> {
    let configs = inputs.root.join("configs");
    let debian = configs.join("debian");
    let changelog = read(&debian.join("changelog"))?;
    let top = changelog_version(&changelog)?;
    ensure!(
        top == inputs.version,
        "configs/debian/changelog's top entry is {top}, the package is {}: add an entry",
        inputs.version
    );

    let stage = tempfile::tempdir().context("a staging directory")?;
    let s = stage.path();
    let doc = format!("usr/share/doc/{PACKAGE}");
    dir(s, "usr/bin", 0o755)?;
    dir(s, "usr/lib/systemd/system", 0o755)?;
    // The config directory holds the token secret once configured: not world-readable (the
    // unit's ConfigurationDirectoryMode= says the same).
    dir(s, "etc/felhom-agent", 0o750)?;
    dir(s, &doc, 0o755)?;
    dir(s, "usr/share/lintian/overrides", 0o755)?;
    dir(s, "DEBIAN", 0o755)?;

    copy(&inputs.agent, s, "usr/bin/felhom-agent", 0o755)?;
    copy(&inputs.selftest, s, "usr/bin/felhom-selftest", 0o755)?;
    copy(
        &configs.join("felhom-agent.service"),
        s,
        "usr/lib/systemd/system/felhom-agent.service",
        0o644,
    )?;
    copy(
        &configs.join("agent.example.json"),
        s,
        CONFFILE.trim_start_matches('/'),
        0o644,
    )?;
    copy(
        &configs.join("README.md"),
        s,
        &format!("{doc}/CONFIG.md"),
        0o644,
    )?;
    copy(
        &debian.join("copyright"),
        s,
        &format!("{doc}/copyright"),
        0o644,
    )?;
    write(
        s,
        &format!("{doc}/changelog.gz"),
        &gzip(changelog.as_bytes())?,
        0o644,
    )?;
    copy(
        &debian.join("lintian-overrides"),
        s,
        &format!("usr/share/lintian/overrides/{PACKAGE}"),
        0o644,
    )?;
    for script in ["postinst", "prerm", "postrm"] {
        copy(&debian.join(script), s, &format!("DEBIAN/{script}"), 0o755)?;
    }
    write(
        s,
        "DEBIAN/conffiles",
        format!("{CONFFILE}\n").as_bytes(),
        0o644,
    )?;

    let depends = depends(&[&inputs.agent, &inputs.selftest])?;
    let files = payload(s)?;
    let control = control(
        &inputs.version,
        &inputs.arch,
        installed_size(s, &files)?,
        &depends,
    );
    write(s, "DEBIAN/control", control.as_bytes(), 0o644)?;
    write(s, "DEBIAN/md5sums", &md5sums(s, &files)?, 0o644)?;

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let deb = out.join(format!("{PACKAGE}_{}_{}.deb", inputs.version, inputs.arch));
    let output = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(s)
        .arg(&deb)
        .output()
        .context("running dpkg-deb (package dpkg)")?;
    ensure!(
        output.status.success(),
        "dpkg-deb --build failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(deb)
}

/// DEBIAN/control.
pub fn control(version: &str, arch: &str, installed_kib: u64, depends: &[String]) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "Package: {PACKAGE}");
    let _ = writeln!(c, "Version: {version}");
    let _ = writeln!(c, "Architecture: {arch}");
    let _ = writeln!(c, "Maintainer: felhom <ops@example.invalid>");
    let _ = writeln!(c, "Installed-Size: {installed_kib}");
    let _ = writeln!(c, "Depends: {}", depends.join(", "));
    let _ = writeln!(c, "Section: admin");
    let _ = writeln!(c, "Priority: optional");
    let _ = writeln!(c, "Homepage: https://example.invalid/felhom/felhom-agent");
    // Extended description lines stay under 80 columns (lintian).
    c.push_str(
        "Description: felhom host agent for Proxmox VE\n \
         Reports this Proxmox VE host to the felhom hub and converges its guests\n \
         toward the operator's desired state through the Proxmox API; destructive\n \
         operations need an operator's SSH signature.\n \
         .\n \
         Includes felhom-selftest, which checks the API token, its privileges and\n \
         the hub connection before the daemon is started.\n",
    );
    c
}

/// The first version in a Debian changelog: `pkg (VERSION) dist; urgency=…`.
pub fn changelog_version(changelog: &str) -> Result<String> {
    let first = changelog.lines().next().unwrap_or_default();
    let version = first
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(v, _)| v.trim())
        .filter(|v| !v.is_empty());
    version
        .map(str::to_owned)
        .with_context(|| format!("configs/debian/changelog: no version in {first:?}"))
}

/// The Depends line's entries for `binaries`: each shared library they need mapped to its
/// package, glibc at the newest symbol version they use. (The maintainer scripts' tools,
/// deb-systemd-helper and deb-systemd-invoke, are in init-system-helpers, which is Essential:
/// no dependency, as lintian insists.)
pub fn depends(binaries: &[&Path]) -> Result<Vec<String>> {
    let mut packages = BTreeSet::new();
    let mut glibc: Option<(u32, u32)> = None;
    for bin in binaries {
        let bytes = std::fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
        let dynamic = elf_dynamic(&bytes).with_context(|| format!("{}", bin.display()))?;
        for lib in &dynamic.needed {
            let pkg = library_package(lib).with_context(|| {
                format!(
                    "{} needs {lib}, which xtask/src/deb.rs maps to no package: add it",
                    bin.display()
                )
            })?;
            packages.insert(pkg);
        }
        glibc = glibc.max(dynamic.glibc);
    }
    let mut out = Vec::new();
    for pkg in packages {
        match (pkg, glibc) {
            ("libc6", Some((major, minor))) => out.push(format!("libc6 (>= {major}.{minor})")),
            (pkg, _) => out.push(pkg.to_owned()),
        }
    }
    Ok(out)
}

/// The Debian package shipping a shared library (the few a Rust binary with rustls links).
fn library_package(soname: &str) -> Option<&'static str> {
    match soname {
        "libc.so.6" | "libm.so.6" | "libdl.so.2" | "libpthread.so.0" | "librt.so.1"
        | "libutil.so.1" => Some("libc6"),
        s if s.starts_with("ld-linux") => Some("libc6"),
        "libgcc_s.so.1" => Some("libgcc-s1"),
        _ => None,
    }
}

/// What the dynamic linker needs for a binary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// DT_NEEDED sonames, in order.
    pub needed: Vec<String>,
    /// The newest `GLIBC_x.y` version named in the dynamic string table.
    pub glibc: Option<(u32, u32)>,
}

/// DT_NEEDED and glibc versions of a 64-bit little-endian ELF file (what every architecture
/// this is built for uses). A static binary has no dynamic section: nothing needed.
pub fn elf_dynamic(elf: &[u8]) -> Result<Dynamic> {
    ensure!(elf.get(..4) == Some(b"\x7fELF"), "not an ELF file");
    ensure!(
        elf.get(4) == Some(&2) && elf.get(5) == Some(&1),
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |o: usize| -> Result<u64> {
        let b = elf.get(o..o + 2).context("truncated ELF file")?;
        Ok(u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u32_at = |o: usize| -> Result<u64> {
        let b = elf.get(o..o + 4).context("truncated ELF file")?;
        Ok(u64::from(u32::from_le_bytes(b.try_into()?)))
    };
    let u64_at = |o: usize| -> Result<u64> {
        let b = elf.get(o..o + 8).context("truncated ELF file")?;
        Ok(u64::from_le_bytes(b.try_into()?))
    };
    let usize_of = |v: u64| usize::try_from(v).context("ELF offset out of range");
    let shoff = usize_of(u64_at(0x28)?)?;
    let shentsize = usize_of(u16_at(0x3a)?)?;
    let shnum = usize_of(u16_at(0x3c)?)?;
    let section = |i: usize| -> Result<(u64, usize, usize, usize)> {
        let h = shoff + i * shentsize;
        // (type, offset, size, link)
        Ok((
            u32_at(h + 4)?,
            usize_of(u64_at(h + 24)?)?,
            usize_of(u64_at(h + 32)?)?,
            usize_of(u32_at(h + 40)?)?,
        ))
    };
    const SHT_DYNAMIC: u64 = 6;
    const DT_NULL: u64 = 0;
    const DT_NEEDED: u64 = 1;
    let mut out = Dynamic::default();
    for i in 0..shnum {
        let (kind, offset, size, link) = section(i)?;
        if kind != SHT_DYNAMIC {
            continue;
        }
        let (_, str_off, str_size, _) = section(link)?;
        let strtab = elf
            .get(str_off..str_off + str_size)
            .context("truncated dynamic string table")?;
        let string = |o: usize| -> Result<String> {
            let rest = strtab.get(o..).context("string offset out of range")?;
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        for entry in (offset..offset + size).step_by(16) {
            let tag = u64_at(entry)?;
            if tag == DT_NULL {
                break;
            }
            if tag == DT_NEEDED {
                out.needed.push(string(usize_of(u64_at(entry + 8)?)?)?);
            }
        }
        for name in strtab.split(|&b| b == 0) {
            if let Some(v) = std::str::from_utf8(name)
                .ok()
                .and_then(|n| n.strip_prefix("GLIBC_"))
                .and_then(parse_version)
            {
                out.glibc = out.glibc.max(Some(v));
            }
        }
    }
    Ok(out)
}

/// `2.34` → (2, 34); `PRIVATE` and the like → None.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    let minor = minor.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Every payload file (not DEBIAN/), relative, sorted.
fn payload(stage: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![stage.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            let rel = path.strip_prefix(stage)?.to_owned();
            if rel.starts_with("DEBIAN") {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(rel);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Installed-Size as dpkg-gencontrol counts it: each file's size rounded up to KiB, plus one
/// per directory.
fn installed_size(stage: &Path, files: &[PathBuf]) -> Result<u64> {
    let mut kib = 0;
    let mut dirs = BTreeSet::new();
    for f in files {
        let len = std::fs::metadata(stage.join(f))?.len();
        kib += len.div_ceil(1024);
        let mut parent = f.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_owned());
            parent = p.parent();
        }
    }
    Ok(kib + dirs.len() as u64)
}

/// DEBIAN/md5sums, from `md5sum` run in the staging directory (conffiles included, as dpkg
/// expects).
fn md5sums(stage: &Path, files: &[PathBuf]) -> Result<Vec<u8>> {
    let output = Command::new("md5sum")
        .current_dir(stage)
        .args(files)
        .output()
        .context("running md5sum (package coreutils)")?;
    ensure!(output.status.success(), "md5sum failed ({})", output.status);
    Ok(output.stdout)
}

/// `gzip -9n` (no name or time stamp in the header: reproducible, as lintian asks).
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running gzip")?;
    child
        .stdin
        .take()
        .context("gzip's stdin")?
        .write_all(data)?;
    let output = child.wait_with_output()?;
    ensure!(output.status.success(), "gzip failed ({})", output.status);
    Ok(output.stdout)
}

/// The verdict of lintian, when it is installed.
#[derive(Debug, PartialEq, Eq)]
pub enum Lintian {
    /// No error or warning beyond the shipped overrides.
    Clean,
    /// `lintian` is not on PATH.
    NotInstalled,
}

/// Runs lintian on `deb`; an error or warning (not overridden) is an error here, with
/// lintian's output.
pub fn lintian(deb: &Path) -> Result<Lintian> {
    let output = match Command::new("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(deb)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lintian::NotInstalled),
        Err(e) => return Err(e).context("running lintian"),
    };
    ensure!(
        output.status.success(),
        "lintian found problems in {} ({}):\n{}{}",
        deb.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(Lintian::Clean)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn dir(stage: &Path, rel: &str, mode: u32) -> Result<()> {
    let path = stage.join(rel);
    std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    chmod(&path, mode)
}

fn copy(from: &Path, stage: &Path, rel: &str, mode: u32) -> Result<()> {
    let to = stage.join(rel);
    std::fs::copy(from, &to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    chmod(&to, mode)
}

fn write(stage: &Path, rel: &str, data: &[u8], mode: u32) -> Result<()> {
    let to = stage.join(rel);
    std::fs::write(&to, data).with_context(|| format!("writing {}", to.display()))?;
    chmod(&to, mode)
}

/// Modes are set explicitly: the build machine's umask must not leak into the package.
fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_libraries_map_as_debian_names_them() {
        assert_eq!(parse_version("2.34"), Some((2, 34)));
        assert_eq!(parse_version("2.2.5"), Some((2, 2)));
        assert_eq!(parse_version("PRIVATE"), None);
        assert_eq!(library_package("libc.so.6"), Some("libc6"));
        assert_eq!(library_package("ld-linux-x86-64.so.2"), Some("libc6"));
        assert_eq!(library_package("libgcc_s.so.1"), Some("libgcc-s1"));
        assert_eq!(library_package("libssl.so.3"), None);
        assert_eq!(
            changelog_version("felhom-agent (0.1.0) unstable; urgency=medium\n").unwrap(),
            "0.1.0"
        );
        assert!(changelog_version("garbage\n").is_err());
    }

    #[test]
    fn elf_parsing_refuses_what_is_not_elf64() {
        assert!(elf_dynamic(b"#!/bin/sh\n").is_err());
        assert!(elf_dynamic(b"\x7fELF\x01\x01").is_err());
        assert!(elf_dynamic(b"\x7fELF\x02\x01\x01").is_err(), "truncated");
    }

    #[test]
    fn the_control_file_has_every_field_dpkg_needs() {
        let c = control("0.1.0", "amd64", 12345, &["libc6 (>= 2.34)".into()]);
        for field in [
            "Package: felhom-agent\n",
            "Version: 0.1.0\n",
            "Architecture: amd64\n",
            "Installed-Size: 12345\n",
            "Depends: libc6 (>= 2.34)\n",
            "Maintainer: ",
            "Description: felhom host agent for Proxmox VE\n ",
        ] {
            assert!(c.contains(field), "{field}\n{c}");
        }
        assert!(c.ends_with('\n'));
        assert!(c.lines().all(|l| l.len() < 80), "{c}");
        // Continuation lines start with a space; none is empty (a lone `.` marks a blank).
        for line in c
            .lines()
            .skip_while(|l| !l.starts_with("Description"))
            .skip(1)
        {
            assert!(line.starts_with(' ') && line.len() > 1, "{line:?}");
        }
    }

    /// A small system binary standing in for ours (a release build has no place in `cargo
    /// test`): dynamically linked against glibc like ours.
    fn stand_in() -> PathBuf {
        let bin = PathBuf::from("/bin/true");
        assert!(
            bin.exists(),
            "/bin/true (coreutils) is on every Debian machine"
        );
        bin
    }

    fn dpkg_deb(args: &[&str], deb: &Path) -> String {
        let out = Command::new("dpkg-deb")
            .args(args)
            .arg(deb)
            .output()
            .expect("dpkg-deb runs");
        assert!(out.status.success(), "dpkg-deb {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn member(deb: &Path, name: &str) -> String {
        let out = Command::new("dpkg-deb")
            .args(["--info"])
            .arg(deb)
            .arg(name)
            .output()
            .expect("dpkg-deb runs");
        assert!(out.status.success(), "no control member {name}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn a_real_binary_needs_glibc() {
        let d = elf_dynamic(&std::fs::read(stand_in()).unwrap()).unwrap();
        assert!(d.needed.iter().any(|n| n == "libc.so.6"), "{d:?}");
        assert!(d.glibc.is_some_and(|v| v >= (2, 2)), "{d:?}");
        let deps = depends(&[&stand_in()]).unwrap();
        assert!(deps[0].starts_with("libc6 (>= 2."), "{deps:?}");
    }

    /// The package built from stand-in binaries into `out`, with its inputs.
    fn stand_in_package(out: &Path) -> (Inputs, PathBuf) {
        let inputs = Inputs {
            root: crate::root(),
            agent: stand_in(),
            selftest: stand_in(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            arch: debian_arch().unwrap(),
        };
        let deb = build(&inputs, out).unwrap();
        (inputs, deb)
    }

    /// lintian judges the package (errors and warnings not overridden fail).
    #[test]
    #[cfg_attr(
        not(have_lintian),
        ignore = "lintian is not on PATH: apt-get install lintian, then touch xtask/build.rs"
    )]
    fn the_package_passes_lintian() {
        let out = tempfile::tempdir().unwrap();
        let (_, deb) = stand_in_package(out.path());
        match lintian(&deb) {
            Ok(Lintian::Clean) => {}
            Ok(Lintian::NotInstalled) => panic!("lintian was on PATH when this test was built"),
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Builds the package from stand-in binaries and inspects it as dpkg sees it.
    #[test]
    fn the_package_holds_everything() {
        let out = tempfile::tempdir().unwrap();
        let (inputs, deb) = stand_in_package(out.path());
        assert_eq!(
            deb.file_name().unwrap().to_str().unwrap(),
            format!("felhom-agent_{}_{}.deb", inputs.version, inputs.arch)
        );

        // The payload: `-rwxr-xr-x root/root 39 2025-… ./usr/bin/felhom-agent`.
        let contents = dpkg_deb(&["--contents"], &deb);
        let entry = |path: &str| -> (String, String) {
            let line = contents
                .lines()
                .find(|l| l.ends_with(&format!(" .{path}")) || l.ends_with(&format!(" .{path}/")))
                .unwrap_or_else(|| panic!("{path} not in the package:\n{contents}"));
            let mut cols = line.split_whitespace();
            (
                cols.next().unwrap().to_owned(),
                cols.next().unwrap().to_owned(),
            )
        };
        for (path, mode) in [
            ("/usr/bin/felhom-agent", "-rwxr-xr-x"),
            ("/usr/bin/felhom-selftest", "-rwxr-xr-x"),
            ("/usr/lib/systemd/system/felhom-agent.service", "-rw-r--r--"),
            ("/etc/felhom-agent/agent.json.example", "-rw-r--r--"),
            ("/etc/felhom-agent", "drwxr-x---"),
            ("/usr/share/doc/felhom-agent/copyright", "-rw-r--r--"),
            ("/usr/share/doc/felhom-agent/changelog.gz", "-rw-r--r--"),
            ("/usr/share/doc/felhom-agent/CONFIG.md", "-rw-r--r--"),
            ("/usr/share/lintian/overrides/felhom-agent", "-rw-r--r--"),
        ] {
            assert_eq!(
                entry(path),
                (mode.to_owned(), "root/root".to_owned()),
                "{path}"
            );
        }
        assert!(
            !contents.contains("/etc/felhom-agent/agent.json\n"),
            "the real config is the operator's:\n{contents}"
        );

        // The control area.
        let info = dpkg_deb(&["--info"], &deb);
        for member in [
            "control",
            "conffiles",
            "md5sums",
            "postinst",
            "prerm",
            "postrm",
        ] {
            assert!(
                info.contains(&format!(" {member}\n")) || info.contains(&format!(" {member} ")),
                "no {member}:\n{info}"
            );
        }
        let field = |name: &str| {
            dpkg_deb(&["--field"], &deb)
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
                .unwrap_or_else(|| panic!("no {name} field"))
        };
        assert_eq!(field("Package"), "felhom-agent");
        assert_eq!(field("Version"), inputs.version);
        assert_eq!(field("Architecture"), inputs.arch);
        assert!(
            field("Depends").starts_with("libc6 (>= 2."),
            "{}",
            field("Depends")
        );
        let size: u64 = field("Installed-Size").parse().unwrap();
        assert!(size > 0);
        assert_eq!(
            member(&deb, "conffiles"),
            "/etc/felhom-agent/agent.json.example\n"
        );
        let md5 = member(&deb, "md5sums");
        assert!(md5.contains("  usr/bin/felhom-agent\n"), "{md5}");
        assert!(
            md5.contains("  etc/felhom-agent/agent.json.example\n"),
            "{md5}"
        );

        // The scripts do what dh_installsystemd would, guarded by the config's existence.
        let postinst = member(&deb, "postinst");
        for needle in [
            "deb-systemd-helper enable \"$UNIT\"",
            "systemctl --system daemon-reload",
            "if [ -e \"$CONFIG\" ]; then",
            "deb-systemd-invoke restart \"$UNIT\"",
            "deb-systemd-invoke start \"$UNIT\"",
            "felhom-agent: not started:",
        ] {
            assert!(
                postinst.contains(needle),
                "postinst lacks {needle}:\n{postinst}"
            );
        }
        assert!(member(&deb, "prerm").contains("deb-systemd-invoke stop felhom-agent.service"));
        let postrm = member(&deb, "postrm");
        let purge = postrm
            .find("if [ \"$1\" = purge ]")
            .expect("a purge branch");
        let wipe = postrm
            .find("rm -rf /var/lib/felhom-agent")
            .expect("state removed");
        assert!(wipe > purge, "the state goes on purge only:\n{postrm}");
        assert_eq!(postrm.matches("rm -rf").count(), 1, "{postrm}");

        // The unit never loops on a missing or bad config.
        let unit =
            std::fs::read_to_string(crate::root().join("configs/felhom-agent.service")).unwrap();
        assert!(unit.contains("\nConditionPathExists=/etc/felhom-agent/agent.json\n"));
        assert!(unit.contains("\nRestartPreventExitStatus=2\n"));
    }
}
