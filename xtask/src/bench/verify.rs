//! Signature verify: `Verifier::check` against an independent ed25519 verify of the same
//! SSHSIG signed data.

use super::*;

pub(super) fn verify(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let vectors = ctx.root.join("testdata/sshsig");
    let read = |name: &str| {
        let p = vectors.join(name);
        fs::read(&p).with_context(|| format!("reading {}", p.display()))
    };
    let blob = read("ed25519-sha512.json")?;
    let sig = read("ed25519-sha512.sig")?;
    let public = String::from_utf8(read("ed25519.pub")?).context("ed25519.pub is not UTF-8")?;
    let public = public.trim();

    let signer = Signer::from_authorized_key("ops-ed25519", Role::Operational, public)?;
    // The in-memory store: its lookup is a hash probe, so the pipeline is what is measured
    // (the durable store's cost is the nonce-open and journal-append benches).
    let verifier = Verifier::new(vec![signer], MemoryNonceStore::new(), HOST_ID);
    // Inside the vectors' window (testdata/sshsig/README.md).
    let now = time::macros::datetime!(2026-11-23 10:05:00 UTC);
    verifier
        .check(&blob, &sig, now)
        .context("the ed25519 vector does not verify with Verifier::check")?;

    let key = ssh_key::PublicKey::from_openssh(public).context("parsing ed25519.pub")?;
    let parsed = ssh_key::SshSig::from_pem(&sig).context("parsing the SSHSIG armor")?;
    let anchor = DalekAnchor::new(&key, &parsed)?;
    ensure!(
        anchor.signed_data(&blob)
            == ssh_key::SshSig::signed_data(felhom_authz::NAMESPACE, parsed.hash_alg(), &blob)?,
        "the anchor's SSHSIG signed data differs from ssh-key's"
    );
    ensure!(
        anchor.verify(&blob),
        "ed25519-dalek refuses the ed25519 vector"
    );

    const BATCH: u32 = 50;
    let target = ctx.sizes.verify_time;
    let (mut t_check, mut t_raw, mut t_parse) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut n_batches, mut failures) = (0u32, 0u32);
    while t_check < target || t_raw < target {
        let start = Instant::now();
        for _ in 0..BATCH {
            failures += u32::from(
                verifier
                    .check(black_box(&blob), black_box(&sig), now)
                    .is_err(),
            );
        }
        t_check += start.elapsed();

        let start = Instant::now();
        for _ in 0..BATCH {
            failures += u32::from(!anchor.verify(black_box(&blob)));
        }
        t_raw += start.elapsed();

        let start = Instant::now();
        for _ in 0..BATCH {
            failures += u32::from(
                ssh_key::SshSig::from_pem(black_box(&sig))
                    .and_then(|s| key.verify(felhom_authz::NAMESPACE, black_box(&blob), &s))
                    .is_err(),
            );
        }
        t_parse += start.elapsed();
        n_batches += 1;
    }
    ensure!(
        failures == 0,
        "{failures} verifications failed during the bench"
    );
    let n = f64::from(n_batches * BATCH);
    let rate = |t: Duration| n / t.as_secs_f64().max(f64::MIN_POSITIVE);
    let (check, raw, parse) = (rate(t_check), rate(t_raw), rate(t_parse));
    let ratio = check / raw;
    Ok(vec![Row {
        floor: NO_FLOOR.to_owned(),
        name: "signature verify (ed25519)".to_owned(),
        figure: format!("{check:.0} checks/s"),
        budget: "≥ 0.80× anchor rate".to_owned(),
        anchor: format!("ed25519-dalek over the signed data {raw:.0}/s"),
        ratio: rate_ratio(ratio),
        verdict: at_least(ratio, 0.8),
        notes: vec![
            format!(
                "Verifier::check (all stages, in-memory nonce lookup) over testdata/sshsig/\
                 ed25519-sha512; anchor: the SSHSIG signed data built here (sha2) and checked \
                 with ed25519-dalek's verify_strict, a different implementation of the same \
                 check; {} ops each, batches of {BATCH} interleaved",
                n as u64
            ),
            format!(
                "context: ssh-key SshSig::from_pem + PublicKey::verify {parse:.0}/s (check is \
                 {:.2}× that)",
                check / parse
            ),
        ],
    }])
}

/// The verify anchor: the SSHSIG signed data (PROTOCOL.sshsig: `"SSHSIG"`, namespace, reserved,
/// hash algorithm, H(message)) built here with sha2 and verified with ed25519-dalek, so it
/// shares no code path with `Verifier::check` beyond the curve arithmetic.
struct DalekAnchor {
    key: ed25519_dalek::VerifyingKey,
    signature: ed25519_dalek::Signature,
}

impl DalekAnchor {
    fn new(key: &ssh_key::PublicKey, sig: &ssh_key::SshSig) -> Result<Self> {
        let public = key
            .key_data()
            .ed25519()
            .context("the vector's key is not ed25519")?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public.0)
            .map_err(|e| anyhow!("ed25519 public key: {e}"))?;
        ensure!(
            sig.hash_alg() == ssh_key::HashAlg::Sha512,
            "the vector is not sha512-hashed"
        );
        let bytes: [u8; 64] = sig
            .signature_bytes()
            .try_into()
            .map_err(|_| anyhow!("an ed25519 signature is 64 bytes"))?;
        Ok(DalekAnchor {
            key,
            signature: ed25519_dalek::Signature::from_bytes(&bytes),
        })
    }

    fn signed_data(&self, message: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        let string = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s);
        };
        let mut out = b"SSHSIG".to_vec();
        string(&mut out, felhom_authz::NAMESPACE.as_bytes());
        string(&mut out, b"");
        string(&mut out, b"sha512");
        string(&mut out, &sha2::Sha512::digest(message));
        out
    }

    fn verify(&self, message: &[u8]) -> bool {
        self.key
            .verify_strict(&self.signed_data(message), &self.signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dalek_anchor_verifies_the_vector_and_refuses_a_changed_message() {
        let dir = crate::root().join("testdata/sshsig");
        let public = fs::read_to_string(dir.join("ed25519.pub")).unwrap();
        let key = ssh_key::PublicKey::from_openssh(public.trim()).unwrap();
        let sig =
            ssh_key::SshSig::from_pem(fs::read(dir.join("ed25519-sha512.sig")).unwrap()).unwrap();
        let blob = fs::read(dir.join("ed25519-sha512.json")).unwrap();
        let anchor = DalekAnchor::new(&key, &sig).unwrap();
        assert_eq!(
            anchor.signed_data(&blob),
            ssh_key::SshSig::signed_data(felhom_authz::NAMESPACE, sig.hash_alg(), &blob).unwrap()
        );
        assert!(anchor.verify(&blob));
        let mut changed = blob.clone();
        changed[0] ^= 1;
        assert!(!anchor.verify(&changed));
    }
}
