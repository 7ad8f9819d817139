//! Password hashes as RabbitMQ stores them: base64 of a 4-byte random salt followed by
//! H(salt ++ password), H being SHA-256 (`rabbit_password_hashing_sha256`, the default),
//! SHA-512 or MD5. An empty hash is a user without a password (certificate login only).

use base64::Engine;
use sha2::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
    Sha512,
    Md5,
}

impl HashAlgorithm {
    pub fn from_rabbit_name(name: &str) -> Option<HashAlgorithm> {
        match name {
            "rabbit_password_hashing_sha256" => Some(HashAlgorithm::Sha256),
            "rabbit_password_hashing_sha512" => Some(HashAlgorithm::Sha512),
            "rabbit_password_hashing_md5" => Some(HashAlgorithm::Md5),
            _ => None,
        }
    }

    pub fn rabbit_name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha512 => 64,
            HashAlgorithm::Md5 => 16,
        }
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha256 => sha2::Sha256::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            HashAlgorithm::Sha512 => sha2::Sha512::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            HashAlgorithm::Md5 => md5::Md5::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
        }
    }
}

const SALT_LEN: usize = 4;

/// A stored password: salt and digest (empty for a user without a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub algorithm: HashAlgorithm,
    pub bytes: Vec<u8>,
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn hash_new(password: &str, algorithm: HashAlgorithm) -> PasswordHash {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).expect("the OS random source");
        let mut bytes = salt.to_vec();
        bytes.extend(algorithm.digest(&salt, password.as_bytes()));
        PasswordHash { algorithm, bytes }
    }

    /// No password: no password verifies.
    pub fn none() -> PasswordHash {
        PasswordHash {
            algorithm: HashAlgorithm::Sha256,
            bytes: Vec::new(),
        }
    }

    /// Reads a stored hash; "" is a user without a password.
    pub fn from_base64(algorithm: HashAlgorithm, text: &str) -> Result<PasswordHash, String> {
        if text.is_empty() {
            return Ok(PasswordHash {
                algorithm,
                bytes: Vec::new(),
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("password hash is not base64: {e}"))?;
        let want = SALT_LEN + algorithm.digest_len();
        if bytes.len() != want {
            return Err(format!(
                "password hash is {} bytes, {} needs {want}",
                bytes.len(),
                algorithm.rabbit_name()
            ));
        }
        Ok(PasswordHash { algorithm, bytes })
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    pub fn is_none(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Does `password` match? Compares in constant time.
    pub fn verify(&self, password: &str) -> bool {
        // RabbitMQ refuses a blank password whatever is stored.
        if self.bytes.len() < SALT_LEN || password.is_empty() {
            return false;
        }
        let (salt, digest) = self.bytes.split_at(SALT_LEN);
        let got = self.algorithm.digest(salt, password.as_bytes());
        got.len() == digest.len() && got.iter().zip(digest).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes made by RabbitMQ 3.10.8 (`rabbitmqctl add_user`, then `export_definitions`;
    /// SHA-512 and MD5 after changing its `password_hashing_module`).
    const RABBIT_VECTORS: [(HashAlgorithm, &str, &str); 5] = [
        (
            HashAlgorithm::Sha256,
            "secret1",
            "eM1R6tSR7OPH3vRzbeAkJcJVq76paeXD1tXjo1wxb09Ab6we",
        ),
        (
            HashAlgorithm::Sha256,
            "guest",
            "kHJIWZy2KJR5OEw4us0pGLcaLMErWf7FelYyTEfqTV7YgcJd",
        ),
        (
            HashAlgorithm::Sha256,
            "p@ss w0rd ünïcode",
            "e8nk4av3mLoMAKV+qEi7EJMUY7XXmJPHsPtY3JYpb0Voj3je",
        ),
        (
            HashAlgorithm::Sha512,
            "secret512",
            "wB3Tq+Rvkr2OntbPA/AmCCqYJnEph81LN1yzQLyzpcv/m5EK3AIyAt4BBrk/KOQv/13SsACPRA6NyvX2xGDxLS8Ml3I=",
        ),
        (HashAlgorithm::Md5, "secretmd5", "kQEJQPCyVH0lzzmIu/93StZrGpQ="),
    ];

    #[test]
    fn rabbitmqs_own_hashes_verify() {
        for (alg, password, hash) in RABBIT_VECTORS {
            let h = PasswordHash::from_base64(alg, hash).unwrap();
            assert!(h.verify(password), "{alg:?} {password}");
            assert!(!h.verify("wrong"));
            assert!(!h.verify(&format!("{password}x")));
            assert!(!h.verify(""), "a blank password never logs in");
        }
    }

    #[test]
    fn hash_verify_round_trip() {
        for alg in [
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha512,
            HashAlgorithm::Md5,
        ] {
            let h = PasswordHash::hash_new("s3cret", alg);
            assert!(h.verify("s3cret"));
            assert!(!h.verify("s3cret "));
            let back = PasswordHash::from_base64(alg, &h.to_base64()).unwrap();
            assert_eq!(back, h);
        }
        assert!(!PasswordHash::none().verify(""));
        assert!(PasswordHash::from_base64(HashAlgorithm::Sha256, "not base64!").is_err());
        assert!(PasswordHash::from_base64(HashAlgorithm::Sha512, "AAAA").is_err());
    }
}
