//! A lab PKI made with rcgen: a CA and the ePDG's certificate signed by it.

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};

/// The DER files of a lab PKI.
#[derive(Debug, Clone)]
pub struct LabPki {
    pub ca_der: Vec<u8>,
    pub epdg_der: Vec<u8>,
    /// PKCS#8, ECDSA P-256.
    pub epdg_key_der: Vec<u8>,
}

/// A CA ("pmip lab CA") and an ECDSA P-256 certificate for `identity` signed by it.
pub fn lab_pki(identity: &str) -> Result<LabPki> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pmip lab CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(vec![identity.to_string()])?;
    params.distinguished_name.push(DnType::CommonName, identity);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(LabPki {
        ca_der: ca_cert.der().to_vec(),
        epdg_der: cert.der().to_vec(),
        epdg_key_der: key.serialize_der(),
    })
}

/// Writes `ca.der`, `epdg.der` and `epdg.key.der` into `dir` (created if missing).
pub fn write_lab_pki(dir: &Path, identity: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pki = lab_pki(identity)?;
    for (name, bytes) in [
        ("ca.der", &pki.ca_der),
        ("epdg.der", &pki.epdg_der),
        ("epdg.key.der", &pki.epdg_key_der),
    ] {
        let path = dir.join(name);
        // Mode 0600 whatever the umask: the key is a secret, and the certificates are
        // written the same way so the folder reads as one.
        pmip_node::secret_file::write_atomically(&path, &[bytes])
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_key_loads_as_the_epdg_signer() {
        let pki = lab_pki("epdg.test").unwrap();
        pmip_common::ike::auth::EcdsaP256Signer::from_pkcs8(&pki.epdg_key_der, pki.epdg_der)
            .unwrap();
    }
}
